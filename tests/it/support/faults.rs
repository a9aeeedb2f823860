//! An in-process fault-injecting HTTP proxy between the product binary and a
//! real registry, for the faults a real registry cannot be made to produce on
//! demand: a link cut after N request-body bytes, a lost answer, bursts of
//! 5xx and 429, a stalled response, a rewritten header or body, a redirect
//! to another host. It also records every exchange (method, path, headers,
//! body bytes received and forwarded, status) so tests can bound how many
//! bytes a fault made the client send again.
//!
//! Every client connection carries exactly one request: the proxy forwards
//! it on a fresh upstream connection with `Connection: close`, reads the
//! answer to EOF and hands it back with `Connection: close`. That keeps the
//! framing trivial (no keep-alive, no chunked re-encoding) at the cost of a
//! TCP handshake per request, which loopback does not notice.
//!
//! Two forwarding modes model the two ways registries are deployed:
//! - [`Mode::Streaming`]: request bodies go upstream as they arrive, like a
//!   client talking to distribution directly. A cut mid-body leaves the
//!   registry holding a partial chunk.
//! - [`Mode::Buffering`]: the whole request body is read before anything is
//!   forwarded, like nginx's default `proxy_request_buffering on` (Harbor and
//!   most production front ends). A cut mid-body never reaches the registry.
//!
//! Faults are [`Rule`]s: a [`Match`] (method, path fragment, which of the
//! matching requests) and a [`Fault`]. Rules fire in the order added; the
//! first rule that matches a request and still has firings left applies.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// How request bodies travel upstream (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Streaming,
    Buffering,
}

/// A request as the proxy saw its head.
#[derive(Clone, Debug)]
pub struct RequestHead {
    pub method: String,
    /// Path without the query string (which may hold upload state).
    pub path: String,
    pub query: String,
    /// Header names lowercased, in arrival order.
    pub headers: Vec<(String, String)>,
    pub content_length: u64,
}

impl RequestHead {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// A blob upload request carrying data: PATCH, or the closing PUT.
    pub fn is_blob_upload(&self) -> bool {
        self.path.contains("/blobs/uploads/") && matches!(self.method.as_str(), "PATCH" | "PUT")
    }

    pub fn is_manifest_put(&self) -> bool {
        self.method == "PUT" && self.path.contains("/manifests/")
    }
}

/// One request/answer pair, as recorded.
#[derive(Clone, Debug)]
pub struct Exchange {
    pub request: RequestHead,
    /// Body bytes read from the client.
    pub body_received: u64,
    /// Body bytes written to the registry.
    pub body_forwarded: u64,
    /// Status handed to the client; `None` when the connection was cut.
    pub status: Option<u16>,
    /// The registry's own status, when it answered (before any rewrite).
    pub upstream_status: Option<u16>,
    /// Which fault applied, if any.
    pub fault: Option<String>,
    pub started: Instant,
}

/// Inspects a request head: a rule's condition, or a hook run when it fires.
pub type HeadFn = Arc<dyn Fn(&RequestHead) -> bool + Send + Sync>;

/// What to do to a matching request.
#[derive(Clone)]
pub enum Fault {
    /// Take `after` body bytes from the client (forwarding them in streaming
    /// mode), then drop both connections: the link died mid-upload.
    CutRequestBody { after: u64 },
    /// Forward the whole request and let the registry act on it, then drop
    /// the client's connection before it sees the answer.
    CutResponse,
    /// Read the request, forward nothing, answer with this status, headers
    /// and body (a load balancer's 502, a 429 with `Retry-After`, a 403).
    Respond {
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
    },
    /// Read the request, forward nothing, and say nothing for `duration`;
    /// then drop the connection. A hung link or registry.
    Stall(Duration),
    /// Wait `delay`, then forward normally: a slow link.
    Delay(Duration),
    /// Run `hook` with the request head, then forward (or drop the request
    /// unforwarded when the hook returns false). For killing or signalling
    /// processes at an exact point of a push.
    Hook(HeadFn),
    /// Forward, then replace (or add) a response header.
    RewriteHeader { name: String, value: String },
    /// Forward, then replace the response body (Content-Length follows).
    RewriteBody(Vec<u8>),
    /// Forward, then hand back the answer's head at once and its body one byte
    /// per interval: a slow-loris server no per-read timeout notices.
    TrickleBody(Duration),
}

impl Fault {
    pub fn respond(status: u16) -> Fault {
        Fault::Respond {
            status,
            headers: Vec::new(),
            body: String::new(),
        }
    }

    /// An answer with a distribution-style error body.
    pub fn respond_error(status: u16, code: &str, message: &str) -> Fault {
        Fault::Respond {
            status,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: serde_json::json!({"errors": [{"code": code, "message": message}]}).to_string(),
        }
    }

    pub fn too_many_requests(retry_after_seconds: u64) -> Fault {
        Fault::Respond {
            status: 429,
            headers: vec![("Retry-After".into(), retry_after_seconds.to_string())],
            body:
                serde_json::json!({"errors": [{"code": "TOOMANYREQUESTS", "message": "slow down"}]})
                    .to_string(),
        }
    }

    pub fn redirect(status: u16, location: &str) -> Fault {
        Fault::Respond {
            status,
            headers: vec![("Location".into(), location.into())],
            body: String::new(),
        }
    }

    pub fn hook(hook: impl Fn(&RequestHead) -> bool + Send + Sync + 'static) -> Fault {
        Fault::Hook(Arc::new(hook))
    }

    fn name(&self) -> String {
        match self {
            Fault::CutRequestBody { after } => format!("cut request after {after} body bytes"),
            Fault::CutResponse => "cut response".into(),
            Fault::Respond { status, .. } => format!("respond {status}"),
            Fault::Stall(d) => format!("stall {d:?}"),
            Fault::Delay(d) => format!("delay {d:?}"),
            Fault::Hook(_) => "hook".into(),
            Fault::RewriteHeader { name, .. } => format!("rewrite header {name}"),
            Fault::RewriteBody(_) => "rewrite body".into(),
            Fault::TrickleBody(d) => format!("trickle body every {d:?}"),
        }
    }
}

/// Which requests a rule applies to.
#[derive(Clone)]
pub struct Match {
    method: Option<String>,
    path_contains: Option<String>,
    predicate: Option<HeadFn>,
    /// Matching requests to let through before the first firing.
    skip: u32,
}

impl Match {
    pub fn any() -> Match {
        Match {
            method: None,
            path_contains: None,
            predicate: None,
            skip: 0,
        }
    }

    pub fn method(method: &str) -> Match {
        Match {
            method: Some(method.to_string()),
            ..Match::any()
        }
    }

    /// `PATCH` requests to an upload session.
    pub fn patch() -> Match {
        Match::method("PATCH").path("/blobs/uploads/")
    }

    /// The closing `PUT ...?digest=` of a blob upload.
    pub fn blob_commit() -> Match {
        Match::method("PUT").path("/blobs/uploads/")
    }

    pub fn manifest_put() -> Match {
        Match::method("PUT").path("/manifests/")
    }

    pub fn path(mut self, fragment: &str) -> Match {
        self.path_contains = Some(fragment.to_string());
        self
    }

    pub fn when(
        mut self,
        predicate: impl Fn(&RequestHead) -> bool + Send + Sync + 'static,
    ) -> Match {
        self.predicate = Some(Arc::new(predicate));
        self
    }

    /// Fire on the `n`th matching request (1-based) and after.
    pub fn nth(mut self, n: u32) -> Match {
        self.skip = n.saturating_sub(1);
        self
    }

    fn matches(&self, head: &RequestHead) -> bool {
        self.method.as_deref().is_none_or(|m| m == head.method)
            && self
                .path_contains
                .as_deref()
                .is_none_or(|p| head.path.contains(p))
            && self.predicate.as_ref().is_none_or(|p| p(head))
    }
}

/// A fault for matching requests, `times` times.
#[derive(Clone)]
pub struct Rule {
    pub matcher: Match,
    pub fault: Fault,
    pub times: u32,
}

impl Rule {
    pub fn new(matcher: Match, fault: Fault) -> Rule {
        Rule {
            matcher,
            fault,
            times: 1,
        }
    }

    pub fn times(mut self, times: u32) -> Rule {
        self.times = times;
        self
    }

    /// Fires on every matching request.
    pub fn always(mut self) -> Rule {
        self.times = u32::MAX;
        self
    }
}

struct RuleState {
    rule: Rule,
    seen: u32,
    fired: u32,
}

struct Inner {
    upstream: SocketAddr,
    mode: Mode,
    rules: Mutex<Vec<RuleState>>,
    log: Mutex<Vec<Exchange>>,
    /// Connections accepted whose request is not yet logged: a killed client's last
    /// request is logged only when the proxy notices the dead socket, after the process
    /// is gone, and a finished client may exit before its last answer is logged.
    in_flight: AtomicUsize,
    shutdown: AtomicBool,
}

/// A running proxy on `127.0.0.1:<ephemeral>`. Stops accepting on drop.
pub struct FaultProxy {
    inner: Arc<Inner>,
    addr: SocketAddr,
    accept_thread: Option<thread::JoinHandle<()>>,
}

impl FaultProxy {
    /// Proxies to `upstream` (`127.0.0.1:PORT`, plain HTTP).
    pub fn start(upstream: &str, mode: Mode) -> FaultProxy {
        let upstream: SocketAddr = upstream
            .parse()
            .unwrap_or_else(|e| panic!("upstream {upstream:?} is not host:port: {e}"));
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind fault proxy");
        let addr = listener.local_addr().expect("proxy address");
        let inner = Arc::new(Inner {
            upstream,
            mode,
            rules: Mutex::new(Vec::new()),
            log: Mutex::new(Vec::new()),
            in_flight: AtomicUsize::new(0),
            shutdown: AtomicBool::new(false),
        });
        let accept_inner = Arc::clone(&inner);
        let accept_thread = thread::Builder::new()
            .name(format!("fault-proxy-{}", addr.port()))
            .spawn(move || {
                for stream in listener.incoming() {
                    if accept_inner.shutdown.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let inner = Arc::clone(&accept_inner);
                    inner.in_flight.fetch_add(1, Ordering::SeqCst);
                    let spawned = thread::Builder::new()
                        .name("fault-proxy-conn".into())
                        .spawn(move || handle(stream, &inner));
                    if spawned.is_err() {
                        accept_inner.in_flight.fetch_sub(1, Ordering::SeqCst);
                    }
                }
            })
            .expect("spawn fault proxy");
        FaultProxy {
            inner,
            addr,
            accept_thread: Some(accept_thread),
        }
    }

    /// `127.0.0.1:PORT`, for `http://` targets.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    pub fn add(&self, rule: Rule) {
        self.inner.rules.lock().unwrap().push(RuleState {
            rule,
            seen: 0,
            fired: 0,
        });
    }

    pub fn clear_rules(&self) {
        self.inner.rules.lock().unwrap().clear();
    }

    /// How many times the rules have fired, in the order added.
    pub fn fired(&self) -> Vec<u32> {
        self.inner
            .rules
            .lock()
            .unwrap()
            .iter()
            .map(|r| r.fired)
            .collect()
    }

    /// Every request so far, once every open one has been logged.
    pub fn exchanges(&self) -> Vec<Exchange> {
        self.wait_until_idle();
        self.logged()
    }

    fn logged(&self) -> Vec<Exchange> {
        self.inner.log.lock().unwrap().clone()
    }

    /// Forgets every exchange so far, once every open request has been logged: a
    /// request cut by a killed client must not count against the next run.
    pub fn clear_log(&self) {
        self.wait_until_idle();
        self.inner.log.lock().unwrap().clear();
    }

    /// Waits until every accepted request has been logged. Call it only once the client
    /// is done: a request the client still holds open is waited for.
    pub fn wait_until_idle(&self) {
        let started = Instant::now();
        while self.inner.in_flight.load(Ordering::SeqCst) > 0 {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "a proxied request is still open after 30 s\n{}",
                self.describe_logged()
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Blob body bytes (PATCH and closing PUT) the client sent, cut requests included.
    pub fn blob_bytes_received(&self) -> u64 {
        self.exchanges()
            .iter()
            .filter(|e| e.request.is_blob_upload())
            .map(|e| e.body_received)
            .sum()
    }

    /// A one-line-per-request summary, for assertion messages.
    pub fn describe(&self) -> String {
        self.wait_until_idle();
        self.describe_logged()
    }

    fn describe_logged(&self) -> String {
        self.logged()
            .iter()
            .map(|e| {
                format!(
                    "{} {} recv={} fwd={} -> {}{}",
                    e.request.method,
                    e.request.path,
                    e.body_received,
                    e.body_forwarded,
                    e.status.map_or("cut".to_string(), |s| s.to_string()),
                    e.fault
                        .as_ref()
                        .map(|f| format!(" [{f}]"))
                        .unwrap_or_default()
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.inner.shutdown.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.accept_thread.take() {
            let _ = t.join();
        }
    }
}

/// Enough for any test answer; a larger one is a test bug.
const MAX_RESPONSE: usize = 256 << 20;
const IO_TIMEOUT: Duration = Duration::from_secs(60);

fn handle(client: TcpStream, inner: &Inner) {
    let _ = client.set_read_timeout(Some(IO_TIMEOUT));
    let _ = client.set_write_timeout(Some(IO_TIMEOUT));
    let Ok(reader) = client.try_clone() else {
        inner.in_flight.fetch_sub(1, Ordering::SeqCst);
        return;
    };
    let mut reader = BufReader::with_capacity(1 << 16, reader);
    let Some((head, raw_head)) = read_head(&mut reader) else {
        inner.in_flight.fetch_sub(1, Ordering::SeqCst);
        return;
    };
    let fault = pick_fault(inner, &head);
    let mut exchange = Exchange {
        request: head.clone(),
        body_received: 0,
        body_forwarded: 0,
        status: None,
        upstream_status: None,
        fault: fault.as_ref().map(Fault::name),
        started: Instant::now(),
    };
    let logged = run(
        inner,
        &head,
        &raw_head,
        fault,
        &mut reader,
        &client,
        &mut exchange,
    );
    if !logged {
        inner.log.lock().unwrap().push(exchange);
        inner.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
    let _ = client.shutdown(Shutdown::Both);
}

/// Counts the request against every rule it matches (so `nth` means the nth
/// matching request overall), and applies the first rule that is due.
fn pick_fault(inner: &Inner, head: &RequestHead) -> Option<Fault> {
    let mut rules = inner.rules.lock().unwrap();
    let mut chosen = None;
    for state in rules.iter_mut() {
        if !state.rule.matcher.matches(head) {
            continue;
        }
        state.seen += 1;
        let due = state.seen > state.rule.matcher.skip && state.fired < state.rule.times;
        if due && chosen.is_none() {
            state.fired += 1;
            chosen = Some(state.rule.fault.clone());
        }
    }
    chosen
}

/// Proxies one request under `fault`. Returns whether the exchange is logged already.
fn run(
    inner: &Inner,
    head: &RequestHead,
    raw_head: &str,
    fault: Option<Fault>,
    body: &mut BufReader<TcpStream>,
    mut client: &TcpStream,
    exchange: &mut Exchange,
) -> bool {
    let mut cut_after = None;
    let mut rewrite: Option<Fault> = None;
    match fault {
        None => {}
        Some(Fault::CutRequestBody { after }) => cut_after = Some(after),
        Some(Fault::Respond {
            status,
            headers,
            body: answer,
        }) => {
            exchange.body_received = drain(body, head.content_length);
            let _ = write_response(&mut client, status, &headers, answer.as_bytes());
            exchange.status = Some(status);
            return false;
        }
        Some(Fault::Stall(duration)) => {
            exchange.body_received = drain(body, head.content_length);
            // Logged now: the client gives up long before the stall ends.
            inner.log.lock().unwrap().push(exchange.clone());
            inner.in_flight.fetch_sub(1, Ordering::SeqCst);
            let until = Instant::now() + duration;
            while Instant::now() < until && !inner.shutdown.load(Ordering::SeqCst) {
                thread::sleep(Duration::from_millis(20));
            }
            return true;
        }
        Some(Fault::Delay(duration)) => thread::sleep(duration),
        Some(Fault::Hook(hook)) if !hook(head) => {
            exchange.body_received = drain(body, head.content_length);
            return false;
        }
        Some(Fault::Hook(_)) => {}
        Some(
            other @ (Fault::CutResponse
            | Fault::RewriteHeader { .. }
            | Fault::RewriteBody(_)
            | Fault::TrickleBody(_)),
        ) => rewrite = Some(other),
    }

    let wanted = cut_after.map_or(head.content_length, |n| n.min(head.content_length));
    let buffered = if inner.mode == Mode::Buffering {
        let mut bytes = Vec::new();
        let n = body
            .by_ref()
            .take(wanted)
            .read_to_end(&mut bytes)
            .unwrap_or(0);
        exchange.body_received = n as u64;
        if cut_after.is_some() || (n as u64) < head.content_length {
            // The client's request never completed: a buffering front end drops it.
            return false;
        }
        Some(bytes)
    } else {
        None
    };

    let Ok(mut upstream) = TcpStream::connect_timeout(&inner.upstream, Duration::from_secs(5))
    else {
        // The registry is down: the link to it drops.
        if buffered.is_none() {
            exchange.body_received = drain(body, wanted);
        }
        return false;
    };
    let _ = upstream.set_read_timeout(Some(IO_TIMEOUT));
    let _ = upstream.set_write_timeout(Some(IO_TIMEOUT));
    if upstream.write_all(raw_head.as_bytes()).is_err() {
        return false;
    }
    match buffered {
        Some(bytes) => {
            if upstream.write_all(&bytes).is_err() {
                return false;
            }
            exchange.body_forwarded = bytes.len() as u64;
        }
        None => {
            let (received, forwarded) = pump(body, &mut upstream, wanted);
            exchange.body_received = received;
            exchange.body_forwarded = forwarded;
            if cut_after.is_some() || received < head.content_length {
                let _ = upstream.shutdown(Shutdown::Both);
                return false;
            }
        }
    }
    let _ = upstream.flush();

    let mut response = Vec::new();
    let _ = upstream
        .take(MAX_RESPONSE as u64)
        .read_to_end(&mut response);
    let Some(mut parsed) = Response::parse(&response) else {
        return false;
    };
    exchange.upstream_status = Some(parsed.status);
    match rewrite {
        Some(Fault::CutResponse) => return false,
        Some(Fault::RewriteHeader { name, value }) => parsed.set_header(&name, &value),
        Some(Fault::RewriteBody(bytes)) => {
            parsed.set_header("Content-Length", &bytes.len().to_string());
            parsed.body = bytes;
        }
        Some(Fault::TrickleBody(interval)) => {
            parsed.set_header("Connection", "close");
            let body = std::mem::take(&mut parsed.body);
            exchange.status = Some(parsed.status);
            if client.write_all(&parsed.to_bytes()).is_err() {
                return false;
            }
            for byte in body {
                if inner.shutdown.load(Ordering::SeqCst) || client.write_all(&[byte]).is_err() {
                    break;
                }
                thread::sleep(interval);
            }
            return false;
        }
        _ => {}
    }
    parsed.set_header("Connection", "close");
    if client.write_all(&parsed.to_bytes()).is_ok() {
        exchange.status = Some(parsed.status);
    }
    let _ = client.flush();
    false
}

/// Reads the request line and headers; returns the parsed head and the raw
/// head to forward (with `Connection: close`).
fn read_head(reader: &mut BufReader<TcpStream>) -> Option<(RequestHead, String)> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let request_line = line.trim_end().to_string();
    let mut parts = request_line.split_whitespace();
    let method = parts.next()?.to_string();
    let target = parts.next()?.to_string();
    let version = parts.next().unwrap_or("HTTP/1.1").to_string();
    let (path, query) = target
        .split_once('?')
        .map(|(p, q)| (p.to_string(), q.to_string()))
        .unwrap_or((target.clone(), String::new()));
    let mut headers = Vec::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let trimmed = line.trim_end_matches(['\r', '\n']);
        if trimmed.is_empty() {
            break;
        }
        if let Some((k, v)) = trimmed.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let content_length = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut raw = format!("{method} {target} {version}\r\n");
    for (k, v) in &headers {
        if k != "connection" {
            raw.push_str(&format!("{k}: {v}\r\n"));
        }
    }
    raw.push_str("connection: close\r\n\r\n");
    Some((
        RequestHead {
            method,
            path,
            query,
            headers,
            content_length,
        },
        raw,
    ))
}

/// Copies up to `length` body bytes from the client to the registry;
/// returns (received, forwarded).
fn pump(from: &mut BufReader<TcpStream>, to: &mut TcpStream, length: u64) -> (u64, u64) {
    let mut buf = vec![0u8; 1 << 16];
    let (mut received, mut forwarded) = (0u64, 0u64);
    while received < length {
        let want = buf.len().min((length - received) as usize);
        let n = match from.read(&mut buf[..want]) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        received += n as u64;
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
        forwarded += n as u64;
    }
    (received, forwarded)
}

fn drain(from: &mut BufReader<TcpStream>, length: u64) -> u64 {
    io::copy(&mut from.by_ref().take(length), &mut io::sink()).unwrap_or(0)
}

fn write_response(
    client: &mut &TcpStream,
    status: u16,
    headers: &[(String, String)],
    body: &[u8],
) -> io::Result<()> {
    let mut head = format!("HTTP/1.1 {status} {}\r\n", reason(status));
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    client.write_all(head.as_bytes())?;
    client.write_all(body)?;
    client.flush()
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

/// A complete HTTP/1.1 response read to EOF (the registry closes after it).
struct Response {
    status: u16,
    status_line: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn parse(bytes: &[u8]) -> Option<Response> {
        let end = bytes.windows(4).position(|w| w == b"\r\n\r\n")?;
        let head = std::str::from_utf8(&bytes[..end]).ok()?;
        let mut lines = head.split("\r\n");
        let status_line = lines.next()?.to_string();
        let status = status_line.split_whitespace().nth(1)?.parse().ok()?;
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect();
        Some(Response {
            status,
            status_line,
            headers,
            body: bytes[end + 4..].to_vec(),
        })
    }

    fn set_header(&mut self, name: &str, value: &str) {
        self.headers.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
        self.headers.push((name.to_string(), value.to_string()));
    }

    fn to_bytes(&self) -> Vec<u8> {
        let mut out = format!("{}\r\n", self.status_line);
        for (k, v) in &self.headers {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        out.push_str("\r\n");
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(&self.body);
        bytes
    }
}

/// A server that records the headers of every request it gets and answers
/// each with a fixed status: the "other host" of a redirect, to prove no
/// credentials follow the client there.
pub struct RecordingServer {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<RequestHead>>>,
    shutdown: Arc<AtomicBool>,
}

impl RecordingServer {
    pub fn start(status: u16) -> RecordingServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind recording server");
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let shutdown = Arc::new(AtomicBool::new(false));
        let (seen_t, shutdown_t) = (Arc::clone(&seen), Arc::clone(&shutdown));
        thread::spawn(move || {
            for stream in listener.incoming() {
                if shutdown_t.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
                let Ok(clone) = stream.try_clone() else {
                    continue;
                };
                let mut reader = BufReader::new(clone);
                if let Some((head, _)) = read_head(&mut reader) {
                    drain(&mut reader, head.content_length);
                    seen_t.lock().unwrap().push(head);
                    let _ = write_response(&mut &stream, status, &[], b"");
                }
            }
        });
        RecordingServer {
            addr,
            seen,
            shutdown,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> Vec<RequestHead> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for RecordingServer {
    fn drop(&mut self) {
        self.shutdown.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
    }
}

/// Relays raw TCP bytes from `listen` (e.g. `127.0.0.2:0`) to `upstream`:
/// reaches a TLS registry under a name its certificate does not carry.
pub struct TcpRelay {
    addr: SocketAddr,
    shutdown: Arc<AtomicBool>,
}

impl TcpRelay {
    pub fn start(listen: &str, upstream: &str) -> io::Result<TcpRelay> {
        let listener = TcpListener::bind(listen)?;
        let addr = listener.local_addr()?;
        let upstream: SocketAddr = upstream
            .parse()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{e}")))?;
        let shutdown = Arc::new(AtomicBool::new(false));
        let stop = Arc::clone(&shutdown);
        thread::spawn(move || {
            for stream in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = stream else { continue };
                let Ok(server) = TcpStream::connect(upstream) else {
                    continue;
                };
                let (Ok(mut c2), Ok(mut s2)) = (client.try_clone(), server.try_clone()) else {
                    continue;
                };
                let (mut c1, mut s1) = (client, server);
                thread::spawn(move || {
                    let _ = io::copy(&mut c1, &mut s1);
                    let _ = s1.shutdown(Shutdown::Write);
                });
                thread::spawn(move || {
                    let _ = io::copy(&mut s2, &mut c2);
                    let _ = c2.shutdown(Shutdown::Write);
                });
            }
        });
        Ok(TcpRelay { addr, shutdown })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for TcpRelay {
    fn drop(&mut self) {
        self.shutdown.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
    }
}
