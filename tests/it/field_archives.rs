//! Sources as real tools leave them: Go-written JSON (`null` for empty lists and maps,
//! `{}` annotations, an index without `mediaType`), a Docker 25 `docker save` by image ID,
//! and OCI image layout directories (skopeo `oci:DIR`, podman `oci-dir`, buildah, kaniko,
//! buildkit `tar=false`) pushed and extracted in place.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

use crate::fixtures::*;
use crate::support::verify::*;
use crate::support::{RegistryClient, RegistryOptions, TestRegistry, pusher, workspace_tmp};

fn target(registry: &TestRegistry, path: &str) -> String {
    format!("{}/{path}", registry.url())
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&fs::read(path).unwrap()).unwrap()
}

fn blob_path(layout: &Path, digest: &str) -> PathBuf {
    layout.join("blobs/sha256").join(digest_hex(digest))
}

/// Rewrites a one-image layout the way Go tools write one: the index without
/// `mediaType` and with `"annotations": null`, the manifest with `"annotations": {}` on
/// itself and its config and `"urls": null` on a layer. Returns the new manifest bytes.
fn go_shaped(layout: &Path) -> Vec<u8> {
    let mut index = read_json(&layout.join("index.json"));
    let old = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let mut manifest = read_json(&blob_path(layout, &old));
    manifest["annotations"] = json!({});
    manifest["config"]["annotations"] = json!({});
    manifest["layers"][0]["urls"] = Value::Null;
    let bytes = serde_json::to_vec(&manifest).unwrap();
    let digest = sha256_digest_of(&bytes);
    fs::write(blob_path(layout, &digest), &bytes).unwrap();
    let index = index.as_object_mut().unwrap();
    index.remove("mediaType");
    index.insert("annotations".into(), Value::Null);
    let entry = &mut index.get_mut("manifests").unwrap()[0];
    entry["digest"] = json!(digest);
    entry["size"] = json!(bytes.len());
    fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&index).unwrap(),
    )
    .unwrap();
    bytes
}

fn sha256_digest_of(bytes: &[u8]) -> String {
    crate::support::sha256_digest(bytes)
}

#[test]
fn docker25_save_by_image_id_with_null_lists_is_pushed_by_the_target_name() {
    let registry = TestRegistry::start(RegistryOptions::plain());
    let client = RegistryClient::new(&registry);
    let dir = workspace_tmp();
    let img = image(41, &[20_000, 3_000], false);
    let archive = dir.path().join("by-id.tar");
    let exp = write_docker25_by_id(&archive, &img).unwrap();
    let run = push(&registry, &archive, "byid/app:7", &[]).success();
    let (name, digest, _) = run.pushed();
    assert_eq!(name, "7", "{run}");
    assert_eq!(
        verify_target(&client, "byid/app", "7", &exp.targets[0]),
        digest
    );
}

#[test]
fn oci_layout_directory_with_go_shaped_json_is_pushed_in_place() {
    let registry = TestRegistry::start(RegistryOptions::plain());
    let client = RegistryClient::new(&registry);
    let dir = workspace_tmp();
    let layout = dir.path().join("layout");
    let img = image(42, &[30_000, 4_000], true);
    write_oci_layout_dir(&layout, &[(OciEntry::Image(img.clone()), "v1")]).unwrap();
    let manifest = go_shaped(&layout);
    // The older flat form takes a directory as well.
    let run = pusher()
        .args(["-r", &target(&registry, "dirs/app:v1"), "-f"])
        .arg(&layout)
        .run()
        .success();
    assert!(
        run.stderr.contains("OCI image layout directory"),
        "the source is named for what it is\n{run}"
    );
    let (body, _) = fetch_manifest(&client, "dirs/app", "v1");
    assert_eq!(
        body, manifest,
        "the layout's manifest is pushed byte for byte"
    );
    assert_eq!(run.pushed().1, sha256_digest_of(&manifest));
    for layer in &img.layers {
        assert!(client.blob_exists("dirs/app", &layer.oci_blob().digest));
    }
}

#[test]
fn oci_layout_directory_written_by_skopeo_is_pushed_and_extracted() {
    require_skopeo();
    let registry = TestRegistry::start(RegistryOptions::plain());
    let client = RegistryClient::new(&registry);
    let dir = workspace_tmp();
    let img = image(43, &[25_000, 1_000], false);
    let archive = dir.path().join("legacy.tar");
    write_docker_legacy(&archive, &[(img, vec!["app:1".into()])]).unwrap();
    let layout = dir.path().join("skopeo-oci");
    let out = Command::new("skopeo")
        .args(["copy", "--insecure-policy"])
        .arg(format!("docker-archive:{}", archive.display()))
        .arg(format!("oci:{}:app", layout.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let index = read_json(&layout.join("index.json"));
    let stored = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();

    let run = push(&registry, &layout, "skopeo-dir/app:1", &[]).success();
    assert_eq!(
        run.pushed().1,
        stored,
        "the layout's manifest digest is kept"
    );
    let (_, _) = fetch_manifest(&client, "skopeo-dir/app", &stored);
    skopeo_verify(
        &registry,
        &SkopeoAccess::new(&registry),
        "skopeo-dir/app:1",
        &stored,
        false,
    );

    let cache = dir.path().join("cache");
    let run = pusher()
        .args(["extract", "-f"])
        .arg(&layout)
        .args(["--name", "example.com/dir/app:1", "--cache-dir"])
        .arg(&cache)
        .run()
        .success();
    assert!(run.stdout.contains(&stored), "{run}");
    assert!(
        blob_path(&cache, &stored).is_file(),
        "the manifest is cached"
    );
}

#[test]
fn a_directory_that_is_not_an_image_layout_says_what_it_expected() {
    let registry = TestRegistry::start(RegistryOptions::plain());
    let dir = workspace_tmp();
    let empty = dir.path().join("not-a-layout");
    fs::create_dir_all(&empty).unwrap();
    fs::write(empty.join("README"), "hello").unwrap();
    let run = push(&registry, &empty, "nothing/here:1", &[]).failure(3);
    let errors = run.error_lines();
    assert_eq!(errors.len(), 1, "one error line\n{run}");
    assert!(
        errors[0].contains("not an OCI image layout") && errors[0].contains("index.json"),
        "{run}"
    );
}

#[test]
fn a_layout_blob_that_is_a_symlink_out_of_the_directory_is_refused() {
    let registry = TestRegistry::start(RegistryOptions::plain());
    let client = RegistryClient::new(&registry);
    let dir = workspace_tmp();
    let layout = dir.path().join("layout");
    let img = image(44, &[9_000], true);
    write_oci_layout_dir(&layout, &[(OciEntry::Image(img.clone()), "v1")]).unwrap();
    // The same bytes outside the layout: a link to them must still not be followed.
    let layer = img.layers[0].oci_blob();
    let outside = dir.path().join("outside");
    fs::rename(blob_path(&layout, &layer.digest), &outside).unwrap();
    std::os::unix::fs::symlink(&outside, blob_path(&layout, &layer.digest)).unwrap();
    let run = push(&registry, &layout, "links/app:v1", &[]).failure(3);
    assert!(run.stderr.contains(&layer.digest), "{run}");
    assert!(!client.blob_exists("links/app", &layer.digest));
}
