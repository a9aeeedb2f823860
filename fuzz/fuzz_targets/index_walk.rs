//! The index walker over arbitrary graphs: the input is documents separated by NUL
//! bytes; the first is the root, and a descriptor leads to the document its digest's
//! first byte picks (so any shape, cycles included, is reachable without matching
//! hashes). Anything may fail; nothing may panic, recurse without bound or run long.
#![no_main]

use docker_image_pusher::digest::Digest;
use docker_image_pusher::error::Error;
use docker_image_pusher::image::walk::{self, Parsed};
use docker_image_pusher::image::{self, Descriptor};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
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
});
