//! Uploading one blob: check whether the registry has it, try a cross-repository mount,
//! then stream it either in one PUT or as chunked PATCHes from the source file, adapting
//! to what the registry accepts and resuming from the registry's own offset after a
//! failure, so a dropped link costs at most the chunk in flight.

use std::io::{self, Read};
use std::sync::{Arc, Mutex};

use crate::digest::{Hasher, VerifyingReader};
use crate::error::{Class, Error, Result};
use crate::image::{Blob, BlobSource};
use crate::registry::rules::{self, UploadRules};
use crate::registry::transport::{Body, RetryPolicy};
use crate::registry::{ChunkOutcome, Initiated, Repository, Session};

#[derive(Debug, Clone)]
pub struct UploadOptions {
    /// Blobs larger than this go up in chunks; smaller ones in one request.
    pub large_layer_threshold: u64,
    pub chunk_size: u64,
    /// Upload even when the registry already has the blob.
    pub force: bool,
    /// Repositories on the same registry to try mounting from before uploading.
    pub mount_from: Vec<String>,
    pub retry: RetryPolicy,
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
        /// Bytes the registry already held from an earlier attempt or run.
        reused: u64,
    },
}

/// Callbacks for progress: bytes handed to the network, and when the registry's view of a
/// blob moved backwards (bytes that will be sent again).
pub trait Progress: Send + Sync {
    fn sent(&self, bytes: u64);
    fn rewound(&self, _bytes: u64) {}
    fn note(&self, _message: &str) {}
}

impl Progress for () {
    fn sent(&self, _bytes: u64) {}
}

pub struct Uploader<'a> {
    pub repository: &'a Repository,
    pub source: &'a dyn BlobSource,
    pub options: &'a UploadOptions,
    pub progress: Arc<dyn Progress>,
}

impl Uploader<'_> {
    pub fn upload(&self, blob: &Blob) -> Result<Outcome> {
        if !self.options.force && self.repository.check_existing_blob(&blob.digest)?.is_some() {
            return Ok(Outcome::Existed);
        }
        let mut session = None;
        for from in &self.options.mount_from {
            if from == self.repository.name() {
                continue;
            }
            match self
                .repository
                .initiate_upload(Some((&blob.digest, from)))?
            {
                Initiated::Mounted => return Ok(Outcome::Mounted { from: from.clone() }),
                // The registry could not mount, and opened an ordinary session instead.
                Initiated::Session(s) => {
                    session = Some(s);
                    break;
                }
            }
        }
        let session = match session {
            Some(session) => session,
            None => self.new_session()?,
        };
        let rules = rules::upload_rules(
            self.repository.host(),
            self.options.chunk_size,
            session.chunk_min_length,
        );
        let chunked = rules.allow_patch && blob.size > self.options.large_layer_threshold;
        let mut state = Transfer::new(blob);
        let result = if chunked {
            self.chunked(blob, session, &rules, &mut state)
        } else {
            self.monolithic(blob, session, &rules, &mut state)
        };
        result.map(|()| Outcome::Uploaded {
            sent: state.sent,
            reused: state.reused,
        })
    }

    fn new_session(&self) -> Result<Session> {
        match self.repository.initiate_upload(None)? {
            Initiated::Session(session) => Ok(session),
            Initiated::Mounted => Err(Error::registry(
                "the registry reported a mount nobody asked for",
            )),
        }
    }

    /// One PUT with the whole blob. A cut connection or 413 switches to chunks, continuing
    /// from whatever the registry kept when it can say.
    fn monolithic(
        &self,
        blob: &Blob,
        mut session: Session,
        rules: &UploadRules,
        state: &mut Transfer,
    ) -> Result<()> {
        let mut failures = 0;
        loop {
            let open = || -> io::Result<Box<dyn Read + Send>> {
                let reader = self.source.open_blob(blob, 0)?;
                let verified = VerifyingReader::new(reader, blob.digest.clone(), blob.size);
                Ok(Box::new(Counting::new(verified, self.progress.clone())))
            };
            state.sent += blob.size;
            let result = self.repository.commit_blob(
                &session,
                &blob.digest,
                Body::Stream {
                    open: &open,
                    length: blob.size,
                },
            );
            let status = match result {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(response)) => {
                    let status = response.status;
                    if !rules::switch_to_chunked(Some(status)) && !is_transient_status(status) {
                        self.repository.cancel_upload(&session);
                        return Err(self.repository.transport().status_error(
                            response,
                            &format!("uploading blob {}", blob.digest.short()),
                        ));
                    }
                    Some(status)
                }
                Err(e) if e.class != Class::Network => return Err(e),
                Err(e) => {
                    self.progress
                        .note(&format!("blob {}: {}", blob.digest.short(), e.message));
                    None
                }
            };
            failures += 1;
            if failures > self.options.retry.attempts {
                return Err(Error::network(format!(
                    "uploading blob {} failed {failures} times",
                    blob.digest.short()
                ))
                .hint("the link is unreliable; run the same command again to resume"));
            }
            std::thread::sleep(self.options.retry.delay(failures - 1, None));
            if rules.allow_patch && rules::switch_to_chunked(status) {
                self.progress.note(&format!(
                    "blob {}: switching to chunked upload",
                    blob.digest.short()
                ));
                let (resumed, offset) = self.resume_point(&session, rules)?;
                return self.chunked_from(blob, resumed, offset, rules, state);
            }
            self.repository.cancel_upload(&session);
            session = self.new_session()?;
        }
    }

    /// Where to continue after a failure: the registry's offset in the same session, or a
    /// fresh session from zero when the registry lost it (or cannot be trusted to say).
    fn resume_point(&self, session: &Session, rules: &UploadRules) -> Result<(Session, u64)> {
        if rules.trust_range
            && let Some((session, offset)) = self.repository.upload_status(session)?
        {
            return Ok((session, offset));
        }
        self.repository.cancel_upload(session);
        Ok((self.new_session()?, 0))
    }

    fn chunked(
        &self,
        blob: &Blob,
        session: Session,
        rules: &UploadRules,
        state: &mut Transfer,
    ) -> Result<()> {
        self.chunked_from(blob, session, 0, rules, state)
    }

    /// Streams chunks from `offset`, each read straight from the source; after any failure
    /// asks the registry how much it holds and continues from there.
    fn chunked_from(
        &self,
        blob: &Blob,
        mut session: Session,
        mut offset: u64,
        rules: &UploadRules,
        state: &mut Transfer,
    ) -> Result<()> {
        let chunk_size = rules.chunk_size.max(1);
        let mut failures_without_progress = 0;
        let mut accepted_by_patch = 0u64;
        state.note_resume(offset);
        loop {
            let remaining = blob.size - offset;
            let last_in_put = rules.last_chunk_in_put && remaining <= chunk_size;
            if remaining == 0 || last_in_put {
                return self.commit_chunked(blob, &session, offset, state);
            }
            let length = remaining.min(chunk_size);
            let open = self.chunk_reader(blob, offset, length, state)?;
            state.sent += length;
            let failure = match self
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
                    failures_without_progress = 0;
                    continue;
                }
                Ok(ChunkOutcome::Refused(response)) => {
                    let status = response.status;
                    if rules::patch_unsupported(status, accepted_by_patch) {
                        self.progress.note(&format!(
                            "blob {}: registry refused PATCH ({status}); uploading in one request",
                            blob.digest.short()
                        ));
                        self.repository.cancel_upload(&session);
                        let fresh = self.new_session()?;
                        state.reset_hash();
                        let monolithic_rules = UploadRules {
                            allow_patch: false,
                            ..*rules
                        };
                        return self.monolithic(blob, fresh, &monolithic_rules, state);
                    }
                    if !is_transient_status(status) && !matches!(status, 404 | 416) {
                        self.repository.cancel_upload(&session);
                        return Err(self.repository.transport().status_error(
                            response,
                            &format!("uploading blob {}", blob.digest.short()),
                        ));
                    }
                    format!("HTTP {status}")
                }
                Err(e) if e.class != Class::Network => return Err(e),
                Err(e) => e.message,
            };
            failures_without_progress += 1;
            if failures_without_progress > self.options.retry.attempts {
                return Err(Error::network(format!(
                    "uploading blob {} stopped at byte {offset} of {}: {failure}",
                    blob.digest.short(),
                    blob.size
                ))
                .hint("run the same command again to resume"));
            }
            self.progress.note(&format!(
                "blob {}: chunk at {offset} failed ({failure}); resuming",
                blob.digest.short()
            ));
            std::thread::sleep(
                self.options
                    .retry
                    .delay(failures_without_progress - 1, None),
            );
            let (resumed, held) = self.resume_point(&session, rules)?;
            if held > offset + length
                || (held == 0 && offset > 0 && resumed.location != session.location)
            {
                // A fresh session (lost one) restarts the blob; say so in the numbers.
                self.progress.rewound(offset);
            } else if held < offset {
                self.progress.rewound(offset - held);
            }
            if held > offset {
                failures_without_progress = 0;
            }
            session = resumed;
            offset = held.min(blob.size);
            state.note_resume(offset);
        }
    }

    fn commit_chunked(
        &self,
        blob: &Blob,
        session: &Session,
        offset: u64,
        state: &mut Transfer,
    ) -> Result<()> {
        let remaining = blob.size - offset;
        let open = self.chunk_reader(blob, offset, remaining, state)?;
        // The last chunk (ECR) is hashed while it is sent, so check the rest beforehand.
        if remaining == 0 {
            state.verify(blob)?;
        }
        state.sent += remaining;
        let body = if remaining == 0 {
            Body::Empty
        } else {
            Body::Stream {
                open: &open,
                length: remaining,
            }
        };
        match self.repository.commit_blob(session, &blob.digest, body)? {
            Ok(()) => Ok(()),
            Err(response) => {
                // A commit cut after the registry acted on it looks like a failure here.
                if self.repository.check_existing_blob(&blob.digest)?.is_some() {
                    return Ok(());
                }
                Err(self.repository.transport().status_error(
                    response,
                    &format!("committing blob {}", blob.digest.short()),
                ))
            }
        }
    }

    /// A body factory for bytes `offset..offset + length` that feeds the running hash. Each
    /// call (the transport replays a request after renewing a token) restarts the hash at
    /// the chunk's start, so no byte is hashed twice.
    fn chunk_reader<'s>(
        &'s self,
        blob: &'s Blob,
        offset: u64,
        length: u64,
        state: &mut Transfer,
    ) -> Result<impl Fn() -> io::Result<Box<dyn Read + Send>> + Sync + 's> {
        self.hash_up_to(blob, offset, state)?;
        let hasher = state.hasher.clone();
        let checkpoint = state.checkpoint.clone().unwrap_or_default();
        Ok(move || -> io::Result<Box<dyn Read + Send>> {
            *hasher.lock().unwrap_or_else(|p| p.into_inner()) = checkpoint.clone();
            let reader = self.source.open_blob(blob, offset)?.take(length);
            Ok(Box::new(Counting::new(
                HashFeed {
                    inner: reader,
                    hasher: hasher.clone(),
                },
                self.progress.clone(),
            )))
        })
    }

    /// Brings the running hash to `offset` by reading the source locally: after the
    /// registry reports less than we sent (rewind) or more than this run sent (resume
    /// from an earlier run). Reading locally is far cheaper than sending again.
    fn hash_up_to(&self, blob: &Blob, offset: u64, state: &mut Transfer) -> Result<()> {
        let mut hasher = state.hasher.lock().unwrap_or_else(|p| p.into_inner());
        if hasher.position() > offset {
            *hasher = match &state.checkpoint {
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
        state.checkpoint = Some(hasher.clone());
        Ok(())
    }
}

fn source_error(blob: &Blob, err: io::Error) -> Error {
    Error::input(format!(
        "cannot read blob {} from the source: {err}",
        blob.digest.short()
    ))
}

fn is_transient_status(status: u16) -> bool {
    matches!(status, 408 | 429 | 500 | 502 | 503 | 504)
}

/// Per-blob transfer bookkeeping: the running hash (shared with the request body reader)
/// and a checkpoint at the start of the current chunk for cheap rewinds.
struct Transfer {
    hasher: Arc<Mutex<Hasher>>,
    checkpoint: Option<Hasher>,
    sent: u64,
    reused: u64,
    size: u64,
}

impl Transfer {
    fn new(blob: &Blob) -> Transfer {
        Transfer {
            hasher: Arc::new(Mutex::new(Hasher::new())),
            checkpoint: None,
            sent: 0,
            reused: 0,
            size: blob.size,
        }
    }

    fn reset_hash(&mut self) {
        *self.hasher.lock().unwrap_or_else(|p| p.into_inner()) = Hasher::new();
        self.checkpoint = None;
    }

    fn note_resume(&mut self, offset: u64) {
        self.reused = self.reused.max(offset.min(self.size));
    }

    fn verify(&self, blob: &Blob) -> Result<()> {
        let hasher = self.hasher.lock().unwrap_or_else(|p| p.into_inner());
        let actual = hasher.digest();
        if hasher.position() != blob.size || actual != blob.digest {
            return Err(Error::input(format!(
                "source blob {} is corrupt: its content hashes to {actual}",
                blob.digest
            ))
            .hint("the archive or cache is damaged; save or copy it again"));
        }
        Ok(())
    }
}

/// Feeds everything read through it into a shared hash.
struct HashFeed<R> {
    inner: R,
    hasher: Arc<Mutex<Hasher>>,
}

impl<R: Read> Read for HashFeed<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .update(&buf[..n]);
        Ok(n)
    }
}

/// Reports bytes as the network takes them from the source.
struct Counting<R> {
    inner: R,
    progress: Arc<dyn Progress>,
}

impl<R> Counting<R> {
    fn new(inner: R, progress: Arc<dyn Progress>) -> Self {
        Counting { inner, progress }
    }
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.sent(n as u64);
        Ok(n)
    }
}
