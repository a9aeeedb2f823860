//! Cutting the compressed stream into the registry's chunks: sizes, the next step for a
//! chunk the registry holds part of, and the request body of one chunk.

use super::*;

/// One piece of the compressed stream, ready to send: its bytes lie in a spill file.
pub(super) struct Chunk {
    pub(super) start: u64,
    pub(super) length: u64,
    /// Where the bytes lie in `spill`.
    pub(super) at: u64,
    pub(super) spill: Spill,
    /// The stream ends with this chunk; `digest` is then the whole stream's.
    pub(super) last: bool,
    pub(super) digest: Option<Digest>,
    /// Uncompressed bytes behind the stream up to this chunk's end.
    pub(super) consumed: u64,
}

impl Chunk {
    pub(super) fn end(&self) -> u64 {
        self.start + self.length
    }

    pub(super) fn is_empty(&self) -> bool {
        self.length == 0
    }

    /// The part from `offset` on (the registry confirmed the bytes before it).
    pub(super) fn from(&self, offset: u64) -> Chunk {
        let skip = offset.saturating_sub(self.start).min(self.length);
        Chunk {
            start: self.start + skip,
            length: self.length - skip,
            at: self.at + skip,
            spill: self.spill.clone(),
            last: self.last,
            digest: self.digest.clone(),
            consumed: self.consumed,
        }
    }
}

/// The chunk size of a compressed stream: the registry's rules, at most
/// [`MAX_STREAM_CHUNK`] unless the registry asks for larger chunks.
pub(super) fn stream_chunk_size(rules: &UploadRules, chunk_min_length: Option<u64>) -> usize {
    let size = rules
        .chunk_size
        .min(MAX_STREAM_CHUNK)
        .max(chunk_min_length.unwrap_or(0))
        .max(1);
    size.min(usize::MAX as u64) as usize
}

/// What to send after the registry said it holds `held` bytes, `chunk` being the chunk in
/// memory.
pub(super) enum Step {
    /// The rest of the chunk (or, at the end, the closing request).
    Send(Chunk),
    /// The chunk is done: the next one from the producer.
    Next,
    /// The registry holds less than the chunk's start (or more than its end): produce
    /// the stream again from `held`.
    Recompress,
}

pub(super) fn next_step(chunk: &Chunk, held: u64) -> Step {
    if held < chunk.start || held > chunk.end() {
        Step::Recompress
    } else if held < chunk.end() || chunk.last {
        Step::Send(chunk.from(held))
    } else {
        Step::Next
    }
}

/// Cuts the stream from `reader` into chunks from compressed byte `from` on and hands
/// them to `out`, hashing the whole stream. Chunks are written to `spill` in two slots
/// used in turn: `out` takes a chunk only once the one before it is done with (a
/// rendezvous), so the slot written next never holds bytes still to be sent.
pub(super) fn fill_chunks(
    mut reader: CompressedReader,
    from: u64,
    chunk_size: usize,
    spill: &Spill,
    out: &Sender<io::Result<Chunk>>,
) -> io::Result<()> {
    let mut hasher = Hasher::new();
    let mut position = 0u64;
    let mut scratch = vec![0u8; 1 << 16];
    while position < from {
        let want = (from - position).min(scratch.len() as u64) as usize;
        let n = reader.read(&mut scratch[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "the compressed stream ends at byte {position}, before the {from} bytes the registry holds"
                ),
            ));
        }
        hasher.update(&scratch[..n]);
        position += n as u64;
    }
    let chunk_size = chunk_size as u64;
    let mut carry: Option<u8> = None;
    for slot in (0..2u64).cycle() {
        let at = slot * chunk_size;
        let mut filled = 0u64;
        if let Some(byte) = carry.take() {
            spill.write_at(&[byte], at)?;
            hasher.update(&[byte]);
            filled = 1;
        }
        while filled < chunk_size {
            let want = (chunk_size - filled).min(scratch.len() as u64) as usize;
            let n = reader.read(&mut scratch[..want])?;
            if n == 0 {
                break;
            }
            spill.write_at(&scratch[..n], at + filled)?;
            hasher.update(&scratch[..n]);
            filled += n as u64;
        }
        // Whether anything follows decides if this chunk closes the stream.
        let last = filled < chunk_size || {
            let mut one = [0u8; 1];
            let more = reader.read(&mut one)? == 1;
            if more {
                carry = Some(one[0]);
            }
            !more
        };
        let start = position;
        position += filled;
        let chunk = Chunk {
            start,
            length: filled,
            at,
            spill: spill.clone(),
            last,
            digest: last.then(|| hasher.digest()),
            consumed: reader.consumed(),
        };
        if out.send(Ok(chunk)).is_err() || last {
            break;
        }
    }
    Ok(())
}

/// A request body over a chunk, read from its spill file, counting bytes as the network
/// takes them. A chunk in flight is finished even after Ctrl-C, so the saved session
/// stays exact.
pub(super) fn body<'a>(
    chunk: &Chunk,
    progress: &'a Arc<dyn Progress>,
    sent: &'a Arc<AtomicU64>,
) -> impl Fn() -> io::Result<Box<dyn Read + Send>> + Sync + 'a {
    let (spill, at, length) = (chunk.spill.clone(), chunk.at, chunk.length);
    move || -> io::Result<Box<dyn Read + Send>> {
        Ok(Box::new(Counting::new(
            spill.reader(at, length),
            progress.clone(),
            sent.clone(),
            None,
        )))
    }
}
