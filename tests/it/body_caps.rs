//! A registry behind a front end with a request body cap (nginx `client_max_body_size`,
//! Cloudflare's 100 MB): a 413 to an upload shrinks the chunks and the same session goes
//! on; the size that went through is remembered for the next run; nginx's HTML error
//! page never reaches the terminal whole.

use std::path::{Path, PathBuf};

use crate::fixtures::*;
use crate::support::nginx_front::NginxFront;
use crate::support::verify::*;
use crate::support::{Pusher, RegistryClient, RegistryOptions, Run, TestRegistry, workspace_tmp};

const MIB: usize = 1 << 20;

fn push_through(front: &NginxFront, dir: &Path, archive: &Path, target: &str) -> Run {
    Pusher::new(dir, &["push", "--source"])
        .arg(archive)
        .arg("--target")
        .arg(format!("{}/{target}", front.url()))
        .run()
}

/// An OCI archive of one image with one uncompressed 64 MiB layer.
fn big_image(dir: &Path, name: &str, seed: u64) -> (PathBuf, Expected) {
    let archive = dir.join(name);
    let exp = write_oci_archive(
        &archive,
        &[(OciEntry::Image(image(seed, &[64 * MIB], false)), "1")],
    )
    .unwrap();
    (archive, exp)
}

fn refusals(front: &NginxFront) -> usize {
    front
        .access_log()
        .lines()
        .filter(|l| l.contains("\" 413 "))
        .count()
}

#[test]
fn a_64_mib_image_goes_through_a_20m_body_cap_and_the_next_run_starts_at_the_size_that_worked() {
    let registry = TestRegistry::start(RegistryOptions::plain());
    let client = RegistryClient::new(&registry);
    let front = NginxFront::start(&registry, "20m");
    let dir = workspace_tmp();

    let (first, exp) = big_image(dir.path(), "first.tar", 51);
    let run = push_through(&front, dir.path(), &first, "capped/app:1").success();
    let digest = verify_target(&client, "capped/app", "1", &exp.targets[0]);
    assert_eq!(run.pushed().1, digest);
    let said = "the registry's front end refused 32 MiB bodies; using 16 MiB chunks";
    assert_eq!(run.stderr.matches(said).count(), 1, "said once\n{run}");
    let layer = &exp.targets[0].manifests[0].layers[0].digest;
    let short = &digest_hex(layer)[..12];
    let switch = run
        .stderr
        .lines()
        .find(|l| l.contains("switching to chunked upload"))
        .unwrap_or_else(|| panic!("no fallback line\n{run}"));
    assert!(
        switch.starts_with(&format!("blob {short}: the registry refused 67.1 MB in one request"))
            && switch.ends_with(
                "(HTTP 413 Payload Too Large: 413 Request Entity Too Large); switching to chunked upload"
            ),
        "the fallback line has the blob prefix, the size and nginx's reason: {switch}"
    );
    assert!(
        !run.stderr.contains("<html>") && !run.stderr.contains("nginx/"),
        "{run}"
    );
    // The one PUT and one 32 MiB PATCH, then 16 MiB chunks of the same session.
    assert_eq!(refusals(&front), 2, "{}", front.access_log());

    let (second, exp) = big_image(dir.path(), "second.tar", 52);
    let run = push_through(&front, dir.path(), &second, "capped/other:1").success();
    verify_target(&client, "capped/other", "1", &exp.targets[0]);
    assert!(
        run.stderr.contains(
            "the registry's front end took 16 MiB bodies on an earlier run; using 16 MiB chunks"
        ),
        "{run}"
    );
    assert_eq!(
        refusals(&front),
        2,
        "no refusal on the second run\n{}",
        front.access_log()
    );
}

#[test]
fn a_layer_compressed_on_the_way_shrinks_its_chunks_under_the_cap_too() {
    let registry = TestRegistry::start(RegistryOptions::plain());
    let client = RegistryClient::new(&registry);
    let front = NginxFront::start(&registry, "2m");
    let dir = workspace_tmp();
    let layer = crate::compression::text_layer(53, 24 * MIB);
    let diff_id = layer.diff_id.clone();
    let img = TestImage::from_layers(53, vec![layer], ("linux", "amd64"));
    let archive = dir.path().join("text.tar");
    write_oci_archive(&archive, &[(OciEntry::Image(img), "1")]).unwrap();
    let run = Pusher::new(dir.path(), &["push", "--compress", "gzip", "--source"])
        .arg(&archive)
        .arg("--target")
        .arg(format!("{}/squeezed/app:1", front.url()))
        .run()
        .success();
    assert!(
        run.stderr.contains("the registry's front end refused"),
        "{run}"
    );
    assert!(refusals(&front) > 0, "{}", front.access_log());
    let (manifest, _) = fetch_manifest(&client, "squeezed/app", "1");
    let manifest: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    let pushed = &manifest["layers"][0];
    assert!(
        pushed["mediaType"].as_str().unwrap().ends_with("gzip"),
        "{manifest}"
    );
    let blob = client.get_blob("squeezed/app", pushed["digest"].as_str().unwrap());
    let mut tar = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::MultiGzDecoder::new(&blob[..]), &mut tar)
        .unwrap();
    assert_eq!(
        crate::support::sha256_digest(&tar),
        diff_id,
        "the layer is whole"
    );
}

#[test]
fn a_cap_below_the_smallest_chunk_stops_with_one_line_and_no_html() {
    let registry = TestRegistry::start(RegistryOptions::plain());
    let front = NginxFront::start(&registry, "1k");
    let dir = workspace_tmp();
    let archive = dir.path().join("small.tar");
    write_oci_archive(
        &archive,
        &[(OciEntry::Image(image(54, &[3 * MIB], true)), "1")],
    )
    .unwrap();
    let run = push_through(&front, dir.path(), &archive, "tiny/app:1").failure(6);
    let errors = run.error_lines();
    assert_eq!(errors.len(), 1, "{run}");
    assert!(
        errors[0].contains("HTTP 413 Payload Too Large: 413 Request Entity Too Large"),
        "status, reason and the page's first line: {run}"
    );
    assert!(
        run.stderr.contains("client_max_body_size"),
        "the hint says where to fix it\n{run}"
    );
    assert!(
        !run.stderr.contains("<html>") && !run.stderr.contains("nginx/1"),
        "{run}"
    );
}

/// nginx's own 413 page, as `client_max_body_size` answers.
const NGINX_413: &str = "<html>\r\n<head><title>413 Request Entity Too Large</title></head>\r\n<body>\r\n<center><h1>413 Request Entity Too Large</h1></center>\r\n<hr><center>nginx/1.22.1</center>\r\n</body>\r\n</html>\r\n";

#[test]
fn a_413_after_the_registry_dropped_the_session_starts_the_blob_over_in_smaller_chunks() {
    use crate::support::{Fault, FaultProxy, Match, Mode, Rule};
    let registry = TestRegistry::start(RegistryOptions::plain());
    let client = RegistryClient::new(&registry);
    // A front end that does not buffer passed part of the chunk on, so the registry
    // dropped the session (distribution 2.8 does), then refused the rest.
    let proxy = FaultProxy::start(&registry.host(), Mode::Buffering);
    proxy.add(Rule::new(
        Match::patch(),
        Fault::Respond {
            status: 413,
            headers: vec![("Content-Type".into(), "text/html".into())],
            body: NGINX_413.into(),
        },
    ));
    proxy.add(Rule::new(
        Match::method("GET").path("/blobs/uploads/"),
        Fault::respond_error(
            404,
            "BLOB_UPLOAD_UNKNOWN",
            "blob upload unknown to registry",
        ),
    ));
    let dir = workspace_tmp();
    let archive = dir.path().join("app.tar");
    let exp = write_oci_archive(
        &archive,
        &[(OciEntry::Image(image(55, &[3 * MIB], false)), "1")],
    )
    .unwrap();
    let run = Pusher::new(
        dir.path(),
        &[
            "push",
            "--chunk-size",
            "2M",
            "--large-layer-threshold",
            "1M",
            "--source",
        ],
    )
    .arg(&archive)
    .arg("--target")
    .arg(format!("http://{}/dropped/app:1", proxy.host()))
    .run()
    .success();
    assert_eq!(proxy.fired(), vec![1, 1], "{}", proxy.describe());
    assert!(
        run.stderr
            .contains("the registry lost the upload session; starting the blob over"),
        "{run}"
    );
    assert!(
        run.stderr
            .contains("the registry's front end refused 2 MiB bodies; using 1 MiB chunks"),
        "{run}"
    );
    assert!(!run.stderr.contains("<html>"), "{run}");
    verify_target(&client, "dropped/app", "1", &exp.targets[0]);
}
