//! `push --dry-run`, and the check it makes: a source blob read through to check it is what
//! its descriptor says, the check an upload makes on the way. The dry run uses it for every
//! blob it would send, so it never says yes to a push that would fail on a damaged archive
//! or cache.

use std::io;

use super::PushReport;
use crate::error::{Error, Result};
use crate::image::digest::{VerifyingReader, find_mismatch};
use crate::image::{Artifact, Blob, BlobSource};
use crate::registry::{Initiated, Repository};
use crate::ui::progress::{Reporter, human_bytes};

/// Hashes `blob` from `source` whole; a wrong digest or size is the error a push gives.
pub fn check_blob(source: &dyn BlobSource, blob: &Blob) -> Result<()> {
    let corrupt = |why: String| {
        Error::input(format!("source blob {} is corrupt: {why}", blob.digest))
            .hint("the archive or cache is damaged; save or copy it again")
    };
    let reader = source
        .open_blob(blob, 0)
        .map_err(|e| Error::input(format!("cannot read blob {}: {e}", blob.digest)))?;
    let mut verifying = VerifyingReader::new(reader, blob.digest.clone(), blob.size);
    match io::copy(&mut verifying, &mut io::sink()) {
        Ok(_) => Ok(()),
        Err(e) => match find_mismatch(&e) {
            Some(mismatch) => Err(corrupt(format!(
                "its content hashes to {}",
                mismatch.actual
            ))),
            None if e.kind() == io::ErrorKind::UnexpectedEof => Err(corrupt(e.to_string())),
            None => Err(Error::input(format!(
                "cannot read blob {}: {e}",
                blob.digest
            ))),
        },
    }
}

/// `push --dry-run`: blobs the registry lacks (with `force`, every blob, as
/// `--force-upload` sends them all) are read and hashed as a push would (a dry run may take
/// as long as reading them); blobs it has are not sent, so not read either.
pub(super) fn dry_run(
    artifact: &Artifact,
    source: &dyn BlobSource,
    repository: &Repository,
    force: bool,
    mut report: PushReport,
    reporter: &Reporter,
) -> Result<PushReport> {
    // Opening (and at once abandoning) an upload session is the one reliable way to learn
    // whether these credentials may push, without writing anything.
    match repository.initiate_upload(None)? {
        Initiated::Session(session) => repository.cancel_upload(&session),
        Initiated::Mounted => {}
    }
    for blob in &artifact.blobs {
        if !force && repository.check_existing_blob(&blob.digest, blob.size)? {
            report.blobs_existing += 1;
            report.bytes_skipped += blob.size;
            reporter.info(&format!("{}: already exists", blob.digest.short()));
        } else {
            check_blob(source, blob)?;
            report.blobs_uploaded += 1;
            report.bytes_sent += blob.size;
            reporter.info(&format!(
                "{}: would upload {}",
                blob.digest.short(),
                human_bytes(blob.size)
            ));
        }
    }
    reporter.info(&format!(
        "dry run: {} to upload in {}, {} already present; push permission confirmed; nothing was uploaded",
        human_bytes(report.bytes_sent),
        crate::text::plural::count(report.blobs_uploaded as u64, "blob"),
        human_bytes(report.bytes_skipped)
    ));
    report.duration_seconds = reporter.elapsed().as_secs_f64();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::test_doubles::OneLayer;
    use crate::image::test_doubles::blob;

    #[test]
    fn a_blob_that_does_not_hash_to_its_digest_is_corrupt() {
        let source = OneLayer(b"layer bytes".to_vec());
        check_blob(&source, &blob(b"layer bytes")).unwrap();
        let err = check_blob(&source, &blob(b"other bytes")).unwrap_err();
        assert!(err.message.contains("is corrupt"), "{err}");
        assert_eq!(err.exit_code(), 3);
        let err = check_blob(&source, &blob(b"layer bytes and more")).unwrap_err();
        assert!(err.message.contains("is corrupt"), "{err}");
    }
}
