//! `list`: the cached images as a table or JSON.
//!
//! The flags of the subcommand, then running it.

use argh::FromArgs;

use super::settings::{self, Env};
use crate::cache::reach::reach;
use crate::cache::{Cache, Entry};
use crate::error::Result;
use crate::image::{Platform, media};
use crate::text::plural::count;
use crate::text::sanitize::sanitize;
use crate::ui::progress::human_bytes;

#[derive(FromArgs, Debug, Default)]
/// Show the images in the local cache (aliases: l, ls).
#[argh(
    subcommand,
    help_triggers("-h", "--help", "help"),
    name = "list",
    example = "docker-image-pusher list",
    example = "docker-image-pusher list --json --cache-dir /mnt/usb/cache",
    example = "docker-image-pusher list --verbose",
    example = "docker-image-pusher list --blobs > far-side-blobs.txt",
    note = "Environment: DOCKER_PUSHER_CACHE_DIR.",
    error_code(2, "usage: the command line is wrong"),
    error_code(3, "input: the cache is unreadable")
)]
pub struct ListArgs {
    /// the cache directory (default .cache, or DOCKER_PUSHER_CACHE_DIR)
    #[argh(option)]
    pub cache_dir: Option<String>,

    /// print a JSON array instead of the table
    #[argh(switch)]
    pub json: bool,

    /// also show each image's platforms and every blob it uses (digest, size, media type)
    #[argh(switch, short = 'v')]
    pub verbose: bool,

    /// print the digest of every blob in the cache, one a line (for save --exclude-from)
    #[argh(switch)]
    pub blobs: bool,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Listed {
    /// Full reference, or `null` for an image cached by digest only.
    pub reference: Option<String>,
    pub digest: String,
    pub media_type: String,
    pub platforms: Vec<String>,
    pub layers: usize,
    /// Bytes of every blob the image uses (manifests, configs, layers).
    pub size: u64,
    pub added: Option<String>,
    /// Empty when the image is whole; otherwise what is wrong with it.
    pub problem: Option<String>,
    /// With `--verbose`: every blob the image uses, manifests first, each before what it
    /// names.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blobs: Option<Vec<ListedBlob>>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ListedBlob {
    pub digest: String,
    pub size: u64,
    pub media_type: String,
    /// The cache lacks it.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub missing: bool,
}

pub fn run_list(args: ListArgs, env: Env) -> Result<()> {
    let cache = Cache::new(settings::cache_dir_setting(args.cache_dir.as_deref(), env));
    if args.blobs {
        return super::write_stdout(&blob_list(&cache)?);
    }
    let index = cache.read_index()?;
    let listed: Vec<Listed> = index
        .manifests
        .iter()
        .map(|e| describe(&cache, e, args.verbose))
        .collect();
    let text = if args.json {
        let json = serde_json::to_string_pretty(&listed).unwrap_or_default();
        format!("{}\n", crate::text::sanitize::inert_json(&json))
    } else if args.verbose {
        details(&listed)
    } else {
        table(&listed)
    };
    super::write_stdout(&text)
}

/// Every complete blob file in the cache, by digest. Only what the cache holds counts:
/// partial downloads live elsewhere, and a file whose name is no digest is skipped.
fn blob_list(cache: &Cache) -> Result<String> {
    if !cache.exists() {
        return Err(crate::error::Error::input(format!(
            "{} is not a cache",
            cache.root().display()
        ))
        .hint("name the cache with --cache-dir"));
    }
    let mut text = String::new();
    for blob in cache.stored_blobs()? {
        if let Some(digest) = blob.digest {
            text.push_str(digest.as_str());
            text.push('\n');
        }
    }
    Ok(text)
}

fn describe(cache: &Cache, entry: &Entry, verbose: bool) -> Listed {
    let mut listed = Listed {
        reference: entry.name().map(str::to_string),
        digest: entry.digest.to_string(),
        media_type: entry.media_type.clone(),
        platforms: entry.platform.iter().map(Platform::to_string).collect(),
        layers: 0,
        size: 0,
        added: entry.added().map(str::to_string),
        problem: None,
        blobs: None,
    };
    match reach(cache, &entry.descriptor()) {
        Ok(reached) => {
            listed.blobs = verbose.then(|| {
                (reached.in_order.iter())
                    .map(|d| ListedBlob {
                        digest: d.digest.to_string(),
                        size: d.size,
                        media_type: d.media_type.clone(),
                        missing: reached.missing.contains(&d.digest),
                    })
                    .collect()
            });
            listed.platforms = reached.platforms.iter().map(Platform::to_string).collect();
            listed.layers = reached.layers;
            listed.size = reached.size();
            if !reached.is_complete() {
                let missing = reached.missing.len() as u64;
                listed.problem = Some(format!("lacks {}", count(missing, "blob")));
            }
        }
        Err(e) => listed.problem = Some(e.message),
    }
    listed
}

/// The table `list` prints: one row per name, columns as wide as their widest cell.
/// Names, platforms and dates come from files anyone could have written into the cache,
/// so every cell is sanitized (which also bounds the column widths).
pub fn table(listed: &[Listed]) -> String {
    let mut rows = vec![[
        "REFERENCE".to_string(),
        "DIGEST".to_string(),
        "PLATFORM".to_string(),
        "LAYERS".to_string(),
        "SIZE".to_string(),
        "ADDED".to_string(),
    ]];
    for item in listed {
        let platform = match (&item.problem, item.platforms.as_slice()) {
            (Some(_), _) => "damaged or incomplete".to_string(),
            (None, [one]) if !media::is_index(&item.media_type) => one.clone(),
            (None, platforms) => platforms.join(","),
        };
        rows.push(
            [
                item.reference
                    .clone()
                    .unwrap_or_else(|| "<none>".to_string()),
                item.digest.chars().take("sha256:".len() + 12).collect(),
                platform,
                item.layers.to_string(),
                human_bytes(item.size),
                item.added
                    .as_deref()
                    .map(|a| a.replacen('T', " ", 1).trim_end_matches('Z').to_string() + " UTC")
                    .unwrap_or_else(|| "-".to_string()),
            ]
            .map(|cell| sanitize(&cell)),
        );
    }
    let widths: Vec<usize> = (0..6)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            // By hand: `format!`'s width is limited to u16 and panics beyond it.
            .map(|(cell, width)| {
                let pad = width.saturating_sub(cell.chars().count());
                format!("{cell}{}", " ".repeat(pad))
            })
            .collect();
        out.push_str(cells.join("   ").trim_end());
        out.push('\n');
    }
    out
}

/// `list --verbose`: the table, then each image with its platforms and blobs.
pub fn details(listed: &[Listed]) -> String {
    let mut out = table(listed);
    for item in listed {
        let name = item.reference.as_deref().unwrap_or("<none>");
        out.push_str(&format!("\n{}  {}\n", sanitize(name), item.digest));
        let platforms = match item.platforms.as_slice() {
            [] => "none".to_string(),
            platforms => platforms.join(", "),
        };
        out.push_str(&format!("  platforms: {}\n", sanitize(&platforms)));
        if let Some(problem) = &item.problem {
            out.push_str(&format!("  problem: {}\n", sanitize(problem)));
        }
        let blobs = item.blobs.as_deref().unwrap_or_default();
        out.push_str(&format!("  {}:\n", count(blobs.len() as u64, "blob")));
        for blob in blobs {
            out.push_str(&format!(
                "    {}  {:>10}  {}{}\n",
                blob.digest,
                human_bytes(blob.size),
                sanitize(&blob.media_type),
                if blob.missing { "  (missing)" } else { "" }
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_aligns_columns_and_names_unnamed_images() {
        let item = |reference: Option<&str>, platforms: &[&str]| Listed {
            reference: reference.map(str::to_string),
            digest: format!("sha256:{}", "ab".repeat(32)),
            media_type: media::OCI_MANIFEST.to_string(),
            platforms: platforms.iter().map(|p| p.to_string()).collect(),
            layers: 2,
            size: 1_500_000,
            added: Some("2024-03-15T10:20:30Z".to_string()),
            problem: None,
            blobs: None,
        };
        let text = table(&[
            item(Some("docker.io/library/busybox:latest"), &["linux/amd64"]),
            item(None, &["linux/arm64"]),
        ]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("REFERENCE"));
        assert!(lines[1].contains("sha256:abababababab "), "{text}");
        assert!(lines[1].contains("linux/amd64"));
        assert!(lines[1].contains("1.5 MB"));
        assert!(lines[1].ends_with("2024-03-15 10:20:30 UTC"));
        assert!(lines[2].starts_with("<none>"));
        let column = |line: &str| line.find("sha256:").unwrap();
        assert_eq!(column(lines[1]), column(lines[2]));
    }

    #[test]
    fn hostile_cache_fields_are_printed_inert_and_cut() {
        let long_arch = format!("linux/{}", "a".repeat(70_000));
        let item = Listed {
            reference: Some("evil:1\x1b]0;pwned\x07\x1b[2J".to_string()),
            digest: format!("sha256:{}", "ab".repeat(32)),
            media_type: media::OCI_MANIFEST.to_string(),
            platforms: vec![long_arch],
            layers: 1,
            size: 10,
            added: Some("2024-03-15T10:20:30Z\u{9b}31m".to_string()),
            problem: None,
            blobs: None,
        };
        let text = table(&[item]);
        assert!(
            !text.chars().any(|c| c.is_control() && c != '\n'),
            "{text:?}"
        );
        assert!(text.contains("evil:1"), "{text}");
        assert!(text.lines().all(|l| l.chars().count() < 1_000), "{text}");
        assert!(text.contains('…'), "{text}");
    }
}
