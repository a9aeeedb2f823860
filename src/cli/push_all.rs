//! `push --all`: every image of a bundle, or of a cache directory, to one registry. Each
//! image keeps its repository path below the target's prefix
//! (`docker.io/library/nginx:1.21` to `REGISTRY/PREFIX/library/nginx:1.21`).

use crate::text::plural::count;
use std::path::Path;

use super::push::{
    DEFAULT_FIXED_CONCURRENCY, PushArgs, SizeFlags, connection_flags, upload_options,
};
use super::settings::{self, Env};
use super::{Connection, concurrency, transfer_reporter, verbosity};
use crate::archive::Archive;
use crate::cache::Cache;
use crate::cache::files::LockMode;
use crate::cache::state::StateDir;
use crate::error::{Class, Error, Result};
use crate::image::reference::Reference;
use crate::image::{Artifact, BlobSource};
use crate::ops::push::PushOptions;
use crate::ops::push::all::{self, Image, MirrorReport};
use crate::registry::http::retry::Deadline;
use crate::text::sanitize::sanitize;
use crate::ui::progress::{Reporter, human_bytes};

/// Where `--all` pushes: a registry, and a path prefix for every repository.
#[derive(Debug, PartialEq)]
struct Destination {
    host: String,
    prefix: String,
    /// `http://` given.
    plain_http: Option<bool>,
}

impl Destination {
    fn parse(text: &str) -> Result<Destination> {
        let (plain_http, rest) = match (text.strip_prefix("http://"), text.strip_prefix("https://"))
        {
            (Some(rest), _) => (Some(true), rest),
            (_, Some(rest)) => (Some(false), rest),
            _ => (None, text),
        };
        let rest = rest.trim_end_matches('/');
        let (host, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let looks_like_host = host.contains('.') || host.contains(':') || host == "localhost";
        if !looks_like_host || prefix.contains(['@', ':']) {
            return Err(Error::usage(format!(
                "with --all, --target is REGISTRY[/PREFIX], not \"{}\"",
                sanitize(text)
            ))
            .hint("for example --target registry.internal:5000/mirror; each image keeps its own repository path and tag below it"));
        }
        Ok(Destination {
            host: host.to_string(),
            prefix: prefix.trim_start_matches('/').to_string(),
            plain_http,
        })
    }

    /// `docker.io/library/nginx:1.21` -> `HOST/PREFIX/library/nginx:1.21`.
    fn target_for(&self, original: &Reference) -> Result<Reference> {
        let path = match self.prefix.as_str() {
            "" => original.repository().to_string(),
            prefix => format!("{prefix}/{}", original.repository()),
        };
        let name = match (original.tag(), original.digest()) {
            (Some(tag), _) => format!("{}/{path}:{tag}", self.host),
            (None, Some(digest)) => format!("{}/{path}@{digest}", self.host),
            (None, None) => format!("{}/{path}:latest", self.host),
        };
        let target = Reference::parse(&name).map_err(|e| Error::usage(e.to_string()))?;
        if !target.registry().eq_ignore_ascii_case(&self.host) {
            return Err(Error::usage(format!(
                "{} is not a registry host",
                sanitize(&self.host)
            )));
        }
        Ok(target)
    }
}

/// The images of the source, or why one cannot be pushed.
struct Bundle {
    images: Vec<Image>,
    unusable: Vec<(String, Error)>,
    blobs: Box<dyn BlobSource>,
    _lock: Option<crate::cache::files::Lock>,
}

pub fn run_push_all(args: &PushArgs, env: Env) -> Result<()> {
    refuse_single_image_flags(args)?;
    let verbose = settings::switch_setting(args.verbose, env, "DOCKER_PUSHER_VERBOSE")?;
    let reporter = transfer_reporter(verbosity(args.quiet, verbose), env);
    let destination = Destination::parse(&args.target)?;
    let plain_http = destination.plain_http.unwrap_or(args.insecure);
    let connection = Connection::resolve(connection_flags(args, plain_http), env)?;
    let deadline =
        (connection.deadline).map(|limit| Deadline::start(limit, &connection.retry.stop));
    let options = PushOptions::uncompressed(
        upload_options(
            SizeFlags {
                large_layer_threshold: args.large_layer_threshold,
                chunk_size: args.chunk_size,
            },
            args.force_upload,
            args.mount_from.clone(),
            &connection,
            env,
        )?,
        concurrency::resolve(&args.concurrency_flags(), env, DEFAULT_FIXED_CONCURRENCY)?,
        false,
        settings::switch_setting(args.skip_existing, env, "DOCKER_PUSHER_SKIP_EXISTING")?,
    );
    let state = StateDir::for_cache(&settings::cache_dir_setting(args.cache_dir.as_deref(), env));
    super::push::stop_uploads_on_signal(&options.upload.stop, &state, &reporter)?;

    let source = super::push::source_setting(args)?;
    let bundle = open_bundle(Path::new(source), &destination, &reporter)?;
    let Some(first) = bundle.images.first() else {
        for (name, error) in &bundle.unusable {
            reporter.result(&format!("{name}: failed: {error}"));
        }
        return Err(Error::input(format!(
            "{source} holds no image that can be pushed"
        )));
    };
    reporter.info(&format!(
        "pushing {} from {} to {}",
        count(bundle.images.len() as u64, "image"),
        source,
        destination.host
    ));
    let registry = connection.open(&first.target, env, &reporter, "pull,push")?;
    let report = all::push_all(
        &bundle.images,
        bundle.blobs.as_ref(),
        &registry,
        &options,
        Some(&state),
        &reporter,
    )
    .map_err(|e| match &deadline {
        Some(deadline) => deadline.explain(e),
        None => e,
    })?;
    finish(args, &reporter, report, bundle.unusable)
}

/// Flags that choose or reshape one image make no sense for a whole bundle.
fn refuse_single_image_flags(args: &PushArgs) -> Result<()> {
    let refused = [
        (args.source_tag.is_some(), "--source-tag"),
        (args.dry_run, "--dry-run"),
        (
            args.compress.as_deref().is_some_and(|c| c != "none"),
            "--compress",
        ),
    ];
    match refused.iter().find(|(given, _)| *given) {
        Some((_, flag)) => Err(Error::usage(format!("{flag} cannot be used with --all"))),
        None => Ok(()),
    }
}

/// One line per image on stdout, then the summary; an error (whose class sets the exit
/// code) when any image failed.
fn finish(
    args: &PushArgs,
    reporter: &Reporter,
    report: MirrorReport,
    unusable: Vec<(String, Error)>,
) -> Result<()> {
    let total = report.images.len() + unusable.len();
    let failed = report.images_failed + unusable.len();
    if args.json {
        let mut json = serde_json::to_value(&report).unwrap_or_default();
        json["unusable"] = unusable
            .iter()
            .map(|(name, e)| serde_json::json!({"source": name, "error": e.to_string()}))
            .collect();
        reporter.result(&json.to_string());
    } else {
        for image in &report.images {
            reporter.result(&match &image.error {
                Some(error) => format!("{}: failed: {error}", image.reference),
                None => format!(
                    "{}: digest: {} size: {}",
                    image.reference, image.digest, image.manifest_size
                ),
            });
        }
        for (name, error) in &unusable {
            reporter.result(&format!("{name}: failed: {error}"));
        }
    }
    reporter.info(&format!(
        "{} of {} pushed; {}: {} uploaded ({}), {} mounted, {} already present",
        total - failed,
        count(total as u64, "image"),
        count(report.blobs as u64, "blob"),
        report.blobs_uploaded,
        human_bytes(report.bytes_sent),
        report.blobs_mounted,
        report.blobs_existing
    ));
    let first = report
        .first_error
        .or_else(|| unusable.into_iter().next().map(|(_, e)| e));
    match first {
        None => Ok(()),
        Some(first) => Err(Error::new(
            if first.class == Class::Usage {
                Class::Input
            } else {
                first.class
            },
            format!(
                "{failed} of {} failed; the first: {}",
                count(total as u64, "image"),
                first.message
            ),
        )
        .hint("run the same command again to retry them; what was pushed is not sent again")),
    }
}

fn open_bundle(path: &Path, destination: &Destination, reporter: &Reporter) -> Result<Bundle> {
    let mut bundle = Bundle {
        images: Vec::new(),
        unusable: Vec::new(),
        blobs: Box::new(Cache::new(path)),
        _lock: None,
    };
    let mut add = |names: Vec<String>, artifact: Result<Artifact>, label: String| {
        let artifact = match artifact {
            Ok(artifact) => artifact,
            Err(e) => return bundle.unusable.push((label, e)),
        };
        let names = own_names(names);
        if names.is_empty() {
            let e = Error::input("the image has no name, so it has no repository to go to");
            return bundle.unusable.push((label, e));
        }
        for name in names {
            if !name.contains(['/', ':', '@']) {
                let e = Error::input(format!(
                    "the image is named only by the tag \"{}\", which names no repository",
                    sanitize(&name)
                ))
                .hint("name images fully (repository:tag) when writing the archive");
                bundle.unusable.push((sanitize(&name), e));
                continue;
            }
            let target = Reference::parse(&name)
                .map_err(|e| Error::input(e.to_string()))
                .and_then(|original| destination.target_for(&original));
            match target {
                Ok(target) => bundle.images.push(Image {
                    name: sanitize(&name),
                    target,
                    artifact: artifact.clone(),
                }),
                Err(e) => bundle.unusable.push((sanitize(&name), e)),
            }
        }
    };
    if path.is_dir() {
        let cache = Cache::new(path);
        let lock = cache.lock(LockMode::Shared, &|| {
            reporter.info("waiting for another process cleaning the cache")
        })?;
        for entry in &cache.read_index()?.manifests {
            let names = entry.name().map(str::to_string).into_iter().collect();
            add(names, cache.artifact(entry), sanitize(&entry.label()));
        }
        bundle._lock = Some(lock);
        return Ok(bundle);
    }
    let mut archive = Archive::open(path)?;
    for index in 0..archive.candidates().len() {
        let names = archive.candidates()[index].names.clone();
        let label = names
            .first()
            .map_or_else(|| format!("image {}", index + 1), |n| sanitize(n));
        add(names, archive.artifact(index), label);
    }
    bundle.blobs = Box::new(archive);
    Ok(bundle)
}

/// The names an image is pushed under. Docker 25 writes each tag twice, as the full name
/// and as the bare tag (`org.opencontainers.image.ref.name`); the bare tag is not a name
/// of its own.
fn own_names(names: Vec<String>) -> Vec<String> {
    let full: Vec<Reference> = names
        .iter()
        .filter(|n| n.contains(['/', ':', '@']))
        .filter_map(|n| Reference::parse(n).ok())
        .collect();
    let mut kept: Vec<String> = Vec::new();
    for name in names {
        let bare_tag_of_another =
            !name.contains(['/', ':', '@']) && full.iter().any(|r| r.tag() == Some(name.as_str()));
        if !bare_tag_of_another && !kept.contains(&name) {
            kept.push(name);
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_image_keeps_its_repository_path_below_the_prefix() {
        let destination = Destination::parse("http://127.0.0.1:5000/mirror/").unwrap();
        assert_eq!(destination.plain_http, Some(true));
        let original = Reference::parse("docker.io/library/nginx:1.21").unwrap();
        let target = destination.target_for(&original).unwrap();
        assert_eq!(target.registry(), "127.0.0.1:5000");
        assert_eq!(target.repository(), "mirror/library/nginx");
        assert_eq!(target.tag(), Some("1.21"));
        let bare = Destination::parse("registry.internal").unwrap();
        let target = bare.target_for(&Reference::parse("ghcr.io/o/app:2").unwrap());
        assert_eq!(target.unwrap().to_string(), "registry.internal/o/app:2");
    }

    #[test]
    fn a_target_that_is_not_registry_and_prefix_is_refused() {
        assert!(Destination::parse("mirror").is_err());
        assert!(Destination::parse("registry.internal/mirror:1").is_err());
        assert!(Destination::parse("registry.internal/a@sha256:00").is_err());
    }

    #[test]
    fn a_bare_tag_beside_the_full_name_is_not_a_name_of_its_own() {
        let names = vec![
            "docker.io/library/nginx:1.21".to_string(),
            "1.21".to_string(),
        ];
        assert_eq!(own_names(names), ["docker.io/library/nginx:1.21"]);
        assert_eq!(own_names(vec!["busybox".into()]), ["busybox"]);
    }
}
