//! The named files an image archive is made of, wherever they are: entries of a tar
//! (plain or gzipped, scanned once) or files of an OCI layout directory. Everything above
//! reads by name and never knows which.

use std::io::{self, Read};
use std::path::Path;

use super::dir::LayoutDir;
use super::tarball::{self, Tarball};
use crate::error::Result;

pub enum Files {
    Tar(Tarball),
    Dir(LayoutDir),
}

impl Files {
    pub fn path(&self) -> &Path {
        match self {
            Files::Tar(tar) => tar.path(),
            Files::Dir(dir) => dir.path(),
        }
    }

    pub fn contains(&self, name: &str) -> bool {
        match self {
            Files::Tar(tar) => tar.contains(name),
            Files::Dir(dir) => dir.contains(name),
        }
    }

    pub fn size(&self, name: &str) -> Option<u64> {
        match self {
            Files::Tar(tar) => tar.entry(name).map(|(_, entry)| entry.size),
            Files::Dir(dir) => dir.size(name),
        }
    }

    /// Reads a whole small file (JSON documents), refusing anything over `limit` bytes.
    pub fn read_small(&self, name: &str, limit: u64) -> Result<Vec<u8>> {
        match self {
            Files::Tar(tar) => tar.read_small(name, limit),
            Files::Dir(dir) => dir.read_small(name, limit),
        }
    }

    /// A reader over a file's bytes from `skip` on.
    pub fn open(&self, name: &str, skip: u64) -> io::Result<Box<dyn Read + Send>> {
        match self {
            Files::Tar(tar) => {
                let (_, entry) = tar.entry(name).ok_or_else(|| {
                    io::Error::new(io::ErrorKind::NotFound, format!("no entry \"{name}\""))
                })?;
                tar.open_entry(entry, skip)
            }
            Files::Dir(dir) => dir.open(name, skip),
        }
    }

    /// Where a file's bytes start in a tar stream; `None` in a directory.
    pub fn position(&self, name: &str) -> Option<u64> {
        match self {
            Files::Tar(tar) => tar.entry(name).map(|(_, entry)| entry.offset),
            Files::Dir(_) => None,
        }
    }

    /// Whether reading out of order is costly (a whole-gzipped archive is one stream).
    pub fn is_stream(&self) -> bool {
        matches!(self, Files::Tar(tar) if tar.compression() == tarball::Compression::Gzip)
    }

    /// Says a file will be read soon (see [`Tarball::announce`]).
    pub fn announce(&self, name: &str) -> Option<Box<dyn Send>> {
        match self {
            Files::Tar(tar) => {
                let (_, entry) = tar.entry(name)?;
                let announcement = tar.announce(entry)?;
                Some(Box::new(announcement))
            }
            Files::Dir(_) => None,
        }
    }

    /// Bytes decompressed so far to serve reads (0 unless gzipped).
    pub fn inflated_bytes(&self) -> u64 {
        match self {
            Files::Tar(tar) => tar.inflated_bytes(),
            Files::Dir(_) => 0,
        }
    }
}
