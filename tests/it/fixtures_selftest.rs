//! Self-test of `fixtures`: every writer's output is checked member
//! by member, every digest is recomputed, and skopeo (containers/image, an
//! independent reader) must accept every non-hostile archive.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use crate::fixtures::*;
use serde_json::Value;
use tempfile::TempDir;

/// One member as read back with the `tar` crate (a third tar reader).
#[derive(Debug, Clone)]
struct Member {
    name: String,
    kind: u8,
    mode: u32,
    link: String,
    data: Vec<u8>,
}

fn read_members_from(r: impl Read) -> Vec<Member> {
    let mut out = Vec::new();
    let mut ar = tar::Archive::new(r);
    for e in ar.entries().expect("tar entries") {
        let mut e = e.expect("tar entry");
        let name = String::from_utf8_lossy(&e.path_bytes()).into_owned();
        let kind = e.header().entry_type().as_byte();
        let mode = e.header().mode().expect("mode");
        let link = e
            .link_name_bytes()
            .map(|l| String::from_utf8_lossy(&l).into_owned())
            .unwrap_or_default();
        let mut data = Vec::new();
        e.read_to_end(&mut data).expect("member data");
        out.push(Member {
            name,
            kind,
            mode,
            link,
            data,
        });
    }
    out
}

fn read_members(path: &Path) -> Vec<Member> {
    read_members_from(BufReader::new(File::open(path).expect("open archive")))
}

fn names(members: &[Member]) -> Vec<String> {
    members.iter().map(|m| m.name.clone()).collect()
}

fn member<'a>(members: &'a [Member], name: &str) -> &'a Member {
    members
        .iter()
        .find(|m| m.name == name)
        .unwrap_or_else(|| panic!("no member {name} in {:?}", names(members)))
}

fn json(members: &[Member], name: &str) -> Value {
    serde_json::from_slice(&member(members, name).data).expect("valid JSON")
}

fn blob_path(digest: &str) -> String {
    format!("blobs/sha256/{}", digest.trim_start_matches("sha256:"))
}

/// Every `blobs/sha256/<hex>` regular file hashes to `<hex>`.
fn assert_blobs_self_consistent(members: &[Member]) {
    for m in members.iter().filter(|m| m.kind == b'0') {
        if let Some(hex) = m.name.strip_prefix("blobs/sha256/") {
            assert_eq!(sha256_hex(&m.data), hex, "blob {} digest", m.name);
        }
    }
}

/// Every blob the expectation lists is stored at `path_of(blob)` with the
/// right digest and size.
fn assert_expected_blobs(members: &[Member], exp: &Expected, path_of: impl Fn(&BlobRef) -> String) {
    assert!(!exp.blobs.is_empty());
    for b in &exp.blobs {
        let m = member(members, &path_of(b));
        assert_eq!(digest(&m.data), b.digest);
        assert_eq!(m.data.len() as u64, b.size);
    }
}

/// Sort like a lexical directory walk (moby `archive.Tar`, skopeo oci-archive).
fn walk_sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort_by(|a, b| {
        let ca: Vec<&str> = a.trim_end_matches('/').split('/').collect();
        let cb: Vec<&str> = b.trim_end_matches('/').split('/').collect();
        ca.cmp(&cb)
    });
    v
}

fn tmp() -> TempDir {
    tempfile::tempdir().expect("tempdir")
}

fn p(dir: &TempDir, name: &str) -> PathBuf {
    dir.path().join(name)
}

fn img(seed: u64, sizes: &[usize], gzip: bool) -> TestImage {
    TestImage::new(seed, sizes, gzip, ("linux", "amd64"))
}

/// `skopeo inspect --raw`, or `None` (test skipped) without skopeo.
fn skopeo_raw(reference: &str) -> Option<Result<Vec<u8>, String>> {
    if !skopeo_available() {
        eprintln!("skopeo not available: skipping check of {reference}");
        return None;
    }
    Some(skopeo_inspect_raw(reference).map_err(|e| e.to_string()))
}

fn assert_skopeo_accepts(reference: &str) -> Option<Vec<u8>> {
    skopeo_raw(reference).map(|r| r.unwrap_or_else(|e| panic!("skopeo rejected {reference}: {e}")))
}

/// Full read by containers/image: `skopeo copy SRC oci:TMP:x` fetches and
/// digest-verifies every blob. Returns the error text when it fails.
fn skopeo_copy(src: &str, all: bool) -> Option<Result<(), String>> {
    if !skopeo_available() {
        return None;
    }
    let dir = tmp();
    let dst = format!("oci:{}:x", dir.path().join("out").display());
    Some(skopeo_copy_refs(src, &dst, all).map_err(|e| e.to_string()))
}

fn assert_skopeo_copies(src: &str) {
    if let Some(r) = skopeo_copy(src, true) {
        r.unwrap_or_else(|e| panic!("skopeo could not copy {src}: {e}"));
    }
}

// ---------------------------------------------------------------- content

#[test]
fn rng_is_deterministic_and_seed_sensitive() {
    assert_eq!(Rng::new(1).bytes(100), Rng::new(1).bytes(100));
    assert_ne!(Rng::new(1).bytes(100), Rng::new(2).bytes(100));
    assert_eq!(Rng::new(5).below(0), 0);
    assert!((0..1000).all(|_| Rng::new(9).below(7) < 7));
}

#[test]
fn layer_tar_is_a_real_padded_tar() {
    let t = layer_tar(42, 10_001, 3);
    assert_eq!(t, layer_tar(42, 10_001, 3), "deterministic");
    assert_eq!(t.len() % 512, 0);
    assert!(t.ends_with(&[0u8; 1024]));
    let ms = read_members_from(&t[..]);
    let kinds: Vec<u8> = ms.iter().map(|m| m.kind).collect();
    assert_eq!(kinds, b"550002".to_vec(), "{:?}", names(&ms));
    let total: usize = ms.iter().map(|m| m.data.len()).sum();
    assert_eq!(total, 10_001);
    assert_eq!(ms[5].name, "srv/fixture-42/latest");
    assert_eq!(ms[5].link, "file-0.bin");
    // GNU tar is an independent checker of header checksums.
    let dir = tmp();
    std::fs::write(p(&dir, "l.tar"), &t).expect("write");
    let out = std::process::Command::new("tar")
        .arg("tvf")
        .arg(p(&dir, "l.tar"))
        .output();
    if let Ok(out) = out {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn test_image_config_is_realistic_and_digests_match() {
    let i = img(3, &[1000, 70_000], true).with_variant("v8");
    assert_eq!(i.config_digest, digest(&i.config));
    let cfg: Value = serde_json::from_slice(&i.config).expect("config JSON");
    assert_eq!(cfg["architecture"], "amd64");
    assert_eq!(cfg["os"], "linux");
    assert_eq!(cfg["variant"], "v8");
    assert_eq!(cfg["rootfs"]["type"], "layers");
    let ids: Vec<String> = cfg["rootfs"]["diff_ids"]
        .as_array()
        .expect("diff_ids")
        .iter()
        .map(|v| v.as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(ids, i.diff_ids());
    assert_eq!(cfg["history"].as_array().map(Vec::len), Some(3));
    assert!(cfg["config"]["Env"].is_array() && cfg["config"]["Cmd"].is_array());
    assert!(cfg["created"].as_str().is_some_and(|c| c.ends_with('Z')));
    for l in &i.layers {
        assert!(l.gzipped);
        assert_eq!(l.digest, digest(&l.bytes));
        assert_eq!(l.diff_id, digest(&l.tar));
        let mut un = Vec::new();
        flate2::read::GzDecoder::new(&l.bytes[..])
            .read_to_end(&mut un)
            .expect("gunzip");
        assert_eq!(un, l.tar);
        assert_eq!(l.media_type_oci, OCI_LAYER_GZIP);
        assert_eq!(l.media_type_docker, DOCKER_LAYER_GZIP);
    }
    let plain = img(3, &[1000], false);
    assert_eq!(plain.layers[0].bytes, plain.layers[0].tar);
    assert_eq!(plain.layers[0].media_type_docker, DOCKER_LAYER);
}

#[test]
fn manifests_and_index_reference_the_image() {
    let i = img(4, &[500, 600], true);
    let m: Value = serde_json::from_slice(&oci_manifest(&i)).expect("oci manifest");
    assert_eq!(m["mediaType"], OCI_MANIFEST);
    assert_eq!(m["config"]["digest"], i.config_digest.as_str());
    assert_eq!(m["config"]["mediaType"], OCI_CONFIG);
    assert_eq!(m["layers"][1]["digest"], i.layers[1].digest.as_str());
    assert_eq!(m["layers"][1]["mediaType"], OCI_LAYER_GZIP);
    assert!(
        oci_manifest(&i).starts_with(br#"{"schemaVersion":2,"mediaType""#),
        "Go field order"
    );

    let d = docker_manifest(&i);
    let dm: Value = serde_json::from_slice(&d).expect("docker manifest");
    assert_eq!(dm["mediaType"], DOCKER_MANIFEST);
    assert_eq!(dm["config"]["mediaType"], DOCKER_CONFIG);
    assert_eq!(dm["layers"][0]["mediaType"], DOCKER_LAYER_GZIP);
    assert_eq!(dm["layers"][0]["size"], i.layers[0].bytes.len() as u64);
    assert!(
        d.starts_with(b"{\n   \"schemaVersion\": 2,"),
        "3-space indent like docker/distribution"
    );
    let raw: Value = serde_json::from_slice(&docker_manifest(&img(4, &[5], false))).expect("json");
    assert_eq!(raw["layers"][0]["mediaType"], DOCKER_LAYER);

    let arm = TestImage::new(5, &[500], true, ("linux", "arm64")).with_variant("v8");
    let idx: Value =
        serde_json::from_slice(&oci_index(&[(oci_manifest(&i), &i), (d.clone(), &arm)]))
            .expect("index");
    assert_eq!(idx["mediaType"], OCI_INDEX);
    assert_eq!(
        idx["manifests"][0]["digest"],
        digest(&oci_manifest(&i)).as_str()
    );
    assert_eq!(idx["manifests"][0]["platform"]["architecture"], "amd64");
    assert_eq!(idx["manifests"][1]["mediaType"], DOCKER_MANIFEST);
    assert_eq!(idx["manifests"][1]["platform"]["variant"], "v8");
}

#[test]
fn image_refs_normalise_like_distribution_reference() {
    let r = ImageRef::parse("foo");
    assert_eq!(
        (r.full(), r.familiar()),
        ("docker.io/library/foo:latest".into(), "foo:latest".into())
    );
    let r = ImageRef::parse("user/repo:1.0");
    assert_eq!(
        (r.full(), r.familiar()),
        ("docker.io/user/repo:1.0".into(), "user/repo:1.0".into())
    );
    let r = ImageRef::parse("localhost:5000/a/b:t");
    assert_eq!(
        (r.full(), r.familiar()),
        ("localhost:5000/a/b:t".into(), "localhost:5000/a/b:t".into())
    );
}

// ---------------------------------------------------------------- legacy

/// Expected legacy member list, derived from manifest.json: per v1 layer a
/// dir, VERSION, json, layer.tar; the config; manifest.json; repositories.
fn legacy_expected_names(members: &[Member]) -> Vec<String> {
    let manifest = json(members, "manifest.json");
    let mut v = vec!["manifest.json".to_string(), "repositories".to_string()];
    for item in manifest.as_array().expect("array") {
        v.push(item["Config"].as_str().expect("Config").to_string());
        for l in item["Layers"].as_array().expect("Layers") {
            let id = l
                .as_str()
                .and_then(|s| s.strip_suffix("/layer.tar"))
                .expect("<id>/layer.tar");
            for f in ["", "VERSION", "json", "layer.tar"] {
                v.push(format!("{id}/{f}"));
            }
        }
    }
    v.sort();
    v.dedup();
    walk_sorted(v)
}

/// Follows an in-archive `layer.tar` symlink (relative to its directory).
fn resolve<'a>(members: &'a [Member], name: &str) -> &'a Member {
    let m = member(members, name);
    if m.kind != b'2' {
        return m;
    }
    let dir = Path::new(name).parent().expect("dir");
    let target = dir.join(&m.link);
    let mut parts: Vec<&str> = Vec::new();
    for c in target.to_str().expect("utf8").split('/') {
        match c {
            ".." => drop(parts.pop()),
            "" | "." => {}
            c => parts.push(c),
        }
    }
    member(members, &parts.join("/"))
}

#[test]
fn docker_legacy_layout() {
    let dir = tmp();
    let a = img(10, &[3000, 5000], false);
    let b = img(11, &[2000], true); // gzip input is still saved uncompressed
    let out = p(&dir, "legacy.tar");
    let exp = write_docker_legacy(
        &out,
        &[
            (a.clone(), vec!["alpha:1".into(), "alpha:latest".into()]),
            (b.clone(), vec!["example.com/team/beta:2".into()]),
        ],
    )
    .expect("write");
    let ms = read_members(&out);
    assert_eq!(names(&ms), legacy_expected_names(&ms));
    assert_eq!(
        ms[0].kind, b'5',
        "directory entries come first, as in docker save"
    );
    let manifest = json(&ms, "manifest.json");
    assert!(member(&ms, "manifest.json").data.ends_with(b"]\n"));
    assert_eq!(
        manifest[0]["Config"],
        format!("{}.json", &a.config_digest[7..]).as_str()
    );
    assert_eq!(
        manifest[0]["RepoTags"],
        serde_json::json!(["alpha:1", "alpha:latest"])
    );
    assert_eq!(
        manifest[1]["RepoTags"],
        serde_json::json!(["example.com/team/beta:2"])
    );
    for (item, image) in manifest.as_array().expect("array").iter().zip([&a, &b]) {
        let cfg = member(&ms, item["Config"].as_str().expect("Config"));
        assert_eq!(digest(&cfg.data), image.config_digest);
        for (l, layer) in item["Layers"]
            .as_array()
            .expect("Layers")
            .iter()
            .zip(&image.layers)
        {
            let name = l.as_str().expect("layer path");
            assert_eq!(digest(&resolve(&ms, name).data), layer.diff_id);
            let dir = name.trim_end_matches("layer.tar");
            assert_eq!(member(&ms, &format!("{dir}VERSION")).data, b"1.0");
            let v1: Value =
                serde_json::from_slice(&member(&ms, &format!("{dir}json")).data).expect("v1 json");
            assert_eq!(v1["id"], dir.trim_end_matches('/'));
        }
    }
    let repos = json(&ms, "repositories");
    let top = manifest[0]["Layers"][1]
        .as_str()
        .expect("top")
        .trim_end_matches("/layer.tar");
    assert_eq!(repos["alpha"]["1"], top);
    assert!(repos["example.com/team/beta"]["2"].is_string());
    assert_eq!(exp.targets.len(), 2);
    assert_eq!(exp.targets[0].refs, vec!["alpha:1", "alpha:latest"]);
    assert!(
        exp.targets
            .iter()
            .all(|t| t.digest.is_none() && t.media_type == DOCKER_MANIFEST)
    );
    assert_eq!(
        exp.targets[1].manifests[0].layers[0].digest,
        b.layers[0].diff_id
    );
    assert_eq!(
        exp.targets[1].manifests[0].layers[0].media_type,
        DOCKER_LAYER
    );
    assert_eq!(exp.blobs.len(), 5);

    assert_skopeo_accepts(&format!("docker-archive:{}:alpha:1", out.display()));
    assert_skopeo_accepts(&format!(
        "docker-archive:{}:example.com/team/beta:2",
        out.display()
    ));
    assert_skopeo_copies(&format!("docker-archive:{}:alpha:1", out.display()));
}

#[test]
fn docker_legacy_repeated_diff_id_becomes_symlink() {
    // Image `solo`'s only layer is the base of `duo`; their v1 IDs differ
    // (the top v1 image embeds the config), so docker save links the copy.
    let base = TestLayer::new(77, 4000, false);
    let solo = TestImage::from_layers(20, vec![base.clone()], ("linux", "amd64"));
    let duo = TestImage::from_layers(
        21,
        vec![base.clone(), TestLayer::new(78, 100, false)],
        ("linux", "amd64"),
    );
    let dir = tmp();
    let out = p(&dir, "shared.tar");
    write_docker_legacy(
        &out,
        &[(solo, vec!["solo:1".into()]), (duo, vec!["duo:1".into()])],
    )
    .expect("write");
    let ms = read_members(&out);
    let links: Vec<&Member> = ms.iter().filter(|m| m.kind == b'2').collect();
    assert_eq!(links.len(), 1, "{:?}", names(&ms));
    assert!(links[0].name.ends_with("/layer.tar"));
    assert!(links[0].link.starts_with("../") && links[0].link.ends_with("/layer.tar"));
    assert_eq!(digest(&resolve(&ms, &links[0].name).data), base.diff_id);
    assert_skopeo_copies(&format!("docker-archive:{}:duo:1", out.display()));
    assert_skopeo_copies(&format!("docker-archive:{}:solo:1", out.display()));
}

// ---------------------------------------------------------------- docker 25

#[test]
fn docker25_layout() {
    let dir = tmp();
    let a = img(30, &[3000, 4000], true);
    let out = p(&dir, "d25.tar");
    let exp = write_docker25(
        &out,
        &[(
            a.clone(),
            vec!["web:1".into(), "registry.example:5000/web:stable".into()],
        )],
    )
    .expect("write");
    let ms = read_members(&out);
    assert_blobs_self_consistent(&ms);

    let t = &exp.targets[0];
    let mdigest = t.digest.clone().expect("manifest digest");
    let mut blobs: Vec<String> = ms
        .iter()
        .filter(|m| m.name.starts_with("blobs/sha256/") && m.kind == b'0')
        .map(|m| m.name.clone())
        .collect();
    blobs.sort();
    let mut expected = vec!["blobs/".to_string(), "blobs/sha256/".to_string()];
    expected.extend(blobs.iter().cloned());
    expected
        .extend(["index.json", "manifest.json", "oci-layout", "repositories"].map(String::from));
    assert_eq!(names(&ms), expected);
    // config + 2 layers + OCI manifest + one v1 JSON per layer.
    assert_eq!(blobs.len(), 6);
    assert_eq!(exp.unreferenced_blobs.len(), 2);
    for u in &exp.unreferenced_blobs {
        let v1: Value = serde_json::from_slice(&member(&ms, &blob_path(u)).data).expect("v1 json");
        assert!(v1["id"].is_string());
    }
    assert!(
        !names(&ms)
            .iter()
            .any(|n| n.ends_with("layer.tar") || n.ends_with("VERSION")),
        "no legacy dirs in 25+"
    );

    assert_eq!(
        member(&ms, "oci-layout").data,
        br#"{"imageLayoutVersion": "1.0.0"}"#
    );
    let index = json(&ms, "index.json");
    assert_eq!(index["mediaType"], OCI_INDEX);
    let descs = index["manifests"].as_array().expect("manifests");
    assert_eq!(descs.len(), 2, "one descriptor per tag");
    assert_eq!(descs[0]["digest"], mdigest.as_str());
    assert_eq!(
        descs[0]["annotations"]["io.containerd.image.name"],
        "docker.io/library/web:1"
    );
    assert_eq!(
        descs[0]["annotations"]["org.opencontainers.image.ref.name"],
        "1"
    );
    assert_eq!(
        descs[1]["annotations"]["io.containerd.image.name"],
        "registry.example:5000/web:stable"
    );
    assert!(descs[0].get("platform").is_none());

    let m: Value =
        serde_json::from_slice(&member(&ms, &blob_path(&mdigest)).data).expect("manifest");
    assert_eq!(m["config"]["digest"], a.config_digest.as_str());
    assert_eq!(
        m["layers"][0]["mediaType"], OCI_LAYER,
        "graphdriver saves uncompressed"
    );
    assert_eq!(m["layers"][0]["digest"], a.layers[0].diff_id.as_str());
    assert_eq!(m["layers"][1]["digest"], a.layers[1].diff_id.as_str());

    let mj = json(&ms, "manifest.json");
    assert_eq!(mj[0]["Config"], blob_path(&a.config_digest).as_str());
    assert_eq!(
        mj[0]["RepoTags"],
        serde_json::json!(["web:1", "registry.example:5000/web:stable"])
    );
    assert_eq!(mj[0]["Layers"][1], blob_path(&a.layers[1].diff_id).as_str());
    let src = &mj[0]["LayerSources"][a.layers[0].diff_id.as_str()];
    assert_eq!(src["mediaType"], OCI_LAYER);
    assert_eq!(src["size"], a.layers[0].tar.len() as u64);
    let repos = json(&ms, "repositories");
    assert_eq!(repos["web"]["1"], &a.layers[1].diff_id[7..]);

    assert_expected_blobs(&ms, &exp, |b| blob_path(&b.digest));
    assert_eq!(exp.blobs.len(), 3);

    // skopeo 1.9.3 reads the 25+ layout both ways: as docker-archive (it only
    // follows manifest.json paths) and as oci-archive (index.json).
    assert_skopeo_accepts(&format!("docker-archive:{}:web:1", out.display()));
    if let Some(raw) = assert_skopeo_accepts(&format!("oci-archive:{}:1", out.display())) {
        assert_eq!(
            digest(&raw),
            mdigest,
            "oci-archive yields the stored manifest"
        );
    }
    assert_skopeo_copies(&format!("docker-archive:{}:web:1", out.display()));
    assert_skopeo_copies(&format!("oci-archive:{}:1", out.display()));
}

#[test]
fn docker25_untagged_image_gets_bare_descriptor() {
    let dir = tmp();
    let out = p(&dir, "d25-untagged.tar");
    let exp = write_docker25(&out, &[(img(31, &[100], false), vec![])]).expect("write");
    let ms = read_members(&out);
    let index = json(&ms, "index.json");
    assert!(index["manifests"][0].get("annotations").is_none());
    assert_eq!(json(&ms, "manifest.json")[0]["RepoTags"], Value::Null);
    assert!(
        !names(&ms).contains(&"repositories".to_string()),
        "no tags, no repositories"
    );
    assert!(exp.targets[0].refs.is_empty());
}

// ---------------------------------------------------------------- containerd

fn multi_platform(seed: u64) -> Vec<TestImage> {
    vec![
        TestImage::new(seed, &[3000, 2000], true, ("linux", "amd64")),
        TestImage::new(seed + 1, &[3100], true, ("linux", "arm64")).with_variant("v8"),
        TestImage::new(seed + 2, &[3200], true, ("linux", "s390x")),
    ]
}

#[test]
fn containerd_store_pulled_image() {
    let dir = tmp();
    let out = p(&dir, "c8d.tar");
    let plats = multi_platform(40);
    let opts = ContainerdOpts::default();
    let exp =
        write_docker_containerd_store(&out, &[(plats.clone(), vec!["nginx:1.27".into()])], &opts)
            .expect("write");
    let ms = read_members(&out);
    assert_blobs_self_consistent(&ms);
    let mut sorted = names(&ms);
    sorted.sort();
    assert_eq!(names(&ms), sorted, "containerd sorts by name");
    assert_eq!(&names(&ms)[..2], ["blobs/", "blobs/sha256/"]);
    assert_eq!(
        &names(&ms)[ms.len() - 3..],
        ["index.json", "manifest.json", "oci-layout"]
    );
    assert!(
        ms.iter()
            .filter(|m| m.name.starts_with("blobs/sha256/") && m.kind == b'0')
            .all(|m| m.mode == 0o444)
    );

    let t = &exp.targets[0];
    let index = json(&ms, "index.json");
    assert!(index.get("mediaType").is_none(), "containerd omits it");
    let d = &index["manifests"][0];
    assert_eq!(d["mediaType"], OCI_INDEX);
    assert_eq!(d["digest"], t.digest.as_deref().expect("index digest"));
    assert_eq!(
        d["annotations"]["io.containerd.image.name"],
        "docker.io/library/nginx:1.27"
    );
    assert_eq!(
        d["annotations"]["org.opencontainers.image.ref.name"],
        "1.27"
    );
    assert_eq!(
        d["annotations"]["containerd.io/distribution.source.docker.io"],
        "library/nginx"
    );

    let inner: Value =
        serde_json::from_slice(&member(&ms, &blob_path(t.digest.as_deref().expect("d"))).data)
            .expect("index blob");
    let children = inner["manifests"].as_array().expect("children");
    assert_eq!(children.len(), 6, "3 platforms + 3 attestations");
    assert_eq!(
        children[3]["annotations"]["vnd.docker.reference.type"],
        "attestation-manifest"
    );
    assert_eq!(
        children[3]["annotations"]["vnd.docker.reference.digest"],
        children[0]["digest"]
    );
    assert_eq!(children[3]["platform"]["os"], "unknown");

    // Only the host platform is present; the other 5 manifests are not.
    assert_eq!(t.manifests.len(), 1);
    assert_eq!(t.absent_manifests.len(), 5);
    for a in &t.absent_manifests {
        assert!(!names(&ms).contains(&blob_path(a)));
    }
    assert_eq!(
        ms.iter()
            .filter(|m| m.name.starts_with("blobs/sha256/") && m.kind == b'0')
            .count(),
        5,
        "index, manifest, config, 2 layers"
    );
    let host = &plats[0];
    let mj = json(&ms, "manifest.json");
    assert!(!member(&ms, "manifest.json").data.ends_with(b"\n"));
    assert_eq!(mj[0]["Config"], blob_path(&host.config_digest).as_str());
    assert_eq!(mj[0]["RepoTags"], serde_json::json!(["nginx:1.27"]));
    assert_eq!(
        mj[0]["Layers"][0],
        blob_path(&host.layers[0].digest).as_str(),
        "gzip blobs"
    );
    assert!(mj[0].get("LayerSources").is_none());
    assert_eq!(
        member(&ms, "oci-layout").data,
        br#"{"imageLayoutVersion":"1.0.0"}"#
    );
    assert_expected_blobs(&ms, &exp, |b| blob_path(&b.digest));
    assert_eq!(t.manifests[0].layers[0].media_type, OCI_LAYER_GZIP);

    assert_skopeo_accepts(&format!("docker-archive:{}", out.display()));
    if let Some(raw) = assert_skopeo_accepts(&format!("oci-archive:{}:1.27", out.display())) {
        assert_eq!(
            Some(digest(&raw)),
            t.digest,
            "skopeo returns the stored index"
        );
    }
    let oci_ref = format!("oci-archive:{}:1.27", out.display());
    assert_skopeo_copies(&format!("docker-archive:{}", out.display()));
    // The host platform alone copies; the whole index cannot, because the
    // other platforms' manifests are not in the archive.
    if let Some(r) = skopeo_copy(&oci_ref, false) {
        r.expect("host platform copies");
    }
    if let Some(r) = skopeo_copy(&oci_ref, true) {
        assert!(
            r.is_err_and(|e| e.contains("no such file")),
            "index with absent children"
        );
    }
}

#[test]
fn containerd_store_local_build_with_attestation() {
    let dir = tmp();
    let out = p(&dir, "c8d-built.tar");
    let opts = ContainerdOpts {
        attestations: Attestations::Present,
        pulled: false,
        ..ContainerdOpts::default()
    };
    let one = vec![img(50, &[1000], true)];
    let exp = write_docker_containerd_store(
        &out,
        &[(one, vec!["app:dev".into(), "app:latest".into()])],
        &opts,
    )
    .expect("write");
    let ms = read_members(&out);
    assert_blobs_self_consistent(&ms);
    let t = &exp.targets[0];
    assert_eq!(t.manifests.len(), 2, "image + attestation");
    assert!(t.absent_manifests.is_empty());
    let att = &t.manifests[1];
    assert_eq!(att.layers[0].media_type, IN_TOTO);
    let stmt: Value = serde_json::from_slice(&member(&ms, &blob_path(&att.layers[0].digest)).data)
        .expect("in-toto");
    assert_eq!(
        stmt["subject"][0]["digest"]["sha256"],
        t.manifests[0]
            .digest
            .as_deref()
            .expect("d")
            .trim_start_matches("sha256:")
    );
    let index = json(&ms, "index.json");
    assert_eq!(
        index["manifests"].as_array().map(Vec::len),
        Some(2),
        "one descriptor per name"
    );
    assert!(
        index["manifests"][0]["annotations"]
            .get("containerd.io/distribution.source.docker.io")
            .is_none()
    );
    assert_eq!(
        json(&ms, "manifest.json")[0]["RepoTags"],
        serde_json::json!(["app:dev", "app:latest"])
    );
    assert_expected_blobs(&ms, &exp, |b| blob_path(&b.digest));
    assert_skopeo_copies(&format!("docker-archive:{}:app:dev", out.display()));
    assert_skopeo_copies(&format!("oci-archive:{}:dev", out.display()));
}

#[test]
fn containerd_store_rejects_missing_host_platform() {
    let dir = tmp();
    let opts = ContainerdOpts {
        host: ("linux".into(), "riscv64".into()),
        ..ContainerdOpts::default()
    };
    let r =
        write_docker_containerd_store(&p(&dir, "x.tar"), &[(multi_platform(60), vec![])], &opts);
    assert!(r.is_err());
}

// ---------------------------------------------------------------- OCI

#[test]
fn oci_archive_image_and_index() {
    let dir = tmp();
    let out = p(&dir, "oci.tar");
    let single = img(70, &[2000, 100], true);
    let multi = multi_platform(71);
    let exp = write_oci_archive(
        &out,
        &[
            (OciEntry::Image(single.clone()), "v1"),
            (OciEntry::Index(multi.clone()), "multi"),
        ],
    )
    .expect("write");
    let ms = read_members(&out);
    assert_blobs_self_consistent(&ms);
    let mut expected = vec!["blobs/".to_string(), "blobs/sha256/".to_string()];
    let mut blobs: Vec<String> = ms
        .iter()
        .filter(|m| m.kind == b'0' && m.name.starts_with("blobs/"))
        .map(|m| m.name.clone())
        .collect();
    blobs.sort();
    expected.extend(blobs);
    expected.extend(["index.json", "oci-layout"].map(String::from));
    assert_eq!(names(&ms), expected);
    let index = json(&ms, "index.json");
    assert!(index.get("mediaType").is_none());
    assert_eq!(
        index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"],
        "v1"
    );
    assert_eq!(index["manifests"][1]["mediaType"], OCI_INDEX);
    assert_eq!(exp.targets[1].manifests.len(), 3);
    assert_expected_blobs(&ms, &exp, |b| blob_path(&b.digest));
    for t in &exp.targets {
        let r = &t.refs[0];
        if let Some(raw) = assert_skopeo_accepts(&format!("oci-archive:{}:{r}", out.display())) {
            assert_eq!(Some(digest(&raw)), t.digest, "{r}");
        }
        assert_skopeo_copies(&format!("oci-archive:{}:{r}", out.display()));
    }
    assert_eq!(
        digest(&oci_manifest(&single)),
        exp.targets[0].digest.clone().expect("d")
    );
}

#[test]
fn oci_layout_dir_matches_archive() {
    let dir = tmp();
    let layout = p(&dir, "layout");
    let i = img(80, &[500], false);
    let exp =
        write_oci_layout_dir(&layout, &[(OciEntry::Image(i.clone()), "latest")]).expect("write");
    assert!(layout.join("oci-layout").is_file());
    let m = std::fs::read(layout.join(blob_path(exp.targets[0].digest.as_deref().expect("d"))))
        .expect("manifest");
    assert_eq!(m, oci_manifest(&i));
    for b in &exp.blobs {
        assert_eq!(
            digest(&std::fs::read(layout.join(blob_path(&b.digest))).expect("blob")),
            b.digest
        );
    }
    assert_skopeo_copies(&format!("oci:{}:latest", layout.display()));
}

// ---------------------------------------------------------------- ggcr

#[test]
fn ggcr_tarball_layout() {
    let dir = tmp();
    let out = p(&dir, "ggcr.tar");
    let i = img(90, &[1000, 2000], false);
    let exp =
        write_ggcr_tarball(&out, &[(i.clone(), vec!["gcr.io/proj/app".into()])]).expect("write");
    let ms = read_members(&out);
    let layers = &exp.targets[0].manifests[0].layers;
    let expected: Vec<String> = std::iter::once(i.config_digest.clone())
        .chain(layers.iter().map(|l| format!("{}.tar.gz", &l.digest[7..])))
        .chain(std::iter::once("manifest.json".into()))
        .collect();
    assert_eq!(names(&ms), expected);
    let mj = json(&ms, "manifest.json");
    assert_eq!(mj[0]["Config"], i.config_digest.as_str());
    assert_eq!(
        mj[0]["RepoTags"],
        serde_json::json!(["gcr.io/proj/app:latest"])
    );
    assert_expected_blobs(&ms, &exp, |b| {
        if b.media_type == DOCKER_CONFIG {
            b.digest.clone()
        } else {
            format!("{}.tar.gz", &b.digest[7..])
        }
    });
    for (l, layer) in layers.iter().zip(&i.layers) {
        let mut un = Vec::new();
        flate2::read::GzDecoder::new(&member(&ms, &format!("{}.tar.gz", &l.digest[7..])).data[..])
            .read_to_end(&mut un)
            .expect("gunzip");
        assert_eq!(digest(&un), layer.diff_id);
    }
    assert_skopeo_copies(&format!("docker-archive:{}", out.display()));
}

// ---------------------------------------------------------------- gzip

#[test]
fn gzipped_archives_stay_readable() {
    let dir = tmp();
    let i = img(100, &[1000], false);
    for (name, write) in [
        (
            "legacy",
            write_docker_legacy
                as fn(&Path, &[(TestImage, Vec<String>)]) -> std::io::Result<Expected>,
        ),
        ("d25", write_docker25),
    ] {
        let tar_path = p(&dir, &format!("{name}.tar"));
        let gz = p(&dir, &format!("{name}.tar.gz"));
        write(&tar_path, &[(i.clone(), vec!["gz:1".into()])]).expect("write");
        gzip_file(&tar_path, &gz).expect("gzip");
        let bytes = std::fs::read(&gz).expect("read");
        assert_eq!(&bytes[..2], &[0x1f, 0x8b]);
        let mut plain = Vec::new();
        flate2::read::GzDecoder::new(&bytes[..])
            .read_to_end(&mut plain)
            .expect("gunzip");
        assert_eq!(
            plain,
            std::fs::read(&tar_path).expect("read"),
            "round-trips"
        );
        // skopeo 1.9.3 fails on *any* gzip-compressed docker-archive, even
        // its own output gzipped by GNU gzip ("loading tar component
        // manifest.json: unexpected EOF"), so GNU tar checks the stream.
        let out = std::process::Command::new("tar")
            .arg("tzf")
            .arg(&gz)
            .output();
        if let Ok(out) = out {
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(String::from_utf8_lossy(&out.stdout).contains("manifest.json"));
        }
    }
}

// ---------------------------------------------------------------- skopeo

#[test]
fn skopeo_written_archives() {
    if !skopeo_available() {
        eprintln!("skopeo not available: skipping");
        return;
    }
    let dir = tmp();
    let layout = p(&dir, "layout");
    let i = img(110, &[3000, 1000], true);
    let lexp =
        write_oci_layout_dir(&layout, &[(OciEntry::Image(i.clone()), "src")]).expect("layout");

    let da = p(&dir, "skopeo-docker.tar");
    skopeo_docker_archive(&layout, "src", &da, "example.com/ns/app:v2")
        .expect("skopeo docker-archive");
    let ms = read_members(&da);
    let exp = expected_skopeo_docker_archive(&i, "example.com/ns/app:v2");
    let mj = json(&ms, "manifest.json");
    assert_eq!(mj[0]["RepoTags"], serde_json::json!(exp.targets[0].refs));
    assert_eq!(
        mj[0]["Config"],
        format!("{}.json", &i.config_digest[7..]).as_str()
    );
    assert_expected_blobs(&ms, &exp, |b| {
        if b.media_type == DOCKER_CONFIG {
            format!("{}.json", &b.digest[7..])
        } else {
            format!("{}.tar", &b.digest[7..])
        }
    });
    // containers/image writes each legacy `<id>/layer.tar` as a symlink to
    // the root-level `<diffid>.tar`, then VERSION and json.
    let links: Vec<&Member> = ms.iter().filter(|m| m.kind == b'2').collect();
    assert_eq!(links.len(), 2);
    for l in &links {
        assert!(
            l.link.starts_with("../") && l.link.ends_with(".tar"),
            "{l:?}"
        );
        assert!(
            exp.blobs
                .iter()
                .any(|b| digest(&resolve(&ms, &l.name).data) == b.digest)
        );
    }
    assert_eq!(ms.last().map(|m| m.name.as_str()), Some("repositories"));

    let oa = p(&dir, "skopeo-oci.tar");
    skopeo_oci_archive(&layout, "src", &oa, "dst").expect("skopeo oci-archive");
    let ms = read_members(&oa);
    assert_blobs_self_consistent(&ms);
    let index = json(&ms, "index.json");
    assert_eq!(
        index["manifests"][0]["digest"],
        lexp.targets[0].digest.as_deref().expect("d"),
        "digest preserved"
    );
    assert_eq!(
        index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"],
        "dst"
    );
    // Our oci-archive writer mirrors skopeo's member list exactly.
    let ours = p(&dir, "ours.tar");
    write_oci_archive(&ours, &[(OciEntry::Image(i.clone()), "dst")]).expect("ours");
    assert_eq!(names(&read_members(&ours)), names(&ms));
    assert_eq!(
        member(&read_members(&ours), "index.json").data,
        member(&ms, "index.json").data
    );
    assert_eq!(
        member(&read_members(&ours), "oci-layout").data,
        member(&ms, "oci-layout").data
    );
}

// ---------------------------------------------------------------- hostile

fn hostile(name: &str, f: fn(&Path) -> std::io::Result<()>) -> (TempDir, PathBuf) {
    let dir = tmp();
    let path = p(&dir, name);
    f(&path).expect("hostile writer");
    (dir, path)
}

/// Raw member names read by walking 512-byte headers: the `tar` crate would
/// happily read `../evil` too, but this shows the bytes really are there.
fn raw_names(bytes: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let mut off = 0usize;
    while off + 512 <= bytes.len() && bytes[off] != 0 {
        let h = &bytes[off..off + 512];
        let name = String::from_utf8_lossy(&h[..100])
            .trim_end_matches('\0')
            .to_string();
        let size_txt = String::from_utf8_lossy(&h[124..135])
            .trim_end_matches('\0')
            .to_string();
        let size = usize::from_str_radix(size_txt.trim(), 8).unwrap_or(0);
        out.push(name);
        off += 512 + size.div_ceil(512) * 512;
    }
    out
}

fn skopeo_rejects(reference: &str) {
    if let Some(r) = skopeo_raw(reference) {
        assert!(r.is_err(), "skopeo accepted hostile {reference}");
    }
}

#[test]
fn hostile_not_a_tar_and_empty() {
    let (_d, path) = hostile("nat.tar", hostile_not_a_tar);
    let bytes = std::fs::read(&path).expect("read");
    assert_ne!(bytes[0], 0x1f);
    assert!(
        tar::Archive::new(&bytes[..])
            .entries()
            .expect("iter")
            .any(|e| e.is_err())
    );
    skopeo_rejects(&format!("docker-archive:{}", path.display()));
    let (_d2, empty) = hostile("empty.tar", hostile_empty);
    assert_eq!(std::fs::metadata(&empty).expect("meta").len(), 0);
}

#[test]
fn hostile_truncations() {
    let (_d, path) = hostile("trunc.tar", hostile_truncated_tar);
    let bytes = std::fs::read(&path).expect("read");
    let (img, _) = hostile_image();
    let layer = format!("blobs/sha256/{}", &img.layers[0].diff_id[7..]);
    assert_eq!(
        raw_names(&bytes).last(),
        Some(&layer),
        "ends inside the first layer"
    );
    assert_ne!(bytes.len() % 512, 0, "cut mid-block");
    skopeo_rejects(&format!("docker-archive:{}", path.display()));

    let (_d2, gz) = hostile("trunc.tar.gz", hostile_truncated_gzip);
    let gzb = std::fs::read(&gz).expect("read");
    assert_eq!(&gzb[..2], &[0x1f, 0x8b]);
    let mut sink = Vec::new();
    assert!(
        flate2::read::GzDecoder::new(&gzb[..])
            .read_to_end(&mut sink)
            .is_err()
    );
    skopeo_rejects(&format!("docker-archive:{}", gz.display()));
}

#[test]
fn hostile_manifest_problems() {
    let (_d, path) = hostile("nomanifest.tar", hostile_no_manifest);
    let ms = read_members(&path);
    assert!(
        !names(&ms)
            .iter()
            .any(|n| n == "manifest.json" || n == "index.json")
    );
    assert!(ms.iter().any(|m| m.name.starts_with("blobs/sha256/")));
    skopeo_rejects(&format!("docker-archive:{}", path.display()));

    let (_d, path) = hostile("badjson.tar", hostile_invalid_json_manifest);
    let ms = read_members(&path);
    assert!(serde_json::from_slice::<Value>(&member(&ms, "manifest.json").data).is_err());
    skopeo_rejects(&format!("docker-archive:{}", path.display()));

    let (_d, path) = hostile("missing.tar", hostile_missing_layer);
    let ms = read_members(&path);
    let (img, _) = hostile_image();
    let mj = json(&ms, "manifest.json");
    let wanted = mj[0]["Layers"][0].as_str().expect("layer").to_string();
    assert_eq!(wanted, blob_path(&img.layers[0].diff_id));
    assert!(!names(&ms).contains(&wanted));
    skopeo_rejects(&format!("docker-archive:{}", path.display()));
}

#[test]
fn hostile_content_mismatches() {
    let (img, _) = hostile_image();
    let (_d, path) = hostile("digest.tar", hostile_layer_digest_mismatch);
    let ms = read_members(&path);
    let name = blob_path(&img.layers[0].diff_id);
    let m = member(&ms, &name);
    assert_eq!(m.data.len(), img.layers[0].tar.len(), "same size");
    assert_ne!(digest(&m.data), img.layers[0].diff_id);
    assert!(
        read_members_from(&m.data[..]).len() > 1,
        "still a valid tar"
    );

    let (_d, path) = hostile("diffid.tar", hostile_diffid_mismatch_legacy);
    let ms = read_members(&path);
    let mj = json(&ms, "manifest.json");
    let layer = member(&ms, mj[0]["Layers"][0].as_str().expect("layer"));
    let cfg: Value =
        serde_json::from_slice(&member(&ms, mj[0]["Config"].as_str().expect("cfg")).data)
            .expect("config");
    assert_ne!(
        Value::from(digest(&layer.data)),
        cfg["rootfs"]["diff_ids"][0]
    );
    assert!(
        read_members_from(&layer.data[..]).len() > 1,
        "still a valid tar"
    );
}

#[test]
fn hostile_paths() {
    for (file, f, bad) in [
        (
            "dotdot.tar",
            hostile_dotdot_entry as fn(&Path) -> std::io::Result<()>,
            "../evil",
        ),
        ("abs.tar", hostile_absolute_entry, "/etc/x"),
    ] {
        let (_d, path) = hostile(file, f);
        let bytes = std::fs::read(&path).expect("read");
        assert!(
            raw_names(&bytes).iter().any(|n| n == bad),
            "{bad} member present"
        );
        let ms = read_members(&path);
        assert_eq!(
            json(&ms, "manifest.json")[0]["Layers"][0],
            bad,
            "and referenced as a layer"
        );
    }

    let (_d, path) = hostile("symlink.tar", hostile_symlink_escape);
    let ms = read_members(&path);
    let mj = json(&ms, "manifest.json");
    let link = member(&ms, mj[0]["Layers"][0].as_str().expect("layer"));
    assert_eq!((link.kind, link.link.as_str()), (b'2', "../../etc/passwd"));

    let (_d, path) = hostile("dup.tar", hostile_duplicate_entries);
    let ms = read_members(&path);
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for m in &ms {
        *counts.entry(m.name.as_str()).or_default() += 1;
    }
    let dups: Vec<&&str> = counts
        .iter()
        .filter(|(_, c)| **c > 1)
        .map(|(n, _)| n)
        .collect();
    assert_eq!(dups.len(), 1);
    let copies: Vec<&Member> = ms.iter().filter(|m| m.name == *dups[0]).collect();
    assert_eq!(
        sha256_hex(&copies[0].data),
        dups[0].trim_start_matches("blobs/sha256/"),
        "first copy correct"
    );
    assert_ne!(copies[0].data, copies[1].data);
    assert_eq!(copies[0].data.len(), copies[1].data.len());
}

#[test]
fn hostile_huge_manifest_is_valid_json() {
    // Small variant: parse it fully (streaming) to prove it is valid JSON.
    let dir = tmp();
    let small = p(&dir, "huge-small.tar");
    hostile_huge_manifest(&small, 4 << 20).expect("write");
    let mut ar = tar::Archive::new(BufReader::new(File::open(&small).expect("open")));
    let mut found = false;
    for e in ar.entries().expect("entries") {
        let e = e.expect("entry");
        if e.path_bytes().as_ref() == b"manifest.json" {
            let v: Value = serde_json::from_reader(e).expect("valid JSON");
            assert_eq!(v.as_array().map(Vec::len), Some(1));
            found = true;
        }
    }
    assert!(found);
    // containers/image caps manifest.json at 1 MiB
    // (iolimits.MaxTarFileManifestSize): "exceeded maximum allowed size".
    skopeo_rejects(&format!("docker-archive:{}", small.display()));

    // The real one: 200 MB of whitespace; check sizes without reading it all.
    let big = p(&dir, "huge.tar");
    hostile_huge_manifest(&big, 200 << 20).expect("write");
    let len = std::fs::metadata(&big).expect("meta").len();
    assert!(len > 200 << 20 && len.is_multiple_of(512));
    let mut ar = tar::Archive::new(BufReader::new(File::open(&big).expect("open")));
    let sizes: Vec<(String, u64)> = ar
        .entries()
        .expect("entries")
        .map(|e| {
            let e = e.expect("entry");
            (
                String::from_utf8_lossy(&e.path_bytes()).into_owned(),
                e.size(),
            )
        })
        .collect();
    let m = sizes
        .iter()
        .find(|(n, _)| n == "manifest.json")
        .expect("manifest.json");
    assert!(m.1 > 200 << 20);
    assert!(
        sizes.iter().any(|(n, _)| n == "repositories"),
        "archive continues after it"
    );
}
