//! An in-process HTTP proxy in front of a test registry, for the faults a real registry
//! cannot be asked to produce: a connection cut after N bytes of a blob, a transfer that
//! stalls until the test lets it go, a corrupted blob or manifest, and a redirect of blob
//! downloads to a separate storage host. It also counts the blob bytes it forwards and
//! records every request, so tests can prove what was (not) fetched again.
//!
//! One request per connection (`Connection: close` both ways) keeps it small: the client
//! opens a new connection for each request, and every response is read whole from the
//! registry before it is forwarded (test blobs are a few megabytes).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;

/// What to do to responses for the target blob.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// The blob digest the faults apply to (`sha256:...`).
    pub target: Option<String>,
    /// Close the connection after this many body bytes...
    pub cut_after: Option<u64>,
    /// ...this many times (then pass through).
    pub cut_times: usize,
    /// Send this many body bytes, then hold the connection until [`Proxy::release`].
    pub stall_after: Option<u64>,
    /// Flip one byte in the middle of the body.
    pub corrupt: bool,
    /// Answer successful blob GETs with a 307 to this base URL (`http://host:port`).
    pub redirect_to: Option<String>,
    /// Add a space to manifests fetched by tag (keeping `Docker-Content-Digest`).
    pub alter_manifests: bool,
}

#[derive(Debug, Clone)]
pub struct Logged {
    pub method: String,
    pub path: String,
    pub range: Option<String>,
    pub status: u16,
    /// Body bytes actually written to the client.
    pub body_sent: u64,
}

struct State {
    upstream: SocketAddr,
    faults: Mutex<Faults>,
    log: Mutex<Vec<Logged>>,
    released: (Mutex<bool>, Condvar),
}

pub struct Proxy {
    addr: SocketAddr,
    state: Arc<State>,
    stop: Arc<AtomicBool>,
}

impl Proxy {
    /// Listens on 127.0.0.1 and forwards to `upstream` (`127.0.0.1:PORT`).
    pub fn start(upstream: &str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State {
            upstream: upstream.parse().expect("upstream address"),
            faults: Mutex::new(Faults::default()),
            log: Mutex::new(Vec::new()),
            released: (Mutex::new(false), Condvar::new()),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let (thread_state, thread_stop) = (state.clone(), stop.clone());
        thread::spawn(move || {
            for stream in listener.incoming() {
                if thread_stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let state = thread_state.clone();
                thread::spawn(move || {
                    let _ = serve(stream, &state);
                });
            }
        });
        Proxy { addr, state, stop }
    }

    /// `127.0.0.1:PORT`, the registry address clients should use.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    pub fn set_faults(&self, faults: Faults) {
        *self.state.faults.lock().unwrap() = faults;
    }

    /// Lets stalled transfers end (they close without sending the rest).
    pub fn release(&self) {
        let (lock, condvar) = &self.state.released;
        *lock.lock().unwrap() = true;
        condvar.notify_all();
    }

    pub fn log(&self) -> Vec<Logged> {
        self.state.log.lock().unwrap().clone()
    }

    /// Requests for one blob (`GET`s only), in order.
    pub fn blob_gets(&self, digest: &str) -> Vec<Logged> {
        self.log()
            .into_iter()
            .filter(|l| l.method == "GET" && l.path.ends_with(&format!("/blobs/{digest}")))
            .collect()
    }

    /// Body bytes of one blob sent to clients, over all requests.
    pub fn blob_bytes_sent(&self, digest: &str) -> u64 {
        self.blob_gets(digest).iter().map(|l| l.body_sent).sum()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.release();
        let _ = TcpStream::connect(self.addr);
    }
}

pub struct Request {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Reads one request (head and `Content-Length` body).
pub fn read_request(reader: &mut impl BufRead) -> std::io::Result<Request> {
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let path = parts.next().unwrap_or_default().to_string();
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" || line == "\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_string(), value.trim().to_string()));
        }
    }
    let length: usize = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body)?;
    Ok(Request {
        method,
        path,
        headers,
        body,
    })
}

fn serve(client: TcpStream, state: &State) -> std::io::Result<()> {
    let mut reader = BufReader::new(client.try_clone()?);
    let request = read_request(&mut reader)?;
    let faults = state.faults.lock().unwrap().clone();

    let mut upstream = TcpStream::connect(state.upstream)?;
    let mut head = format!("{} {} HTTP/1.1\r\n", request.method, request.path);
    for (name, value) in &request.headers {
        if !name.eq_ignore_ascii_case("connection") {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    head.push_str("Connection: close\r\n\r\n");
    upstream.write_all(head.as_bytes())?;
    upstream.write_all(&request.body)?;
    let mut response = Vec::new();
    upstream.read_to_end(&mut response)?;
    let split = find(&response, b"\r\n\r\n")
        .map(|i| i + 4)
        .unwrap_or(response.len());
    let (head, body) = response.split_at(split);
    let head = String::from_utf8_lossy(head).into_owned();
    let mut lines = head.split("\r\n").filter(|l| !l.is_empty());
    let status_line = lines.next().unwrap_or_default().to_string();
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .filter(|(n, _)| !n.eq_ignore_ascii_case("connection"))
        .collect();
    let mut body = body.to_vec();

    let is_target = request.method == "GET"
        && faults
            .target
            .as_ref()
            .is_some_and(|t| request.path.ends_with(&format!("/blobs/{t}")));
    let is_blob_get = request.method == "GET" && request.path.contains("/blobs/sha256:");
    let mut status_line = status_line;
    if is_blob_get && status == 200 && faults.redirect_to.is_some() {
        let digest = request.path.rsplit('/').next().unwrap_or_default();
        let location = format!(
            "{}/storage/{digest}?X-Signature=not-a-secret",
            faults.redirect_to.as_deref().unwrap()
        );
        status_line = "HTTP/1.1 307 Temporary Redirect".to_string();
        headers = vec![
            ("Location".into(), location),
            ("Content-Length".into(), "0".into()),
        ];
        body.clear();
    }
    if faults.alter_manifests
        && request.method == "GET"
        && request.path.contains("/manifests/")
        && !request.path.contains("/manifests/sha256:")
        && status == 200
    {
        body.push(b' ');
        for (name, value) in headers.iter_mut() {
            if name.eq_ignore_ascii_case("content-length") {
                *value = body.len().to_string();
            }
        }
    }
    if is_target && faults.corrupt && !body.is_empty() {
        let middle = body.len() / 2;
        body[middle] ^= 0xff;
    }

    let mut out = format!("{status_line}\r\n");
    for (name, value) in &headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("Connection: close\r\n\r\n");
    let mut client = client;
    client.write_all(out.as_bytes())?;

    let limit = if is_target && status < 300 {
        let mut faults_now = state.faults.lock().unwrap();
        match (faults_now.cut_after, faults_now.stall_after) {
            (Some(n), _) if faults_now.cut_times > 0 => {
                faults_now.cut_times -= 1;
                Some((n, false))
            }
            (_, Some(n)) => Some((n, true)),
            _ => None,
        }
    } else {
        None
    };
    let sent = match limit {
        Some((n, stall)) => {
            let n = (n as usize).min(body.len());
            client.write_all(&body[..n])?;
            client.flush()?;
            if stall {
                let (lock, condvar) = &state.released;
                let mut released = lock.lock().unwrap();
                while !*released {
                    released = condvar.wait(released).unwrap();
                }
            }
            n as u64
        }
        None => {
            client.write_all(&body)?;
            body.len() as u64
        }
    };
    state.log.lock().unwrap().push(Logged {
        method: request.method.clone(),
        path: request.path.clone(),
        range: request.header("range").map(str::to_string),
        status,
        body_sent: sent,
    });
    client.flush()?;
    let _ = client.shutdown(Shutdown::Both);
    Ok(())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Blob storage on another host (127.0.0.2): serves the blobs it is given at
/// `/storage/<digest>` and records whether each request carried credentials.
pub struct Storage {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
}

/// A request storage received: its path and `Authorization` header.
pub type Seen = (String, Option<String>);

impl Storage {
    pub fn start(blobs: HashMap<String, Vec<u8>>) -> Storage {
        let listener = TcpListener::bind("127.0.0.2:0").expect("bind 127.0.0.2 (loopback)");
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let thread_seen = seen.clone();
        let blobs = Arc::new(blobs);
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let (seen, blobs) = (thread_seen.clone(), blobs.clone());
                thread::spawn(move || {
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    let Ok(request) = read_request(&mut reader) else {
                        return;
                    };
                    let path = request
                        .path
                        .split('?')
                        .next()
                        .unwrap_or_default()
                        .to_string();
                    seen.lock().unwrap().push((
                        path.clone(),
                        request.header("authorization").map(str::to_string),
                    ));
                    let digest = path.rsplit('/').next().unwrap_or_default();
                    let mut stream = stream;
                    let _ = match blobs.get(digest) {
                        Some(bytes) => stream
                            .write_all(
                                format!(
                                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                                    bytes.len()
                                )
                                .as_bytes(),
                            )
                            .and_then(|()| stream.write_all(bytes)),
                        None => stream.write_all(
                            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                        ),
                    };
                });
            }
        });
        Storage { addr, seen }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `(path, Authorization header)` of every request.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}
