//! Which stage bounded a transfer, judged from where the workers' time went. Every figure
//! is measured: the upload path times its body reads (the source), the gaps between them
//! (the network taking the bytes) and its waits for compressed data; the compression
//! meter times the waits for the compression threads; what is left of the workers' time
//! went to requests without bytes moving, that is to the registry's answers. The verdict
//! is the largest of the shares it is shown with, so it cannot contradict them.

/// Seconds of the workers' time, summed over workers.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct WorkerTime {
    /// Time workers held a blob, start to end.
    pub busy: f64,
    /// Between body reads: the network taking the bytes just read.
    pub network: f64,
    /// Inside body reads of plain data: the source (disk, archive, cache).
    pub source: f64,
    /// Waiting for compressed data: the source read and compressed on the way.
    pub compressed: f64,
    /// Waiting for the compression threads (the compression meter's starved time).
    pub compressor: f64,
}

/// A stage of the pipeline that can bound a transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    Network,
    Registry,
    Source,
    Compression,
    /// Too little was measured to tell.
    None,
}

impl Stage {
    pub fn name(self) -> &'static str {
        match self {
            Stage::Network => "network",
            Stage::Registry => "registry",
            Stage::Source => "source",
            Stage::Compression => "compression",
            Stage::None => "none",
        }
    }

    /// What the time in this stage was spent on, for the report.
    pub fn meaning(self) -> &'static str {
        match self {
            Stage::Network => "sending bytes",
            Stage::Registry => "waiting for the registry's answers",
            Stage::Source => "reading the source",
            Stage::Compression => "waiting for the compression threads",
            Stage::None => "nothing measured",
        }
    }
}

/// The bounding stage, its share of the workers' time, and every stage's share.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Verdict {
    pub stage: Stage,
    pub share: f64,
    /// Network, registry, source, compression: the shares the verdict is chosen from.
    pub shares: [(Stage, f64); 4],
    /// The workers' time the shares divide.
    pub seconds: f64,
}

/// Worker time below this is too little to judge (a push of a few small blobs).
const TOO_LITTLE: f64 = 0.05;

/// The stage that took most of the workers' time. Waiting for compressed data counts as
/// compression only as far as the producers waited for the compression threads; the rest
/// of it was spent reading the source that feeds them.
pub fn verdict(time: &WorkerTime) -> Verdict {
    let clean = |x: f64| if x.is_finite() { x.max(0.0) } else { 0.0 };
    let network = clean(time.network);
    let compressed = clean(time.compressed);
    let compression = clean(time.compressor).min(compressed);
    let source = clean(time.source) + (compressed - compression);
    let moving = network + source + compression;
    let registry = (clean(time.busy) - moving).max(0.0);
    let seconds = moving + registry;
    let times = [
        (Stage::Network, network),
        (Stage::Registry, registry),
        (Stage::Source, source),
        (Stage::Compression, compression),
    ];
    let shares = times.map(|(stage, t)| (stage, if seconds > 0.0 { t / seconds } else { 0.0 }));
    if seconds < TOO_LITTLE {
        return Verdict {
            stage: Stage::None,
            share: 0.0,
            shares,
            seconds,
        };
    }
    // The first of equal shares wins: the order above is the order of likelihood.
    let (stage, share) =
        shares.iter().copied().fold(
            (Stage::None, -1.0),
            |best, s| if s.1 > best.1 { s } else { best },
        );
    Verdict {
        stage,
        share,
        shares,
        seconds,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn time(busy: f64, network: f64, source: f64, compressed: f64, compressor: f64) -> WorkerTime {
        WorkerTime {
            busy,
            network,
            source,
            compressed,
            compressor,
        }
    }

    #[test]
    fn the_stage_that_took_most_of_the_time_bounds_the_run() {
        let v = verdict(&time(10.0, 7.0, 1.0, 0.0, 0.0));
        assert_eq!(v.stage, Stage::Network);
        assert!((v.share - 0.7).abs() < 1e-9);
        assert_eq!(v.shares[1].0, Stage::Registry);
        assert!((v.shares[1].1 - 0.2).abs() < 1e-9, "the rest: answers");
        let sum: f64 = v.shares.iter().map(|s| s.1).sum();
        assert!((sum - 1.0).abs() < 1e-9);
        assert_eq!(
            verdict(&time(10.0, 1.0, 1.0, 0.0, 0.0)).stage,
            Stage::Registry
        );
        assert_eq!(
            verdict(&time(10.0, 1.0, 8.0, 0.0, 0.0)).stage,
            Stage::Source
        );
    }

    #[test]
    fn waiting_for_compressed_data_is_compression_only_while_the_threads_were_waited_for() {
        // Producers waited for the threads the whole time: the compressors bound it.
        let v = verdict(&time(10.0, 2.0, 0.0, 8.0, 8.0));
        assert_eq!((v.stage, v.shares[3].1), (Stage::Compression, 0.8));
        // Producers hardly waited for the threads: reading the source fed them slowly.
        let v = verdict(&time(10.0, 2.0, 0.0, 8.0, 0.5));
        assert_eq!(v.stage, Stage::Source);
        assert!((v.shares[3].1 - 0.05).abs() < 1e-9);
        // Starved time beyond the workers' own wait (producers working ahead) is capped.
        let v = verdict(&time(10.0, 7.0, 0.0, 1.0, 30.0));
        assert_eq!(v.stage, Stage::Network);
        assert!((v.shares[3].1 - 0.1).abs() < 1e-9);
    }

    #[test]
    fn too_little_time_or_nonsense_figures_give_no_verdict() {
        assert_eq!(verdict(&WorkerTime::default()).stage, Stage::None);
        assert_eq!(verdict(&WorkerTime::default()).share, 0.0);
        let v = verdict(&time(f64::NAN, f64::INFINITY, -1.0, 0.0, 0.0));
        assert_eq!(v.stage, Stage::None);
        // Timers that overlap the busy time a little never give negative shares.
        let v = verdict(&time(1.0, 0.8, 0.4, 0.0, 0.0));
        assert!(v.shares.iter().all(|s| s.1 >= 0.0));
        assert_eq!(v.stage, Stage::Network);
    }
}
