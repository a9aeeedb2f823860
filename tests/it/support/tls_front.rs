//! A TLS-terminating front: takes TLS on `127.0.0.1:<ephemeral>` with a test CA's
//! server certificate and relays the plain bytes to an HTTP upstream, as nginx or a load
//! balancer does in front of a registry. It adds no `X-Forwarded-Proto`, so distribution
//! behind it builds its upload `Location`s with `http://`: the misconfiguration a client
//! must refuse to follow with credentials. It also serves the token realm over HTTPS
//! for TLS registries with token auth.
//!
//! Each connection is relayed by one thread polling both sides with short read
//! timeouts: rustls streams cannot be split between threads, and tests move little.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ServerConfig, ServerConnection, StreamOwned};

use super::pki::ServerCerts;

/// How long a relayed connection may sit with nothing moving either way.
const IDLE_LIMIT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(2);

/// A running TLS front. Stops accepting on drop.
pub struct TlsFront {
    addr: SocketAddr,
    shutdown: Arc<AtomicBool>,
}

impl TlsFront {
    /// Serves `certs` (a leaf for 127.0.0.1/localhost) and relays to `upstream`
    /// (`127.0.0.1:PORT`).
    pub fn start(certs: &ServerCerts, upstream: &str) -> TlsFront {
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&certs.cert)
            .expect("read TLS front certificate")
            .collect::<Result<_, _>>()
            .expect("parse TLS front certificate");
        let key = PrivateKeyDer::from_pem_file(&certs.key).expect("read TLS front key");
        let config =
            ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .expect("TLS versions")
                .with_no_client_auth()
                .with_single_cert(chain, key)
                .expect("TLS front certificate and key");
        let config = Arc::new(config);
        let upstream: SocketAddr = upstream.parse().expect("upstream is ip:port");
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind TLS front");
        let addr = listener.local_addr().unwrap();
        let shutdown = Arc::new(AtomicBool::new(false));
        let stop = Arc::clone(&shutdown);
        thread::spawn(move || {
            for stream in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = stream else { continue };
                let config = Arc::clone(&config);
                thread::spawn(move || {
                    let _ = relay(client, upstream, config);
                });
            }
        });
        TlsFront { addr, shutdown }
    }

    /// `127.0.0.1:PORT`
    pub fn host(&self) -> String {
        self.addr.to_string()
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        self.shutdown.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
    }
}

fn would_block(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

fn relay(client: TcpStream, upstream: SocketAddr, config: Arc<ServerConfig>) -> io::Result<()> {
    client.set_read_timeout(Some(Duration::from_secs(10)))?;
    let connection = ServerConnection::new(config).map_err(io::Error::other)?;
    let mut tls = StreamOwned::new(connection, client);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock)?;
    }
    let mut server = TcpStream::connect(upstream)?;
    tls.sock.set_read_timeout(Some(POLL))?;
    server.set_read_timeout(Some(POLL))?;
    let mut buf = vec![0u8; 64 << 10];
    let mut client_open = true;
    let mut last_moved = Instant::now();
    loop {
        let mut moved = false;
        if client_open {
            match tls.read(&mut buf) {
                Ok(0) => {
                    client_open = false;
                    let _ = server.shutdown(Shutdown::Write);
                }
                Ok(n) => {
                    server.write_all(&buf[..n])?;
                    moved = true;
                }
                Err(e) if would_block(&e) => {}
                Err(_) => {
                    client_open = false;
                    let _ = server.shutdown(Shutdown::Write);
                }
            }
        }
        match server.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                tls.write_all(&buf[..n])?;
                tls.flush()?;
                moved = true;
            }
            Err(e) if would_block(&e) => {}
            Err(_) => break,
        }
        if moved {
            last_moved = Instant::now();
        } else if last_moved.elapsed() > IDLE_LIMIT {
            break;
        }
    }
    tls.conn.send_close_notify();
    let _ = tls.flush();
    let _ = tls.sock.shutdown(Shutdown::Both);
    Ok(())
}
