//! What one push compresses: the recipe (from `--compress`, or measured by `auto`), the
//! uncompressed layers it applies to, and what the cache already knows of their compressed
//! forms. When every compressed form is known, the manifests of the push are known before
//! anything is compressed: `--skip-existing` can compare them with the target, and a re-run
//! pushes exactly the manifest of the first run.

use std::collections::{BTreeMap, BTreeSet};

use super::auto::{self, Decision};
use crate::cache::Cache;
use crate::cache::state::{Choice, StateDir};
use crate::cache::variants::Variant;
use crate::compress::manifest::{self, Compressed, Rewritten};
use crate::compress::{Algorithm, Compressor, Mode, Recipe, is_uncompressed_layer};
use crate::error::{Error, Result};
use crate::image::digest::Digest;
use crate::image::{Artifact, Blob, BlobSource};
use crate::registry::Repository;
use crate::ui::progress::Reporter;

/// A remembered link speed is trusted this long (links change: another network, another
/// office), after which `auto` measures again.
pub const LINK_MEMORY_SECONDS: u64 = 24 * 3600;
/// Bytes sent to measure a link `auto` knows nothing about.
pub const PROBE_BYTES: usize = 4 << 20;

pub struct Plan {
    pub mode: Mode,
    /// `None`: nothing is compressed in this push.
    pub recipe: Option<Recipe>,
    /// Why `auto` chose what it chose.
    pub reason: Option<String>,
    /// The uncompressed layers to compress.
    pub layers: BTreeSet<Digest>,
    /// Compressed forms the cache already knows, by layer.
    pub known: BTreeMap<Digest, Variant>,
    pub compressor: Option<Compressor>,
}

impl Plan {
    pub fn none(mode: Mode) -> Plan {
        Plan {
            mode,
            recipe: None,
            reason: None,
            layers: BTreeSet::new(),
            known: BTreeMap::new(),
            compressor: None,
        }
    }

    pub fn compresses(&self, blob: &Blob) -> bool {
        self.recipe.is_some() && self.layers.contains(&blob.digest)
    }

    pub fn is_active(&self) -> bool {
        self.recipe.is_some() && !self.layers.is_empty()
    }

    /// The manifests this push will write, when every layer's compressed form is known
    /// already; `None` otherwise (they are only known once the layers are compressed).
    pub fn predicted(&self, artifact: &Artifact) -> Result<Option<Rewritten>> {
        if !self.is_active() || self.layers.iter().any(|l| !self.known.contains_key(l)) {
            return Ok(None);
        }
        let layers: BTreeMap<Digest, Compressed> = self
            .known
            .iter()
            .map(|(layer, variant)| {
                (
                    layer.clone(),
                    Compressed {
                        digest: variant.digest.clone(),
                        size: variant.size,
                        algorithm: variant.algorithm,
                    },
                )
            })
            .collect();
        manifest::rewrite(&artifact.manifests, &layers).map(Some)
    }
}

/// What deciding the plan needs.
pub struct Inputs<'a> {
    pub artifact: &'a Artifact,
    pub source: &'a dyn BlobSource,
    pub repository: &'a Repository,
    pub state: Option<&'a StateDir>,
    pub cache: Option<&'a Cache>,
    pub reporter: &'a Reporter,
    pub mode: Mode,
    pub threads: usize,
    pub memory_limit: u64,
}

pub fn prepare(inputs: &Inputs) -> Result<Plan> {
    let layers: Vec<&Blob> = inputs
        .artifact
        .blobs
        .iter()
        .filter(|b| is_uncompressed_layer(b))
        .collect();
    if inputs.mode == Mode::None || layers.is_empty() {
        return Ok(Plan::none(inputs.mode));
    }
    let compressor = Compressor::with_spill_dir(
        inputs.threads,
        inputs.memory_limit,
        inputs.state.map(StateDir::root),
    );
    let (algorithm, reason) = match inputs.mode {
        Mode::Use(algorithm) => (Some(algorithm), None),
        Mode::Auto => {
            let decision = choose(inputs, &layers, &compressor)?;
            (decision.algorithm, Some(decision.reason))
        }
        Mode::None => (None, None),
    };
    let Some(algorithm) = algorithm else {
        return Ok(Plan {
            reason,
            ..Plan::none(inputs.mode)
        });
    };
    let recipe = Recipe::of(algorithm);
    let known = layers
        .iter()
        .filter_map(|layer| {
            let variant = inputs.cache?.variant(&layer.digest, &recipe)?;
            (variant.layer_size == layer.size).then(|| (layer.digest.clone(), variant))
        })
        .collect();
    Ok(Plan {
        mode: inputs.mode,
        recipe: Some(recipe),
        reason,
        layers: layers.iter().map(|l| l.digest.clone()).collect(),
        known,
        compressor: Some(compressor),
    })
}

/// `auto`'s choice: the one made for this image and repository before, else measured now
/// (and remembered, so the next run of the same push decides the same way).
fn choose(inputs: &Inputs, layers: &[&Blob], compressor: &Compressor) -> Result<Decision> {
    let repository = inputs.repository;
    let (host, name) = (repository.host(), repository.name());
    let image = &inputs.artifact.root().digest;
    if let Some(choice) = inputs.state.and_then(|s| s.choice(host, name, image)) {
        let algorithm = match choice.compress.as_str() {
            "gzip" => Some(Algorithm::Gzip),
            "zstd" => Some(Algorithm::Zstd),
            _ => None,
        };
        return Ok(Decision {
            algorithm,
            reason: format!("as chosen for this image before: {}", choice.reason),
        });
    }
    let compressible: u64 = layers.iter().map(|l| l.size).sum();
    let sample = if auto::rejects_raw_layers(host) || compressible < auto::SMALL {
        None
    } else {
        auto::measure(compressor, inputs.source, layers).map_err(|e| {
            Error::input(format!(
                "cannot read the layers to measure compression: {e}"
            ))
        })?
    };
    let link = match sample {
        Some(sample) if sample.ratio <= auto::GAIN => link_speed(inputs),
        _ => None,
    };
    let decision = auto::decide(host, compressible, sample, link);
    if let Some(state) = inputs.state {
        let choice = Choice {
            version: 0,
            registry: host.to_string(),
            repository: name.to_string(),
            image: image.clone(),
            compress: decision
                .algorithm
                .map_or("none", Algorithm::name)
                .to_string(),
            reason: decision.reason.clone(),
            updated: 0,
        };
        if let Err(e) = state.record_choice(&choice) {
            inputs
                .reporter
                .detail(&format!("cannot remember the compression choice: {e}"));
        }
    }
    Ok(decision)
}

/// The link speed to the registry: remembered from an earlier push, or measured now by
/// sending a few MB into an upload session that is then abandoned.
fn link_speed(inputs: &Inputs) -> Option<f64> {
    let host = inputs.repository.host();
    if let Some(speed) = inputs
        .state
        .and_then(|s| s.link_speed(host, LINK_MEMORY_SECONDS))
    {
        return Some(speed);
    }
    let probe = probe_bytes(PROBE_BYTES);
    match inputs.repository.measure_upload_speed(&probe) {
        Ok(Some(speed)) => {
            inputs.reporter.detail(&format!(
                "measured the link to {host}: {}",
                crate::text::units::human_rate(speed)
            ));
            if let Some(state) = inputs.state {
                let _ = state.record_link_speed(host, speed);
            }
            Some(speed)
        }
        Ok(None) => None,
        Err(e) => {
            inputs
                .reporter
                .detail(&format!("cannot measure the link to {host}: {e}"));
            None
        }
    }
}

/// Bytes that nothing on the way can compress (xorshift noise), so the probe measures the
/// link and not a proxy's compression.
fn probe_bytes(length: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut bytes = Vec::with_capacity(length + 8);
    while bytes.len() < length {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        bytes.extend_from_slice(&x.to_le_bytes());
    }
    bytes.truncate(length);
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::{RawManifest, media};

    fn artifact() -> (Artifact, Digest) {
        let layer = Digest::of(b"layer");
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media::OCI_MANIFEST,
            "config": {"mediaType": media::OCI_CONFIG, "digest": Digest::of(b"c"), "size": 1},
            "layers": [{"mediaType": media::OCI_LAYER, "digest": layer, "size": 5}],
        });
        let artifact = Artifact {
            blobs: vec![Blob {
                digest: layer.clone(),
                size: 5,
                media_type: media::OCI_LAYER.into(),
            }],
            manifests: vec![RawManifest::new(
                media::OCI_MANIFEST,
                serde_json::to_vec(&manifest).unwrap(),
            )],
            notes: Vec::new(),
        };
        (artifact, layer)
    }

    #[test]
    fn manifests_are_predicted_only_when_every_compressed_form_is_known() {
        let (artifact, layer) = artifact();
        let recipe = Recipe::of(Algorithm::Gzip);
        let mut plan = Plan {
            recipe: Some(recipe),
            layers: [layer.clone()].into(),
            ..Plan::none(Mode::Use(Algorithm::Gzip))
        };
        assert!(plan.predicted(&artifact).unwrap().is_none());
        plan.known.insert(
            layer.clone(),
            Variant::new(&layer, 5, &recipe, Digest::of(b"gz"), vec![25]),
        );
        let predicted = plan.predicted(&artifact).unwrap().unwrap();
        assert_ne!(predicted.manifests[0].digest, artifact.root().digest);
        assert!(
            Plan::none(Mode::None)
                .predicted(&artifact)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn probe_bytes_do_not_compress() {
        let probe = probe_bytes(1 << 20);
        let frame = Recipe::of(Algorithm::Gzip).encode_block(&probe).unwrap();
        assert!(frame.len() as f64 > probe.len() as f64 * 0.99);
    }
}
