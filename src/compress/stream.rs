//! From a layer's uncompressed bytes to its compressed stream: [`FrameStream`] reads blocks
//! from the source, hands them to the pool a few at a time and yields the frames in order;
//! [`CompressedReader`] turns that into bytes from any offset of the compressed stream,
//! recompressing only from the frame that holds the offset; [`Frames`] remembers each
//! frame's compressed size, which is what maps an offset back to its block.

use std::collections::VecDeque;
use std::io::{self, Read};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use crossbeam_channel::Receiver;

use super::budget::frame_bound;
use super::pool::Encoded;
use super::{Algorithm, Compressor, Recipe, looks_compressed};
use crate::image::digest::{Digest, DigestMismatch, Hasher};
use crate::image::{Blob, BlobSource};

/// Compressed size of each frame of a layer, in order, as far as known.
#[derive(Debug, Default)]
pub struct Frames {
    sizes: Mutex<Vec<u64>>,
}

impl Frames {
    pub fn new(sizes: Vec<u64>) -> Frames {
        Frames {
            sizes: Mutex::new(sizes),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<u64>> {
        self.sizes.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn sizes(&self) -> Vec<u64> {
        self.lock().clone()
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Compressed bytes of all known frames.
    pub fn total(&self) -> u64 {
        self.lock().iter().sum()
    }

    /// The frame that holds compressed byte `offset`, and where that frame starts. `None`
    /// when the known frames end at or before `offset`.
    pub fn locate(&self, offset: u64) -> Option<(u64, u64)> {
        let mut start = 0;
        for (index, &size) in self.lock().iter().enumerate() {
            if offset < start + size {
                return Some((index as u64, start));
            }
            start += size;
        }
        None
    }

    /// Records the size of frame `index` as produced. A frame produced again must come out
    /// the size it had: anything else means the encoder is not the one that made the
    /// recorded stream, and continuing would corrupt the upload.
    pub fn record(&self, index: u64, size: u64) -> io::Result<()> {
        let mut sizes = self.lock();
        let index = index as usize;
        match sizes.get(index) {
            Some(&known) if known == size => Ok(()),
            Some(&known) => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "block {index} compressed to {size} bytes, but to {known} bytes before; the compressor's output changed"
                ),
            )),
            None if index == sizes.len() => {
                sizes.push(size);
                Ok(())
            }
            None => Err(io::Error::other(format!(
                "block {index} compressed before block {}",
                sizes.len()
            ))),
        }
    }
}

/// Carried in the `io::Error` of a layer whose first bytes are already a compressed stream
/// (despite its media type): it is to be sent as it is.
#[derive(Debug)]
pub struct AlreadyCompressed;

impl std::fmt::Display for AlreadyCompressed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the layer is compressed already")
    }
}

impl std::error::Error for AlreadyCompressed {}

pub fn is_already_compressed(error: &io::Error) -> bool {
    error
        .get_ref()
        .is_some_and(|inner| inner.is::<AlreadyCompressed>())
}

/// One compressed frame: block `index` of the layer.
#[derive(Debug)]
pub struct Frame {
    pub index: u64,
    /// Uncompressed bytes the frame holds.
    pub input_len: u64,
    /// Its bytes, in memory from the pool's budget (given back when the frame is dropped)
    /// and, if it outgrew that, on disk.
    pub data: Encoded,
}

/// A block in the pool: its index, uncompressed length and where the frame will arrive.
type Pending = (u64, u64, Receiver<io::Result<Encoded>>);

/// The frames of a layer in order, from a given block on, with a bounded number of blocks
/// in the pool at once (one per thread, and one more so a thread never waits for the
/// reader), each holding memory from the pool's budget: however many layers are
/// compressed at once, their blocks and frames stay within it, and while the caller is
/// busy with one frame the pool works on the next ones.
pub struct FrameStream {
    compressor: Compressor,
    recipe: Recipe,
    source: Box<dyn Read + Send>,
    size: u64,
    next_block: u64,
    blocks: u64,
    pending: VecDeque<Pending>,
    lookahead: usize,
    /// Checks the uncompressed bytes against the layer's digest when reading from the
    /// first block: a corrupt source must fail before the compressed blob is committed.
    verify: Option<(Digest, Hasher)>,
    /// An error met while queueing ahead, reported by the next call.
    deferred: Option<io::Error>,
    /// The size of the last frame, which sizes the memory given to the next.
    last_frame: Option<u64>,
    failed: bool,
}

impl FrameStream {
    /// Frames of the layer `layer` from block `first` on; `source` reads the layer from the
    /// start of that block.
    pub fn new(
        compressor: &Compressor,
        recipe: Recipe,
        source: Box<dyn Read + Send>,
        layer: &Blob,
        first: u64,
    ) -> FrameStream {
        FrameStream {
            compressor: compressor.clone(),
            recipe,
            source,
            size: layer.size,
            next_block: first,
            blocks: recipe.blocks(layer.size),
            pending: VecDeque::new(),
            lookahead: compressor.threads() + 1,
            verify: (first == 0).then(|| (layer.digest.clone(), Hasher::new())),
            deferred: None,
            last_frame: None,
            failed: false,
        }
    }

    /// Opens `layer` in `source` at block `first` and streams its frames from there.
    pub fn open(
        compressor: &Compressor,
        recipe: Recipe,
        source: &dyn BlobSource,
        layer: &Blob,
        first: u64,
    ) -> io::Result<FrameStream> {
        let reader = source.open_blob(layer, (first * recipe.block_size).min(layer.size))?;
        Ok(FrameStream::new(compressor, recipe, reader, layer, first))
    }

    /// Reads and queues blocks up to the lookahead, as far as memory allows. `holding`
    /// says the caller holds a frame of this stream.
    fn fill(&mut self, holding: bool) -> io::Result<()> {
        while self.pending.len() < self.lookahead && self.next_block < self.blocks {
            let start = self.next_block * self.recipe.block_size;
            let length = self.recipe.block_size.min(self.size - start);
            // Wait for memory only with nothing in the pool or in hand: a stream holding
            // memory could otherwise wait for memory that only its own frames hold.
            let wait = self.pending.is_empty() && !holding;
            let room = frame_room(self.recipe, length, self.last_frame);
            let Some(mut memory) = self
                .compressor
                .memory()
                .block(self.recipe, length, room, wait)
            else {
                break;
            };
            let block = &mut memory.input;
            self.source.read_exact(block).map_err(|e| {
                if e.kind() == io::ErrorKind::UnexpectedEof {
                    io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("the layer ended before its {} bytes", self.size),
                    )
                } else {
                    e
                }
            })?;
            if let Some((expected, hasher)) = &mut self.verify {
                if hasher.position() == 0 && looks_compressed(block) {
                    return Err(io::Error::other(AlreadyCompressed));
                }
                hasher.update(block);
                if self.next_block + 1 == self.blocks && hasher.digest() != *expected {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        DigestMismatch {
                            expected: expected.clone(),
                            actual: hasher.digest(),
                        },
                    ));
                }
            }
            let job = self.compressor.submit(self.recipe, memory);
            self.pending.push_back((self.next_block, length, job));
            self.next_block += 1;
        }
        Ok(())
    }
}

impl Iterator for FrameStream {
    type Item = io::Result<Frame>;

    fn next(&mut self) -> Option<io::Result<Frame>> {
        if self.failed {
            return None;
        }
        if let Some(e) = self.deferred.take() {
            self.failed = true;
            return Some(Err(e));
        }
        if let Err(e) = self.fill(false) {
            self.failed = true;
            return Some(Err(e));
        }
        let (index, input_len, job) = self.pending.pop_front()?;
        let bytes = match job.try_recv() {
            Ok(result) => result,
            Err(_) => {
                let waiting = Instant::now();
                let result = job
                    .recv()
                    .unwrap_or_else(|_| Err(io::Error::other("a compression thread stopped")));
                self.compressor.meter().starved(waiting.elapsed());
                result
            }
        };
        // The block just compressed gave back its input and encoder: queue the next one
        // now, so the thread that compressed it has work while this frame is read out
        // (measured: 10% of a single-layer gzip push at the default memory limit). An error
        // reading it is reported after this frame, still before the layer's last one.
        if let Ok(data) = &bytes {
            self.last_frame = Some(data.size());
            if let Err(e) = self.fill(true) {
                self.deferred = Some(e);
            }
        }
        Some(bytes.map(|data| Frame {
            index,
            input_len,
            data,
        }))
    }
}

/// The memory to give the frame of a block of `input` bytes. zstd makes a frame in one
/// piece and is given the bound. A gzip frame is written as it is made, so it is given
/// about the size of the frame before it (consecutive blocks of a layer compress alike),
/// and what does not fit goes to disk: counting every frame at the bound left room for
/// only two blocks at the default limit, and a compression thread waited for the reader
/// between blocks (10% of a single-layer gzip push on loopback).
fn frame_room(recipe: Recipe, input: u64, last_frame: Option<u64>) -> u64 {
    let bound = frame_bound(input);
    match (recipe.algorithm, last_frame) {
        (Algorithm::Gzip, Some(last)) => (last + last / 8 + (128 << 10)).min(bound),
        _ => bound,
    }
}

/// The compressed stream of a layer as bytes, from an offset, recording (or checking) the
/// size of every frame it produces.
pub struct CompressedReader {
    frames: FrameStream,
    table: Arc<Frames>,
    current: Option<Frame>,
    position: u64,
    /// Bytes of the next frame to drop: the offset fell inside it.
    skip: u64,
    /// Uncompressed bytes behind the frames read so far.
    consumed: u64,
}

impl CompressedReader {
    pub fn new(frames: FrameStream, table: Arc<Frames>, skip: u64) -> CompressedReader {
        CompressedReader {
            frames,
            table,
            current: None,
            position: 0,
            skip,
            consumed: 0,
        }
    }

    /// The compressed stream of `layer` from compressed byte `offset`, which must lie in a
    /// frame `table` knows (or be 0).
    pub fn open(
        compressor: &Compressor,
        recipe: Recipe,
        source: &dyn BlobSource,
        layer: &Blob,
        table: Arc<Frames>,
        offset: u64,
    ) -> io::Result<CompressedReader> {
        let (first, start) = if offset == 0 {
            (0, 0)
        } else {
            table.locate(offset).ok_or_else(|| {
                io::Error::other(format!(
                    "compressed offset {offset} is beyond the {} bytes known",
                    table.total()
                ))
            })?
        };
        let frames = FrameStream::open(compressor, recipe, source, layer, first)?;
        Ok(CompressedReader::new(frames, table, offset - start))
    }

    /// Uncompressed bytes behind the frames handed out so far.
    pub fn consumed(&self) -> u64 {
        self.consumed
    }
}

impl Read for CompressedReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if let Some(frame) = &self.current {
                let n = frame.data.read_at(self.position, buf)?;
                if n > 0 || buf.is_empty() {
                    self.position += n as u64;
                    return Ok(n);
                }
            }
            // A frame read out gives its memory back before the next one is waited for.
            self.current = None;
            let Some(frame) = self.frames.next() else {
                return Ok(0);
            };
            let frame = frame?;
            self.table.record(frame.index, frame.data.size())?;
            self.consumed += frame.input_len;
            let skip = self.skip.min(frame.data.size());
            self.position = skip;
            self.skip -= skip;
            self.current = Some(frame);
        }
    }
}

/// A compressed layer whose digest and frame sizes are known (from the cache, or an
/// earlier pass), served by recompressing the uncompressed layer: to the uploader it is
/// an ordinary blob source, so every upload path (one request, chunks, resumes, saved
/// sessions) works unchanged, and no compressed copy is ever written to disk.
pub struct RecompressingSource<'a> {
    pub source: &'a dyn BlobSource,
    pub layer: Blob,
    pub compressed: Blob,
    pub recipe: Recipe,
    pub frames: Arc<Frames>,
    pub compressor: Compressor,
}

impl BlobSource for RecompressingSource<'_> {
    fn open_blob(&self, blob: &Blob, offset: u64) -> io::Result<Box<dyn Read + Send>> {
        if blob.digest != self.compressed.digest {
            return Err(io::Error::other(format!(
                "blob {} is not the compressed form of layer {}",
                blob.digest, self.layer.digest
            )));
        }
        if offset >= self.compressed.size {
            return Ok(Box::new(io::empty()));
        }
        Ok(Box::new(CompressedReader::open(
            &self.compressor,
            self.recipe,
            self.source,
            &self.layer,
            self.frames.clone(),
            offset,
        )?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compress::budget::DEFAULT_LIMIT;
    use crate::compress::{Algorithm, BLOCK_SIZE};
    use crate::image::test_doubles::OneLayer;

    fn layer(bytes: &[u8]) -> Blob {
        Blob {
            digest: Digest::of(bytes),
            size: bytes.len() as u64,
            media_type: crate::image::media::OCI_LAYER.into(),
        }
    }

    fn content(size: usize) -> Vec<u8> {
        (0..size)
            .map(|i| ((i / 7) % 251) as u8 ^ ((i >> 13) as u8))
            .collect()
    }

    fn read_all(mut reader: impl Read) -> Vec<u8> {
        let mut out = Vec::new();
        reader.read_to_end(&mut out).unwrap();
        out
    }

    #[test]
    fn a_stream_opened_at_any_offset_matches_the_whole_stream() {
        let bytes = content((2 * BLOCK_SIZE + 12_345) as usize);
        let source = OneLayer(bytes.clone());
        let layer = layer(&bytes);
        let compressor = Compressor::new(2, DEFAULT_LIMIT);
        let recipe = Recipe::of(Algorithm::Gzip);
        let table = Arc::new(Frames::default());
        let whole = read_all(
            CompressedReader::open(&compressor, recipe, &source, &layer, table.clone(), 0).unwrap(),
        );
        assert_eq!(table.len(), 3);
        assert_eq!(table.total(), whole.len() as u64);
        let first = table.sizes()[0];
        for offset in [1, first - 1, first, first + 10, whole.len() as u64 - 1] {
            let tail = read_all(
                CompressedReader::open(&compressor, recipe, &source, &layer, table.clone(), offset)
                    .unwrap(),
            );
            assert!(tail == whole[offset as usize..], "offset {offset}");
        }
    }

    #[test]
    fn streams_sharing_a_one_block_budget_all_finish_with_the_same_bytes() {
        use crate::compress::budget::{MIN_LIMIT, PER_BLOCK, for_blocks};
        let bytes = content((3 * BLOCK_SIZE + 99) as usize);
        let source = OneLayer(bytes.clone());
        let layer = layer(&bytes);
        let recipe = Recipe::of(Algorithm::Zstd);
        let roomy = Compressor::new(2, DEFAULT_LIMIT);
        let expected = read_all(
            CompressedReader::open(&roomy, recipe, &source, &layer, Arc::default(), 0).unwrap(),
        );
        let tight = Compressor::new(2, MIN_LIMIT);
        let outputs: Vec<Vec<u8>> = std::thread::scope(|scope| {
            let streams: Vec<_> = (0..3)
                .map(|_| {
                    scope.spawn(|| {
                        let mut out = Vec::new();
                        for frame in FrameStream::new(
                            &tight,
                            recipe,
                            Box::new(io::Cursor::new(bytes.clone())),
                            &layer,
                            0,
                        ) {
                            assert!(tight.memory().used() <= for_blocks(MIN_LIMIT));
                            assert!(tight.memory().in_blocks() <= PER_BLOCK);
                            let frame = frame.unwrap();
                            frame
                                .data
                                .write_to(
                                    |piece| {
                                        out.extend_from_slice(piece);
                                        Ok::<_, io::Error>(())
                                    },
                                    |e| e,
                                )
                                .unwrap();
                        }
                        out
                    })
                })
                .collect();
            streams.into_iter().map(|s| s.join().unwrap()).collect()
        });
        assert!(outputs.iter().all(|o| *o == expected));
        assert_eq!(tight.memory().in_blocks(), 0);
    }

    #[test]
    fn a_block_that_compresses_worse_than_the_one_before_spills_and_keeps_its_bytes() {
        // The blocks queued before any frame is known get the bound; the fourth is sized
        // from the frames before it.
        let mut bytes = content(3 * BLOCK_SIZE as usize);
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        bytes.extend((0..BLOCK_SIZE).map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        }));
        bytes.extend(content(1000));
        let layer = layer(&bytes);
        let recipe = Recipe::of(Algorithm::Gzip);
        let expected: Vec<u8> = bytes
            .chunks(BLOCK_SIZE as usize)
            .flat_map(|block| recipe.encode_block(block).unwrap())
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let compressor = Compressor::with_spill_dir(2, DEFAULT_LIMIT, Some(dir.path()));
        let table = Arc::new(Frames::default());
        let source = OneLayer(bytes.clone());
        let whole = read_all(
            CompressedReader::open(&compressor, recipe, &source, &layer, table.clone(), 0).unwrap(),
        );
        assert!(whole == expected);
        assert!(
            compressor.meter().overflowed() > 0,
            "the random block outgrew the room sized from the text block"
        );
        let random_starts: u64 = table.sizes()[..3].iter().sum();
        let offset = random_starts + table.sizes()[3] - 10;
        let tail = read_all(
            CompressedReader::open(&compressor, recipe, &source, &layer, table, offset).unwrap(),
        );
        assert!(
            tail == expected[offset as usize..],
            "read from inside the spilled part"
        );
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_corrupt_source_fails_before_the_last_frame() {
        let bytes = content(BLOCK_SIZE as usize + 10);
        let mut layer = layer(&bytes);
        layer.digest = Digest::of(b"something else");
        let compressor = Compressor::new(1, DEFAULT_LIMIT);
        let mut frames = FrameStream::new(
            &compressor,
            Recipe::of(Algorithm::Zstd),
            Box::new(io::Cursor::new(bytes)),
            &layer,
            0,
        );
        let error = frames.next().unwrap().unwrap_err();
        assert!(
            crate::image::digest::find_mismatch(&error).is_some(),
            "{error}"
        );
        assert!(frames.next().is_none());
    }

    #[test]
    fn a_different_frame_size_is_refused() {
        let table = Frames::new(vec![10, 20]);
        assert!(table.record(0, 10).is_ok());
        assert!(table.record(1, 21).is_err());
        assert!(table.record(3, 5).is_err());
        assert!(table.record(2, 5).is_ok());
        assert_eq!(table.locate(0), Some((0, 0)));
        assert_eq!(table.locate(10), Some((1, 10)));
        assert_eq!(table.locate(34), Some((2, 30)));
        assert_eq!(table.locate(35), None);
    }

    #[test]
    fn a_layer_that_is_gzip_already_is_recognised_at_its_first_block() {
        let bytes = Recipe::of(Algorithm::Gzip)
            .encode_block(&content(5000))
            .unwrap();
        let layer = layer(&bytes);
        let compressor = Compressor::new(1, DEFAULT_LIMIT);
        let mut frames = FrameStream::new(
            &compressor,
            Recipe::of(Algorithm::Gzip),
            Box::new(io::Cursor::new(bytes)),
            &layer,
            0,
        );
        assert!(is_already_compressed(&frames.next().unwrap().unwrap_err()));
    }

    #[test]
    fn a_short_source_is_an_error_not_a_short_stream() {
        let bytes = content(1000);
        let layer = layer(&bytes);
        let compressor = Compressor::new(1, DEFAULT_LIMIT);
        let mut frames = FrameStream::new(
            &compressor,
            Recipe::of(Algorithm::Gzip),
            Box::new(io::Cursor::new(bytes[..500].to_vec())),
            &layer,
            0,
        );
        let error = frames.next().unwrap().unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof);
    }
}
