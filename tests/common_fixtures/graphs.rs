//! Hostile image graphs: indexes that nest deep or name the same index many times.
//! Small on disk, but a reader that walks them as a tree instead of a graph does
//! `fan_out ^ levels` work, and one that recurses overflows its stack.

use std::io;
use std::path::Path;

use super::docker::Blobs;
use super::expect::{BlobRef, OCI_INDEX, OCI_MANIFEST};
use super::image::{IndexEntry, TestImage, index_json, oci_manifest};
use super::tarw::{TarEntry, sort_walk_order, write_tar};

const MTIME: u64 = 1_710_460_800;

/// A tiny one-layer image at the bottom of every hostile graph, so that the graph
/// is otherwise valid and only its shape is hostile.
pub fn graph_leaf() -> TestImage {
    TestImage::new(0x6EA7, &[1024], false, ("linux", "amd64"))
}

/// The index documents of a graph over `leaf`'s manifest: level 1 lists the leaf
/// `fan_out` times, each further level lists the one below `fan_out` times. The last
/// document is the top.
pub fn nested_indexes(leaf: &[u8], levels: usize, fan_out: usize) -> Vec<Vec<u8>> {
    let mut below = BlobRef::of(leaf, OCI_MANIFEST);
    let mut out = Vec::with_capacity(levels);
    for _ in 0..levels {
        let entry = IndexEntry {
            blob: below.clone(),
            annotations: vec![],
            platform: None,
        };
        let index = index_json(&vec![entry; fan_out], Some(OCI_INDEX));
        below = BlobRef::of(&index, OCI_INDEX);
        out.push(index);
    }
    out
}

/// An OCI archive whose one image (`hostile/graph:latest`) is the top of
/// `nested_indexes(levels, fan_out)` over [`graph_leaf`].
pub fn write_nested_index_archive(path: &Path, levels: usize, fan_out: usize) -> io::Result<()> {
    let leaf = graph_leaf();
    let manifest = oci_manifest(&leaf);
    let mut blobs = Blobs::default();
    blobs.add(&leaf.config, MTIME, 0o644);
    for layer in &leaf.layers {
        blobs.add(&layer.bytes, MTIME, 0o644);
    }
    blobs.add(&manifest, MTIME, 0o644);
    let indexes = nested_indexes(&manifest, levels, fan_out);
    for index in &indexes {
        blobs.add(index, MTIME, 0o644);
    }
    let top = indexes.last().map_or_else(
        || BlobRef::of(&manifest, OCI_MANIFEST),
        |i| BlobRef::of(i, OCI_INDEX),
    );
    let entry = IndexEntry {
        blob: top,
        annotations: vec![(
            "org.opencontainers.image.ref.name".into(),
            "hostile/graph:latest".into(),
        )],
        platform: None,
    };
    let mut entries = vec![
        TarEntry::dir("blobs/", MTIME),
        TarEntry::dir("blobs/sha256/", MTIME),
    ];
    entries.extend(blobs.entries);
    entries.push(TarEntry::file(
        "index.json",
        index_json(&[entry], None),
        MTIME,
    ));
    entries.push(TarEntry::file(
        "oci-layout",
        br#"{"imageLayoutVersion": "1.0.0"}"#.to_vec(),
        MTIME,
    ));
    sort_walk_order(&mut entries);
    write_tar(path, &entries)
}
