//! Finding a cached image by a short name, as `docker run postgres:13` would: when no image
//! has the exact name, `postgres:13` finds `registry.local:5000/library/postgres:13`, from
//! whatever registry it was pulled. A name that finds nothing is answered with the cached
//! names closest to it.

use super::index::{CacheIndex, Entry};
use crate::image::reference::Reference;

/// How many near names an error lists.
const MAX_SUGGESTIONS: usize = 3;
/// Entries and characters compared when looking for near names: the index comes from disk
/// and may be huge, and a typo is found within the first few dozen characters anyway.
const MAX_COMPARED_ENTRIES: usize = 10_000;
const MAX_COMPARED_CHARS: usize = 96;

/// Entries whose repository path and tag (or digest) match `query` on any registry, with
/// docker.io's rule that `postgres` is `library/postgres`. Empty when `query` names a
/// registry itself: then only the exact name will do.
pub fn by_short_name(index: &CacheIndex, query: &str) -> Vec<usize> {
    if names_registry(query) {
        return Vec::new();
    }
    let Ok(wanted) = Reference::parse(query) else {
        return Vec::new();
    };
    (0..index.manifests.len())
        .filter(|&i| same_short_name(&index.manifests[i], &wanted))
        .collect()
}

/// Whether the first path component is a registry host, by the rule docker applies:
/// it has a dot or a port, or is `localhost`.
fn names_registry(query: &str) -> bool {
    query
        .split_once('/')
        .is_some_and(|(first, _)| first.contains(['.', ':']) || first == "localhost")
}

fn same_short_name(entry: &Entry, wanted: &Reference) -> bool {
    let Some(name) = entry.name().and_then(|n| Reference::parse(n).ok()) else {
        return false;
    };
    if short_path(name.repository()) != short_path(wanted.repository()) {
        return false;
    }
    match wanted.digest() {
        Some(digest) => entry.digest.as_str() == digest,
        // An image cached by digest alone answers to its digest, never to `latest`.
        None => match (name.tag(), name.digest()) {
            (Some(tag), _) => tag == wanted.tag_or_latest(),
            (None, None) => wanted.tag_or_latest() == "latest",
            (None, Some(_)) => false,
        },
    }
}

/// A repository path without docker.io's `library/`: `library/postgres` and `postgres` are
/// one name.
fn short_path(repository: &str) -> &str {
    repository.strip_prefix("library/").unwrap_or(repository)
}

/// Up to three cached names nearest to `query`, nearest first: a few edits away from it
/// (with or without their registry), or ending in the same repository name.
pub fn closest(index: &CacheIndex, query: &str) -> Vec<String> {
    let query = clipped(query);
    let query_name = last_name(&query);
    let mut scored: Vec<(usize, String)> = index
        .manifests
        .iter()
        .take(MAX_COMPARED_ENTRIES)
        .filter_map(Entry::name)
        .filter_map(|name| {
            let full = clipped(name);
            let short = clipped(&short_form(name));
            let distance = edit_distance(&query, &full).min(edit_distance(&query, &short));
            let near = distance <= query.len() / 3 + 2 || last_name(&short) == query_name;
            near.then(|| (distance, name.to_string()))
        })
        .collect();
    scored.sort();
    scored.dedup_by(|a, b| a.1 == b.1);
    scored
        .into_iter()
        .take(MAX_SUGGESTIONS)
        .map(|(_, name)| name)
        .collect()
}

/// `registry/library/postgres:13` as a user would type it: `postgres:13`.
fn short_form(name: &str) -> String {
    match Reference::parse(name) {
        Ok(r) => {
            let path = short_path(r.repository());
            match (r.tag(), r.digest()) {
                (Some(tag), _) => format!("{path}:{tag}"),
                (None, Some(digest)) => format!("{path}@{digest}"),
                (None, None) => path.to_string(),
            }
        }
        Err(_) => name.to_string(),
    }
}

/// The repository's last component without tag or digest: `postgres` for `a/postgres:13`.
fn last_name(name: &str) -> &str {
    let name = name.split('@').next().unwrap_or(name);
    let last = name.rsplit('/').next().unwrap_or(name);
    last.split(':').next().unwrap_or(last)
}

fn clipped(text: &str) -> String {
    text.chars().take(MAX_COMPARED_CHARS).collect()
}

/// Levenshtein distance over characters, two rows of memory.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        current[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::digest::Digest;

    fn index(names: &[&str]) -> CacheIndex {
        let mut index = CacheIndex::parse(br#"{"schemaVersion":2,"manifests":[]}"#).unwrap();
        for (n, name) in names.iter().enumerate() {
            let digest = Digest::of(format!("image {n}").as_bytes());
            index.manifests.push(Entry::new(
                crate::image::media::OCI_MANIFEST,
                digest,
                100,
                None,
                Some(&Reference::parse(name).unwrap()),
                "2024-01-01T00:00:00Z",
            ));
        }
        index
    }

    #[test]
    fn a_short_name_matches_any_registry_with_the_library_rule() {
        let index = index(&[
            "registry.local:5000/library/postgres:13",
            "registry.local:5000/library/postgres:14",
            "ghcr.io/team/postgres:13",
            "127.0.0.1:5000/team/app",
        ]);
        assert_eq!(by_short_name(&index, "postgres:13"), vec![0]);
        assert_eq!(by_short_name(&index, "library/postgres:13"), vec![0]);
        assert_eq!(by_short_name(&index, "team/postgres:13"), vec![2]);
        assert_eq!(by_short_name(&index, "team/app"), vec![3]);
        assert!(by_short_name(&index, "postgres").is_empty());
        // A name with a registry in it means that registry.
        assert!(by_short_name(&index, "docker.io/library/postgres:13").is_empty());
        assert!(by_short_name(&index, "localhost/team/app").is_empty());
    }

    #[test]
    fn a_digest_query_matches_only_that_image() {
        let index = index(&["r.example:5000/library/postgres:13"]);
        let digest = index.manifests[0].digest.to_string();
        assert_eq!(
            by_short_name(&index, &format!("postgres@{digest}")),
            vec![0]
        );
        let other = Digest::of(b"other").to_string();
        assert!(by_short_name(&index, &format!("postgres@{other}")).is_empty());
    }

    #[test]
    fn near_names_come_nearest_first_and_few() {
        let index = index(&[
            "registry.local:5000/library/postgres:13",
            "registry.local:5000/library/redis:7",
            "ghcr.io/team/postgres:15",
            "quay.io/x/postgres:16",
            "docker.io/library/postgres:17",
            "example.com/unrelated/thing:1",
        ]);
        let near = closest(&index, "postgres:14");
        assert_eq!(near.len(), MAX_SUGGESTIONS, "{near:?}");
        // One edit away, with or without their registries, before the rest.
        let mut nearest = near[..2].to_vec();
        nearest.sort();
        assert_eq!(
            nearest,
            [
                "docker.io/library/postgres:17",
                "registry.local:5000/library/postgres:13"
            ]
        );
        assert!(near.iter().all(|n| n.contains("postgres")), "{near:?}");
        assert!(closest(&index, "zzzzzzzzzzzz").is_empty());
    }

    #[test]
    fn edit_distance_counts_single_character_edits() {
        assert_eq!(edit_distance("postgres:13", "postgres:14"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
