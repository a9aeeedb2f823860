//! Writes a small, valid image archive in the Docker 25+ `docker save` layout (an OCI
//! layout plus `manifest.json`), for the demo: `sample-image OUT.tar [repo:tag]`.
//! Two layers: a few text files, then a larger binary file, as a real build would add.

use std::io::Write;

use docker_image_pusher::digest::Digest;
use serde_json::json;

fn layer(files: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(1_700_000_000);
        header.set_cksum();
        builder
            .append_data(&mut header, name, data.as_slice())
            .expect("in-memory tar");
    }
    builder.into_inner().expect("in-memory tar")
}

/// Deterministic bytes so every demo run pushes the same digests.
fn pseudo_random(len: usize) -> Vec<u8> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let out = args.next().unwrap_or_else(|| "sample-image.tar".into());
    let name = args.next().unwrap_or_else(|| "demo/hello:latest".into());
    let (repo, tag) = name.rsplit_once(':').unwrap_or((&name, "latest"));

    let layers = [
        layer(&[
            ("etc/motd", b"pushed by docker-image-pusher\n".to_vec()),
            ("app/README", b"a sample image for the demo\n".to_vec()),
        ]),
        layer(&[("app/data.bin", pseudo_random(4 << 20))]),
    ];
    let layer_digests: Vec<Digest> = layers.iter().map(|l| Digest::of(l)).collect();
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64",
        "os": "linux",
        "created": "2026-01-01T00:00:00Z",
        "config": {"Cmd": ["/app/hello"], "Env": ["PATH=/usr/bin:/bin"]},
        "rootfs": {"type": "layers", "diff_ids": layer_digests},
        "history": [{"created_by": "COPY etc app"}, {"created_by": "COPY data.bin"}],
    }))?;
    let config_digest = Digest::of(&config);
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
        "layers": layers.iter().zip(&layer_digests).map(|(l, d)| json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": l.len()
        })).collect::<Vec<_>>(),
    }))?;
    let manifest_digest = Digest::of(&manifest);
    let full_name = if repo.contains('/') {
        format!("docker.io/{repo}:{tag}")
    } else {
        format!("docker.io/library/{repo}:{tag}")
    };
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest, "size": manifest.len(),
            "annotations": {"io.containerd.image.name": full_name, "org.opencontainers.image.ref.name": tag},
        }],
    }))?;
    let blob_path = |d: &Digest| format!("blobs/sha256/{}", d.hex());
    let docker_manifest = serde_json::to_vec(&json!([{
        "Config": blob_path(&config_digest),
        "RepoTags": [format!("{repo}:{tag}")],
        "Layers": layer_digests.iter().map(blob_path).collect::<Vec<_>>(),
    }]))?;

    let mut entries: Vec<(String, Vec<u8>)> = Vec::new();
    for (l, d) in layers.iter().zip(&layer_digests) {
        entries.push((blob_path(d), l.clone()));
    }
    entries.push((blob_path(&config_digest), config));
    entries.push((blob_path(&manifest_digest), manifest));
    entries.push(("index.json".into(), index));
    entries.push(("manifest.json".into(), docker_manifest));
    entries.push((
        "oci-layout".into(),
        br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
    ));
    let out_file = std::fs::File::create(&out)?;
    let mut builder = tar::Builder::new(out_file);
    for (path, data) in &entries {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append_data(&mut header, path, data.as_slice())?;
    }
    builder.into_inner()?.flush()?;
    println!("{out}: {repo}:{tag} ({manifest_digest})");
    Ok(())
}
