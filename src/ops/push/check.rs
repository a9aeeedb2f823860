//! Reading a source blob through to check it is what its descriptor says, the check an
//! upload makes on the way. `push --dry-run` uses it for every blob it would send, so a
//! dry run never says yes to a push that would fail on a damaged archive or cache.

use std::io;

use crate::error::{Error, Result};
use crate::image::digest::{VerifyingReader, find_mismatch};
use crate::image::{Blob, BlobSource};

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
