//! A TCP proxy that makes a fast path behave like a long one, for the benchmarks:
//!
//! `link-proxy --listen ADDR --upstream ADDR [--rtt-ms N] [--cut-every BYTES] ...`
//!
//! This kernel has no `netem`, so latency cannot come from a qdisc. Instead every byte
//! that crosses the proxy waits in a per-direction delay line for half the round-trip
//! time, stamped with the moment it arrived, and leaves when its time is up, so a steady
//! stream keeps flowing (bandwidth-delay behaves like a real link) while every request /
//! response turn-around costs a full round trip. A new connection's first bytes also wait
//! one round trip, as the TCP handshake would make them. Each delay line holds at most
//! `--window` bytes: a full line stops reading, and the sender's TCP pushes back.
//!
//! Rate limits normally come from `tbf` on the veth pair; `--rate-mbit` paces each
//! direction here instead (shared by all connections, with a bounded queue) for machines
//! without network namespaces. `--cut-every` drops connections at random, on average once
//! per that many upstream bytes (seeded, so runs are comparable): the proxy stops reading
//! and closes the client's socket with data unread, which the kernel answers with a
//! reset, and closes the registry side too.
//!
//! Thread-per-connection: two readers, two writers. It prints `listening on ADDR` once it
//! accepts, and one line per finished connection.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use argh::FromArgs;

#[derive(FromArgs)]
/// Relay TCP connections with added latency, optional pacing and random connection cuts.
struct Args {
    /// address to listen on (port 0 picks one; the chosen address is printed)
    #[argh(option)]
    listen: String,
    /// address to connect each client to
    #[argh(option)]
    upstream: String,
    /// round-trip time to add, in milliseconds (half each way)
    #[argh(option, default = "0")]
    rtt_ms: u64,
    /// bytes allowed in flight per direction and connection (default 4 MiB)
    #[argh(option, default = "4 << 20")]
    window: usize,
    /// pace each direction to this many Mbit/s (default: unpaced, leave it to tc)
    #[argh(option)]
    rate_mbit: Option<f64>,
    /// with --rate-mbit: longest queue before reading stops, in milliseconds (default 50)
    #[argh(option, default = "50")]
    queue_ms: u64,
    /// cut a connection on average once per this many bytes sent upstream
    #[argh(option)]
    cut_every: Option<u64>,
    /// seed for the cut points
    #[argh(option, default = "1")]
    seed: u64,
}

fn main() {
    let args: Args = argh::from_env();
    let listener = match TcpListener::bind(&args.listen) {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("link-proxy: cannot listen on {}: {e}", args.listen);
            std::process::exit(2);
        }
    };
    let shaping = Arc::new(Shaping {
        one_way: Duration::from_millis(args.rtt_ms) / 2,
        handshake: Duration::from_millis(args.rtt_ms),
        window: args.window.max(1 << 16),
        up: Link::new(args.rate_mbit, args.queue_ms),
        down: Link::new(args.rate_mbit, args.queue_ms),
        cut_every: args.cut_every,
        seed: args.seed,
    });
    match listener.local_addr() {
        Ok(addr) => println!("listening on {addr}"),
        Err(e) => eprintln!("link-proxy: {e}"),
    }
    let _ = std::io::stdout().flush();
    let counter = AtomicU64::new(0);
    for client in listener.incoming() {
        let Ok(client) = client else { continue };
        let id = counter.fetch_add(1, Ordering::Relaxed);
        let shaping = shaping.clone();
        let upstream = args.upstream.clone();
        thread::spawn(move || relay(id, client, &upstream, shaping));
    }
}

struct Shaping {
    one_way: Duration,
    handshake: Duration,
    window: usize,
    up: Link,
    down: Link,
    cut_every: Option<u64>,
    seed: u64,
}

fn relay(id: u64, client: TcpStream, upstream: &str, shaping: Arc<Shaping>) {
    let opened = Instant::now();
    let server = match TcpStream::connect(upstream) {
        Ok(server) => server,
        Err(e) => {
            println!("conn {id}: cannot reach {upstream}: {e}");
            return;
        }
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let connection = Arc::new(Connection {
        client,
        server,
        up: DelayLine::new(shaping.window),
        down: DelayLine::new(shaping.window),
        cut: AtomicBool::new(false),
        sent_up: AtomicU64::new(0),
        sent_down: AtomicU64::new(0),
    });
    let cut_after = shaping
        .cut_every
        .map(|mean| exponential(mean, shaping.seed ^ id.wrapping_mul(0x9e37_79b9_7f4a_7c15)));

    let threads = [
        {
            let (c, s) = (connection.clone(), shaping.clone());
            thread::spawn(move || {
                let first_byte_at = opened + s.handshake;
                pump(
                    &c,
                    Direction::Up,
                    &s.up,
                    first_byte_at,
                    s.one_way,
                    cut_after,
                )
            })
        },
        {
            let (c, s) = (connection.clone(), shaping.clone());
            thread::spawn(move || pump(&c, Direction::Down, &s.down, opened, s.one_way, None))
        },
        {
            let c = connection.clone();
            thread::spawn(move || drain(&c, Direction::Up))
        },
        {
            let c = connection.clone();
            thread::spawn(move || drain(&c, Direction::Down))
        },
    ];
    for thread in threads {
        let _ = thread.join();
    }
    println!(
        "conn {id}: up {} bytes, down {} bytes, {:.2}s{}",
        connection.sent_up.load(Ordering::Relaxed),
        connection.sent_down.load(Ordering::Relaxed),
        opened.elapsed().as_secs_f64(),
        if connection.cut.load(Ordering::Relaxed) {
            ", cut"
        } else {
            ""
        }
    );
}

#[derive(Clone, Copy, PartialEq)]
enum Direction {
    /// Client to registry.
    Up,
    /// Registry to client.
    Down,
}

struct Connection {
    client: TcpStream,
    server: TcpStream,
    up: DelayLine,
    down: DelayLine,
    cut: AtomicBool,
    sent_up: AtomicU64,
    sent_down: AtomicU64,
}

impl Connection {
    fn ends(&self, direction: Direction) -> (&TcpStream, &DelayLine, &TcpStream, &AtomicU64) {
        match direction {
            Direction::Up => (&self.client, &self.up, &self.server, &self.sent_up),
            Direction::Down => (&self.server, &self.down, &self.client, &self.sent_down),
        }
    }

    /// A failure on either side ends the whole connection.
    fn tear_down(&self) {
        self.up.abort();
        self.down.abort();
        let _ = self.server.shutdown(Shutdown::Both);
        let _ = self.client.shutdown(Shutdown::Both);
    }

    /// Like a dropped link: the registry side is closed, and the client's socket is left
    /// unread until the last thread lets go of it, so closing it sends a reset.
    fn cut(&self) {
        self.cut.store(true, Ordering::Relaxed);
        self.up.abort();
        self.down.abort();
        let _ = self.server.shutdown(Shutdown::Both);
    }
}

/// Reads one direction and stamps each read with the moment it may leave the far end.
fn pump(
    connection: &Connection,
    direction: Direction,
    link: &Link,
    not_before: Instant,
    one_way: Duration,
    cut_after: Option<u64>,
) {
    let (mut source, line, _, _) = connection.ends(direction);
    let mut buffer = vec![0u8; 1 << 16];
    let mut read_total = 0u64;
    loop {
        let n = match source.read(&mut buffer) {
            Ok(0) => {
                line.finish();
                return;
            }
            Ok(n) => n,
            Err(_) => {
                if !connection.cut.load(Ordering::Relaxed) {
                    connection.tear_down();
                }
                return;
            }
        };
        read_total += n as u64;
        let due = link.transmit(n, not_before) + one_way;
        if !line.push(due, buffer[..n].to_vec()) {
            return;
        }
        if cut_after.is_some_and(|limit| read_total >= limit) {
            connection.cut();
            return;
        }
    }
}

/// Writes what the delay line releases, each chunk no earlier than its stamp.
fn drain(connection: &Connection, direction: Direction) {
    let (_, line, mut sink, counter) = connection.ends(direction);
    loop {
        match line.pop() {
            Next::Data(due, bytes) => {
                let now = Instant::now();
                if due > now {
                    thread::sleep(due - now);
                }
                if sink.write_all(&bytes).is_err() {
                    // After a cut the client's socket must stay unread, not shut down, so
                    // that closing it sends a reset.
                    if !connection.cut.load(Ordering::Relaxed) {
                        connection.tear_down();
                    }
                    return;
                }
                counter.fetch_add(bytes.len() as u64, Ordering::Relaxed);
            }
            Next::End => {
                let _ = sink.shutdown(Shutdown::Write);
                return;
            }
            Next::Aborted => return,
        }
    }
}

struct DelayLine {
    state: Mutex<LineState>,
    changed: Condvar,
    window: usize,
}

#[derive(Default)]
struct LineState {
    chunks: VecDeque<(Instant, Vec<u8>)>,
    bytes: usize,
    finished: bool,
    aborted: bool,
}

enum Next {
    Data(Instant, Vec<u8>),
    End,
    Aborted,
}

impl DelayLine {
    fn new(window: usize) -> DelayLine {
        DelayLine {
            state: Mutex::new(LineState::default()),
            changed: Condvar::new(),
            window,
        }
    }

    fn lock(&self) -> MutexGuard<'_, LineState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits while the line is full; false once the connection is gone.
    fn push(&self, due: Instant, bytes: Vec<u8>) -> bool {
        let mut state = self.lock();
        while state.bytes >= self.window && !state.aborted {
            state = self.changed.wait(state).unwrap_or_else(|p| p.into_inner());
        }
        if state.aborted {
            return false;
        }
        state.bytes += bytes.len();
        state.chunks.push_back((due, bytes));
        self.changed.notify_all();
        true
    }

    fn pop(&self) -> Next {
        let mut state = self.lock();
        loop {
            if state.aborted {
                return Next::Aborted;
            }
            if let Some((due, bytes)) = state.chunks.pop_front() {
                state.bytes -= bytes.len();
                self.changed.notify_all();
                return Next::Data(due, bytes);
            }
            if state.finished {
                return Next::End;
            }
            state = self.changed.wait(state).unwrap_or_else(|p| p.into_inner());
        }
    }

    fn finish(&self) {
        self.lock().finished = true;
        self.changed.notify_all();
    }

    fn abort(&self) {
        let mut state = self.lock();
        state.aborted = true;
        state.chunks.clear();
        state.bytes = 0;
        self.changed.notify_all();
    }
}

/// One direction of the emulated interface, shared by every connection: bytes leave it
/// one after another at the link rate, and a sender waits while the queue is too long,
/// as a full qdisc would make TCP back off.
struct Link {
    bytes_per_second: Option<f64>,
    queue_limit: Duration,
    free_at: Mutex<Instant>,
}

impl Link {
    fn new(rate_mbit: Option<f64>, queue_ms: u64) -> Link {
        Link {
            bytes_per_second: rate_mbit.filter(|r| *r > 0.0).map(|r| r * 1e6 / 8.0),
            queue_limit: Duration::from_millis(queue_ms),
            free_at: Mutex::new(Instant::now()),
        }
    }

    /// When the last of `n` bytes read now has left the interface.
    fn transmit(&self, n: usize, not_before: Instant) -> Instant {
        let earliest = Instant::now().max(not_before);
        let Some(rate) = self.bytes_per_second else {
            return earliest;
        };
        let mut free_at = self.free_at.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            let now = Instant::now();
            let backlog = free_at.saturating_duration_since(now);
            if backlog <= self.queue_limit {
                break;
            }
            drop(free_at);
            thread::sleep(backlog - self.queue_limit);
            free_at = self.free_at.lock().unwrap_or_else(|p| p.into_inner());
        }
        let start = (*free_at).max(earliest);
        *free_at = start + Duration::from_secs_f64(n as f64 / rate);
        *free_at
    }
}

/// An exponentially distributed byte count with the given mean (splitmix64 for the draw).
fn exponential(mean: u64, seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    let uniform = ((z >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    (-(mean as f64) * uniform.ln()) as u64
}
