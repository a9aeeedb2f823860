//! How uploads must be shaped for a given registry host. Registries differ in what they
//! accept (documented limits and reported behaviour); these rules keep those differences in
//! one pure function instead of scattered through the upload code.

/// One MiB.
const MIB: u64 = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostKind {
    Generic,
    /// GitHub Container Registry: rejects PATCH bodies over 4 MiB.
    Ghcr,
    /// AWS ECR: parts of 5..=20 MiB (S3 multipart), the last one sent with the closing PUT;
    /// its `Range` answers are not reliable for resuming.
    Ecr,
    /// Google Artifact Registry and gcr.io: chunked PATCH is refused; monolithic only.
    Google,
}

pub fn host_kind(host: &str) -> HostKind {
    let name = host
        .rsplit_once(':')
        .map(|(h, p)| {
            if p.chars().all(|c| c.is_ascii_digit()) {
                h
            } else {
                host
            }
        })
        .unwrap_or(host);
    let name = name.to_ascii_lowercase();
    if name == "ghcr.io" {
        HostKind::Ghcr
    } else if name.ends_with(".amazonaws.com") && name.contains(".dkr.ecr.") {
        HostKind::Ecr
    } else if name.ends_with("-docker.pkg.dev") || name == "gcr.io" || name.ends_with(".gcr.io") {
        HostKind::Google
    } else {
        HostKind::Generic
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadRules {
    pub chunk_size: u64,
    /// Whether chunked PATCH uploads may be used at all.
    pub allow_patch: bool,
    /// Send the final chunk in the body of the closing PUT instead of a last PATCH.
    pub last_chunk_in_put: bool,
    /// Whether the registry's `Range` header can be trusted to resume from.
    pub trust_range: bool,
}

/// Rules for uploading to `host`, given the user's chunk size and the registry's
/// `OCI-Chunk-Min-Length` (from the upload session, when it sent one).
pub fn upload_rules(
    host: &str,
    requested_chunk: u64,
    chunk_min_length: Option<u64>,
) -> UploadRules {
    let requested = requested_chunk.max(1);
    let honour_minimum = |size: u64| size.max(chunk_min_length.unwrap_or(0));
    match host_kind(host) {
        HostKind::Generic => UploadRules {
            chunk_size: honour_minimum(requested),
            allow_patch: true,
            last_chunk_in_put: false,
            trust_range: true,
        },
        HostKind::Ghcr => UploadRules {
            chunk_size: requested.min(4 * MIB),
            allow_patch: true,
            last_chunk_in_put: false,
            trust_range: true,
        },
        HostKind::Ecr => UploadRules {
            chunk_size: requested.clamp(5 * MIB, 20 * MIB),
            allow_patch: true,
            last_chunk_in_put: true,
            trust_range: false,
        },
        HostKind::Google => UploadRules {
            chunk_size: honour_minimum(requested),
            allow_patch: false,
            last_chunk_in_put: false,
            trust_range: true,
        },
    }
}

/// The `Content-Range` value for a chunk: `start-end`, inclusive, with no `bytes ` prefix
/// (the distribution spec's form; Azure rejects the RFC 7233 one).
pub fn content_range(start: u64, length: u64) -> String {
    format!("{start}-{}", start + length.max(1) - 1)
}

/// Parses a registry's `Range: 0-N` upload-progress header into the number of bytes it
/// holds (N + 1). Tolerates the `bytes=` prefix some registries add. The distribution
/// registry answers `0-0` both for an empty session and for one holding one byte; reading
/// it as empty is the safe side (a wrong guess costs a 416 and one byte resent).
pub fn parse_upload_range(header: &str) -> Option<u64> {
    let text = header.trim();
    let text = text
        .strip_prefix("bytes=")
        .or_else(|| text.strip_prefix("bytes "))
        .unwrap_or(text);
    let (start, end) = text.split_once('-')?;
    let start: u64 = start.trim().parse().ok()?;
    let end: u64 = end.trim().parse().ok()?;
    if start != 0 {
        return None;
    }
    if end == 0 {
        return Some(0);
    }
    end.checked_add(1)
}

/// Whether a failed PATCH means "this registry does not do chunked uploads" rather than
/// "the session broke": 404/405, or 416 before any chunk was accepted.
pub fn patch_unsupported(status: u16, bytes_accepted_before: u64) -> bool {
    matches!(status, 404 | 405 | 416) && bytes_accepted_before == 0
}

/// Whether a failed monolithic PUT should be retried as chunked PATCH uploads.
pub fn switch_to_chunked(status: Option<u16>) -> bool {
    // `None` means the connection was cut while sending the body: smaller requests
    // are the way through proxies that drop long uploads.
    matches!(status, None | Some(413))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_classified() {
        assert_eq!(host_kind("ghcr.io"), HostKind::Ghcr);
        assert_eq!(
            host_kind("123456789012.dkr.ecr.eu-west-1.amazonaws.com"),
            HostKind::Ecr
        );
        assert_eq!(host_kind("europe-west1-docker.pkg.dev"), HostKind::Google);
        assert_eq!(host_kind("gcr.io"), HostKind::Google);
        assert_eq!(host_kind("eu.gcr.io"), HostKind::Google);
        assert_eq!(host_kind("registry.example.com:5000"), HostKind::Generic);
        assert_eq!(host_kind("notgcr.io"), HostKind::Generic);
        assert_eq!(host_kind("[::1]:5000"), HostKind::Generic);
    }

    #[test]
    fn ghcr_chunks_are_at_most_4_mib() {
        assert_eq!(upload_rules("ghcr.io", 32 * MIB, None).chunk_size, 4 * MIB);
        assert_eq!(upload_rules("ghcr.io", MIB, None).chunk_size, MIB);
    }

    #[test]
    fn ecr_chunks_are_5_to_20_mib_and_end_in_the_put() {
        let small = upload_rules("1.dkr.ecr.us-east-1.amazonaws.com", MIB, None);
        assert_eq!(small.chunk_size, 5 * MIB);
        assert!(small.last_chunk_in_put && !small.trust_range);
        assert_eq!(
            upload_rules("1.dkr.ecr.us-east-1.amazonaws.com", 64 * MIB, None).chunk_size,
            20 * MIB
        );
    }

    #[test]
    fn google_never_patches() {
        assert!(!upload_rules("us-docker.pkg.dev", 8 * MIB, None).allow_patch);
        assert!(!upload_rules("gcr.io", 8 * MIB, None).allow_patch);
    }

    #[test]
    fn generic_registries_honour_chunk_min_length() {
        assert_eq!(
            upload_rules("r.example.com", MIB, Some(8 * MIB)).chunk_size,
            8 * MIB
        );
        assert_eq!(
            upload_rules("r.example.com", 16 * MIB, Some(8 * MIB)).chunk_size,
            16 * MIB
        );
    }

    #[test]
    fn content_range_is_inclusive_without_unit() {
        assert_eq!(content_range(0, 10), "0-9");
        assert_eq!(content_range(10, 5), "10-14");
    }

    #[test]
    fn upload_range_parsing() {
        assert_eq!(parse_upload_range("0-0"), Some(0));
        assert_eq!(parse_upload_range("0-1048575"), Some(1 << 20));
        assert_eq!(parse_upload_range("bytes=0-99"), Some(100));
        assert_eq!(parse_upload_range("5-9"), None);
        assert_eq!(parse_upload_range("junk"), None);
        assert_eq!(parse_upload_range(&format!("0-{}", u64::MAX)), None);
    }

    #[test]
    fn patch_failures_only_mean_unsupported_before_progress() {
        assert!(patch_unsupported(405, 0));
        assert!(patch_unsupported(404, 0));
        assert!(patch_unsupported(416, 0));
        assert!(!patch_unsupported(416, 1024));
        assert!(!patch_unsupported(404, 1024));
        assert!(!patch_unsupported(500, 0));
    }

    #[test]
    fn monolithic_failures_that_switch_to_chunks() {
        assert!(switch_to_chunked(Some(413)));
        assert!(switch_to_chunked(None));
        assert!(!switch_to_chunked(Some(400)));
    }
}
