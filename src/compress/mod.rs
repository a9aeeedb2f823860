//! Layer compression on the fly. An uncompressed layer is cut into fixed-size blocks that
//! the [`Compressor`] pool compresses in parallel into independent gzip members or zstd
//! frames, concatenated in order: a valid multi-member gzip (or multi-frame zstd) stream
//! that docker, containerd, skopeo and crane read. Each block is compressed by itself with
//! a fixed level, so the output depends only on the input bytes and the [`Recipe`]: a
//! retry, a resume and a second run produce the same bytes, hence the same digest, and an
//! offset in the compressed stream maps back to the one block to recompress ([`Frames`]).
//!
//! `pool` runs the compression threads, `stream` turns a source into ordered frames and a
//! reader over them, `manifest` rebuilds manifests around compressed layers. Whether to
//! compress at all is push policy (`ops::push::plan`).

pub mod budget;
pub mod manifest;
pub mod pool;
pub mod spill;
pub mod stream;

use std::io::{self, Write};

use crate::error::{Error, Result};
use crate::image::{Blob, media};

pub use pool::{Compressor, MeterReading};
pub use stream::{
    CompressedReader, FrameStream, Frames, RecompressingSource, is_already_compressed,
};

/// Uncompressed bytes per block. Large enough that the per-member overhead (18 bytes of
/// gzip header and trailer) and the lost context at block starts cost well under 1%,
/// small enough that a resume recompresses little and two threads get work from any
/// layer over 8 MiB.
pub const BLOCK_SIZE: u64 = 4 << 20;
/// miniz_oxide's level 2: on layer-like content (libraries, binaries, documentation) the
/// size skopeo's gzip gives (40%), at about 90 MB/s per core, 1.8 times level 3's speed
/// for 4% more bytes and 4 times `gzip -6`'s speed for 9% more bytes.
pub const GZIP_LEVEL: i32 = 2;
/// zstd's own default level.
pub const ZSTD_LEVEL: i32 = 3;
/// Names the encoder whose output a recipe promises. Bump it when a dependency update
/// changes the compressed bytes (the golden-digest tests below fail when that happens),
/// so that mappings and upload sessions made by the old encoder are not trusted.
const GZIP_ENCODER: &str = "miniz_oxide-0.9";
const ZSTD_ENCODER: &str = "zstd-1.5.7";

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Algorithm {
    Gzip,
    Zstd,
}

impl Algorithm {
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Gzip => "gzip",
            Algorithm::Zstd => "zstd",
        }
    }

    /// The layer media type in a manifest of the given kind (OCI or Docker schema 2).
    pub fn media_type(self, oci: bool) -> &'static str {
        match (self, oci) {
            (Algorithm::Gzip, true) => media::OCI_LAYER_GZIP,
            (Algorithm::Gzip, false) => media::DOCKER_LAYER_GZIP,
            (Algorithm::Zstd, _) => media::OCI_LAYER_ZSTD,
        }
    }
}

/// Everything that decides the compressed bytes of a layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recipe {
    pub algorithm: Algorithm,
    pub level: i32,
    pub block_size: u64,
}

impl Recipe {
    pub fn of(algorithm: Algorithm) -> Recipe {
        Recipe {
            algorithm,
            level: match algorithm {
                Algorithm::Gzip => GZIP_LEVEL,
                Algorithm::Zstd => ZSTD_LEVEL,
            },
            block_size: BLOCK_SIZE,
        }
    }

    /// A stable name for the recipe and the encoder behind it: the key of cache mappings
    /// and saved upload sessions. Equal ids promise equal output.
    pub fn id(&self) -> String {
        let encoder = match self.algorithm {
            Algorithm::Gzip => GZIP_ENCODER,
            Algorithm::Zstd => ZSTD_ENCODER,
        };
        format!(
            "{}-{}-{}-{encoder}",
            self.algorithm.name(),
            self.level,
            self.block_size
        )
    }

    /// How many blocks (and so frames) a layer of `size` bytes has; an empty layer still
    /// has one, since an empty file is not a valid gzip stream.
    pub fn blocks(&self, size: u64) -> u64 {
        size.div_ceil(self.block_size).max(1)
    }

    /// Compresses one block into one self-contained gzip member or zstd frame. The gzip
    /// header carries no name and no time, so nothing but the input changes the output.
    pub fn encode_block(&self, input: &[u8]) -> io::Result<Vec<u8>> {
        let bound = budget::frame_bound(input.len() as u64) as usize;
        let mut frame = Vec::with_capacity(bound);
        let overflow = self.encode_into(input, &mut frame, bound, &mut Encoder::default(), None)?;
        debug_assert!(
            overflow.is_none(),
            "a frame within its bound never overflows"
        );
        Ok(frame)
    }

    /// [`Recipe::encode_block`] into `frame` (emptied first), with `encoder`'s state reused
    /// from earlier blocks: the same bytes whatever the encoder compressed before. At most
    /// `room` bytes go to `frame` (whose capacity must reach [`budget::frame_bound`]); a gzip
    /// member longer than that continues in a spill file in `spill_dir`, returned with its
    /// length. zstd is always given the bound, since its output is made in one piece.
    pub fn encode_into(
        &self,
        input: &[u8],
        frame: &mut Vec<u8>,
        room: usize,
        encoder: &mut Encoder,
        spill_dir: Option<&std::path::Path>,
    ) -> io::Result<Option<Overflow>> {
        frame.clear();
        match self.algorithm {
            Algorithm::Gzip => {
                let sink = FrameSink {
                    memory: frame,
                    room,
                    overflow: None,
                    spill_dir,
                };
                let mut gzip = flate2::GzBuilder::new().mtime(0).write(
                    sink,
                    flate2::Compression::new(self.level.clamp(0, 9) as u32),
                );
                gzip.write_all(input)?;
                Ok(gzip.finish()?.overflow)
            }
            Algorithm::Zstd => {
                let zstd = encoder.zstd(self.level)?;
                let bound = zstd::zstd_safe::compress_bound(input.len());
                frame.reserve(bound);
                zstd.compress_to_buffer(input, frame)?;
                Ok(None)
            }
        }
    }
}

/// The part of a frame beyond the memory its block was given: in a spill file, from byte
/// 0, `len` bytes long.
pub struct Overflow {
    pub spill: spill::Spill,
    pub len: u64,
}

/// Where an encoder writes a frame: the block's memory up to `room`, then a spill file.
struct FrameSink<'a> {
    memory: &'a mut Vec<u8>,
    room: usize,
    overflow: Option<Overflow>,
    spill_dir: Option<&'a std::path::Path>,
}

impl Write for FrameSink<'_> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let free = self.room.saturating_sub(self.memory.len());
        if free > 0 {
            let n = free.min(bytes.len());
            self.memory.extend_from_slice(&bytes[..n]);
            return Ok(n);
        }
        let overflow = match &mut self.overflow {
            Some(overflow) => overflow,
            None => self.overflow.insert(Overflow {
                spill: spill::Spill::create(self.spill_dir)?,
                len: 0,
            }),
        };
        overflow.spill.write_at(bytes, overflow.len)?;
        overflow.len += bytes.len() as u64;
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// An encoder's state kept between blocks. A zstd context is worth keeping: a fresh one
/// allocates its tables (1.3 MB measured after a 4 MiB block) and faults them in again for
/// every block.
#[derive(Default)]
pub struct Encoder {
    zstd: Option<(i32, zstd::bulk::Compressor<'static>)>,
}

impl Encoder {
    /// Whether this encoder holds state made for `recipe`.
    fn suits(&self, recipe: Recipe) -> bool {
        matches!(&self.zstd, Some((level, _))
            if recipe.algorithm == Algorithm::Zstd && *level == recipe.level)
    }

    /// Whether this encoder holds state worth keeping.
    fn holds_state(&self) -> bool {
        self.zstd.is_some()
    }

    fn zstd(&mut self, level: i32) -> io::Result<&mut zstd::bulk::Compressor<'static>> {
        if self.zstd.as_ref().is_none_or(|(kept, _)| *kept != level) {
            self.zstd = Some((level, zstd::bulk::Compressor::new(level)?));
        }
        Ok(&mut self.zstd.as_mut().expect("made above").1)
    }
}

/// What `--compress` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Decide from measurements (see `auto`).
    Auto,
    Use(Algorithm),
    None,
}

impl Mode {
    pub fn parse(text: &str) -> Result<Mode> {
        match text.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(Mode::Auto),
            "gzip" => Ok(Mode::Use(Algorithm::Gzip)),
            "zstd" => Ok(Mode::Use(Algorithm::Zstd)),
            "none" | "no" | "off" => Ok(Mode::None),
            _ => Err(Error::usage(format!(
                "--compress {text:?} is not one of auto, gzip, zstd, none"
            ))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Mode::Auto => "auto",
            Mode::Use(algorithm) => algorithm.name(),
            Mode::None => "none",
        }
    }
}

/// Whether a blob's media type says it is an uncompressed layer (the only kind this tool
/// compresses: configs, compressed layers and foreign or artifact blobs keep their bytes).
pub fn is_uncompressed_layer(blob: &Blob) -> bool {
    blob.media_type == media::DOCKER_LAYER || blob.media_type == media::OCI_LAYER
}

/// Whether a layer's first bytes are a compressed stream despite an uncompressed media
/// type (gzip, zstd, xz, bzip2): such a layer is sent as it is, never compressed twice.
pub fn looks_compressed(head: &[u8]) -> bool {
    head.starts_with(&[0x1f, 0x8b])
        || head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd])
        || head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00])
        || head.starts_with(b"BZh")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::digest::Digest;
    use std::io::Read;

    /// Layer-like input: text with repetition and a binary-ish tail, fixed forever.
    fn sample(size: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(size);
        let mut x: u32 = 12345;
        while out.len() < size {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let line = format!(
                "line {} of a file with value {:08x}\n",
                out.len() / 40,
                x >> 8
            );
            out.extend_from_slice(line.as_bytes());
            out.push((x >> 24) as u8);
        }
        out.truncate(size);
        out
    }

    // These digests pin the encoders' output. If a dependency update changes them, bump
    // GZIP_ENCODER / ZSTD_ENCODER (old mappings and sessions then stop being trusted) and
    // update the digests here.
    #[test]
    fn gzip_output_is_pinned() {
        let frame = Recipe::of(Algorithm::Gzip)
            .encode_block(&sample(300_000))
            .unwrap();
        assert_eq!(
            Digest::of(&frame).as_str(),
            "sha256:67272cc7420a92ed3ea5e2278d05252315ddcfedb851cd27d0bcedd9fbc5001f",
            "gzip encoder output changed; bump GZIP_ENCODER"
        );
    }

    #[test]
    fn zstd_output_is_pinned() {
        let frame = Recipe::of(Algorithm::Zstd)
            .encode_block(&sample(300_000))
            .unwrap();
        assert_eq!(
            Digest::of(&frame).as_str(),
            "sha256:18023636ea54883a28f00128be55121f90736f1790b5eb79c9e88ba1d9e8762e",
            "zstd encoder output changed; bump ZSTD_ENCODER"
        );
    }

    #[test]
    fn a_reused_encoder_and_frame_buffer_give_the_bytes_of_fresh_ones() {
        let blocks = [
            sample(300_000),
            sample(BLOCK_SIZE as usize),
            vec![0; 10],
            Vec::new(),
        ];
        for algorithm in [Algorithm::Gzip, Algorithm::Zstd] {
            let mut encoder = Encoder::default();
            let mut frame = Vec::new();
            for level in [1, Recipe::of(algorithm).level] {
                let recipe = Recipe {
                    level,
                    ..Recipe::of(algorithm)
                };
                for block in &blocks {
                    let room = budget::frame_bound(block.len() as u64) as usize;
                    frame.reserve(room);
                    let overflow = recipe
                        .encode_into(block, &mut frame, room, &mut encoder, None)
                        .unwrap();
                    assert!(overflow.is_none());
                    assert!(frame == recipe.encode_block(block).unwrap(), "{recipe:?}");
                }
            }
        }
    }

    #[test]
    fn a_zstd_context_fits_the_state_the_budget_counts() {
        let mut encoder = Encoder::default();
        let recipe = Recipe::of(Algorithm::Zstd);
        let mut frame = Vec::new();
        recipe
            .encode_into(
                &sample(BLOCK_SIZE as usize),
                &mut frame,
                0,
                &mut encoder,
                None,
            )
            .unwrap();
        let context = encoder.zstd(recipe.level).unwrap().context_mut().sizeof() as u64;
        assert!(context <= budget::ZSTD_STATE, "{context} bytes");
    }

    #[test]
    fn a_gzip_member_larger_than_its_room_continues_in_a_spill_file_with_the_same_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let recipe = Recipe::of(Algorithm::Gzip);
        let input = sample(1 << 20);
        let whole = recipe.encode_block(&input).unwrap();
        for room in [0, 1, 1000, whole.len() - 1, whole.len()] {
            let mut frame = Vec::with_capacity(whole.len() + 100);
            let overflow = recipe
                .encode_into(
                    &input,
                    &mut frame,
                    room,
                    &mut Encoder::default(),
                    Some(dir.path()),
                )
                .unwrap();
            assert_eq!(frame.len(), room.min(whole.len()));
            let mut joined = frame.clone();
            if let Some(overflow) = overflow {
                overflow
                    .spill
                    .reader(0, overflow.len)
                    .read_to_end(&mut joined)
                    .unwrap();
            }
            assert!(joined == whole, "room {room}");
        }
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "spill files are unlinked"
        );
    }

    #[test]
    fn concatenated_blocks_decode_as_one_stream() {
        let input = sample(9 << 20);
        for algorithm in [Algorithm::Gzip, Algorithm::Zstd] {
            let recipe = Recipe::of(algorithm);
            let mut stream = Vec::new();
            for block in input.chunks(recipe.block_size as usize) {
                stream.extend(recipe.encode_block(block).unwrap());
            }
            let mut decoded = Vec::new();
            match algorithm {
                Algorithm::Gzip => flate2::read::MultiGzDecoder::new(&stream[..])
                    .read_to_end(&mut decoded)
                    .unwrap(),
                Algorithm::Zstd => zstd::stream::read::Decoder::new(&stream[..])
                    .unwrap()
                    .read_to_end(&mut decoded)
                    .unwrap(),
            };
            assert!(decoded == input, "{algorithm:?} round trip");
            assert!(stream.len() < input.len() / 2, "{algorithm:?} compresses");
        }
    }

    #[test]
    fn an_empty_layer_is_one_valid_frame() {
        assert_eq!(Recipe::of(Algorithm::Gzip).blocks(0), 1);
        assert_eq!(Recipe::of(Algorithm::Gzip).blocks(BLOCK_SIZE), 1);
        assert_eq!(Recipe::of(Algorithm::Gzip).blocks(BLOCK_SIZE + 1), 2);
        let frame = Recipe::of(Algorithm::Gzip).encode_block(&[]).unwrap();
        let mut decoded = Vec::new();
        flate2::read::GzDecoder::new(&frame[..])
            .read_to_end(&mut decoded)
            .unwrap();
        assert!(decoded.is_empty());
    }

    #[test]
    fn compressed_heads_are_recognised() {
        assert!(looks_compressed(&[0x1f, 0x8b, 8, 0]));
        assert!(looks_compressed(&[0x28, 0xb5, 0x2f, 0xfd, 0]));
        assert!(looks_compressed(b"\xfd7zXZ\x00rest"));
        assert!(looks_compressed(b"BZh91AY"));
        assert!(!looks_compressed(b"srv/\0\0\0\0"));
        assert!(!looks_compressed(&[]));
    }

    #[test]
    fn modes_parse() {
        assert_eq!(Mode::parse("AUTO").unwrap(), Mode::Auto);
        assert_eq!(Mode::parse("gzip").unwrap(), Mode::Use(Algorithm::Gzip));
        assert_eq!(Mode::parse("zstd").unwrap(), Mode::Use(Algorithm::Zstd));
        assert_eq!(Mode::parse("none").unwrap(), Mode::None);
        assert!(Mode::parse("brotli").is_err());
        assert_eq!(
            Recipe::of(Algorithm::Gzip).id(),
            "gzip-2-4194304-miniz_oxide-0.9"
        );
    }
}
