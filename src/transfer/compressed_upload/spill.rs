//! A whole compressed layer in a spill file, as a blob source for the uploader.

use std::io::{self, Read};

use crate::compress::spill::Spill;
use crate::image::{Blob, BlobSource};

/// A whole compressed layer in a spill file, as a blob source for the uploader.
pub(crate) struct SpilledBlob {
    pub(crate) blob: Blob,
    pub(crate) spill: Spill,
}

impl BlobSource for SpilledBlob {
    fn open_blob(&self, blob: &Blob, offset: u64) -> io::Result<Box<dyn Read + Send>> {
        if blob.digest != self.blob.digest {
            return Err(io::Error::other(format!(
                "blob {} is not held",
                blob.digest
            )));
        }
        let offset = offset.min(self.blob.size);
        Ok(Box::new(self.spill.reader(offset, self.blob.size - offset)))
    }
}
