//! Replays fuzz inputs through the same code the fuzz targets drive, in the normal test
//! suite: the committed seeds (`fuzz/seeds/<target>/`) and every input a fuzzer ever
//! crashed on (`fuzz/regressions/<target>/`, added with the fix). Nothing may panic.

use std::io::{Cursor, Read};
use std::path::{Path, PathBuf};

use docker_image_pusher::archive::headers::HeaderGuard;
use docker_image_pusher::archive::{Archive, docker};
use docker_image_pusher::digest::Digest;
use docker_image_pusher::error::Error;
use docker_image_pusher::image::walk::{self, Parsed};
use docker_image_pusher::image::{self, BlobSource, Descriptor};
use docker_image_pusher::layout;
use docker_image_pusher::reference::{self, Reference};
use docker_image_pusher::registry::{auth, rules, transport};

fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut found = Vec::new();
    for kind in ["seeds", "regressions"] {
        let Ok(entries) = std::fs::read_dir(root.join(kind).join(target)) else {
            continue;
        };
        for entry in entries.flatten() {
            let bytes = std::fs::read(entry.path()).expect("read fuzz input");
            found.push((entry.path(), bytes));
        }
    }
    found
}

fn archive_index(data: &[u8]) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("input.tar");
    std::fs::write(&path, data).unwrap();
    if let Ok(mut archive) = Archive::open(&path)
        && let Ok(artifact) = archive.select(None, None)
    {
        for blob in artifact.blobs.iter().take(8) {
            if let Ok(mut reader) = archive.open_blob(blob, 0) {
                let _ = reader.by_ref().take(1 << 20).read_to_end(&mut Vec::new());
            }
        }
    }
}

fn manifest_config(data: &[u8]) {
    for media_type in ["", image::media::OCI_MANIFEST, image::media::OCI_INDEX] {
        let _ = image::parse_manifest(data, media_type);
    }
    if let Ok(config) = image::parse_config(data) {
        let _ = (config.platform(), config.diff_ids());
    }
    let _ = layout::parse_top_index(data);
    let _ = docker::parse_manifest_json(data);
}

fn tar_headers(data: &[u8]) {
    fn scan<R: Read>(entries: std::io::Result<tar::Entries<'_, R>>) {
        let Ok(entries) = entries else {
            return;
        };
        for entry in entries.take(1000) {
            let Ok(mut entry) = entry else {
                break;
            };
            let _ = (entry.path_bytes(), entry.link_name_bytes(), entry.size());
            let _ = std::io::copy(&mut entry.by_ref().take(1 << 16), &mut std::io::sink());
        }
    }
    let mut archive = tar::Archive::new(HeaderGuard::new(Cursor::new(data)));
    scan(archive.entries());
    let mut archive = tar::Archive::new(HeaderGuard::new(Cursor::new(data)));
    scan(archive.entries_with_seek());
}

fn index_walk(data: &[u8]) {
    let documents: Vec<&[u8]> = data.split(|&b| b == 0).collect();
    let root = Descriptor {
        media_type: String::new(),
        digest: Digest::of(documents[0]),
        size: documents[0].len() as u64,
        platform: None,
        annotations: None,
        urls: None,
    };
    let pick = |d: &Descriptor| -> &[u8] {
        if d.digest == root.digest {
            return documents[0];
        }
        let first = u8::from_str_radix(&d.digest.hex()[..2], 16).unwrap_or(0);
        documents[usize::from(first) % documents.len()]
    };
    let _ = walk::walk(&root, Error::input, &mut |d| {
        let bytes = pick(d);
        Ok(image::parse_manifest(bytes, &d.media_type)
            .ok()
            .map(|(media_type, kind)| Parsed {
                media_type,
                bytes: bytes.to_vec(),
                kind,
            }))
    });
}

fn reference(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(parsed) = Reference::parse(text) {
        assert_eq!(Reference::parse(&parsed.to_string()).unwrap(), parsed);
    }
    let _ = reference::parse_target(text);
}

fn www_authenticate(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = auth::parse_challenge(text);
        let _ = rules::parse_upload_range(text);
        let _ = transport::resolve_url("https://r.example.com/v2/a/blobs/uploads/", text);
    }
    let _ = auth::parse_token_response(data);
    let _ = transport::parse_error_body(data);
}

/// A fuzz target's name and the code it drives.
type Target = (&'static str, fn(&[u8]));

#[test]
fn fuzz_seeds_and_past_crashes_parse_without_panicking() {
    let targets: [Target; 6] = [
        ("archive_index", archive_index),
        ("index_walk", index_walk),
        ("manifest_config", manifest_config),
        ("reference", reference),
        ("tar_headers", tar_headers),
        ("www_authenticate", www_authenticate),
    ];
    let mut replayed = 0;
    for (target, run) in targets {
        for (path, bytes) in inputs(target) {
            let outcome = std::panic::catch_unwind(|| run(&bytes));
            assert!(outcome.is_ok(), "{target} panics on {}", path.display());
            replayed += 1;
        }
    }
    assert!(replayed >= 12, "only {replayed} fuzz inputs found");
}
