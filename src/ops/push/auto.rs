//! `--compress auto`: whether compressing makes this push faster, from what is measured.
//!
//! Compression and upload overlap, so a compressed push of S uncompressed bytes takes
//! about max(S / C, r·S / L) where C is the compressor's speed (uncompressed bytes per
//! second with the pool's threads), r the compression ratio and L the link's speed; a raw
//! push takes S / L. Compressing pays when max(L / C, r) is clearly below 1: the link is
//! slower than the compressor and the layers shrink. The rule:
//!
//! 1. a registry known to reject uncompressed layers (quay.io) always gets gzip;
//! 2. under `SMALL` bytes of uncompressed layers: raw (a measurement would cost more than
//!    it could save);
//! 3. layers whose sample does not shrink below `GAIN` of its size: raw;
//! 4. otherwise gzip when max(L / C, r) ≤ `GAIN` (at least 10% faster), else raw; with
//!    the link speed unknown, gzip.
//!
//! `auto` only ever picks gzip: every client reads it, while zstd needs containerd 1.5,
//! Docker 23 or newer.

use std::time::Instant;

use crate::compress::{Algorithm, Compressor, Recipe, looks_compressed};
use crate::image::{Blob, BlobSource};
use crate::text::units::human_rate;

/// Expected time (compressed over raw) at or below which compression is chosen.
pub const GAIN: f64 = 0.9;
/// Uncompressed layer bytes below which `auto` does not measure and sends raw.
pub const SMALL: u64 = 4 << 20;

/// Hosts whose registries refuse uncompressed layers: Quay (quay.io and its regional
/// hosts) accepts only gzip (and zstd) layer types.
pub fn rejects_raw_layers(host: &str) -> bool {
    let name = host
        .rsplit_once(':')
        .filter(|(_, port)| port.chars().all(|c| c.is_ascii_digit()))
        .map_or(host, |(name, _)| name)
        .to_ascii_lowercase();
    name == "quay.io" || name.ends_with(".quay.io")
}

/// The compressor measured on a sample of the layers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Uncompressed bytes per second, all pool threads together.
    pub speed: f64,
    /// Compressed size over uncompressed size.
    pub ratio: f64,
    pub bytes: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub algorithm: Option<Algorithm>,
    pub reason: String,
}

fn decision(algorithm: Option<Algorithm>, reason: String) -> Decision {
    Decision { algorithm, reason }
}

/// The rule in the module docs. `link` is the link's speed in bytes per second, when
/// known.
pub fn decide(
    host: &str,
    compressible: u64,
    sample: Option<Sample>,
    link: Option<f64>,
) -> Decision {
    if rejects_raw_layers(host) {
        return decision(
            Some(Algorithm::Gzip),
            format!("{host} rejects uncompressed layers"),
        );
    }
    if compressible == 0 {
        return decision(None, "no uncompressed layers".to_string());
    }
    let sample = match sample {
        Some(sample) if compressible >= SMALL && sample.bytes > 0 => sample,
        _ => {
            return decision(
                None,
                "under 4 MiB of uncompressed layers: not worth measuring".to_string(),
            );
        }
    };
    let percent = |x: f64| format!("{:.0}%", x * 100.0);
    if sample.ratio > GAIN {
        return decision(
            None,
            format!(
                "the layers barely compress (a sample shrank to {})",
                percent(sample.ratio)
            ),
        );
    }
    let Some(link) = link.filter(|l| *l > 0.0) else {
        return decision(
            Some(Algorithm::Gzip),
            format!(
                "link speed unknown; the layers shrink to {}",
                percent(sample.ratio)
            ),
        );
    };
    let expected = (link / sample.speed).max(sample.ratio);
    let figures = format!(
        "link {}, gzip {} with a ratio of {}",
        human_rate(link),
        human_rate(sample.speed),
        percent(sample.ratio)
    );
    if expected <= GAIN {
        decision(
            Some(Algorithm::Gzip),
            format!(
                "{figures}: compressed, the push should take {} of the time",
                percent(expected)
            ),
        )
    } else {
        decision(
            None,
            format!("{figures}: compressing would not make the push faster"),
        )
    }
}

/// Compresses a sample of the largest layers, one block per pool thread taken from the
/// start of the layers (cheap to reach even in a gzipped archive), and measures speed and
/// ratio. Layers that turn out to be compressed already are left out. The sample takes no
/// more blocks than the pool's memory budget holds; fewer blocks than threads are scaled
/// up as if every thread had had one.
pub fn measure(
    compressor: &Compressor,
    source: &dyn BlobSource,
    layers: &[&Blob],
) -> std::io::Result<Option<Sample>> {
    let recipe = Recipe::of(Algorithm::Gzip);
    let wanted = compressor.threads();
    let mut blocks = Vec::new();
    let mut largest: Vec<&&Blob> = layers.iter().collect();
    largest.sort_by_key(|b| std::cmp::Reverse(b.size));
    'layers: for layer in largest {
        if blocks.len() >= wanted {
            break;
        }
        let mut reader = source.open_blob(layer, 0)?;
        let mut first = true;
        let mut left = layer.size;
        while blocks.len() < wanted && left > 0 {
            let length = left.min(recipe.block_size);
            let wait = blocks.is_empty();
            let Some(mut block) = compressor.memory().block(recipe, length, u64::MAX, wait) else {
                break 'layers;
            };
            std::io::Read::read_exact(&mut reader, &mut block.input)?;
            if first && looks_compressed(&block.input) {
                break;
            }
            first = false;
            left -= length;
            blocks.push(block);
        }
    }
    if blocks.is_empty() {
        return Ok(None);
    }
    let bytes: u64 = blocks.iter().map(|b| b.input.len() as u64).sum();
    let sampled = blocks.len();
    let started = Instant::now();
    let pending: Vec<_> = blocks
        .into_iter()
        .map(|block| compressor.submit(recipe, block))
        .collect();
    let mut out = 0u64;
    for frame in pending {
        out += frame
            .recv()
            .map_err(|_| std::io::Error::other("a compression thread stopped"))??
            .size();
    }
    let seconds = started.elapsed().as_secs_f64().max(1e-6);
    let every_thread = wanted as f64 / sampled as f64;
    Ok(Some(Sample {
        speed: bytes as f64 / seconds * every_thread,
        ratio: out as f64 / bytes as f64,
        bytes,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB: f64 = 1_000_000.0;
    const GB: u64 = 1 << 30;

    fn sample(speed_mb: f64, ratio: f64) -> Option<Sample> {
        Some(Sample {
            speed: speed_mb * MB,
            ratio,
            bytes: 8 << 20,
        })
    }

    #[test]
    fn quay_always_gets_gzip() {
        for host in ["quay.io", "QUAY.IO:443", "eu.quay.io"] {
            let d = decide(host, GB, sample(10.0, 0.99), Some(1000.0 * MB));
            assert_eq!(d.algorithm, Some(Algorithm::Gzip), "{host}");
        }
        assert!(!rejects_raw_layers("notquay.io"));
        assert!(!rejects_raw_layers("quay.io.example.com"));
    }

    #[test]
    fn a_slow_link_and_compressible_layers_compress() {
        let d = decide("r.example.com", GB, sample(100.0, 0.35), Some(2.0 * MB));
        assert_eq!(d.algorithm, Some(Algorithm::Gzip));
        assert_eq!(
            d.reason,
            "link 2.0 MB/s, gzip 100.0 MB/s with a ratio of 35%: compressed, the push should take 35% of the time"
        );
    }

    #[test]
    fn a_link_faster_than_the_compressor_stays_raw() {
        let d = decide("r.example.com", GB, sample(100.0, 0.35), Some(500.0 * MB));
        assert_eq!(d.algorithm, None);
        // Close to the compressor's speed the gain is under 10%: raw.
        let d = decide("r.example.com", GB, sample(100.0, 0.35), Some(95.0 * MB));
        assert_eq!(d.algorithm, None);
        let d = decide("r.example.com", GB, sample(100.0, 0.35), Some(85.0 * MB));
        assert_eq!(d.algorithm, Some(Algorithm::Gzip));
    }

    #[test]
    fn incompressible_or_tiny_layers_stay_raw() {
        let d = decide("r.example.com", GB, sample(100.0, 0.97), Some(MB));
        assert_eq!(d.algorithm, None);
        assert!(d.reason.contains("barely compress"), "{}", d.reason);
        let d = decide("r.example.com", 1 << 20, sample(100.0, 0.3), Some(MB));
        assert_eq!(d.algorithm, None);
        let d = decide("r.example.com", 0, None, None);
        assert_eq!(d.algorithm, None);
    }

    #[test]
    fn an_unknown_link_compresses_what_shrinks() {
        let d = decide("r.example.com", GB, sample(50.0, 0.4), None);
        assert_eq!(d.algorithm, Some(Algorithm::Gzip));
    }
}
