//! The state directory: what must survive a crash, Ctrl-C or power loss so the next run
//! loses nothing. It lives next to the blob cache (`<cache-dir>/uploads/`) and holds
//! two kinds of small JSON files, each written atomically (temp file, fsync, rename,
//! fsync of the directory), so a reader sees the old or the new version, never a torn one:
//!
//! - `sessions/<key>.json`: one open upload session (registry, repository, digest, upload
//!   URL, offset the registry confirmed). Written when a session opens and after every
//!   accepted chunk; removed when the blob is committed or the registry forgets it.
//! - `locations/<key>.json`: for one registry, which repositories hold which blobs, as
//!   seen by this tool's pushes and pulls. The source of automatic cross-repository mounts.
//! - `links/<key>.json`: how fast the link to one registry was, for `--compress auto`.
//! - `limits/<key>.json`: the largest request body the front end of one registry let
//!   through after refusing a larger one (HTTP 413), so the next run starts there.
//! - `choices/<key>.json`: what `--compress auto` chose for one image pushed to one
//!   repository, so running the same push again makes the same choice (same uploads to
//!   resume, same manifest).
//!
//! A session of a layer compressed on the fly is keyed by the uncompressed layer and the
//! compression recipe (its compressed digest is not known until the end) and carries the
//! compressed size of every block produced so far, so that the next run can map the
//! registry's offset back to a block and check that it recompresses to the same bytes.
//!
//! Upload URLs can carry signed state (distribution's `_state`), which is fine to keep,
//! and on some registries credentials, which are not: a URL that contains a known secret
//! or a credential-looking query parameter is never written (the upload code asks
//! `Repository::may_store` first; the secrets themselves stay in `registry::http`).

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::files;
use crate::image::digest::Digest;

/// Format version of the files; files of another version are ignored (and replaced).
const VERSION: u32 = 1;
/// Repositories remembered per blob: enough to find a readable one, small enough that
/// the file stays tiny for a registry with thousands of pushes.
const MAX_REPOSITORIES_PER_BLOB: usize = 4;
/// Blobs remembered per registry; the oldest are forgotten first.
const MAX_BLOBS_PER_REGISTRY: usize = 20_000;
/// State files are a few hundred bytes; anything bigger was not written by us.
const MAX_STATE_FILE: u64 = 4 << 20;

/// An upload session the registry may still hold, as saved between runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedSession {
    pub version: u32,
    /// The registry's API host (`registry-1.docker.io`, `127.0.0.1:5000`).
    pub registry: String,
    pub repository: String,
    pub digest: Digest,
    pub size: u64,
    /// Where the next request of this session goes (may carry signed upload state).
    pub location: String,
    /// Bytes the registry confirmed holding.
    pub offset: u64,
    /// Seconds since the Unix epoch, for humans and for pruning.
    pub updated: u64,
    /// For a layer compressed on the fly: `digest` and `size` are the uncompressed
    /// layer's, `offset` counts compressed bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression: Option<StreamState>,
}

/// What resuming a compressed upload needs beyond the session itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamState {
    /// `compress::Recipe::id()` of the stream.
    pub recipe: String,
    /// Compressed size of each block produced so far.
    pub frames: Vec<u64>,
}

/// How fast the link to a registry moved blob bytes, as last measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct LinkSpeed {
    version: u32,
    registry: String,
    /// Bytes per second on the wire.
    speed: f64,
    updated: u64,
}

/// The request body size a registry's front end accepted after refusing larger ones.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct BodyLimit {
    version: u32,
    registry: String,
    bytes: u64,
    updated: u64,
}

/// What `--compress auto` chose for one image and repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Choice {
    pub version: u32,
    pub registry: String,
    pub repository: String,
    /// The source image's manifest digest.
    pub image: Digest,
    /// `gzip`, or `none`.
    pub compress: String,
    pub reason: String,
    pub updated: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Locations {
    version: u32,
    registry: String,
    /// Digest -> repositories, most recent first.
    blobs: BTreeMap<Digest, Vec<String>>,
    /// Digest -> when last recorded, to forget the oldest when the file grows.
    #[serde(default)]
    seen: BTreeMap<Digest, u64>,
}

pub struct StateDir {
    root: PathBuf,
    /// Serializes read-modify-write of location files between this process's workers.
    locations_lock: Mutex<()>,
}

impl StateDir {
    /// The state directory belonging to the cache at `cache_dir`.
    pub fn for_cache(cache_dir: &Path) -> StateDir {
        StateDir {
            root: cache_dir.join("uploads"),
            locations_lock: Mutex::new(()),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The cache directory this state belongs to.
    pub fn cache_dir(&self) -> &Path {
        self.root.parent().unwrap_or(Path::new("."))
    }

    fn session_path(
        &self,
        registry: &str,
        repository: &str,
        digest: &Digest,
        recipe: Option<&str>,
    ) -> PathBuf {
        let mut key = format!("{registry}\n{repository}\n{digest}");
        if let Some(recipe) = recipe {
            key.push('\n');
            key.push_str(recipe);
        }
        self.root
            .join("sessions")
            .join(format!("{}.json", file_key(&key)))
    }

    fn locations_path(&self, registry: &str) -> PathBuf {
        self.root
            .join("locations")
            .join(format!("{}.json", file_key(registry)))
    }

    /// The saved session for this blob, if one was saved and still reads back whole.
    pub fn load_session(
        &self,
        registry: &str,
        repository: &str,
        digest: &Digest,
    ) -> Option<SavedSession> {
        let path = self.session_path(registry, repository, digest, None);
        let session: SavedSession = read_json(&path)?;
        let matches = session.version == VERSION
            && session.registry == registry
            && session.repository == repository
            && session.digest == *digest
            && session.compression.is_none();
        matches.then_some(session)
    }

    /// The saved session of `layer` being compressed with `recipe` on its way up.
    pub fn load_stream_session(
        &self,
        registry: &str,
        repository: &str,
        layer: &Digest,
        recipe: &str,
    ) -> Option<SavedSession> {
        let path = self.session_path(registry, repository, layer, Some(recipe));
        let session: SavedSession = read_json(&path)?;
        let matches = session.version == VERSION
            && session.registry == registry
            && session.repository == repository
            && session.digest == *layer
            && session
                .compression
                .as_ref()
                .is_some_and(|c| c.recipe == recipe);
        matches.then_some(session)
    }

    pub fn forget_stream_session(
        &self,
        registry: &str,
        repository: &str,
        layer: &Digest,
        recipe: &str,
    ) {
        let _ = fs::remove_file(self.session_path(registry, repository, layer, Some(recipe)));
    }

    pub fn save_session(&self, session: &SavedSession) -> io::Result<()> {
        let path = self.session_path(
            &session.registry,
            &session.repository,
            &session.digest,
            session.compression.as_ref().map(|c| c.recipe.as_str()),
        );
        let mut session = session.clone();
        session.version = VERSION;
        session.updated = now();
        store(&path, &to_json(&session))
    }

    pub fn forget_session(&self, registry: &str, repository: &str, digest: &Digest) {
        let _ = fs::remove_file(self.session_path(registry, repository, digest, None));
    }

    /// Every saved session, for reports and tests.
    #[cfg(test)]
    pub fn sessions(&self) -> Vec<SavedSession> {
        let Ok(entries) = fs::read_dir(self.root.join("sessions")) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
            .filter_map(|e| read_json(&e.path()))
            .collect()
    }

    /// Records that `repository` on `registry` holds these blobs.
    pub fn record_locations<'a>(
        &self,
        registry: &str,
        repository: &str,
        digests: impl IntoIterator<Item = &'a Digest>,
    ) -> io::Result<()> {
        let _one_writer = self
            .locations_lock
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let path = self.locations_path(registry);
        let mut locations: Locations = read_json(&path)
            .filter(|l: &Locations| l.version == VERSION && l.registry == registry)
            .unwrap_or_default();
        locations.version = VERSION;
        locations.registry = registry.to_string();
        let stamp = now();
        let mut changed = false;
        for digest in digests {
            let repositories = locations.blobs.entry(digest.clone()).or_default();
            if repositories.first().map(String::as_str) != Some(repository) {
                repositories.retain(|r| r != repository);
                repositories.insert(0, repository.to_string());
                repositories.truncate(MAX_REPOSITORIES_PER_BLOB);
                changed = true;
            }
            locations.seen.insert(digest.clone(), stamp);
        }
        if !changed {
            return Ok(());
        }
        while locations.blobs.len() > MAX_BLOBS_PER_REGISTRY {
            let Some(oldest) = locations
                .seen
                .iter()
                .min_by_key(|(_, when)| **when)
                .map(|(d, _)| d.clone())
            else {
                break;
            };
            locations.seen.remove(&oldest);
            locations.blobs.remove(&oldest);
        }
        store(&path, &to_json(&locations))
    }

    /// Remembers how fast the link to `registry` moved blob bytes.
    pub fn record_link_speed(&self, registry: &str, speed: f64) -> io::Result<()> {
        let record = LinkSpeed {
            version: VERSION,
            registry: registry.to_string(),
            speed,
            updated: now(),
        };
        store(&self.keyed("links", registry), &to_json(&record))
    }

    /// The link speed to `registry` measured within the last `max_age_seconds`.
    pub fn link_speed(&self, registry: &str, max_age_seconds: u64) -> Option<f64> {
        read_json(&self.keyed("links", registry))
            .filter(|l: &LinkSpeed| {
                l.version == VERSION
                    && l.registry == registry
                    && l.speed.is_finite()
                    && l.speed > 0.0
                    && now().saturating_sub(l.updated) <= max_age_seconds
            })
            .map(|l| l.speed)
    }

    /// Remembers that `registry`'s front end takes request bodies of `bytes`.
    pub fn record_body_limit(&self, registry: &str, bytes: u64) -> io::Result<()> {
        let record = BodyLimit {
            version: VERSION,
            registry: registry.to_string(),
            bytes,
            updated: now(),
        };
        store(&self.keyed("limits", registry), &to_json(&record))
    }

    /// The body size `registry`'s front end accepted, learnt within `max_age_seconds`.
    pub fn body_limit(&self, registry: &str, max_age_seconds: u64) -> Option<u64> {
        read_json(&self.keyed("limits", registry))
            .filter(|l: &BodyLimit| {
                l.version == VERSION
                    && l.registry == registry
                    && l.bytes > 0
                    && now().saturating_sub(l.updated) <= max_age_seconds
            })
            .map(|l| l.bytes)
    }

    fn choice_path(&self, registry: &str, repository: &str, image: &Digest) -> PathBuf {
        self.keyed("choices", &format!("{registry}\n{repository}\n{image}"))
    }

    pub fn record_choice(&self, choice: &Choice) -> io::Result<()> {
        let mut choice = choice.clone();
        choice.version = VERSION;
        choice.updated = now();
        let path = self.choice_path(&choice.registry, &choice.repository, &choice.image);
        store(&path, &to_json(&choice))
    }

    /// What `--compress auto` chose when this image was last pushed to this repository.
    pub fn choice(&self, registry: &str, repository: &str, image: &Digest) -> Option<Choice> {
        read_json(&self.choice_path(registry, repository, image)).filter(|c: &Choice| {
            c.version == VERSION
                && c.registry == registry
                && c.repository == repository
                && c.image == *image
        })
    }

    fn keyed(&self, kind: &str, key: &str) -> PathBuf {
        self.root.join(kind).join(format!("{}.json", file_key(key)))
    }

    /// Repositories on `registry` known to hold `digest`, most recent first.
    pub fn known_repositories(&self, registry: &str, digest: &Digest) -> Vec<String> {
        read_json(&self.locations_path(registry))
            .filter(|l: &Locations| l.version == VERSION && l.registry == registry)
            .and_then(|mut l| l.blobs.remove(digest))
            .unwrap_or_default()
    }
}

/// A stable, filesystem-safe name for a key: the first 32 hex digits of its sha256.
fn file_key(text: &str) -> String {
    Digest::of(text.as_bytes()).hex()[..32].to_string()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    let mut bytes = serde_json::to_vec_pretty(value).expect("state values always serialize");
    bytes.push(b'\n');
    bytes
}

/// Reads a state file; a missing, oversized or unparsable one (a crash before the
/// first rename, a file from an older version) reads as absent.
fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Option<T> {
    let file = File::open(path).ok()?;
    if file.metadata().ok()?.len() > MAX_STATE_FILE {
        return None;
    }
    // The length checked above can lie (a FIFO, a device): read no further than the cap.
    serde_json::from_reader(io::BufReader::new(io::Read::take(file, MAX_STATE_FILE))).ok()
}

/// Replaces `path` with `bytes` so that after a crash at any point it holds either the
/// old or the new content ([`files::write_atomic`]), the temporary file beside the target.
pub fn store(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    files::write_atomic(dir, path, bytes).map_err(io::Error::other)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(n: u8) -> Digest {
        Digest::of(&[n])
    }

    fn session(offset: u64) -> SavedSession {
        SavedSession {
            version: VERSION,
            registry: "r.example.com:5000".into(),
            repository: "team/app".into(),
            digest: digest(1),
            size: 100,
            location: "https://r.example.com:5000/v2/team/app/blobs/uploads/u?_state=abc".into(),
            offset,
            updated: 0,
            compression: None,
        }
    }

    #[test]
    fn sessions_round_trip_and_are_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::for_cache(dir.path());
        let saved = session(40);
        state.save_session(&saved).unwrap();
        state.save_session(&session(60)).unwrap();
        let loaded = state
            .load_session(&saved.registry, &saved.repository, &saved.digest)
            .unwrap();
        assert_eq!(loaded.offset, 60);
        assert_eq!(loaded.location, saved.location);
        assert!(
            state
                .load_session(&saved.registry, "other/repo", &saved.digest)
                .is_none()
        );
        assert_eq!(state.sessions().len(), 1);
        state.forget_session(&saved.registry, &saved.repository, &saved.digest);
        assert!(state.sessions().is_empty());
    }

    #[test]
    fn torn_or_foreign_state_files_read_as_absent() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::for_cache(dir.path());
        let saved = session(10);
        state.save_session(&saved).unwrap();
        let path = state.session_path(&saved.registry, &saved.repository, &saved.digest, None);
        fs::write(&path, b"{\"version\":1,\"regis").unwrap();
        assert!(
            state
                .load_session(&saved.registry, &saved.repository, &saved.digest)
                .is_none()
        );
        let mut future = session(10);
        future.version = VERSION + 1;
        fs::write(&path, to_json(&future)).unwrap();
        assert!(
            state
                .load_session(&saved.registry, &saved.repository, &saved.digest)
                .is_none()
        );
    }

    #[test]
    fn compressed_sessions_are_kept_apart_from_raw_ones() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::for_cache(dir.path());
        let raw = session(10);
        let mut stream = session(30);
        stream.compression = Some(StreamState {
            recipe: "gzip-3".into(),
            frames: vec![20, 15],
        });
        state.save_session(&raw).unwrap();
        state.save_session(&stream).unwrap();
        let (r, n, d) = (&raw.registry, &raw.repository, &raw.digest);
        assert_eq!(state.load_session(r, n, d).unwrap().offset, 10);
        let loaded = state.load_stream_session(r, n, d, "gzip-3").unwrap();
        assert_eq!(
            (loaded.offset, loaded.compression),
            (30, stream.compression)
        );
        assert!(state.load_stream_session(r, n, d, "zstd-3").is_none());
        state.forget_stream_session(r, n, d, "gzip-3");
        assert!(state.load_stream_session(r, n, d, "gzip-3").is_none());
        assert!(state.load_session(r, n, d).is_some());
    }

    #[test]
    fn body_limits_are_remembered_per_registry() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::for_cache(dir.path());
        assert_eq!(state.body_limit("r.example", 3600), None);
        state.record_body_limit("r.example", 16 << 20).unwrap();
        assert_eq!(state.body_limit("r.example", 3600), Some(16 << 20));
        assert_eq!(state.body_limit("other.example", 3600), None);
    }

    #[test]
    fn link_speeds_and_choices_are_remembered() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::for_cache(dir.path());
        assert_eq!(state.link_speed("reg", 3600), None);
        state.record_link_speed("reg", 2.5e6).unwrap();
        assert_eq!(state.link_speed("reg", 3600), Some(2.5e6));
        assert_eq!(state.link_speed("other", 3600), None);
        let choice = Choice {
            version: 0,
            registry: "reg".into(),
            repository: "team/app".into(),
            image: digest(4),
            compress: "gzip".into(),
            reason: "slow link".into(),
            updated: 0,
        };
        state.record_choice(&choice).unwrap();
        assert_eq!(
            state
                .choice("reg", "team/app", &digest(4))
                .unwrap()
                .compress,
            "gzip"
        );
        assert!(state.choice("reg", "team/other", &digest(4)).is_none());
    }

    #[test]
    fn stored_files_leave_no_temporary_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/state.json");
        store(&path, b"one").unwrap();
        store(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        let names: Vec<_> = fs::read_dir(path.parent().unwrap())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("state.json")]);
    }

    #[test]
    fn locations_keep_the_most_recent_repositories_first() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::for_cache(dir.path());
        let (a, b) = (digest(1), digest(2));
        state.record_locations("reg", "one", [&a, &b]).unwrap();
        state.record_locations("reg", "two", [&a]).unwrap();
        assert_eq!(state.known_repositories("reg", &a), ["two", "one"]);
        assert_eq!(state.known_repositories("reg", &b), ["one"]);
        assert!(state.known_repositories("other", &a).is_empty());
        for n in 0..10 {
            state
                .record_locations("reg", &format!("r{n}"), [&a])
                .unwrap();
        }
        assert_eq!(
            state.known_repositories("reg", &a).len(),
            MAX_REPOSITORIES_PER_BLOB
        );
        assert_eq!(state.known_repositories("reg", &a)[0], "r9");
    }
}
