//! Manifest, index, image config and docker save manifest.json parsing.
#![no_main]

use docker_image_pusher::archive::docker;
use docker_image_pusher::{image, layout};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for media_type in ["", image::media::OCI_MANIFEST, image::media::OCI_INDEX, image::media::DOCKER_MANIFEST] {
        let _ = image::parse_manifest(data, media_type);
    }
    if let Ok(config) = image::parse_config(data) {
        let _ = config.platform();
        let _ = config.diff_ids();
    }
    let _ = layout::parse_top_index(data);
    let _ = docker::parse_manifest_json(data);
});
