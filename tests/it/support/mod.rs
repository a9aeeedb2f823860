//! Integration-test harness: a real CNCF distribution registry
//! (`/usr/bin/docker-registry`) per test, optionally behind TLS, htpasswd or
//! Docker token auth, plus a small verification client that is independent
//! of the product code.
//!
//! Declared as `mod support;` by the `it` and `privileged` test crates. Nothing here is global:
//! every registry, token server and client is its own value, so tests can
//! run in parallel.
//!
//! ```ignore
//! let reg = TestRegistry::start(RegistryOptions::plain());
//! let client = RegistryClient::new(&reg);
//! let digest = client.put_blob("demo/app", b"hello");
//! assert!(client.blob_exists("demo/app", &digest));
//! ```

// The privileged crate compiles this module too and uses a small subset of it.
#![allow(dead_code, unused_imports)]

pub mod cache;
pub mod client;
pub mod faults;
pub mod nginx_front;
pub mod pki;
pub mod pull_proxy;
pub mod pusher;
pub mod registry;
pub mod revoking_proxy;
pub mod tls_front;
pub mod token;
pub mod verify;

pub use client::{HttpError, RawResponse, RegistryClient};
pub use faults::{Fault, FaultProxy, Match, Mode, RecordingServer, Rule, TcpRelay};
pub use pusher::{
    Pusher, Run, parse_result_line, pusher, scrub_env, send_signal, verify_image,
    verify_reported_image,
};
pub use registry::{Auth, RegistryOptions, TestRegistry};
pub use tls_front::TlsFront;
pub use token::{Grant, TokenOptions, TokenRequest, TokenServer, Who, same_scope};

use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

/// A fresh temp dir under `<crate>/tmp/` (git-ignored) rather than the
/// system temp dir: it sits on the same disk as the build and is easy to
/// inspect while a test is paused. Removed on drop.
pub fn workspace_tmp() -> tempfile::TempDir {
    let base = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tmp");
    std::fs::create_dir_all(&base).unwrap_or_else(|e| panic!("create {}: {e}", base.display()));
    tempfile::Builder::new()
        .prefix("harness-")
        .tempdir_in(&base)
        .unwrap_or_else(|e| panic!("create temp dir in {}: {e}", base.display()))
}

/// `sha256:<lowercase hex>`, the OCI digest of `bytes`.
pub fn sha256_digest(bytes: impl AsRef<[u8]>) -> String {
    let hash = Sha256::digest(bytes.as_ref());
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256:");
    for b in hash.iter() {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// rustls settings trusting exactly `ca_cert` (PEM) if given, otherwise
/// ureq's defaults (which will not trust a test CA).
pub fn tls_config(ca_cert: Option<&Path>) -> ureq::tls::TlsConfig {
    let mut tls = ureq::tls::TlsConfig::builder();
    if let Some(path) = ca_cert {
        let pem = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        let cert = ureq::tls::Certificate::from_pem(&pem)
            .unwrap_or_else(|e| panic!("parse CA cert {}: {e}", path.display()));
        tls = tls.root_certs(ureq::tls::RootCerts::new_with_certs(&[cert]));
    }
    tls.build()
}

/// An agent for talking to test servers: HTTP errors are returned as
/// responses (tests assert on status codes), no proxy from the environment
/// (everything is on 127.0.0.1), no redirects (we want to see the raw
/// registry answers), and a generous overall timeout so a hung server fails
/// the test instead of hanging it.
pub fn http_agent(ca_cert: Option<&Path>) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .max_redirects(0)
        .timeout_global(Some(Duration::from_secs(60)))
        .tls_config(tls_config(ca_cert))
        .build()
        .new_agent()
}
