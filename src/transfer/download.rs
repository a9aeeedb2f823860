//! Downloading one blob into the cache: continue from whatever an earlier attempt or run
//! left in the blob's partial file with a Range request, keep every byte received when the
//! link drops, and move the blob into the cache only once it hashes to its digest.

use std::io::{Read, Write};
use std::sync::Arc;

use crate::cache::Cache;
use crate::cache::partial::{Begun, PartialBlob};
use crate::error::{Class, Error, Result, io_error};
use crate::image::Blob;
use crate::registry::Repository;
use crate::registry::http::retry::{Budget, RetryPolicy};
use crate::transfer::upload::{Progress, Wait};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The cache already had it.
    Cached,
    Downloaded {
        /// Bytes that came over the wire in this run.
        received: u64,
        /// Bytes an earlier run had already received, not fetched again.
        resumed_from: u64,
    },
}

pub struct Downloader<'a> {
    pub repository: &'a Repository,
    pub cache: &'a Cache,
    pub retry: &'a RetryPolicy,
    pub progress: Arc<dyn Progress>,
    /// The cache holds a damaged copy: download anyway and replace it.
    pub replace: bool,
}

impl Downloader<'_> {
    pub fn download(&self, blob: &Blob) -> Result<Outcome> {
        let waiting = || {
            self.progress.note(&format!(
                "{}: waiting for another process downloading it",
                blob.digest.short()
            ))
        };
        let begun = if self.replace {
            self.cache.begin_replacing_blob(blob, &waiting)?
        } else {
            self.cache.begin_blob(blob, &waiting)?
        };
        let mut partial = match begun {
            Begun::Present => return Ok(Outcome::Cached),
            Begun::Partial(partial) => partial,
        };
        let resumed_from = partial.resume()?;
        let mut received = 0u64;
        let mut budget = Budget::for_blob(self.retry, blob.size, DOWNLOAD_UNIT);
        let mut fetched_whole_again = resumed_from == 0;
        loop {
            if partial.len() < blob.size {
                let before = partial.len();
                match self.fetch_rest(blob, &mut partial, &mut received, &mut budget) {
                    Ok(()) => {}
                    Err(e) if matches!(e.class, Class::Network | Class::Interrupted) => {
                        partial.flush_to_file()?;
                        if e.class == Class::Interrupted {
                            return Err(e);
                        }
                        let held = partial.len();
                        let what = stopped_at(blob, held);
                        (budget.after_resume(before, held, 0))
                            .map_err(|exhausted| exhausted.error(&what, &e.message))?;
                        let wait = budget.after_failure(0, None).wait(&what, &e.message)?;
                        self.progress.note(&format!(
                            "{}: {}; resuming at byte {held}",
                            blob.digest.short(),
                            e.message,
                        ));
                        self.retry.pause(wait);
                        continue;
                    }
                    Err(e) => return Err(e),
                }
            }
            match self.cache.commit_blob(&mut partial, &blob.digest) {
                Ok(()) => {
                    return Ok(Outcome::Downloaded {
                        received,
                        resumed_from,
                    });
                }
                // Bytes kept from an earlier run may be what is wrong: fetch it all once.
                Err(e) if !fetched_whole_again => {
                    (budget.record_resend(partial.len()))
                        .map_err(|exhausted| exhausted.error(&stopped_at(blob, 0), &e.message))?;
                    self.progress.note(&format!(
                        "{}: {}; downloading it again from the start",
                        blob.digest.short(),
                        e.message
                    ));
                    self.progress.rewound(partial.len());
                    partial.restart()?;
                    fetched_whole_again = true;
                }
                Err(e) => {
                    partial.discard();
                    return Err(Error::registry(format!(
                        "{} served corrupt content: {}",
                        self.repository.host(),
                        e.message
                    ))
                    .hint("the registry's storage or a proxy on the way is damaging data; nothing was stored"));
                }
            }
        }
    }

    /// Fetches the bytes after what the partial file holds and appends them.
    fn fetch_rest(
        &self,
        blob: &Blob,
        partial: &mut PartialBlob,
        received: &mut u64,
        budget: &mut Budget,
    ) -> Result<()> {
        let offset = partial.len();
        let response = self.repository.fetch_blob(&blob.digest, offset)?;
        let honoured = response.status == 206
            && response
                .header("content-range")
                .and_then(range_start)
                .is_some_and(|start| start == offset);
        if offset > 0 && !honoured {
            // The server sent the whole blob (no Range support): take it from the start.
            let why = "the registry ignored the range asked for";
            (budget.record_resend(offset))
                .map_err(|exhausted| exhausted.error(&stopped_at(blob, offset), why))?;
            self.progress.rewound(offset);
            partial.restart()?;
        }
        let remaining = blob.size - partial.len();
        let host = crate::registry::http::auth::host_of(&response.url).to_string();
        let mut body = response.into_reader().take(remaining);
        let mut buf = vec![0u8; 1 << 16];
        loop {
            if self.retry.stop.is_requested() {
                return Err(Error::interrupted("stopped by a signal"));
            }
            let asked = std::time::Instant::now();
            let n = body
                .read(&mut buf)
                .map_err(|e| Error::network(format!("the connection to {host} broke: {e}")))?;
            (self.progress).waited(Wait::Network, asked.elapsed().as_secs_f64());
            if n == 0 {
                break;
            }
            partial.write_all(&buf[..n]).map_err(|e| {
                io_error("write", partial.path(), e)
                    .hint("free space where the cache is, or choose another --cache-dir")
            })?;
            *received += n as u64;
            self.progress.sent(n as u64);
        }
        if partial.len() < blob.size {
            return Err(Error::network(format!(
                "{host} closed the connection after byte {} of {}",
                partial.len(),
                blob.size
            )));
        }
        Ok(())
    }
}

/// Downloads are one request for the rest of a blob; a budget counts them as chunks of
/// this size, so a large blob may fail more often in all than a small one.
const DOWNLOAD_UNIT: u64 = 32 << 20;

fn stopped_at(blob: &Blob, offset: u64) -> String {
    format!(
        "downloading blob {} stopped at byte {offset} of {}",
        blob.digest.short(),
        blob.size
    )
}

/// The first byte of a `Content-Range: bytes START-END/TOTAL` answer.
pub(crate) fn range_start(header: &str) -> Option<u64> {
    let range = header.trim().strip_prefix("bytes")?.trim_start();
    range.split('-').next()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::range_start;

    #[test]
    fn content_range_start_is_read() {
        assert_eq!(range_start("bytes 100-199/200"), Some(100));
        assert_eq!(range_start("bytes 0-0/1"), Some(0));
        assert_eq!(range_start("bytes */200"), None);
        assert_eq!(range_start("items 1-2/3"), None);
    }
}
