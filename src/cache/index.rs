//! The cache's `index.json`: which images the cache holds and under which names. Pure
//! data and decisions (naming, replacing, matching a user's query); reading and writing
//! the file, under the lock, is `Cache`'s job.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::image::digest::Digest;
use crate::image::reference::Reference;
use crate::image::{ANNOTATION_REF_NAME, Platform, media};
use crate::text::sanitize::sanitize;

/// When the image entered the cache (RFC 3339, UTC), shown by `list`.
pub const ANNOTATION_ADDED: &str = "vnd.docker-image-pusher.added";

/// One `index.json` entry: an image (or image index) and the name it is cached under.
/// Fields this tool does not know, written by other tools sharing the layout, are kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "crate::image::nullable::or_empty"
    )]
    pub annotations: BTreeMap<String, String>,
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}

impl Entry {
    pub fn new(
        media_type: &str,
        digest: Digest,
        size: u64,
        platform: Option<Platform>,
        name: Option<&Reference>,
        added: &str,
    ) -> Entry {
        let mut annotations = BTreeMap::new();
        if let Some(name) = name {
            annotations.insert(ANNOTATION_REF_NAME.to_string(), name.to_string());
        }
        annotations.insert(ANNOTATION_ADDED.to_string(), added.to_string());
        Entry {
            media_type: media_type.to_string(),
            digest,
            size,
            platform,
            annotations,
            other: BTreeMap::new(),
        }
    }

    /// The full reference the image is cached under, if it has one.
    pub fn name(&self) -> Option<&str> {
        self.annotations
            .get(ANNOTATION_REF_NAME)
            .map(String::as_str)
    }

    pub fn added(&self) -> Option<&str> {
        self.annotations.get(ANNOTATION_ADDED).map(String::as_str)
    }

    pub fn descriptor(&self) -> crate::image::Descriptor {
        crate::image::Descriptor {
            media_type: self.media_type.clone(),
            digest: self.digest.clone(),
            size: self.size,
            platform: self.platform.clone(),
            annotations: Some(self.annotations.clone()),
            urls: None,
        }
    }

    /// `name@digest`, or the digest alone for an unnamed image: how messages refer to it.
    pub fn label(&self) -> String {
        match self.name() {
            Some(name) => name.to_string(),
            None => self.digest.to_string(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CacheIndex {
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    #[serde(rename = "mediaType", default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(default, deserialize_with = "crate::image::nullable::or_empty")]
    pub manifests: Vec<Entry>,
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}

impl Default for CacheIndex {
    fn default() -> Self {
        CacheIndex {
            schema_version: 2,
            media_type: Some(media::OCI_INDEX.to_string()),
            manifests: Vec::new(),
            other: BTreeMap::new(),
        }
    }
}

impl CacheIndex {
    pub fn parse(bytes: &[u8]) -> Result<CacheIndex> {
        let index: CacheIndex = serde_json::from_slice(bytes).map_err(|e| {
            Error::input(format!(
                "the cache's index.json is not a valid OCI index: {e}"
            ))
            .hint("the cache is damaged; move it away and pull or extract the images again")
        })?;
        if index.schema_version != 2 {
            return Err(Error::input(format!(
                "the cache's index.json has schemaVersion {}, expected 2",
                index.schema_version
            )));
        }
        Ok(index)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec_pretty(self).expect("an index always serializes");
        bytes.push(b'\n');
        bytes
    }

    /// Records an image. A name moves to the new image, as a tag does in a registry; an
    /// unnamed image is recorded once per digest.
    pub fn add(&mut self, entry: Entry) {
        match entry.name() {
            Some(name) => self.manifests.retain(|e| e.name() != Some(name)),
            None => self
                .manifests
                .retain(|e| e.name().is_some() || e.digest != entry.digest),
        }
        self.manifests.push(entry);
    }

    /// Removes the given entries (by position, as returned by [`CacheIndex::find`]).
    pub fn remove(&mut self, positions: &[usize]) -> Vec<Entry> {
        let mut removed = Vec::new();
        let mut index = 0;
        self.manifests.retain(|entry| {
            let keep = !positions.contains(&index);
            if !keep {
                removed.push(entry.clone());
            }
            index += 1;
            keep
        });
        removed
    }

    /// Entries matching what a user typed: a digest, `name@digest`, a full or familiar
    /// reference (`busybox` means `docker.io/library/busybox:latest`), or a bare tag.
    pub fn find(&self, query: &str) -> Vec<usize> {
        (0..self.manifests.len())
            .filter(|&i| matches_query(&self.manifests[i], query))
            .collect()
    }

    /// Exactly one image (a digest shared by several names counts as one), or an error
    /// that lists the candidates, or the cached names nearest to `query`. A short name
    /// (`postgres:13`) that names no image exactly finds one from any registry
    /// ([`super::lookup`]).
    pub fn find_one(&self, query: &str, cache: &std::path::Path) -> Result<usize> {
        let mut found = self.find(query);
        if found.is_empty() {
            found = super::lookup::by_short_name(self, query);
        }
        let distinct: std::collections::BTreeSet<&Digest> =
            found.iter().map(|&i| &self.manifests[i].digest).collect();
        match (found.first(), distinct.len()) {
            (Some(&first), 1) => Ok(first),
            (None, _) => {
                let near: Vec<String> = super::lookup::closest(self, query)
                    .iter()
                    .map(|name| sanitize(name))
                    .collect();
                let hint = match near.as_slice() {
                    [] => {
                        "pull or extract it first; `docker-image-pusher list` shows what is cached"
                            .to_string()
                    }
                    near => format!(
                        "the nearest cached: {}; `docker-image-pusher list` shows them all",
                        near.join(", ")
                    ),
                };
                Err(Error::input(format!(
                    "no image \"{query}\" in the cache {}",
                    cache.display()
                ))
                .hint(hint))
            }
            _ => {
                let names: Vec<String> = found
                    .iter()
                    .map(|&i| sanitize(&self.manifests[i].label()))
                    .collect();
                Err(Error::usage(format!(
                    "\"{query}\" matches several cached images: {}",
                    names.join(", ")
                ))
                .hint("name the image by its full reference or digest"))
            }
        }
    }
}

fn matches_query(entry: &Entry, query: &str) -> bool {
    if let Ok(digest) = Digest::parse(query) {
        return entry.digest == digest;
    }
    let name = entry.name().and_then(|n| Reference::parse(n).ok());
    if let Some((repository, digest)) = query.rsplit_once('@') {
        return Digest::parse(digest).is_ok_and(|d| d == entry.digest)
            && name.is_some_and(|n| same_repository(&n, repository));
    }
    let Some(name) = name else {
        return false;
    };
    // A single word is a tag (`1.0`) or a familiar name (`busybox`); accept either.
    let bare_word = !query.contains([':', '/']);
    if bare_word && name.tag() == Some(query) {
        return true;
    }
    // An image cached by digest alone answers to its digest, never to `latest`.
    let tag = match (name.tag(), name.digest()) {
        (Some(tag), _) => Some(tag),
        (None, None) => Some("latest"),
        (None, Some(_)) => None,
    };
    Reference::parse(query).is_ok_and(|q| {
        q.repository_reference() == name.repository_reference() && tag == Some(q.tag_or_latest())
    })
}

fn same_repository(name: &Reference, query: &str) -> bool {
    Reference::parse(query).is_ok_and(|q| q.repository_reference() == name.repository_reference())
}

/// The name a cached image gets from what an archive calls it: a full reference, or
/// `None` for names that are only a tag (OCI archives often name images `latest`).
pub fn cache_name(archive_name: &str) -> Option<Reference> {
    if !archive_name.contains([':', '/', '@']) {
        return None;
    }
    let reference = Reference::parse(archive_name).ok()?;
    if reference.tag().is_none() && reference.digest().is_none() {
        return reference.with_tag("latest").ok();
    }
    Some(reference)
}

/// Formats Unix seconds as RFC 3339 UTC (`2024-03-15T10:20:30Z`), with the civil-date
/// algorithm from Howard Hinnant's `chrono`-compatible date library.
pub fn rfc3339(unix_seconds: u64) -> String {
    let days = (unix_seconds / 86_400) as i64;
    let secs = unix_seconds % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

pub fn now_rfc3339() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    rfc3339(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: Option<&str>, content: &[u8]) -> Entry {
        let name = name.map(|n| Reference::parse(n).unwrap());
        Entry::new(
            media::OCI_MANIFEST,
            Digest::of(content),
            content.len() as u64,
            None,
            name.as_ref(),
            "2024-01-01T00:00:00Z",
        )
    }

    #[test]
    fn a_name_moves_to_the_newest_image_like_a_tag() {
        let mut index = CacheIndex::default();
        index.add(entry(Some("busybox:1"), b"old"));
        index.add(entry(Some("busybox:2"), b"old"));
        index.add(entry(Some("busybox:1"), b"new"));
        assert_eq!(index.manifests.len(), 2);
        let one = index.find_one("busybox:1", "c".as_ref()).unwrap();
        assert_eq!(index.manifests[one].digest, Digest::of(b"new"));
        index.add(entry(None, b"x"));
        index.add(entry(None, b"x"));
        assert_eq!(index.manifests.len(), 3);
    }

    #[test]
    fn queries_match_familiar_full_digest_and_tag_forms() {
        let mut index = CacheIndex::default();
        index.add(entry(Some("docker.io/library/busybox:latest"), b"a"));
        index.add(entry(Some("127.0.0.1:5000/team/app:1.0"), b"b"));
        let digest = Digest::of(b"b").to_string();
        for query in [
            "127.0.0.1:5000/team/app:1.0",
            digest.as_str(),
            &format!("127.0.0.1:5000/team/app@{digest}"),
            "1.0",
        ] {
            assert_eq!(index.find(query), vec![1], "{query}");
        }
        for query in ["busybox", "busybox:latest", "docker.io/library/busybox"] {
            assert_eq!(index.find(query), vec![0], "{query}");
        }
        assert!(index.find("alpine").is_empty());
        assert!(index.find_one("alpine", "c".as_ref()).is_err());
    }

    #[test]
    fn the_same_image_under_two_names_is_one_match() {
        let mut index = CacheIndex::default();
        index.add(entry(Some("r.example.com/a:1"), b"same"));
        index.add(entry(Some("r.example.com/b:1"), b"same"));
        assert!(
            index
                .find_one(&Digest::of(b"same").to_string(), "c".as_ref())
                .is_ok()
        );
        index.add(entry(Some("r.example.com/c:1"), b"other"));
        assert!(index.find_one("1", "c".as_ref()).is_err());
    }

    #[test]
    fn archive_names_become_full_references_and_bare_tags_none() {
        assert_eq!(
            cache_name("busybox:latest").unwrap().to_string(),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(
            cache_name("127.0.0.1:5000/a/b").unwrap().to_string(),
            "127.0.0.1:5000/a/b:latest"
        );
        assert!(cache_name("latest").is_none());
        assert!(cache_name("1.0").is_none());
        assert!(cache_name("Not Valid:x").is_none());
    }

    #[test]
    fn unknown_fields_survive_a_rewrite() {
        let text = br#"{"schemaVersion":2,"annotations":{"k":"v"},"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","size":0,"artifactType":"x"}]}"#;
        let index = CacheIndex::parse(text).unwrap();
        let again = CacheIndex::parse(&index.to_bytes()).unwrap();
        assert_eq!(again, index);
        assert_eq!(again.manifests[0].other["artifactType"], "x");
        assert!(again.other.contains_key("annotations"));
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_710_498_030), "2024-03-15T10:20:30Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(4_102_444_799), "2099-12-31T23:59:59Z");
    }
}
