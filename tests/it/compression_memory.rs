//! `--memory-limit`: how much memory a compressing push may use changes when blocks are
//! compressed, never the bytes they compress to. The expected layer digests are computed
//! here from the documented recipe (4 MiB blocks, each its own gzip member at level 2 with
//! no name and no time, or its own zstd frame at level 3, concatenated), so the test pins
//! today's output, not only agreement between runs.

use std::io::Write;

use crate::fixtures::{Rng, TarEntry, TestImage, TestLayer, digest, tar_bytes, write_docker25};
use crate::support;
use crate::support::{Pusher, RegistryClient, RegistryOptions, TestRegistry};

const BLOCK: usize = 4 << 20;
const ACCEPT: [&str; 2] = [
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
];

/// A layer of text lines, which compresses like real files do.
fn text_layer(seed: u64, size: usize) -> TestLayer {
    let mut rng = Rng::new(seed);
    let mut text = String::with_capacity(size + 64);
    while text.len() < size {
        text.push_str(&format!(
            "{:08x} line {} of the memory test\n",
            rng.next_u64() >> 32,
            rng.below(10_000)
        ));
    }
    text.truncate(size);
    let entries = vec![TarEntry::file("data.txt", text.into_bytes(), 1_704_067_200)];
    TestLayer::from_tar(tar_bytes(&entries), false)
}

fn gzip_block(block: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::new(2));
    encoder.write_all(block).unwrap();
    encoder.finish().unwrap()
}

/// The digest of `layer` compressed the way the tool has always compressed it.
fn expected_digest(layer: &TestLayer, algorithm: &str) -> String {
    let mut stream = Vec::new();
    for block in layer.tar.chunks(BLOCK) {
        match algorithm {
            "gzip" => stream.extend(gzip_block(block)),
            _ => stream.extend(zstd::bulk::compress(block, 3).unwrap()),
        }
    }
    digest(&stream)
}

#[test]
fn a_compressed_push_has_the_same_digests_at_any_memory_limit() {
    let registry = TestRegistry::start(RegistryOptions::plain());
    let dir = support::workspace_tmp();
    let archive = dir.path().join("image.tar");
    // Streamed in chunks (over --chunk-size), several blocks each; and one compressed whole.
    let layers = vec![
        text_layer(1, 9 << 20),
        text_layer(2, 5 << 20),
        text_layer(3, 300_000),
    ];
    let image = TestImage::from_layers(13, layers, ("linux", "amd64"));
    write_docker25(&archive, &[(image.clone(), vec!["memory/app:1".into()])]).expect("fixture");
    let client = RegistryClient::new(&registry);
    for algorithm in ["gzip", "zstd"] {
        let expected: Vec<String> = image
            .layers
            .iter()
            .map(|l| expected_digest(l, algorithm))
            .collect();
        let mut manifests = Vec::new();
        for limit in ["20M", "32M", "512M"] {
            let repository = format!("memory/{algorithm}-{}", limit.to_lowercase());
            let target = format!("http://{}/{repository}:1", registry.host());
            let home = dir.path().join(format!("cache-{algorithm}-{limit}"));
            let args = [
                "--json",
                "--compress",
                algorithm,
                "--memory-limit",
                limit,
                "--chunk-size",
                "1M",
                "--large-layer-threshold",
                "1M",
                "--max-concurrent",
                "3",
            ];
            Pusher::push(&home, &archive, &target, &args)
                .run()
                .expect_success();
            let (body, _, manifest_digest) = client.get_manifest(&repository, "1", &ACCEPT);
            let manifest: serde_json::Value = serde_json::from_slice(&body).unwrap();
            let pushed: Vec<&str> = manifest["layers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| l["digest"].as_str().unwrap())
                .collect();
            assert_eq!(
                pushed, expected,
                "{algorithm} layers at --memory-limit {limit}"
            );
            manifests.push(manifest_digest);
        }
        assert!(
            manifests.iter().all(|m| *m == manifests[0]),
            "{algorithm}: one manifest at every limit: {manifests:?}"
        );
    }
}

#[test]
fn a_memory_limit_too_small_for_one_block_is_a_usage_error_naming_the_minimum() {
    let dir = support::workspace_tmp();
    let run = Pusher::push(
        dir.path(),
        &dir.path().join("image.tar"),
        "http://127.0.0.1:9/memory/app:1",
        &["--compress", "gzip", "--memory-limit", "8M"],
    )
    .run()
    .failure(2);
    assert!(
        run.stderr
            .contains("--memory-limit 8M is too small: compressing needs at least 20M"),
        "{run}"
    );
}
