//! The source side of a registry-to-registry copy: a blob read from a registry as a stream,
//! straight into the upload that feeds the other registry, with no file in between. A cut
//! download is picked up again with a Range request from the byte reached, so the upload
//! never sees the cut; the uploader checks the digest of the whole stream as it does for
//! any source, so bytes a server got wrong on the way fail the blob instead of landing.

use std::io::{self, Read};

use crate::error::{Class, Error};
use crate::image::digest::Digest;
use crate::image::{Blob, BlobSource};
use crate::interrupt::Stopped;
use crate::registry::Repository;
use crate::registry::http::retry::RetryPolicy;
use crate::transfer::download::range_start;

/// A registry repository as a [`BlobSource`].
pub struct RegistrySource {
    pub repository: Repository,
    pub retry: RetryPolicy,
}

impl BlobSource for RegistrySource {
    fn open_blob(&self, blob: &Blob, offset: u64) -> io::Result<Box<dyn Read + Send>> {
        let mut reader = RangeReader {
            repository: self.repository.clone(),
            retry: self.retry.clone(),
            digest: blob.digest.clone(),
            size: blob.size,
            position: offset.min(blob.size),
            body: None,
            failures_in_a_row: 0,
            reopens_left: reopen_budget(&self.retry, blob.size),
        };
        if reader.position < reader.size {
            reader.open()?;
        }
        Ok(Box::new(reader))
    }
}

/// Reopened downloads one blob may need in all: the retry attempts for every 32 MiB, so a
/// long transfer over a link that drops now and then can finish, yet a link that drops
/// all the time cannot keep it going forever.
fn reopen_budget(retry: &RetryPolicy, size: u64) -> u32 {
    let units = u32::try_from(size / (32 << 20)).unwrap_or(u32::MAX);
    retry
        .attempts
        .max(1)
        .saturating_mul(units.saturating_add(1))
}

struct RangeReader {
    repository: Repository,
    retry: RetryPolicy,
    digest: Digest,
    size: u64,
    /// The next byte of the blob to hand out.
    position: u64,
    body: Option<Box<dyn Read + Send>>,
    failures_in_a_row: u32,
    reopens_left: u32,
}

impl RangeReader {
    /// A GET for the rest of the blob from `position`, retried within the budget.
    fn open(&mut self) -> io::Result<()> {
        loop {
            if self.retry.stop.is_requested() {
                return Err(Stopped::io_error());
            }
            match self.repository.fetch_blob(&self.digest, self.position) {
                Ok(response) => {
                    let honoured = response.status == 206
                        && response
                            .header("content-range")
                            .and_then(range_start)
                            .is_some_and(|start| start == self.position);
                    let mut body: Box<dyn Read + Send> = Box::new(response.into_reader());
                    if self.position > 0 && !honoured {
                        // A server without Range support sends it all: pass over the start.
                        let skipped =
                            io::copy(&mut (&mut body).take(self.position), &mut io::sink())?;
                        if skipped < self.position {
                            self.failed("the blob ended before the byte to resume at")?;
                            continue;
                        }
                    }
                    self.body = Some(Box::new(body.take(self.size - self.position)));
                    return Ok(());
                }
                Err(e) if e.class == Class::Network => self.failed(&e.message)?,
                Err(e) => return Err(io::Error::other(e.to_string())),
            }
        }
    }

    /// Counts a failure against the budget and waits before the next try; an error when
    /// the budget is spent.
    fn failed(&mut self, reason: &str) -> io::Result<()> {
        self.body = None;
        self.failures_in_a_row += 1;
        if self.failures_in_a_row > self.retry.attempts || self.reopens_left == 0 {
            return Err(io::Error::other(
                Error::network(format!(
                    "downloading blob {} from {} failed at byte {} of {}: {reason}",
                    self.digest.short(),
                    self.repository.host(),
                    self.position,
                    self.size
                ))
                .to_string(),
            ));
        }
        self.reopens_left -= 1;
        self.retry
            .pause(self.retry.delay(self.failures_in_a_row - 1, None));
        Ok(())
    }
}

impl Read for RangeReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.size - self.position;
        if left == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        loop {
            if self.body.is_none() {
                self.open()?;
            }
            let body = self.body.as_mut().expect("opened above");
            match body.read(&mut buf[..want]) {
                Ok(0) => self.failed("the registry closed the connection early")?,
                Ok(n) => {
                    self.position += n as u64;
                    self.failures_in_a_row = 0;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if Stopped::is(&e) => return Err(e),
                Err(e) => self.failed(&e.to_string())?,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_blob_may_reopen_more_often_than_a_small_one() {
        let retry = RetryPolicy::default();
        assert_eq!(reopen_budget(&retry, 1 << 20), retry.attempts);
        assert_eq!(reopen_budget(&retry, 64 << 20), 3 * retry.attempts);
        let none = RetryPolicy {
            attempts: 0,
            ..RetryPolicy::default()
        };
        assert_eq!(reopen_budget(&none, 0), 1);
        assert_eq!(reopen_budget(&retry, u64::MAX), u32::MAX);
    }
}
