//! Uploading one uncompressed layer compressed on its way up. Which path it takes depends
//! on what is known about its compressed form:
//!
//! - **known** (the cache remembers its compressed digest and block sizes): the registry
//!   is asked for that digest first, so nothing is compressed when it is there; otherwise
//!   the compressed blob is an ordinary blob to the [`Uploader`], served by recompressing
//!   from whatever offset it asks for (one request, chunks, resumes, saved sessions, mounts:
//!   all unchanged);
//! - **small** (up to [`SMALL_LAYER`] and one chunk): compressed whole into a spill file,
//!   then uploaded from there as a known blob (the digest is known before the upload
//!   starts, so it can be `HEAD`ed first);
//! - **streamed** (larger): an upload session is opened and the compressed bytes go up in
//!   chunks while they are produced, hashed as they go; the closing `PUT ?digest=` names
//!   the digest only known at the end. Each block's compressed size is recorded as it is
//!   produced and saved with the session, so an offset the registry reports maps back to a
//!   block, and a resume (in this run or the next) recompresses from there to the same
//!   bytes. A chunk in flight is kept in a spill file (not in memory) until the registry
//!   confirmed it, so a failed chunk is sent again without recompressing;
//! - **two passes** (registries that refuse chunked uploads, where the digest must be in
//!   the first request): the layer is compressed once to learn the digest, without keeping
//!   the output, then uploaded as a known blob.
//!
//! A layer whose first bytes turn out to be gzip, zstd, xz or bzip2 despite its media type
//! goes up as it is.
//!
//! Memory: the blocks being compressed hold leases on the pool's budget
//! (`compress::budget`, from `--memory-limit`); compressed bytes go to spill files in the
//! state directory, so no path holds a chunk or a layer in RAM.

use std::io::{self, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender};

use crate::cache::Cache;
use crate::cache::state::StateDir;
use crate::cache::variants::Variant;
use crate::compress::manifest::Compressed;
use crate::compress::{
    CompressedReader, Compressor, FrameStream, Frames, Recipe, RecompressingSource,
    is_already_compressed,
};
use crate::error::{Class, Error, Result};
use crate::image::digest::{Digest, Hasher, find_mismatch};
use crate::image::{Blob, BlobSource};
use crate::registry::http::retry::{self, Budget};
use crate::registry::http::transport::Body;
use crate::registry::rules::UploadRules;
use crate::registry::{ChunkOutcome, Repository, Session};
use crate::transfer::session::{
    Commit, Failure, Resumable, Saved, Upload, commit_session, initiate, resume_point, same_session,
};
use crate::transfer::upload::{Counting, Outcome, Progress, UploadOptions, Uploader, Wait};

mod chunks;
mod spill;
use crate::compress::spill::Spill;
use chunks::*;
use spill::SpilledBlob;

/// Layers up to this size (and the chunk size) are compressed whole before their upload,
/// into a spill file: their digest is then known before the upload starts.
pub const SMALL_LAYER: u64 = 16 << 20;
/// The largest chunk of a compressed stream (unless the registry demands larger ones):
/// two are in a layer's spill file (one sent, one filled), so this bounds the disk a
/// stream takes however large `--chunk-size` is.
pub const MAX_STREAM_CHUNK: u64 = 16 << 20;

pub struct LayerCompression<'a> {
    pub repository: &'a Repository,
    pub source: &'a dyn BlobSource,
    pub options: &'a UploadOptions,
    pub progress: Arc<dyn Progress>,
    pub state: Option<&'a StateDir>,
    pub cache: Option<&'a Cache>,
    pub compressor: &'a Compressor,
    pub recipe: Recipe,
}

/// How a layer went up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Done {
    pub outcome: Outcome,
    /// Its compressed form; `None` when it turned out to be compressed already and went
    /// up as it is.
    pub compressed: Option<Compressed>,
}

impl LayerCompression<'_> {
    fn uploader<'s>(&'s self, source: &'s dyn BlobSource) -> Uploader<'s> {
        Uploader {
            repository: self.repository,
            source,
            options: self.options,
            progress: self.progress.clone(),
            state: self.state,
        }
    }

    /// The layer's compressed stream session as kept across runs.
    fn resumable<'s>(&'s self, layer: &'s Blob) -> Resumable<'s> {
        Resumable {
            repository: self.repository,
            state: self.state,
            progress: &*self.progress,
            upload: Upload::Stream {
                layer,
                recipe: self.recipe.id(),
            },
        }
    }

    fn remember_stream(&self, layer: &Blob, session: &Session, offset: u64, frames: &Frames) {
        self.resumable(layer)
            .save(session, offset, || frames.sizes());
    }

    fn forget_stream(&self, layer: &Blob) {
        self.resumable(layer).forget();
    }

    /// The compressed form of `layer`, remembered for later runs.
    fn remember(&self, layer: &Blob, digest: Digest, sizes: Vec<u64>) -> Variant {
        let variant = Variant::new(&layer.digest, layer.size, &self.recipe, digest, sizes);
        self.record(&variant);
        variant
    }

    /// Remembers the compressed form for later runs; never fails the upload.
    fn record(&self, variant: &Variant) {
        if let Some(cache) = self.cache
            && let Err(e) = cache.record_variant(variant)
        {
            self.progress.note(&format!(
                "cannot remember the compressed form of layer {} in {}: {e}",
                variant.layer.short(),
                cache.root().display()
            ));
        }
    }

    pub fn upload(&self, layer: &Blob) -> Result<Done> {
        self.uploader(self.source).check_stop()?;
        if let Some(variant) = self
            .cache
            .and_then(|c| c.variant(&layer.digest, &self.recipe))
        {
            self.forget_stream(layer);
            match self.upload_known(layer, &variant) {
                Ok(outcome) => return Ok(done(outcome, &variant)),
                Err(e) if e.class == Class::Input => self.progress.note(&format!(
                    "layer {}: its remembered compressed form {} does not match ({}); compressing it again",
                    layer.digest.short(),
                    variant.digest.short(),
                    e.message
                )),
                Err(e) => return Err(e),
            }
        }
        let compressed = if layer.size <= SMALL_LAYER.min(self.options.chunk_size) {
            self.whole(layer)?
        } else {
            self.streamed(layer)?
        };
        match compressed {
            Some(done) => Ok(done),
            None => {
                self.progress.note(&format!(
                    "layer {}: its content is compressed already; sending it as it is",
                    layer.digest.short()
                ));
                self.progress.scale(1.0);
                let outcome = self.uploader(self.source).upload(layer)?;
                Ok(Done {
                    outcome,
                    compressed: None,
                })
            }
        }
    }

    fn compressed_blob(&self, variant: &Variant) -> Blob {
        Blob {
            digest: variant.digest.clone(),
            size: variant.size,
            media_type: variant.algorithm.media_type(true).to_string(),
        }
    }

    /// Uploads a compressed form whose digest is known, recompressing as the upload reads.
    fn upload_known(&self, layer: &Blob, variant: &Variant) -> Result<Outcome> {
        let compressed = self.compressed_blob(variant);
        let source = RecompressingSource {
            source: self.source,
            layer: layer.clone(),
            compressed: compressed.clone(),
            recipe: self.recipe,
            frames: Arc::new(Frames::new(variant.frames.clone())),
            compressor: self.compressor.clone(),
        };
        self.progress
            .scale(layer.size as f64 / compressed.size.max(1) as f64);
        self.uploader(&source).upload(&compressed)
    }

    /// Compresses a whole layer, handing each frame to `take`. Returns the frame sizes, or
    /// `None` when the layer turns out to be compressed already.
    fn compress_whole(
        &self,
        layer: &Blob,
        mut take: impl FnMut(&[u8]) -> Result<()>,
    ) -> Result<Option<Vec<u64>>> {
        let frames = FrameStream::open(self.compressor, self.recipe, self.source, layer, 0)
            .map_err(|e| read_error(layer, e))?;
        let mut sizes = Vec::new();
        for frame in frames {
            let frame = match frame {
                Ok(frame) => frame,
                Err(e) if is_already_compressed(&e) => return Ok(None),
                Err(e) => return Err(read_error(layer, e)),
            };
            sizes.push(frame.data.size());
            frame.data.write_to(&mut take, |e| read_error(layer, e))?;
        }
        Ok(Some(sizes))
    }

    /// Where compressed bytes wait for the registry: the state directory, when there is one.
    fn spill(&self) -> io::Result<Spill> {
        Spill::create(self.state.map(StateDir::root))
    }

    /// Compresses a small layer whole into a spill file, then uploads it from there.
    fn whole(&self, layer: &Blob) -> Result<Option<Done>> {
        let spill = self.spill().map_err(|e| spill_error(layer, e))?;
        let mut hasher = Hasher::new();
        let started = Instant::now();
        let sizes = self.compress_whole(layer, |frame| {
            spill
                .write_at(frame, hasher.position())
                .map_err(|e| spill_error(layer, e))?;
            hasher.update(frame);
            Ok(())
        })?;
        (self.progress).waited(Wait::Compressed, started.elapsed().as_secs_f64());
        let Some(sizes) = sizes else {
            return Ok(None);
        };
        self.uploader(self.source).check_stop()?;
        let variant = self.remember(layer, hasher.digest(), sizes);
        let spilled = SpilledBlob {
            blob: self.compressed_blob(&variant),
            spill,
        };
        self.progress
            .scale(layer.size as f64 / variant.size.max(1) as f64);
        let outcome = self.uploader(&spilled).upload(&spilled.blob)?;
        Ok(Some(done(outcome, &variant)))
    }

    /// A large layer: continues a session an earlier run left, or opens one, and streams.
    fn streamed(&self, layer: &Blob) -> Result<Option<Done>> {
        let uploader = self.uploader(self.source);
        let saved = self
            .resumable(layer)
            .saved(|session| uploader.rules(session))?;
        let (session, offset, frames) = match saved {
            Some(Saved {
                session,
                offset,
                frames,
            }) => (session, offset, frames),
            None => (initiate(self.repository)?, 0, Vec::new()),
        };
        let rules = uploader.rules(&session);
        if !rules.allow_patch {
            self.repository.cancel_upload(&session);
            self.forget_stream(layer);
            return self.two_passes(layer);
        }
        if offset == 0 {
            return self.stream(layer, session, 0, frames, &rules);
        }
        self.progress.note(&format!(
            "layer {}: continuing the compressed upload of an earlier run at byte {offset}",
            layer.digest.short()
        ));
        match self.stream(layer, session, offset, frames, &rules) {
            // The registry refused the digest: what it held from the earlier run is not
            // what this run produced. Once more from the start, in a new session.
            Err(e) if e.class == Class::Registry => {
                self.progress.note(&format!(
                    "layer {}: the registry refused the resumed upload ({}); starting it over",
                    layer.digest.short(),
                    e.message
                ));
                self.forget_stream(layer);
                let session = initiate(self.repository)?;
                self.stream(layer, session, 0, Vec::new(), &rules)
            }
            other => other,
        }
    }

    /// For registries that need the digest up front: compress once to learn it, then
    /// upload as a known blob.
    fn two_passes(&self, layer: &Blob) -> Result<Option<Done>> {
        let mut hasher = Hasher::new();
        let Some(sizes) = self.compress_whole(layer, |frame| {
            hasher.update(frame);
            self.uploader(self.source).check_stop()
        })?
        else {
            return Ok(None);
        };
        let variant = self.remember(layer, hasher.digest(), sizes);
        let outcome = self.upload_known(layer, &variant)?;
        Ok(Some(done(outcome, &variant)))
    }
}

fn done(outcome: Outcome, variant: &Variant) -> Done {
    Done {
        outcome,
        compressed: Some(Compressed {
            digest: variant.digest.clone(),
            size: variant.size,
            algorithm: variant.algorithm,
        }),
    }
}

fn stopped_at(layer: &Blob, offset: u64) -> String {
    format!(
        "uploading layer {} (compressed) stopped at byte {offset}",
        layer.digest.short()
    )
}

fn spill_error(layer: &Blob, error: io::Error) -> Error {
    Error::input(format!(
        "cannot keep the compressed bytes of layer {} on disk: {error}",
        layer.digest.short()
    ))
    .hint("free some disk space in the cache directory (--cache-dir) or the temporary directory")
}

fn read_error(layer: &Blob, error: io::Error) -> Error {
    if let Some(mismatch) = find_mismatch(&error) {
        return Error::input(format!(
            "source layer {} is corrupt: its content hashes to {}",
            layer.digest, mismatch.actual
        ))
        .hint("the archive or cache is damaged; save or copy it again");
    }
    crate::transfer::upload::source_error(layer, error)
}

impl LayerCompression<'_> {
    /// Streams the compressed layer into `session` from compressed byte `offset` (what the
    /// registry holds), in chunks of the registry's chunk size, then closes the session
    /// with the digest. After any failure it asks the registry where it stands and goes on
    /// from there: from the chunk in its spill file when it can, else by recompressing.
    fn stream(
        &self,
        layer: &Blob,
        mut session: Session,
        mut offset: u64,
        frames: Vec<u64>,
        rules: &UploadRules,
    ) -> Result<Option<Done>> {
        let table = Arc::new(Frames::new(frames));
        let uploader = self.uploader(self.source);
        let mut reused = offset;
        let sent = Arc::new(AtomicU64::new(0));
        let mut resumes = 0u32;
        let mut chunk_size = stream_chunk_size(rules, session.chunk_min_length);
        chunk_size = uploader.limited_chunk(chunk_size as u64) as usize;
        // The compressed size is known only at the end; the layer's own size bounds it
        // closely enough for a budget.
        let mut budget = Budget::for_blob(&self.options.retry, layer.size, chunk_size as u64);
        self.remember_stream(layer, &session, offset, &table);
        std::thread::scope(|scope| {
            let mut chunks = self.produce(scope, layer, table.clone(), offset, chunk_size);
            let mut pending: Option<Chunk> = None;
            loop {
                uploader.check_stop()?;
                let sent_before = sent.load(Ordering::Relaxed);
                let chunk = match pending.take() {
                    Some(chunk) => chunk,
                    None => match timed(&*self.progress, || chunks.recv()) {
                        Ok(Ok(chunk)) => chunk,
                        Ok(Err(e)) if is_already_compressed(&e) => {
                            self.repository.cancel_upload(&session);
                            self.forget_stream(layer);
                            return Ok(None);
                        }
                        Ok(Err(e)) => {
                            self.repository.cancel_upload(&session);
                            self.forget_stream(layer);
                            return Err(read_error(layer, e));
                        }
                        Err(_) => {
                            return Err(Error::input(format!(
                                "compressing layer {} stopped unexpectedly",
                                layer.digest.short()
                            )));
                        }
                    },
                };
                if chunk.end() > 0 && chunk.consumed > 0 {
                    self.progress
                        .scale(chunk.consumed as f64 / chunk.end() as f64);
                }
                let failure = if chunk.is_empty() || (chunk.last && rules.last_chunk_in_put) {
                    let committed = self.commit(&session, &chunk, &sent).inspect_err(|e| {
                        // Refused for good: the session is of no use to a later run.
                        if e.class == Class::Registry {
                            self.forget_stream(layer);
                        }
                    });
                    match committed? {
                        Commit::Done => {
                            return Ok(Some(
                                self.finish(layer, &chunk, &table, &sent, reused, resumes),
                            ));
                        }
                        Commit::Failed(failure) => failure,
                    }
                } else {
                    let open = body(&chunk, &self.progress, &sent);
                    let length = chunk.length;
                    match self
                        .repository
                        .upload_chunk(&session, chunk.start, length, &open)
                    {
                        Ok(ChunkOutcome::Accepted {
                            location,
                            registry_offset,
                        }) => {
                            session.location = location;
                            let end = chunk.end();
                            offset = match registry_offset {
                                Some(held) if rules.trust_range && held < end => held,
                                _ => end,
                            };
                            uploader.body_accepted(length);
                            self.remember_stream(layer, &session, offset, &table);
                            let wasted = sent.load(Ordering::Relaxed) - sent_before;
                            let wasted = retry::wasted(chunk.start, wasted, offset);
                            if let Some(verdict) =
                                budget.after_accepted(chunk.start, offset, wasted)
                            {
                                let why = format!(
                                    "the registry accepted a chunk but holds only {offset} bytes"
                                );
                                uploader.pause(verdict.wait(&stopped_at(layer, offset), &why)?);
                            }
                            match next_step(&chunk, offset) {
                                Step::Send(rest) => pending = Some(rest),
                                Step::Next => {}
                                Step::Recompress => {
                                    chunks = self.produce(
                                        scope,
                                        layer,
                                        table.clone(),
                                        offset,
                                        chunk_size,
                                    );
                                }
                            }
                            continue;
                        }
                        Ok(ChunkOutcome::Refused(response)) if response.status == 413 => {
                            // Smaller chunks from where the registry stands, produced anew.
                            let what = format!("uploading layer {}", layer.digest.short());
                            let (smaller, _) = uploader
                                .shrink_after_413(response, length, &what)
                                .inspect_err(|_| {
                                self.repository.cancel_upload(&session);
                                self.forget_stream(layer);
                            })?;
                            chunk_size = smaller as usize;
                            // Not a failure of the link: no wait, no failure counted,
                            // unless the registry dropped the session (see upload).
                            let (resumed, held) = resume_point(self.repository, &session, rules)?;
                            let why = "the registry's front end refused the request (HTTP 413)";
                            let wasted = sent.load(Ordering::Relaxed) - sent_before;
                            self.progress.rewound(wasted);
                            if held == 0 && !same_session(&session, &resumed) {
                                self.progress.note(&format!(
                                    "layer {}: the registry lost the upload session; starting the layer over",
                                    layer.digest.short()
                                ));
                                reused = 0;
                                self.progress.rewound(offset);
                                let verdict = budget.record_failure(None);
                                uploader.pause(verdict.wait(&stopped_at(layer, 0), why)?);
                            } else if held < offset {
                                self.progress.rewound(offset - held);
                            }
                            (budget.after_resume(
                                offset,
                                held,
                                retry::wasted(offset, wasted, held),
                            ))
                            .map_err(|e| e.error(&stopped_at(layer, held), why))?;
                            (session, offset) = (resumed, held);
                            chunks = self.produce(scope, layer, table.clone(), held, chunk_size);
                            self.remember_stream(layer, &session, offset, &table);
                            continue;
                        }
                        Ok(ChunkOutcome::Refused(response)) => {
                            let what = format!("uploading layer {}", layer.digest.short());
                            Failure::refused(self.repository, response, &what, false).inspect_err(
                                |_| {
                                    self.repository.cancel_upload(&session);
                                    self.forget_stream(layer);
                                },
                            )?
                        }
                        Err(e) => Failure::unanswered(e, false)?,
                    }
                };
                resumes += 1;
                let wait = (budget.after_failure(0, failure.retry_after))
                    .wait(&stopped_at(layer, offset), &failure.reason)?;
                self.progress.note(&format!(
                    "layer {}: compressed upload at byte {offset} failed ({}); resuming in {:.1}s",
                    layer.digest.short(),
                    failure.reason,
                    wait.as_secs_f64()
                ));
                uploader.pause(wait);
                uploader.check_stop()?;
                let (resumed, held) = resume_point(self.repository, &session, rules)?;
                if failure.in_commit
                    && !same_session(&session, &resumed)
                    && let Some(digest) = &chunk.digest
                    && self.repository.check_existing_blob(digest, chunk.end())?
                {
                    self.repository.cancel_upload(&resumed);
                    return Ok(Some(
                        self.finish(layer, &chunk, &table, &sent, reused, resumes),
                    ));
                }
                if held == 0 && !same_session(&session, &resumed) {
                    self.progress.note(&format!(
                        "layer {}: the registry lost the upload session; starting the layer over",
                        layer.digest.short()
                    ));
                    reused = 0;
                    self.progress.rewound(offset);
                } else if held < offset {
                    self.progress.rewound(offset - held);
                }
                let wasted = sent.load(Ordering::Relaxed) - sent_before;
                (budget.after_resume(chunk.start, held, retry::wasted(chunk.start, wasted, held)))
                    .map_err(|e| e.error(&stopped_at(layer, held), &failure.reason))?;
                session = resumed;
                offset = held;
                match next_step(&chunk, held) {
                    Step::Send(rest) => pending = Some(rest),
                    Step::Next => {}
                    Step::Recompress => {
                        chunks = self.produce(scope, layer, table.clone(), held, chunk_size);
                    }
                }
                self.remember_stream(layer, &session, offset, &table);
            }
        })
    }

    /// The closing `PUT ?digest=`, with the last chunk as its body when the registry wants
    /// it there. A failure that may have come after the registry stored the blob is
    /// checked with a `HEAD` first.
    fn commit(&self, session: &Session, chunk: &Chunk, sent: &Arc<AtomicU64>) -> Result<Commit> {
        let Some(digest) = &chunk.digest else {
            return Err(Error::input(
                "the compressed stream ended without its digest",
            ));
        };
        let open = body(chunk, &self.progress, sent);
        let body = if chunk.is_empty() {
            Body::Empty
        } else {
            Body::Stream {
                open: &open,
                length: chunk.length,
            }
        };
        let what = format!("committing compressed blob {}", digest.short());
        commit_session(self.repository, session, digest, chunk.end(), body, &what)
    }

    fn finish(
        &self,
        layer: &Blob,
        last: &Chunk,
        table: &Frames,
        sent: &AtomicU64,
        reused: u64,
        resumes: u32,
    ) -> Done {
        self.forget_stream(layer);
        let digest = last
            .digest
            .clone()
            .expect("the last chunk carries the digest");
        let variant = self.remember(layer, digest, table.sizes());
        let sent = sent.load(Ordering::Relaxed);
        done(
            Outcome::Uploaded {
                sent,
                reused,
                resent: (sent + reused).saturating_sub(variant.size),
                resumes,
            },
            &variant,
        )
    }

    /// Starts a thread that compresses the layer from its start and hands out the
    /// compressed stream from byte `from` on in chunks, hashing everything (the part
    /// before `from` too: the registry holds it, the digest covers it). One chunk waits
    /// ready while the previous one is sent, so the network and the compressors overlap;
    /// both lie in the producer's own spill file, and memory stays at the blocks in the
    /// pool.
    fn produce<'scope, 'env>(
        &'env self,
        scope: &'scope std::thread::Scope<'scope, 'env>,
        layer: &'env Blob,
        table: Arc<Frames>,
        from: u64,
        chunk_size: usize,
    ) -> Receiver<io::Result<Chunk>> {
        let (sender, receiver) = crossbeam_channel::bounded(0);
        scope.spawn(move || {
            let result = self.spill().and_then(|spill| {
                let reader = CompressedReader::open(
                    self.compressor,
                    self.recipe,
                    self.source,
                    layer,
                    table,
                    0,
                )?;
                fill_chunks(reader, from, chunk_size, &spill, &sender)
            });
            if let Err(e) = result {
                let _ = sender.send(Err(e));
            }
        });
        receiver
    }
}

/// Runs `wait` (for the next compressed chunk) and counts its time as the worker's.
fn timed<T>(progress: &dyn Progress, wait: impl FnOnce() -> T) -> T {
    let started = Instant::now();
    let value = wait();
    progress.waited(Wait::Compressed, started.elapsed().as_secs_f64());
    value
}

#[cfg(test)]
mod tests;
