// A gzipped archive read by the batch runner: however many workers read its layers, the
// stream is inflated once (the decoders of `archive::stream` are shared, not restarted).

use std::io::{Read, Write};
use std::sync::Arc;

use crate::archive::Archive;
use crate::image::BlobSource;
use crate::image::digest::Digest;
use crate::image::media::{OCI_CONFIG, OCI_INDEX, OCI_LAYER, OCI_MANIFEST};
use crate::image::test_doubles::noise;
use crate::ops::batch::{self, Concurrency};
use crate::ui::progress::{Reporter, Verbosity};

/// An OCI archive of one image with `count` layers, gzipped whole. The manifest lists
/// the layers in the reverse of their archive order and the later ones are larger, so
/// neither manifest order nor largest first reads the stream front to back. Returns
/// the file and the length of the decompressed tar.
fn gzipped_many_layers(count: usize) -> (tempfile::NamedTempFile, u64) {
    let mut tar = tar::Builder::new(Vec::new());
    let mut add = |name: &str, bytes: &[u8]| {
        let mut header = tar::Header::new_ustar();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, name, bytes).unwrap();
    };
    let mut layers = Vec::new();
    for i in 0..count {
        let bytes = noise(i as u64, 8_000 + 40 * i);
        let digest = Digest::of(&bytes);
        add(&format!("blobs/sha256/{}", digest.hex()), &bytes);
        layers.push((digest, bytes.len()));
    }
    layers.reverse();
    let diff_ids: Vec<String> = layers.iter().map(|(d, _)| d.to_string()).collect();
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    })
    .to_string();
    let config_digest = Digest::of(config.as_bytes());
    add(
        &format!("blobs/sha256/{}", config_digest.hex()),
        config.as_bytes(),
    );
    let descriptors: Vec<_> = layers
            .iter()
            .map(|(d, size)| serde_json::json!({"mediaType": OCI_LAYER, "digest": d.to_string(), "size": size}))
            .collect();
    let manifest = serde_json::json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config_digest.to_string(), "size": config.len()},
            "layers": descriptors,
        })
        .to_string();
    let manifest_digest = Digest::of(manifest.as_bytes());
    add(
        &format!("blobs/sha256/{}", manifest_digest.hex()),
        manifest.as_bytes(),
    );
    let index = serde_json::json!({
            "schemaVersion": 2, "mediaType": OCI_INDEX,
            "manifests": [{"mediaType": OCI_MANIFEST, "digest": manifest_digest.to_string(), "size": manifest.len()}],
        })
        .to_string();
    add("index.json", index.as_bytes());
    add("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
    let plain = tar.into_inner().unwrap();
    let file = tempfile::NamedTempFile::new().unwrap();
    let mut encoder =
        flate2::write::GzEncoder::new(file.reopen().unwrap(), flate2::Compression::fast());
    encoder.write_all(&plain).unwrap();
    encoder.finish().unwrap();
    (file, plain.len() as u64)
}

#[test]
fn a_gzipped_archive_is_inflated_once_however_many_workers_read_its_layers() {
    let (file, stream_length) = gzipped_many_layers(200);
    let mut archive = Archive::open(file.path()).unwrap();
    let artifact = archive.select(None, None).unwrap();
    assert_eq!(artifact.blobs.len(), 201, "200 layers and the config");
    let reporter = Arc::new(Reporter::new(Verbosity::Quiet));
    let source: &dyn BlobSource = &archive;
    let run = |index: usize, _progress: Arc<dyn crate::transfer::upload::Progress>| {
        let blob = &artifact.blobs[index];
        // Workers reach the read at different moments, as HEAD and POST would make them.
        std::thread::sleep(std::time::Duration::from_millis((index % 3) as u64));
        let mut bytes = Vec::new();
        source
            .open_blob(blob, 0)
            .and_then(|mut r| r.read_to_end(&mut bytes))
            .unwrap();
        Digest::of(&bytes) == blob.digest
    };
    let work = batch::Work {
        run: &run,
        describe: &|_, _, _| String::new(),
        fatal: &|_| false,
        cancel: &|| {},
        position: &|index| source.stream_position(&artifact.blobs[index]),
        claim: &|index| source.announce(&artifact.blobs[index]),
    };
    let outcome = batch::run(
        &artifact.blobs,
        &Concurrency::fixed(8),
        &reporter,
        work,
        None,
    );
    assert!(outcome.finished.iter().all(|f| f.result));
    let inflated = archive.inflated_bytes();
    assert!(
        inflated <= stream_length,
        "inflated {inflated} bytes to read a {stream_length}-byte stream"
    );
}
