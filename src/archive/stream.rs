//! Reading a whole-gzipped archive (`docker save | gzip`) front to back, once, however many
//! readers want pieces of it. Gzip cannot seek: reaching offset X means inflating every
//! byte before it. So decoders are lent to readers and parked again where they stopped,
//! and a reader waits for a decoder that is coming its way (lent to a reader of an earlier
//! entry, or parked before an entry another reader has asked for) rather than starting a
//! new one from the top. Waits only ever point backwards in the stream, so they end.

use std::io::{self, BufReader, Read};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use flate2::read::MultiGzDecoder;

use super::volume::{Volume, VolumeReader};

/// At most this many decoders wait for reuse; each holds a 32 KiB window and buffers.
const MAX_PARKED: usize = 4;

/// A piece up to this size is inflated into memory at once and its decoder handed on, so
/// the next reader need not wait while this piece goes over the network: many small layers
/// then upload in parallel as they would from a plain tar.
const READ_AHEAD_PIECE: u64 = 1 << 20;
/// All pieces held in memory at once, whatever the number of workers.
const READ_AHEAD_BUDGET: u64 = 8 << 20;

pub struct GzipStream {
    volume: Volume,
    state: Mutex<State>,
    changed: Condvar,
    inflated: AtomicU64,
    /// Bytes of pieces read ahead into memory and not yet consumed.
    held: AtomicU64,
}

#[derive(Default)]
struct State {
    parked: Vec<Decoder>,
    /// Where each lent decoder will be parked at the latest (its reader's end).
    lent: Vec<u64>,
    /// Offsets readers have announced or are waiting at: a decoder parked before one of
    /// them is theirs, and nobody may carry it past.
    claims: Vec<u64>,
}

struct Decoder {
    position: u64,
    inner: MultiGzDecoder<BufReader<VolumeReader>>,
}

impl GzipStream {
    pub fn new(volume: Volume) -> Arc<GzipStream> {
        Arc::new(GzipStream {
            volume,
            state: Mutex::default(),
            changed: Condvar::new(),
            inflated: AtomicU64::new(0),
            held: AtomicU64::new(0),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Bytes inflated so far by readers (skipped or read), for tests and diagnostics.
    pub fn inflated(&self) -> u64 {
        self.inflated.load(Ordering::Relaxed)
    }

    /// Announces that an entry starting at `offset` will be read soon; until the reader
    /// opens it (or the guard is dropped), decoders before it are kept for it.
    pub fn announce(self: &Arc<Self>, offset: u64) -> Announcement {
        self.state().claims.push(offset);
        Announcement {
            stream: self.clone(),
            offset: Some(offset),
        }
    }

    /// A reader of `length` bytes from `start`, inside the entry that begins at `entry`.
    pub fn reader(self: &Arc<Self>, entry: u64, start: u64, length: u64) -> io::Result<Reader> {
        let decoder = self.lend(entry, start, start.saturating_add(length))?;
        let mut reader = Reader {
            decoder: Some(decoder),
            remaining: length,
            stream: self.clone(),
            ahead: None,
        };
        if length <= READ_AHEAD_PIECE && self.reserve(length) {
            let mut bytes = Vec::with_capacity(length as usize);
            let read = (&mut reader).take(length).read_to_end(&mut bytes);
            if let Some(decoder) = reader.decoder.take() {
                self.give_back(Some(decoder), start + length);
            }
            if let Err(e) = read {
                self.held.fetch_sub(length, Ordering::Relaxed);
                return Err(e);
            }
            reader.remaining = bytes.len() as u64;
            reader.ahead = Some((io::Cursor::new(bytes), length));
        }
        Ok(reader)
    }

    /// Takes `length` bytes of the read-ahead budget, if they are free.
    fn reserve(&self, length: u64) -> bool {
        self.held
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |held| {
                held.checked_add(length)
                    .filter(|&total| total <= READ_AHEAD_BUDGET)
            })
            .is_ok()
    }

    fn lend(&self, entry: u64, start: u64, end: u64) -> io::Result<Decoder> {
        let mut state = self.state();
        // This reader's announcement (at its entry) becomes a claim where it starts.
        remove_one(&mut state.claims, entry);
        state.claims.push(start);
        self.changed.notify_all();
        let taken = loop {
            let best = state
                .parked
                .iter()
                .enumerate()
                .filter(|(_, d)| d.position <= start)
                .max_by_key(|(_, d)| d.position)
                .map(|(i, d)| (i, d.position));
            let claimed_before = |from: u64| state.claims.iter().any(|&c| from <= c && c < start);
            match best {
                Some((i, position)) if !claimed_before(position) => {
                    break Some(state.parked.swap_remove(i));
                }
                Some(_) => {}
                None if state.lent.iter().any(|&b| b <= start) || claimed_before(0) => {}
                None => break None,
            }
            state = self.changed.wait(state).unwrap_or_else(|p| p.into_inner());
        };
        remove_one(&mut state.claims, start);
        state.lent.push(end);
        drop(state);
        self.changed.notify_all();
        let prepared = match taken {
            Some(decoder) => Ok(decoder),
            None => self.open_from_top(),
        }
        .and_then(|decoder| self.advance(decoder, start));
        if prepared.is_err() {
            self.give_back(None, end);
        }
        prepared
    }

    fn open_from_top(&self) -> io::Result<Decoder> {
        let file = self.volume.reader()?;
        Ok(Decoder {
            position: 0,
            inner: MultiGzDecoder::new(BufReader::with_capacity(1 << 16, file)),
        })
    }

    fn advance(&self, mut decoder: Decoder, to: u64) -> io::Result<Decoder> {
        let gap = to - decoder.position;
        let skipped = io::copy(&mut (&mut decoder.inner).take(gap), &mut io::sink())?;
        self.inflated.fetch_add(skipped, Ordering::Relaxed);
        if skipped != gap {
            return Err(crate::error::SourceEnded::io_error("archive ended early"));
        }
        decoder.position = to;
        Ok(decoder)
    }

    /// Ends a loan: the decoder (if it is still usable) waits for the next reader.
    fn give_back(&self, decoder: Option<Decoder>, end: u64) {
        let mut state = self.state();
        remove_one(&mut state.lent, end);
        if let Some(decoder) = decoder {
            if state.parked.len() >= MAX_PARKED {
                // Keep the furthest-along decoders: they can serve the most offsets.
                state.parked.sort_by_key(|d| std::cmp::Reverse(d.position));
                state.parked.truncate(MAX_PARKED - 1);
            }
            state.parked.push(decoder);
        }
        drop(state);
        self.changed.notify_all();
    }
}

fn remove_one(list: &mut Vec<u64>, value: u64) {
    if let Some(i) = list.iter().position(|&v| v == value) {
        list.swap_remove(i);
    }
}

/// Withdraws an announcement the reader did not take up (the blob was already there, the
/// upload failed before reading).
pub struct Announcement {
    stream: Arc<GzipStream>,
    offset: Option<u64>,
}

impl Drop for Announcement {
    fn drop(&mut self) {
        if let Some(offset) = self.offset.take() {
            // Opening the entry already consumed the claim if it happened; removing a
            // claim that is not there is harmless.
            let mut state = self.stream.state();
            remove_one(&mut state.claims, offset);
            drop(state);
            self.stream.changed.notify_all();
        }
    }
}

/// Reads one piece of the stream and parks its decoder afterwards, so the reader of the
/// next entry continues where this one stopped.
pub struct Reader {
    decoder: Option<Decoder>,
    remaining: u64,
    stream: Arc<GzipStream>,
    /// A small piece already inflated, with the budget it holds.
    ahead: Option<(io::Cursor<Vec<u8>>, u64)>,
}

impl Read for Reader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some((piece, _)) = self.ahead.as_mut() {
            return piece.read(buf);
        }
        let Some(decoder) = self.decoder.as_mut() else {
            return Ok(0);
        };
        let limit = buf
            .len()
            .min(self.remaining.min(usize::MAX as u64) as usize);
        if limit == 0 {
            return Ok(0);
        }
        let n = decoder.inner.read(&mut buf[..limit])?;
        decoder.position += n as u64;
        self.remaining -= n as u64;
        self.stream.inflated.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        if let Some((_, reserved)) = self.ahead.take() {
            self.stream.held.fetch_sub(reserved, Ordering::Relaxed);
        }
        if let Some(decoder) = self.decoder.take() {
            let end = decoder.position + self.remaining;
            self.stream.give_back(Some(decoder), end);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use crate::image::test_doubles::noise;
    #[test]
    fn a_small_piece_is_read_ahead_so_a_held_reader_does_not_stop_the_next() {
        let plain = noise(7, 64_000);
        let file = tempfile::NamedTempFile::new().unwrap();
        let mut encoder =
            flate2::write::GzEncoder::new(file.reopen().unwrap(), flate2::Compression::fast());
        encoder.write_all(&plain).unwrap();
        encoder.finish().unwrap();
        let stream = super::GzipStream::new(super::Volume::file(file.path()).unwrap());

        // The first reader is still open (its bytes on their way over the network)...
        let mut first = stream.reader(0, 0, 10_000).unwrap();
        // ...while a worker reads a later piece: it must not wait for the first to finish.
        let later = stream.clone();
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let read = later
                .reader(30_000, 30_000, 20_000)
                .and_then(|mut r| r.read_to_end(&mut bytes));
            done.send(read.map(|_| bytes)).unwrap();
        });
        let later_bytes = finished
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("the later reader waited for the held one")
            .unwrap();
        assert_eq!(later_bytes, &plain[30_000..50_000]);
        let mut first_bytes = Vec::new();
        first.read_to_end(&mut first_bytes).unwrap();
        assert_eq!(first_bytes, &plain[..10_000]);
        assert!(stream.inflated() <= plain.len() as u64);
    }
}
