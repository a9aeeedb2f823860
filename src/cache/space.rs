//! Room for a pull: declared blob sizes come from a registry, so they are checked for
//! plausibility and against the free space of the cache's file system before anything is
//! written. A manifest declaring 2^63-byte layers must not fill the disk with partial
//! files "to resume".

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::Cache;
use super::partial::partial_path;
use crate::error::{Error, Result};
use crate::image::Blob;
use crate::text::units::human_bytes;

/// No layer of a real image comes near this.
pub const MAX_BLOB_BYTES: u64 = 1 << 40;

/// Refuses a blob whose declared size no real image has.
pub fn check_plausible(blob: &Blob) -> Result<()> {
    if blob.size > MAX_BLOB_BYTES {
        return Err(Error::registry(format!(
            "the image declares blob {} as {} bytes, more than the {} any real layer has",
            blob.digest,
            blob.size,
            human_bytes(MAX_BLOB_BYTES)
        ))
        .hint("the registry serves a crafted or broken manifest; nothing was downloaded"));
    }
    Ok(())
}

/// Bytes still to write for `blobs` (what their partial files do not hold yet).
pub fn bytes_to_write(cache: &Cache, blobs: &[Blob]) -> u64 {
    blobs
        .iter()
        .map(|blob| {
            let held = std::fs::metadata(partial_path(&cache.temp_dir(), &blob.digest))
                .map_or(0, |m| m.len());
            blob.size.saturating_sub(held)
        })
        .fold(0u64, u64::saturating_add)
}

/// Refuses to start writing `needed` bytes where the file system has less room.
pub fn check_room(cache: &Cache, needed: u64) -> Result<()> {
    let Some(free) = free_bytes(cache.root()) else {
        return Ok(());
    };
    if needed > free {
        return Err(Error::input(format!(
            "the image needs {} but the file system of {} has {} free",
            human_bytes(needed),
            cache.root().display(),
            human_bytes(free)
        ))
        .hint("free space there, or choose another --cache-dir"));
    }
    Ok(())
}

/// Bytes an unprivileged process may still write on the file system holding `path`;
/// `None` when that cannot be learned (the pull then goes ahead, as before).
pub fn free_bytes(path: &Path) -> Option<u64> {
    let c_path = CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut stats = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c_path` is a valid NUL-terminated string and `stats` points to writable
    // memory of the right type; statvfs fills it completely when it returns 0.
    let stats = unsafe {
        if libc::statvfs(c_path.as_ptr(), stats.as_mut_ptr()) != 0 {
            return None;
        }
        stats.assume_init()
    };
    #[allow(clippy::unnecessary_cast)] // the field types differ between platforms
    let (available, fragment) = (stats.f_bavail as u64, stats.f_frsize as u64);
    Some(available.saturating_mul(fragment))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::digest::Digest;

    fn blob(size: u64) -> Blob {
        Blob {
            digest: Digest::of(&size.to_le_bytes()),
            size,
            media_type: String::new(),
        }
    }

    #[test]
    fn implausible_sizes_are_refused() {
        check_plausible(&blob(MAX_BLOB_BYTES)).unwrap();
        let err = check_plausible(&blob(1 << 63)).unwrap_err();
        assert!(err.message.contains("9223372036854775808 bytes"), "{err}");
        assert!(check_plausible(&blob(u64::MAX)).is_err());
    }

    #[test]
    fn a_pull_larger_than_the_free_space_is_refused_before_writing() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path());
        let free = free_bytes(dir.path()).expect("statvfs works on a temp dir");
        assert!(free > 0);
        check_room(&cache, 1).unwrap();
        let err = check_room(&cache, free.saturating_add(1 << 30)).unwrap_err();
        assert!(err.message.contains("free"), "{err}");
        let needed = bytes_to_write(&cache, &[blob(u64::MAX), blob(5)]);
        assert_eq!(needed, u64::MAX);
    }
}
