//! Incremental bundles: archives written by `save --exclude-from` that carry every manifest
//! and config but only the layers the far side lacks. The layers left out are listed in
//! the archive, so its images resolve whole, and readers complete them from a cache.
//!
//! Such an archive has no `manifest.json`: `docker load` then falls back to its legacy
//! loader, which opens `<directory>/json` for every top-level directory. The marker
//! directory sorts first (upper case), so `docker load` fails naming it: "open
//! .../INCREMENTAL-BUNDLE-.../json: no such file or directory".

use std::collections::BTreeMap;

use crate::error::{Error, Result};
use crate::image::digest::Digest;

/// The top-level directory that marks an incremental bundle (and names itself in the
/// error `docker load` prints).
pub const MARKER_DIR: &str =
    "INCREMENTAL-BUNDLE-docker-load-cannot-read-it-use-docker-image-pusher-extract";
/// The list of layers left out, inside the marker directory.
pub const EXCLUDED_ENTRY: &str =
    "INCREMENTAL-BUNDLE-docker-load-cannot-read-it-use-docker-image-pusher-extract/excluded.json";
pub const README_ENTRY: &str =
    "INCREMENTAL-BUNDLE-docker-load-cannot-read-it-use-docker-image-pusher-extract/README.txt";

pub const README: &str = "This is an incremental bundle written by `docker-image-pusher save --exclude-from`.\n\
It holds every manifest and config of its images but only the layers the receiving side\n\
did not have; excluded.json lists the layers left out.\n\n\
docker load cannot read it. Complete it into the cache that holds the missing layers:\n\n\
    docker-image-pusher extract -f BUNDLE --cache-dir CACHE\n\n\
then push or save from that cache.\n";

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Excluded {
    pub excluded: Vec<ExcludedBlob>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ExcludedBlob {
    pub digest: Digest,
    pub size: u64,
}

/// The excluded layers, by digest, from the bytes of `excluded.json`.
pub fn parse(bytes: &[u8]) -> Result<BTreeMap<Digest, u64>> {
    let list: Excluded = serde_json::from_slice(bytes).map_err(|_| {
        Error::input(format!(
            "the bundle's {EXCLUDED_ENTRY} is not a list of excluded layers"
        ))
        .hint("save the incremental bundle again")
    })?;
    Ok(list
        .excluded
        .into_iter()
        .map(|b| (b.digest, b.size))
        .collect())
}

/// The bytes of `excluded.json` for these layers.
pub fn render(excluded: &BTreeMap<Digest, u64>) -> Vec<u8> {
    let list = Excluded {
        excluded: excluded
            .iter()
            .map(|(digest, &size)| ExcludedBlob {
                digest: digest.clone(),
                size,
            })
            .collect(),
    };
    serde_json::to_vec_pretty(&list).unwrap_or_default()
}
