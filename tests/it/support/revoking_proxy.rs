//! A reverse proxy in front of a test registry that answers one chosen request with the
//! registry's own `401` Bearer challenge, as a registry does when it stops accepting a
//! token the client still believes valid (revocation, clock skew, a shortened lifetime).
//! A truthful token server cannot produce that without waiting for expiry, and the
//! product renews before the advertised expiry, so this is injected.
//!
//! Each client connection gets one request/response, forwarded over a fresh connection
//! to the registry with `Connection: close`; the registry builds `Location` URLs from
//! the `Host` header, which is left as the client sent it, so uploads keep coming here.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

pub struct RevokingProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

struct Shared {
    upstream: SocketAddr,
    /// `(method, path fragment)` of the request to refuse once.
    method: String,
    fragment: String,
    refused: AtomicBool,
    challenge: String,
    requests: AtomicUsize,
    shutdown: AtomicBool,
}

impl RevokingProxy {
    /// Forwards to `upstream`; the first `method` request whose path contains `fragment`
    /// and carries a Bearer token gets `401` with `challenge` as `WWW-Authenticate`.
    pub fn start(upstream: SocketAddr, method: &str, fragment: &str, challenge: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            upstream,
            method: method.to_string(),
            fragment: fragment.to_string(),
            refused: AtomicBool::new(false),
            challenge: challenge.to_string(),
            requests: AtomicUsize::new(0),
            shutdown: AtomicBool::new(false),
        });
        let accept = Arc::clone(&shared);
        thread::spawn(move || {
            for stream in listener.incoming() {
                if accept.shutdown.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let shared = Arc::clone(&accept);
                thread::spawn(move || {
                    let _ = serve(stream, &shared);
                });
            }
        });
        RevokingProxy { addr, shared }
    }

    /// `127.0.0.1:PORT` of the proxy.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// Whether the one refusal has happened.
    pub fn refused(&self) -> bool {
        self.shared.refused.load(Ordering::SeqCst)
    }
}

impl Drop for RevokingProxy {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
    }
}

fn serve(client: TcpStream, shared: &Shared) -> std::io::Result<()> {
    client.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut reader = BufReader::new(client.try_clone()?);
    let mut head = String::new();
    let mut request_line = String::new();
    if reader.read_line(&mut request_line)? == 0 {
        return Ok(());
    }
    let mut length = 0u64;
    let mut bearer = false;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            break;
        }
        if line == "\r\n" || line == "\n" {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
        if lower.starts_with("authorization: bearer") {
            bearer = true;
        }
        if lower.starts_with("connection:") {
            continue;
        }
        head.push_str(&line);
    }
    let mut body = Vec::new();
    (&mut reader).take(length).read_to_end(&mut body)?;
    shared.requests.fetch_add(1, Ordering::SeqCst);

    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or("");
    let path = parts.next().unwrap_or("");
    let mut out = client;
    if bearer
        && method == shared.method
        && path.contains(&shared.fragment)
        && !shared.refused.swap(true, Ordering::SeqCst)
    {
        let body = br#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#;
        write!(
            out,
            "HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nWWW-Authenticate: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            shared.challenge,
            body.len()
        )?;
        out.write_all(body)?;
        return out.flush();
    }

    let mut upstream = TcpStream::connect(shared.upstream)?;
    upstream.write_all(request_line.as_bytes())?;
    upstream.write_all(head.as_bytes())?;
    upstream.write_all(b"Connection: close\r\n\r\n")?;
    upstream.write_all(&body)?;
    upstream.flush()?;
    let mut response = Vec::new();
    upstream.read_to_end(&mut response)?;
    // The registry answered with `Connection: close`, so the client reconnects too.
    out.write_all(&response)?;
    out.flush()
}
