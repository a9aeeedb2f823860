//! The archive reader over arbitrary bytes: tar index scan (plain and gzip), format
//! detection, manifest.json / index.json, image selection and blob reads. Anything may
//! fail; nothing may panic, hang or allocate without bound.
#![no_main]

use std::io::Read;

use docker_image_pusher::archive::Archive;
use docker_image_pusher::image::BlobSource;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = std::env::temp_dir().join(format!("dip-fuzz-archive-{}.tar", std::process::id()));
    if std::fs::write(&path, data).is_err() {
        return;
    }
    if let Ok(mut archive) = Archive::open(&path)
        && let Ok(artifact) = archive.select(None, None)
    {
        for blob in artifact.blobs.iter().take(8) {
            if let Ok(mut reader) = archive.open_blob(blob, 0) {
                let mut sink = Vec::new();
                let _ = reader.by_ref().take(1 << 20).read_to_end(&mut sink);
            }
        }
    }
});
