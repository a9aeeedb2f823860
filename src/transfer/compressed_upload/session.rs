//! The resumable stream session: the compressed form recorded for later runs, and the
//! open upload with its frame sizes saved, found again and forgotten.

use super::*;

impl LayerCompression<'_> {
    /// Remembers the compressed form for later runs; never fails the upload.
    pub(super) fn record(&self, variant: &Variant) {
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

    pub(super) fn forget_stream(&self, layer: &Blob) {
        if let Some(state) = self.state {
            state.forget_stream_session(
                self.repository.host(),
                self.repository.name(),
                &layer.digest,
                &self.recipe.id(),
            );
        }
    }

    /// A compressed upload an earlier run left open, if the registry still holds it: the
    /// session, the offset the registry holds and the block sizes produced back then.
    pub(super) fn saved_stream(&self, layer: &Blob) -> Result<Option<(Session, u64, Vec<u64>)>> {
        let Some(state) = self.state else {
            return Ok(None);
        };
        let (registry, repository) = (self.repository.host(), self.repository.name());
        let Some(saved) =
            state.load_stream_session(registry, repository, &layer.digest, &self.recipe.id())
        else {
            return Ok(None);
        };
        let frames = saved.compression.map(|c| c.frames).unwrap_or_default();
        let known: u64 = frames.iter().sum();
        let session = Session {
            location: saved.location,
            chunk_min_length: None,
        };
        let rules = self.uploader(self.source).rules(&session);
        let usable = saved.size == layer.size && rules.allow_patch && rules.trust_range;
        let status = if usable {
            self.repository.upload_status(&session)?
        } else {
            None
        };
        match status {
            Some((session, held)) if held <= known => Ok(Some((session, held, frames))),
            other => {
                if let Some((session, _)) = other {
                    self.repository.cancel_upload(&session);
                }
                self.progress.note(&format!(
                    "layer {}: the registry no longer holds the compressed upload of an earlier run; starting it over",
                    layer.digest.short()
                ));
                state.forget_stream_session(registry, repository, &layer.digest, &self.recipe.id());
                Ok(None)
            }
        }
    }

    /// Saves the session with the block sizes produced so far; never fails the upload.
    pub(super) fn remember_stream(
        &self,
        layer: &Blob,
        session: &Session,
        offset: u64,
        frames: &Frames,
    ) {
        let Some(state) = self.state else { return };
        if !self.repository.may_store(&session.location) {
            if offset == 0 {
                self.progress.note(&format!(
                    "layer {}: the upload URL carries credentials, so it is not saved; an interrupted upload of this layer starts over",
                    layer.digest.short()
                ));
            }
            return;
        }
        let saved = SavedSession {
            version: 0,
            registry: self.repository.host().to_string(),
            repository: self.repository.name().to_string(),
            digest: layer.digest.clone(),
            size: layer.size,
            location: session.location.clone(),
            offset,
            updated: 0,
            compression: Some(StreamState {
                recipe: self.recipe.id(),
                frames: frames.sizes(),
            }),
        };
        if let Err(e) = state.save_session(&saved) {
            self.progress.note(&format!(
                "cannot save the upload state in {}: {e}",
                state.root().display()
            ));
        }
    }
}
