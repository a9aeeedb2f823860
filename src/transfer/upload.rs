//! Uploading one blob: check whether the registry has it, continue a session saved by an
//! earlier run, try cross-repository mounts, then stream it either in one PUT or as
//! chunked PATCHes from the source file, adapting to what the registry accepts and
//! resuming from the registry's own offset after a failure, so a dropped link costs at
//! most the chunk in flight (when the registry kept its session; see docs/reliability.md
//! for registries that drop a session holding a partial chunk).

use std::io::{self, Read};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::cache::state::StateDir;
use crate::error::{Class, Error, Result};
use crate::image::digest::{Hasher, VerifyingReader};
use crate::image::{Blob, BlobSource};
use crate::interrupt::{StopSignal, Stopped};
use crate::registry::http::retry::{self, Budget, RetryPolicy};
use crate::registry::http::transport::{self, Body};
use crate::registry::rules::{self, UploadRules};
use crate::registry::{ChunkOutcome, Initiated, Repository, Session};
use crate::transfer::session::{
    Commit, Failure, Resumable, Saved, Upload, commit_session, initiate, is_transient_status,
    resume_point, same_session,
};

pub(crate) mod body_limit;
mod tally;
pub(crate) use tally::Counting;
use tally::{HashFeed, Transfer};

#[derive(Debug, Clone)]
pub struct UploadOptions {
    /// Blobs larger than this go up in chunks; smaller ones in one request.
    pub large_layer_threshold: u64,
    pub chunk_size: u64,
    /// Send every blob's bytes: no existence check, no mount.
    pub force: bool,
    /// Repositories on the same registry to try mounting from before uploading.
    pub mount_from: Vec<String>,
    pub retry: RetryPolicy,
    /// Polled between chunks: set by Ctrl-C.
    pub stop: StopSignal,
    /// What the registry's front end takes in one request, shared by the run's workers.
    pub body_limit: Arc<body_limit::BodyLimit>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The registry already had it.
    Existed,
    Mounted {
        from: String,
    },
    Uploaded {
        /// Bytes that went over the wire, resends included.
        sent: u64,
        /// Bytes the registry already held from an earlier run.
        reused: u64,
        /// Bytes sent more than once because of failures.
        resent: u64,
        /// Times the upload continued after a failure.
        resumes: u32,
    },
}

/// Callbacks for progress: bytes handed to the network, and when the registry's view of a
/// blob moved backwards (bytes that will be sent again).
pub trait Progress: Send + Sync {
    fn sent(&self, bytes: u64);
    fn rewound(&self, _bytes: u64) {}
    fn note(&self, _message: &str) {}
    /// From now on each byte sent stands for this many bytes of the blob as the user
    /// counts it: a layer compressed on the way shows its uncompressed size.
    fn scale(&self, _source_bytes_per_byte: f64) {}
    /// A worker spent `seconds` on `what` (for the report's bottleneck).
    fn waited(&self, _what: Wait, _seconds: f64) {}
}

/// What an upload worker's time went to, besides waiting for the registry's answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Reading the request body from its source (a file, the cache, memory).
    Source,
    /// The network taking the bytes just read: the time between two body reads.
    Network,
    /// The compressed form of a layer being produced (read and compressed).
    Compressed,
}

impl Progress for () {
    fn sent(&self, _bytes: u64) {}
}

pub struct Uploader<'a> {
    pub repository: &'a Repository,
    pub source: &'a dyn BlobSource,
    pub options: &'a UploadOptions,
    pub progress: Arc<dyn Progress>,
    /// Where open sessions are saved for the next run and mount sources are looked up.
    pub state: Option<&'a StateDir>,
}

impl Uploader<'_> {
    pub fn upload(&self, blob: &Blob) -> Result<Outcome> {
        self.check_stop()?;
        if !self.options.force
            && self
                .repository
                .check_existing_blob(&blob.digest, blob.size)?
        {
            self.forget(blob);
            return Ok(Outcome::Existed);
        }
        // A blob that goes up in one request may be sent whole a few times; one in chunks
        // a few chunks beyond twice its size.
        let chunked = blob.size > self.options.large_layer_threshold
            || self.too_big_for_one_request(blob.size);
        let unit = if chunked {
            self.limited_chunk(self.options.chunk_size)
        } else {
            blob.size
        };
        let mut transfer =
            Transfer::new(blob, Budget::for_blob(&self.options.retry, blob.size, unit));
        let result = match self.resumable(blob).saved(|session| self.rules(session))? {
            Some(Saved {
                session, offset, ..
            }) => {
                transfer.reused = offset;
                self.progress.note(&format!(
                    "blob {}: continuing the upload of an earlier run at byte {offset} of {}",
                    blob.digest.short(),
                    blob.size
                ));
                let rules = self.rules(&session);
                self.chunked_from(blob, session, offset, &rules, &mut transfer)
            }
            None => {
                let session = match self.mount_or_open(blob)? {
                    Opened::Mounted(from) => {
                        self.forget(blob);
                        return Ok(Outcome::Mounted { from });
                    }
                    Opened::Session(session) => session,
                };
                let rules = self.rules(&session);
                if rules.allow_patch && chunked {
                    self.remember(blob, &session, 0);
                    self.chunked_from(blob, session, 0, &rules, &mut transfer)
                } else {
                    self.monolithic(blob, session, &rules, &mut transfer)
                }
            }
        };
        match result {
            Ok(()) => {
                self.forget(blob);
                Ok(transfer.outcome())
            }
            Err(e) => Err(e),
        }
    }

    pub(crate) fn rules(&self, session: &Session) -> UploadRules {
        rules::upload_rules(
            self.repository.host(),
            self.options.chunk_size,
            session.chunk_min_length,
        )
    }

    pub(crate) fn check_stop(&self) -> Result<()> {
        if self.options.stop.is_requested() {
            return Err(Error::interrupted("stopped by a signal"));
        }
        Ok(())
    }

    /// Tries to mount the blob from repositories that hold it (named by the user, or
    /// recorded by earlier pushes and pulls); otherwise opens an ordinary session. A
    /// refused mount usually opens a session by itself, which is then used.
    fn mount_or_open(&self, blob: &Blob) -> Result<Opened> {
        // A mount sends no bytes, which is what `--force-upload` is there to prevent.
        if self.options.force {
            return initiate(self.repository).map(Opened::Session);
        }
        let mut candidates: Vec<String> = Vec::new();
        let known = self
            .state
            .map(|s| s.known_repositories(self.repository.host(), &blob.digest))
            .unwrap_or_default();
        for from in self.options.mount_from.iter().chain(&known) {
            if from != self.repository.name() && !candidates.contains(from) {
                candidates.push(from.clone());
            }
        }
        let mut pending: Option<Session> = None;
        for from in &candidates {
            if let Some(unused) = pending.take() {
                self.repository.cancel_upload(&unused);
            }
            match self.repository.initiate_upload(Some((&blob.digest, from))) {
                Ok(Initiated::Mounted) => return Ok(Opened::Mounted(from.clone())),
                Ok(Initiated::Session(session)) => pending = Some(session),
                // No read access to the source: mounting from there is not possible, and
                // says nothing about whether these credentials may push.
                Err(e) if e.class == Class::Auth => self.progress.note(&format!(
                    "blob {}: cannot mount from {from} ({})",
                    blob.digest.short(),
                    e.message
                )),
                Err(e) => return Err(e),
            }
        }
        match pending {
            Some(session) => Ok(Opened::Session(session)),
            None => initiate(self.repository).map(Opened::Session),
        }
    }

    /// The blob's session as kept across runs.
    fn resumable<'s>(&'s self, blob: &'s Blob) -> Resumable<'s> {
        Resumable {
            repository: self.repository,
            state: self.state,
            progress: &*self.progress,
            upload: Upload::Blob(blob),
        }
    }

    fn remember(&self, blob: &Blob, session: &Session, offset: u64) {
        self.resumable(blob).save(session, offset, Vec::new);
    }

    fn forget(&self, blob: &Blob) {
        self.resumable(blob).forget();
    }

    /// One PUT with the whole blob. A cut connection or 413 switches to chunks, continuing
    /// from whatever the registry kept when it can say.
    fn monolithic(
        &self,
        blob: &Blob,
        mut session: Session,
        rules: &UploadRules,
        transfer: &mut Transfer,
    ) -> Result<()> {
        loop {
            self.check_stop()?;
            let sent_before = transfer.sent();
            let stop = self.options.stop.clone();
            let counter = transfer.sent.clone();
            let open = || -> io::Result<Box<dyn Read + Send>> {
                let reader = self.source.open_blob(blob, 0)?;
                let verified = VerifyingReader::new(reader, blob.digest.clone(), blob.size);
                // One request cannot be continued later, so a stop request ends it now.
                Ok(Box::new(Counting::new(
                    verified,
                    self.progress.clone(),
                    counter.clone(),
                    Some(stop.clone()),
                )))
            };
            let result = self.repository.commit_blob(
                &session,
                &blob.digest,
                Body::Stream {
                    open: &open,
                    length: blob.size,
                },
            );
            let (status, retry_after) = match result {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(response)) if response.status == 413 && rules.allow_patch => {
                    let what = format!("uploading blob {}", blob.digest.short());
                    let (_, said) = self
                        .shrink_after_413(response, blob.size, &what)
                        .inspect_err(|_| self.repository.cancel_upload(&session))?;
                    self.progress.note(&format!(
                        "blob {}: the registry refused {} in one request ({said}); switching to chunked upload",
                        blob.digest.short(),
                        body_limit::mib(blob.size)
                    ));
                    transfer.resumes += 1;
                    let (resumed, offset) =
                        self.resume_after_413(blob, (&session, 0), sent_before, rules, transfer)?;
                    return self.chunked_from(blob, resumed, offset, rules, transfer);
                }
                Ok(Err(response)) => {
                    let status = response.status;
                    if !rules::switch_to_chunked(Some(status)) && !is_transient_status(status) {
                        if self
                            .repository
                            .check_existing_blob(&blob.digest, blob.size)?
                        {
                            return Ok(());
                        }
                        self.repository.cancel_upload(&session);
                        return Err(self.repository.transport().status_error(
                            response,
                            &format!("uploading blob {}", blob.digest.short()),
                        ));
                    }
                    (Some(status), transport::retry_after(&response))
                }
                Err(e) if matches!(e.class, Class::Interrupted | Class::Input) => {
                    self.repository.cancel_upload(&session);
                    return Err(e);
                }
                Err(e) if e.class != Class::Network => return Err(e),
                Err(e) => {
                    // A PUT cut after the registry stored the blob looks like a failure.
                    if self
                        .repository
                        .check_existing_blob(&blob.digest, blob.size)?
                    {
                        return Ok(());
                    }
                    self.progress
                        .note(&format!("blob {}: {}", blob.digest.short(), e.message));
                    (None, None)
                }
            };
            transfer.resumes += 1;
            let reason = status.map_or("the connection failed".into(), |s| format!("HTTP {s}"));
            let wasted = transfer.sent() - sent_before;
            let wait = (transfer.budget.after_failure(wasted, retry_after))
                .wait(&stopped_at(blob, 0), &reason)?;
            self.pause(wait);
            if rules.allow_patch && rules::switch_to_chunked(status) {
                // A blob within one chunk is still one request; only say so when it changes.
                if blob.size > rules.chunk_size {
                    self.progress.note(&format!(
                        "blob {}: the one-request upload failed ({reason}); switching to chunked upload",
                        blob.digest.short()
                    ));
                }
                let (resumed, offset) = resume_point(self.repository, &session, rules)?;
                transfer.restart_if_lost(&session, &resumed, offset);
                self.remember(blob, &resumed, offset);
                return self.chunked_from(blob, resumed, offset, rules, transfer);
            }
            self.repository.cancel_upload(&session);
            session = initiate(self.repository)?;
        }
    }

    /// Waits before the next try (as long as the registry asked with `Retry-After`, else
    /// the backoff), waking early when a stop is requested.
    pub(crate) fn pause(&self, wait: Duration) {
        retry::pause(wait, &self.options.stop)
    }

    /// Streams chunks from `offset`, each read straight from the source; after any failure
    /// (of a chunk or of the closing PUT) asks the registry how much it holds and
    /// continues from there. The session is saved after every accepted chunk.
    fn chunked_from(
        &self,
        blob: &Blob,
        mut session: Session,
        mut offset: u64,
        rules: &UploadRules,
        transfer: &mut Transfer,
    ) -> Result<()> {
        let mut chunk_size = rules.chunk_size.max(1);
        let mut accepted_by_patch = 0u64;
        loop {
            self.check_stop()?;
            // Another worker may have learnt that the front end refuses this size.
            chunk_size = self.limited_chunk(chunk_size).max(1);
            let (start, sent_before) = (offset, transfer.sent());
            let remaining = blob.size - offset;
            let last_in_put = rules.last_chunk_in_put && remaining <= chunk_size;
            let failure = if remaining == 0 || last_in_put {
                match self.commit_chunked(blob, &session, offset, transfer)? {
                    Commit::Done => return Ok(()),
                    Commit::Failed(failure) => failure,
                }
            } else {
                let length = remaining.min(chunk_size);
                let open = self.chunk_reader(blob, offset, length, transfer)?;
                match self
                    .repository
                    .upload_chunk(&session, offset, length, &open)
                {
                    Ok(ChunkOutcome::Accepted {
                        location,
                        registry_offset,
                    }) => {
                        session.location = location;
                        let expected = offset + length;
                        offset = match registry_offset {
                            Some(held) if rules.trust_range && held < expected => held,
                            _ => expected,
                        };
                        accepted_by_patch += length;
                        self.body_accepted(length);
                        self.remember(blob, &session, offset);
                        let wasted = retry::wasted(start, transfer.sent() - sent_before, offset);
                        if let Some(verdict) = transfer.budget.after_accepted(start, offset, wasted)
                        {
                            let why = format!(
                                "the registry accepted a chunk but holds only {offset} bytes"
                            );
                            self.pause(verdict.wait(&stopped_at(blob, offset), &why)?);
                        }
                        continue;
                    }
                    Ok(ChunkOutcome::Refused(response)) if response.status == 413 => {
                        let what = format!("uploading blob {}", blob.digest.short());
                        (chunk_size, _) = self
                            .shrink_after_413(response, length, &what)
                            .inspect_err(|_| {
                                self.repository.cancel_upload(&session);
                                self.forget(blob);
                            })?;
                        (session, offset) = self.resume_after_413(
                            blob,
                            (&session, offset),
                            sent_before,
                            rules,
                            transfer,
                        )?;
                        continue;
                    }
                    Ok(ChunkOutcome::Refused(response)) => {
                        let status = response.status;
                        if rules::patch_unsupported(status, accepted_by_patch) && offset == 0 {
                            self.progress.note(&format!(
                                "blob {}: registry refused PATCH ({status}); uploading in one request",
                                blob.digest.short()
                            ));
                            self.repository.cancel_upload(&session);
                            self.forget(blob);
                            let fresh = initiate(self.repository)?;
                            transfer.reset_hash();
                            let monolithic_rules = UploadRules {
                                allow_patch: false,
                                ..*rules
                            };
                            return self.monolithic(blob, fresh, &monolithic_rules, transfer);
                        }
                        let what = format!("uploading blob {}", blob.digest.short());
                        Failure::refused(self.repository, response, &what, false).inspect_err(
                            |_| {
                                self.repository.cancel_upload(&session);
                                self.forget(blob);
                            },
                        )?
                    }
                    Err(e) => Failure::unanswered(e, false)?,
                }
            };
            transfer.resumes += 1;
            let wait = (transfer.budget.after_failure(0, failure.retry_after))
                .wait(&stopped_at(blob, offset), &failure.reason)?;
            self.progress.note(&format!(
                "blob {}: upload at byte {offset} failed ({}); resuming in {:.1}s",
                blob.digest.short(),
                failure.reason,
                wait.as_secs_f64()
            ));
            self.pause(wait);
            self.check_stop()?;
            let (resumed, held) = resume_point(self.repository, &session, rules)?;
            let held = held.min(blob.size);
            // A registry that finished committing after our first look has closed the
            // session because the blob is done, not because it was lost.
            if failure.in_commit
                && !same_session(&session, &resumed)
                && self
                    .repository
                    .check_existing_blob(&blob.digest, blob.size)?
            {
                self.repository.cancel_upload(&resumed);
                return Ok(());
            }
            if transfer.restart_if_lost(&session, &resumed, held) {
                self.progress.note(&format!(
                    "blob {}: the registry lost the upload session; starting the blob over",
                    blob.digest.short()
                ));
                self.progress.rewound(offset);
                accepted_by_patch = 0;
            } else if held < offset {
                self.progress.rewound(offset - held);
            }
            let wasted = retry::wasted(start, transfer.sent() - sent_before, held);
            (transfer.budget.after_resume(start, held, wasted))
                .map_err(|e| e.error(&stopped_at(blob, held), &failure.reason))?;
            session = resumed;
            offset = held;
            self.remember(blob, &session, offset);
        }
    }

    /// The closing PUT. A failure that may have happened after the registry stored the
    /// blob is checked with a HEAD before it counts as a failure.
    fn commit_chunked(
        &self,
        blob: &Blob,
        session: &Session,
        offset: u64,
        transfer: &mut Transfer,
    ) -> Result<Commit> {
        let remaining = blob.size - offset;
        let open = self.chunk_reader(blob, offset, remaining, transfer)?;
        // The last chunk (ECR) is hashed while it is sent, so check the rest beforehand.
        if remaining == 0 {
            transfer.verify(blob)?;
        }
        let body = if remaining == 0 {
            Body::Empty
        } else {
            Body::Stream {
                open: &open,
                length: remaining,
            }
        };
        let what = format!("committing blob {}", blob.digest.short());
        commit_session(
            self.repository,
            session,
            &blob.digest,
            blob.size,
            body,
            &what,
        )
        .inspect_err(|e| {
            if e.class == Class::Registry || e.class == Class::Auth {
                self.forget(blob);
            }
        })
    }

    /// A body factory for bytes `offset..offset + length` that feeds the running hash. Each
    /// call (the transport replays a request after renewing a token) restarts the hash at
    /// the chunk's start, so no byte is hashed twice.
    fn chunk_reader<'s>(
        &'s self,
        blob: &'s Blob,
        offset: u64,
        length: u64,
        transfer: &mut Transfer,
    ) -> Result<impl Fn() -> io::Result<Box<dyn Read + Send>> + Sync + 's> {
        self.hash_up_to(blob, offset, transfer)?;
        let hasher = transfer.hasher.clone();
        let checkpoint = transfer.checkpoint.clone().unwrap_or_default();
        let counter = transfer.sent.clone();
        Ok(move || -> io::Result<Box<dyn Read + Send>> {
            *hasher.lock().unwrap_or_else(|p| p.into_inner()) = checkpoint.clone();
            let reader = self.source.open_blob(blob, offset)?.take(length);
            // A chunk in flight is finished even after Ctrl-C: the registry then confirms
            // it and the saved session stays exact.
            Ok(Box::new(Counting::new(
                HashFeed {
                    inner: reader,
                    hasher: hasher.clone(),
                },
                self.progress.clone(),
                counter.clone(),
                None,
            )))
        })
    }

    /// Brings the running hash to `offset` by reading the source locally: after the
    /// registry reports less than we sent (rewind) or more than this run sent (resume
    /// from an earlier run). Reading locally is far cheaper than sending again.
    fn hash_up_to(&self, blob: &Blob, offset: u64, transfer: &mut Transfer) -> Result<()> {
        let mut hasher = transfer.hasher.lock().unwrap_or_else(|p| p.into_inner());
        if hasher.position() > offset {
            *hasher = match &transfer.checkpoint {
                Some(checkpoint) if checkpoint.position() <= offset => checkpoint.clone(),
                _ => Hasher::new(),
            };
        }
        if hasher.position() < offset {
            let start = hasher.position();
            let mut reader = self
                .source
                .open_blob(blob, start)
                .map_err(|e| source_error(blob, e))?
                .take(offset - start);
            let mut buf = vec![0u8; 1 << 16];
            loop {
                let n = reader.read(&mut buf).map_err(|e| source_error(blob, e))?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
            }
            if hasher.position() != offset {
                return Err(source_error(
                    blob,
                    io::Error::new(io::ErrorKind::UnexpectedEof, "source ended early"),
                ));
            }
        }
        transfer.checkpoint = Some(hasher.clone());
        Ok(())
    }
}

enum Opened {
    Mounted(String),
    Session(Session),
}

pub(crate) fn source_error(blob: &Blob, err: io::Error) -> Error {
    Error::input(format!(
        "cannot read blob {} from the source: {err}",
        blob.digest.short()
    ))
}

fn stopped_at(blob: &Blob, offset: u64) -> String {
    format!(
        "uploading blob {} stopped at byte {offset} of {}",
        blob.digest.short(),
        blob.size
    )
}

#[cfg(test)]
mod tests;
