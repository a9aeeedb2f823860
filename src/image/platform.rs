//! Platform choice: which entry of an index is the image for a machine, and which platform
//! this machine is.

use super::{Descriptor, Platform, media};

/// The platform container images for this machine are built for (Go's GOARCH names).
pub fn host_platform() -> Platform {
    let (architecture, variant) = match std::env::consts::ARCH {
        "x86_64" => ("amd64", None),
        "x86" => ("386", None),
        "aarch64" => ("arm64", None),
        "arm" => ("arm", Some("v7")),
        "powerpc64" if cfg!(target_endian = "little") => ("ppc64le", None),
        "loongarch64" => ("loong64", None),
        other => (other, None),
    };
    Platform {
        os: if cfg!(windows) { "windows" } else { "linux" }.to_string(),
        architecture: architecture.to_string(),
        variant: variant.map(str::to_string),
        os_version: None,
    }
}

/// Docker marks build attestations (SBOM, provenance) as index entries of their own.
pub fn is_attestation(descriptor: &Descriptor) -> bool {
    descriptor.annotation("vnd.docker.reference.type") == Some("attestation-manifest")
        || descriptor
            .platform
            .as_ref()
            .is_some_and(|p| p.os == "unknown" && p.architecture == "unknown")
}

/// The index entry for `wanted`: an exact variant match first, then any match.
pub fn choose_platform<'a>(
    children: &'a [Descriptor],
    wanted: &Platform,
) -> Option<&'a Descriptor> {
    let candidates: Vec<&Descriptor> = children
        .iter()
        .filter(|d| media::is_manifest(&d.media_type) || d.media_type.is_empty())
        .filter(|d| !is_attestation(d))
        .filter(|d| d.platform.as_ref().is_some_and(|p| p.matches(wanted)))
        .collect();
    candidates
        .iter()
        .find(|d| {
            d.platform
                .as_ref()
                .is_some_and(|p| p.variant == wanted.variant)
        })
        .or(candidates.first())
        .copied()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::digest::Digest;

    fn child(platform: &str, byte: u8) -> Descriptor {
        Descriptor {
            media_type: media::OCI_MANIFEST.to_string(),
            digest: Digest::of(&[byte]),
            size: 1,
            platform: Some(Platform::parse(platform).unwrap()),
            annotations: None,
            urls: None,
        }
    }

    #[test]
    fn the_wanted_platform_is_chosen_and_attestations_skipped() {
        let mut attestation = child("unknown/unknown", 9);
        attestation.annotations = Some(
            [(
                "vnd.docker.reference.type".to_string(),
                "attestation-manifest".to_string(),
            )]
            .into(),
        );
        let children = vec![
            attestation,
            child("linux/amd64", 1),
            child("linux/arm/v6", 2),
            child("linux/arm/v7", 3),
            child("linux/arm64/v8", 4),
        ];
        let pick = |p: &str| {
            choose_platform(&children, &Platform::parse(p).unwrap()).map(|d| d.digest.clone())
        };
        assert_eq!(pick("linux/amd64"), Some(Digest::of(&[1])));
        assert_eq!(pick("linux/arm/v7"), Some(Digest::of(&[3])));
        assert_eq!(pick("linux/arm"), Some(Digest::of(&[2])));
        assert_eq!(pick("linux/arm64"), Some(Digest::of(&[4])));
        assert_eq!(pick("windows/amd64"), None);
        assert_eq!(pick("unknown/unknown"), None);
    }

    #[test]
    fn the_host_platform_uses_image_architecture_names() {
        let host = host_platform();
        assert!(!host.architecture.is_empty());
        assert_ne!(host.architecture, "x86_64");
        assert_ne!(host.architecture, "aarch64");
    }
}
