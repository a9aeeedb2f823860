//! The resumable session: found again from the state an earlier run saved, remembered
//! after every chunk, forgotten once the blob is committed.

use super::*;

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

impl Uploader<'_> {
    /// A session an earlier run left open for this blob, if the registry still holds it.
    pub(super) fn saved_session(&self, blob: &Blob) -> Result<Option<(Session, u64)>> {
        let Some(state) = self.state else {
            return Ok(None);
        };
        let (registry, repository) = (self.repository.host(), self.repository.name());
        let Some(saved) = state.load_session(registry, repository, &blob.digest) else {
            return Ok(None);
        };
        let session = Session {
            location: saved.location.clone(),
            chunk_min_length: None,
        };
        let rules = self.rules(&session);
        let usable = saved.size == blob.size && rules.allow_patch && rules.trust_range;
        let status = if usable {
            self.repository.upload_status(&session)?
        } else {
            None
        };
        match status {
            Some((session, offset)) if offset <= blob.size => Ok(Some((session, offset))),
            _ => {
                self.progress.note(&format!(
                    "blob {}: the registry no longer holds the upload of an earlier run; starting it over",
                    blob.digest.short()
                ));
                state.forget_session(registry, repository, &blob.digest);
                Ok(None)
            }
        }
    }

    /// Saves the session so the next run can continue it; never fails the upload.
    pub(super) fn remember(&self, blob: &Blob, session: &Session, offset: u64) {
        let Some(state) = self.state else { return };
        if !self.repository.may_store(&session.location) {
            self.progress.note(&format!(
                "blob {}: the upload URL carries credentials, so it is not saved; an interrupted upload of this blob starts over",
                blob.digest.short()
            ));
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
            compression: None,
        };
        if let Err(e) = state.save_session(&saved) {
            self.progress.note(&format!(
                "cannot save the upload state in {}: {e}",
                state.root().display()
            ));
        }
    }

    pub(super) fn forget(&self, blob: &Blob) {
        if let Some(state) = self.state {
            state.forget_session(self.repository.host(), self.repository.name(), &blob.digest);
        }
    }
}

/// Two upload URLs name the same session when they differ only in their query (the
/// registry's signed state changes with every request).
pub(crate) fn same_session(a: &Session, b: &Session) -> bool {
    transport::redact_url(&a.location) == transport::redact_url(&b.location)
}
