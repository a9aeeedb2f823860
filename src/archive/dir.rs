//! An OCI image layout directory (`oci-layout`, `index.json`, `blobs/<alg>/<hex>`), what
//! `skopeo copy oci:DIR`, `podman save --format oci-dir`, buildah, kaniko and buildkit
//! write, read in place. Only plain files reached through plain directories inside the
//! layout are read: a symlink, an absolute name or `..` is refused, so a layout cannot
//! make the tool read (and upload) a file outside it.

use std::fs::{self, File, Metadata};
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};

use crate::error::{Error, Result, io_error};

pub struct LayoutDir {
    root: PathBuf,
}

impl LayoutDir {
    pub fn new(root: &Path) -> LayoutDir {
        LayoutDir {
            root: root.to_path_buf(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.root
    }

    /// The size of a plain file in the layout, `None` when there is none by that name.
    pub fn size(&self, name: &str) -> Option<u64> {
        self.inspect(name).ok().map(|(_, meta)| meta.len())
    }

    pub fn contains(&self, name: &str) -> bool {
        self.size(name).is_some()
    }

    /// Reads a whole small file (JSON documents), refusing anything over `limit` bytes.
    pub fn read_small(&self, name: &str, limit: u64) -> Result<Vec<u8>> {
        let (path, meta) = self.inspect(name).map_err(|e| self.unreadable(name, e))?;
        if meta.len() > limit {
            return Err(Error::input(format!(
                "{}: \"{name}\" is {} bytes, larger than the {limit} bytes any real image metadata needs",
                self.root.display(),
                meta.len()
            ))
            .hint("the directory was not written by an image tool"));
        }
        let mut bytes = Vec::new();
        open_plain(&path)
            .and_then(|file| file.take(limit + 1).read_to_end(&mut bytes))
            .map_err(|e| io_error("read", &path, e))?;
        if bytes.len() as u64 > limit {
            return Err(Error::input(format!(
                "{}: \"{name}\" grew while it was read",
                self.root.display()
            )));
        }
        Ok(bytes)
    }

    /// A reader over a file's bytes from `skip` on, ending where the file ended when it
    /// was looked at (whoever reads verifies the digest).
    pub fn open(&self, name: &str, skip: u64) -> io::Result<Box<dyn Read + Send>> {
        let (path, meta) = self.inspect(name)?;
        let mut file = open_plain(&path)?;
        let skip = skip.min(meta.len());
        file.seek(SeekFrom::Start(skip))?;
        Ok(Box::new(
            BufReader::with_capacity(1 << 16, file).take(meta.len() - skip),
        ))
    }

    /// The path of `name` and its metadata, after checking that every step on the way
    /// is a plain directory and the end a plain file inside the layout.
    fn inspect(&self, name: &str) -> io::Result<(PathBuf, Metadata)> {
        let relative = Path::new(name.trim_start_matches("./"));
        let mut path = self.root.clone();
        let mut components = relative.components().peekable();
        if components.peek().is_none() {
            return Err(refused(name, "an empty name"));
        }
        while let Some(component) = components.next() {
            let Component::Normal(part) = component else {
                return Err(refused(name, "a name leading out of the layout"));
            };
            path.push(part);
            let meta = fs::symlink_metadata(&path)?;
            let last = components.peek().is_none();
            if meta.file_type().is_symlink() {
                return Err(refused(name, "a symbolic link"));
            }
            if last && !meta.is_file() {
                return Err(refused(name, "not a plain file"));
            }
            if !last && !meta.is_dir() {
                return Err(io::Error::new(io::ErrorKind::NotFound, "no such file"));
            }
            if last {
                return Ok((path, meta));
            }
        }
        unreachable!("the loop returns at the last component")
    }

    fn unreadable(&self, name: &str, error: io::Error) -> Error {
        if error.kind() == io::ErrorKind::NotFound {
            return Error::input(format!("{} has no file \"{name}\"", self.root.display()))
                .hint("the layout is incomplete; copy or save it again");
        }
        Error::input(format!(
            "cannot read \"{name}\" in {}: {error}",
            self.root.display()
        ))
    }
}

fn refused(name: &str, what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("\"{name}\" is {what}; only files inside the layout are read"),
    )
}

/// Opens a file without following a symlink swapped in after the check, and without
/// blocking on a FIFO.
fn open_plain(path: &Path) -> io::Result<File> {
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is not a plain file", path.display()),
        ));
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("blobs/sha256")).unwrap();
        fs::write(dir.path().join("index.json"), b"{}").unwrap();
        fs::write(dir.path().join("blobs/sha256/aa"), b"0123456789").unwrap();
        dir
    }

    #[test]
    fn files_inside_are_read_whole_or_from_an_offset() {
        let dir = layout();
        let layout = LayoutDir::new(dir.path());
        assert_eq!(layout.size("blobs/sha256/aa"), Some(10));
        assert_eq!(layout.read_small("index.json", 10).unwrap(), b"{}");
        let mut rest = String::new();
        layout
            .open("blobs/sha256/aa", 4)
            .unwrap()
            .read_to_string(&mut rest)
            .unwrap();
        assert_eq!(rest, "456789");
        assert!(layout.read_small("blobs/sha256/aa", 5).is_err());
        assert!(!layout.contains("blobs/sha256/bb"));
    }

    #[test]
    fn symlinks_and_escaping_names_are_refused() {
        let dir = layout();
        let outside = tempfile::NamedTempFile::new().unwrap();
        fs::write(outside.path(), b"secret").unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("blobs/sha256/bb")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("blobs"), dir.path().join("linked")).unwrap();
        let layout = LayoutDir::new(dir.path());
        for name in [
            "blobs/sha256/bb",
            "linked/sha256/aa",
            "../index.json",
            "/etc/passwd",
            "blobs/../index.json",
        ] {
            assert_eq!(layout.size(name), None, "{name}");
            assert!(layout.open(name, 0).is_err(), "{name}");
            assert!(layout.read_small(name, 100).is_err(), "{name}");
        }
    }
}
