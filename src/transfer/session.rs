//! The resumable upload session that `upload` and `compressed_upload` share: saved after
//! every accepted chunk so a later run can continue it, found again while the registry
//! still holds it, continued from the registry's own offset after a failure, closed with
//! `PUT ?digest=` and forgotten once the blob is in.

use std::time::Duration;

use crate::cache::state::{SavedSession, StateDir, StreamState};
use crate::error::{Class, Error, Result};
use crate::image::Blob;
use crate::image::digest::Digest;
use crate::registry::http::transport::{self, Body, Response};
use crate::registry::rules::UploadRules;
use crate::registry::{Initiated, Repository, Session};
use crate::transfer::upload::Progress;

/// One blob's upload session as it is kept across runs.
pub(crate) struct Resumable<'a> {
    pub(crate) repository: &'a Repository,
    pub(crate) state: Option<&'a StateDir>,
    pub(crate) progress: &'a dyn Progress,
    pub(crate) upload: Upload<'a>,
}

/// What the session uploads, which decides how it is saved and named.
pub(crate) enum Upload<'a> {
    /// A blob as the source holds it.
    Blob(&'a Blob),
    /// An uncompressed layer compressed on its way up with the recipe of this id: its
    /// compressed digest is known only at the end, so the session is saved under the
    /// layer and the recipe, with the compressed size of every block produced so far.
    Stream { layer: &'a Blob, recipe: String },
}

/// A session an earlier run left open that the registry still holds.
pub(crate) struct Saved {
    pub(crate) session: Session,
    /// What the registry holds of it.
    pub(crate) offset: u64,
    /// For a compressed stream, the block sizes produced back then.
    pub(crate) frames: Vec<u64>,
}

impl Upload<'_> {
    fn blob(&self) -> &Blob {
        match self {
            Upload::Blob(blob) => blob,
            Upload::Stream { layer, .. } => layer,
        }
    }

    fn recipe(&self) -> Option<&str> {
        match self {
            Upload::Blob(_) => None,
            Upload::Stream { recipe, .. } => Some(recipe),
        }
    }

    /// How notes name it: "blob <digest>" or "layer <digest>".
    fn noun(&self) -> &'static str {
        match self {
            Upload::Blob(_) => "blob",
            Upload::Stream { .. } => "layer",
        }
    }
}

impl Resumable<'_> {
    /// The session an earlier run saved, if the registry still holds it and it can be
    /// continued under `rules`; otherwise the saved state is forgotten.
    pub(crate) fn saved(&self, rules: impl Fn(&Session) -> UploadRules) -> Result<Option<Saved>> {
        let Some(state) = self.state else {
            return Ok(None);
        };
        let blob = self.upload.blob();
        let (registry, repository) = (self.repository.host(), self.repository.name());
        let saved = match self.upload.recipe() {
            None => state.load_session(registry, repository, &blob.digest),
            Some(recipe) => state.load_stream_session(registry, repository, &blob.digest, recipe),
        };
        let Some(saved) = saved else {
            return Ok(None);
        };
        let frames = saved.compression.map(|c| c.frames).unwrap_or_default();
        // A compressed stream can be continued only where its saved blocks reach.
        let reach = match self.upload {
            Upload::Blob(_) => blob.size,
            Upload::Stream { .. } => frames.iter().sum(),
        };
        let session = Session {
            location: saved.location,
            chunk_min_length: None,
        };
        let rules = rules(&session);
        let usable = saved.size == blob.size && rules.allow_patch && rules.trust_range;
        let status = if usable {
            self.repository.upload_status(&session)?
        } else {
            None
        };
        match status {
            Some((session, offset)) if offset <= reach => Ok(Some(Saved {
                session,
                offset,
                frames,
            })),
            other => {
                // A stream session holding more than its saved blocks cover can never be
                // continued, so what it holds is freed.
                if let (Some((session, _)), Upload::Stream { .. }) = (other, &self.upload) {
                    self.repository.cancel_upload(&session);
                }
                self.progress.note(&format!(
                    "{} {}: the registry no longer holds the {} of an earlier run; starting it over",
                    self.upload.noun(),
                    blob.digest.short(),
                    match self.upload {
                        Upload::Blob(_) => "upload",
                        Upload::Stream { .. } => "compressed upload",
                    }
                ));
                self.forget();
                Ok(None)
            }
        }
    }

    /// Saves the session so the next run can continue it at `offset` (with `frames`, the
    /// block sizes of a compressed stream so far); never fails the upload.
    pub(crate) fn save(&self, session: &Session, offset: u64, frames: impl FnOnce() -> Vec<u64>) {
        let Some(state) = self.state else { return };
        let blob = self.upload.blob();
        if !self.repository.may_store(&session.location) {
            // A stream says so once, when its session opens.
            if matches!(self.upload, Upload::Blob(_)) || offset == 0 {
                let noun = self.upload.noun();
                self.progress.note(&format!(
                    "{noun} {}: the upload URL carries credentials, so it is not saved; an interrupted upload of this {noun} starts over",
                    blob.digest.short()
                ));
            }
            return;
        }
        let saved = SavedSession {
            version: 0,
            registry: self.repository.host().to_string(),
            repository: self.repository.name().to_string(),
            digest: blob.digest.clone(),
            size: blob.size,
            location: session.location.clone(),
            offset,
            updated: 0,
            compression: self.upload.recipe().map(|recipe| StreamState {
                recipe: recipe.to_string(),
                frames: frames(),
            }),
        };
        if let Err(e) = state.save_session(&saved) {
            self.progress.note(&format!(
                "cannot save the upload state in {}: {e}",
                state.root().display()
            ));
        }
    }

    pub(crate) fn forget(&self) {
        let Some(state) = self.state else { return };
        let (registry, repository) = (self.repository.host(), self.repository.name());
        let digest = &self.upload.blob().digest;
        match self.upload.recipe() {
            None => state.forget_session(registry, repository, digest),
            Some(recipe) => state.forget_stream_session(registry, repository, digest, recipe),
        }
    }
}

/// Opens a session (`POST`) without a mount.
pub(crate) fn initiate(repository: &Repository) -> Result<Session> {
    match repository.initiate_upload(None)? {
        Initiated::Session(session) => Ok(session),
        Initiated::Mounted => Err(Error::registry(
            "the registry reported a mount nobody asked for",
        )),
    }
}

/// Where to continue after a failure: the registry's offset in the same session, or a
/// fresh session from zero when the registry lost it (or cannot be trusted to say).
pub(crate) fn resume_point(
    repository: &Repository,
    session: &Session,
    rules: &UploadRules,
) -> Result<(Session, u64)> {
    if !rules.trust_range {
        // The session may live on; free what it holds before starting over.
        repository.cancel_upload(session);
    } else if let Some((session, offset)) = repository.upload_status(session)? {
        return Ok((session, offset));
    }
    Ok((initiate(repository)?, 0))
}

/// Two upload URLs name the same session when they differ only in their query (the
/// registry's signed state changes with every request).
pub(crate) fn same_session(a: &Session, b: &Session) -> bool {
    transport::redact_url(&a.location) == transport::redact_url(&b.location)
}

pub(crate) enum Commit {
    Done,
    Failed(Failure),
}

/// Closes an upload session with `PUT ?digest=`. A close that failed although the registry
/// holds the blob (it committed, then the answer was lost) counts as done.
pub(crate) fn commit_session(
    repository: &Repository,
    session: &Session,
    digest: &Digest,
    size: u64,
    body: Body<'_>,
    what: &str,
) -> Result<Commit> {
    let failure = match repository.commit_blob(session, digest, body) {
        Ok(Ok(())) => return Ok(Commit::Done),
        Ok(Err(response)) => {
            if repository.check_existing_blob(digest, size)? {
                return Ok(Commit::Done);
            }
            Failure::refused(repository, response, what, true)?
        }
        Err(error) => {
            let failure = Failure::unanswered(error, true)?;
            if repository.check_existing_blob(digest, size)? {
                return Ok(Commit::Done);
            }
            failure
        }
    };
    Ok(Commit::Failed(failure))
}

/// What a failed step left to do: why it failed, and how long the registry asked us to
/// wait before trying again.
pub(crate) struct Failure {
    pub(crate) reason: String,
    pub(crate) retry_after: Option<Duration>,
    /// The closing PUT failed: the registry may still be committing the blob.
    pub(crate) in_commit: bool,
}

impl Failure {
    /// A refused chunk or commit worth trying again (transient statuses, and 404/416,
    /// which the caller answers by asking where the session stands), or the error to stop
    /// with, naming `what` failed.
    pub(crate) fn refused(
        repository: &Repository,
        response: Response,
        what: &str,
        in_commit: bool,
    ) -> Result<Failure> {
        let status = response.status;
        if !is_transient_status(status) && !matches!(status, 404 | 416) {
            return Err(repository.transport().status_error(response, what));
        }
        Ok(Failure {
            reason: format!("HTTP {status}"),
            retry_after: transport::retry_after(&response),
            in_commit,
        })
    }

    /// A request that got no answer: a network failure is worth trying again; any other
    /// error (corrupt source, auth, interruption) stops the upload.
    pub(crate) fn unanswered(error: Error, in_commit: bool) -> Result<Failure> {
        if error.class != Class::Network {
            return Err(error);
        }
        Ok(Failure {
            reason: error.message,
            retry_after: None,
            in_commit,
        })
    }
}

pub(crate) fn is_transient_status(status: u16) -> bool {
    matches!(status, 408 | 429 | 500 | 502 | 503 | 504)
}
