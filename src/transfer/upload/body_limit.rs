//! What a registry's front end lets through as one request body. nginx's
//! `client_max_body_size` (1 MiB by default), a CDN's cap (Cloudflare: 100 MB) or a load
//! balancer's answers a larger PUT or PATCH with 413 before the registry sees it. A 413 to
//! an upload halves the chunk (down to 1 MiB) and the same session goes on; the size that
//! went through is said once and remembered in the state directory, so the next run to
//! that registry starts there. The limit is shared by every worker of a run.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::{Transfer, Uploader, stopped_at};
use crate::error::{Cause, Error, Result};
use crate::image::Blob;
use crate::registry::Session;
use crate::registry::http::retry;
use crate::registry::http::transport::{Response, reason_phrase};
use crate::registry::rules::UploadRules;
use crate::transfer::session::resume_point;

/// Chunks never shrink below this: a front end refusing 1 MiB bodies needs fixing there.
pub const FLOOR: u64 = 1 << 20;
/// A remembered limit older than this is learnt again (the front end may have changed).
const MAX_AGE_SECONDS: u64 = 30 * 24 * 60 * 60;

#[derive(Debug, Default)]
pub struct BodyLimit {
    /// The largest body to send; 0 while nothing was refused or remembered.
    cap: AtomicU64,
    /// The smallest body refused in this run (0: none).
    refused: AtomicU64,
    announced: AtomicBool,
    loaded: OnceLock<()>,
}

/// The next chunk size to try after a body of `size` bytes was refused.
pub fn halve(size: u64) -> Option<u64> {
    (size > FLOOR).then(|| (size / 2).max(FLOOR))
}

/// `32 MiB` for whole MiB, else the usual byte count.
pub fn mib(bytes: u64) -> String {
    if bytes >= FLOOR && bytes.is_multiple_of(FLOOR) {
        format!("{} MiB", bytes / FLOOR)
    } else {
        crate::text::units::human_bytes(bytes)
    }
}

impl BodyLimit {
    /// `requested`, or less when the front end is known to refuse it.
    pub fn chunk(&self, requested: u64) -> u64 {
        match self.cap.load(Ordering::Relaxed) {
            0 => requested,
            cap => requested.min(cap),
        }
    }

    /// Whether one request of `size` bytes is known to be refused.
    pub fn too_big(&self, size: u64) -> bool {
        self.chunk(size) < size
    }

    /// A body of `size` bytes was refused: the smaller size to go on with, or `None` when
    /// the floor was reached.
    pub fn refused(&self, size: u64) -> Option<u64> {
        self.refused
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |r| {
                Some(if r == 0 { size } else { r.min(size) })
            })
            .ok();
        let next = halve(size)?;
        let _ = self
            .cap
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| {
                Some(if c == 0 { next } else { c.min(next) })
            });
        Some(self.chunk(next))
    }

    /// A body of `size` bytes went through: after a refusal in this run, the one line
    /// saying what happened (only the first time).
    fn accepted(&self, size: u64) -> Option<String> {
        let refused = self.refused.load(Ordering::Relaxed);
        if refused == 0 || size >= refused || self.announced.swap(true, Ordering::Relaxed) {
            return None;
        }
        Some(format!(
            "the registry's front end refused {} bodies; using {} chunks",
            mib(refused),
            mib(size)
        ))
    }
}

impl Uploader<'_> {
    fn body_limit(&self) -> &BodyLimit {
        &self.options.body_limit
    }

    /// The chunk size to use now: the registry's rules, within what its front end takes
    /// (as remembered from an earlier run, or learnt in this one).
    pub(crate) fn limited_chunk(&self, rules_chunk: u64) -> u64 {
        let limit = self.body_limit();
        limit.loaded.get_or_init(|| {
            let host = self.repository.host();
            let Some(bytes) = self.state.and_then(|s| s.body_limit(host, MAX_AGE_SECONDS)) else {
                return;
            };
            limit.cap.store(bytes, Ordering::Relaxed);
            if bytes < self.options.chunk_size {
                self.progress.note(&format!(
                    "the registry's front end took {} bodies on an earlier run; using {} chunks",
                    mib(bytes),
                    mib(bytes)
                ));
            }
        });
        limit.chunk(rules_chunk)
    }

    /// Whether a blob of `size` bytes is known to be too big for one request.
    pub(crate) fn too_big_for_one_request(&self, size: u64) -> bool {
        self.limited_chunk(size);
        self.body_limit().too_big(size)
    }

    /// A 413 to a request body of `size` bytes: the chunk size to go on with and what the
    /// front end said (status, reason, the first line of its page), or the error to stop
    /// with when even the smallest chunk was refused.
    pub(crate) fn shrink_after_413(
        &self,
        response: Response,
        size: u64,
        what: &str,
    ) -> Result<(u64, String)> {
        let (status, _, message) = response.error_summary();
        let status_line = format!("HTTP {status} {}", reason_phrase(status));
        let said = match message.is_empty() {
            true => status_line.trim_end().to_string(),
            false => format!("{}: {message}", status_line.trim_end()),
        };
        match self.body_limit().refused(size) {
            Some(next) => Ok((next, said)),
            None => Err(Error::caused(
                Cause::Status(status),
                format!("{what} failed on {}: {said}", self.repository.host()),
            )
            .hint(format!(
                "the registry's front end refuses even {} request bodies; raise its limit (nginx: client_max_body_size)",
                mib(size)
            ))),
        }
    }

    /// A chunk of `size` bytes was accepted: says once what the front end made us do, and
    /// remembers it for the next run.
    pub(crate) fn body_accepted(&self, size: u64) {
        let Some(line) = self.body_limit().accepted(size) else {
            return;
        };
        self.progress.note(&line);
        if let Some(state) = self.state
            && let Err(e) = state.record_body_limit(self.repository.host(), size)
        {
            self.progress.note(&format!(
                "cannot remember the registry's body limit in {}: {e}",
                state.root().display()
            ));
        }
    }

    /// Where a session stands after a refused body. A buffering front end answers before
    /// the registry sees anything, so the session is as it was; a registry that got part
    /// of a PATCH may have dropped it (distribution 2.8 does), and then the blob starts
    /// over in a new session, which counts against the retry budget.
    pub(super) fn resume_after_413(
        &self,
        blob: &Blob,
        refused: (&Session, u64),
        sent_before: u64,
        rules: &UploadRules,
        transfer: &mut Transfer,
    ) -> Result<(Session, u64)> {
        let (session, offset) = refused;
        let (resumed, held) = resume_point(self.repository, session, rules)?;
        let held = held.min(blob.size);
        let reason = "the registry's front end refused the request (HTTP 413)";
        // The refused body's bytes were counted as progress; they go again.
        self.progress.rewound(transfer.sent() - sent_before);
        if transfer.restart_if_lost(session, &resumed, held) {
            self.progress.note(&format!(
                "blob {}: the registry lost the upload session; starting the blob over",
                blob.digest.short()
            ));
            self.progress.rewound(offset);
            let wait = (transfer.budget.record_failure(None)).wait(&stopped_at(blob, 0), reason)?;
            self.pause(wait);
        } else if held < offset {
            self.progress.rewound(offset - held);
        }
        let wasted = retry::wasted(offset, transfer.sent() - sent_before, held);
        (transfer.budget.after_resume(offset, held, wasted))
            .map_err(|e| e.error(&stopped_at(blob, held), reason))?;
        self.remember(blob, &resumed, held);
        Ok((resumed, held))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn chunks_halve_down_to_one_mib() {
        assert_eq!(halve(32 * MIB), Some(16 * MIB));
        assert_eq!(halve(3 * MIB), Some(MIB + MIB / 2));
        assert_eq!(halve(MIB + 1), Some(MIB));
        assert_eq!(halve(MIB), None);
    }

    #[test]
    fn a_refusal_caps_every_later_chunk_and_is_said_once_when_a_size_passes() {
        let limit = BodyLimit::default();
        assert_eq!(limit.chunk(32 * MIB), 32 * MIB);
        assert_eq!(limit.refused(64 * MIB), Some(32 * MIB));
        assert_eq!(limit.refused(32 * MIB), Some(16 * MIB));
        assert_eq!(limit.chunk(32 * MIB), 16 * MIB);
        assert!(limit.too_big(20 * MIB) && !limit.too_big(16 * MIB));
        // Another worker's refusal of a larger body does not raise the cap.
        assert_eq!(limit.refused(64 * MIB), Some(16 * MIB));
        assert_eq!(
            limit.accepted(16 * MIB).as_deref(),
            Some("the registry's front end refused 32 MiB bodies; using 16 MiB chunks")
        );
        assert_eq!(limit.accepted(16 * MIB), None);
        assert_eq!(limit.refused(MIB), None);
    }

    #[test]
    fn nothing_is_said_without_a_refusal() {
        let limit = BodyLimit::default();
        assert_eq!(limit.accepted(32 * MIB), None);
    }
}
