//! Test certificates and keys, made with the `openssl` CLI.
//!
//! We shell out to `/usr/bin/openssl` rather than pulling in an X.509 crate:
//! the harness must not add dependencies, and the registry (Go's crypto/x509)
//! and rustls are both strict about what they accept, so using the reference
//! tool keeps the certificates boring and standard.
//!
//! A private `openssl.cnf` is written next to the outputs so that the result
//! does not depend on the system-wide OpenSSL configuration.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

pub const OPENSSL_BIN: &str = "/usr/bin/openssl";

/// Extensions used by the harness. `prompt = no` plus `-subj` keeps openssl
/// from ever asking anything on stdin.
const OPENSSL_CNF: &str = "\
[req]
distinguished_name = dn
prompt = no

[dn]
CN = placeholder

[ca_ext]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash

# rustls/webpki insists on a SAN that matches the host we dial, and on an
# end-entity (CA:FALSE) certificate.
[server_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid

# The token-signing certificate is self-signed and listed as a root in the
# registry's rootcertbundle; Go accepts a leaf that is itself in the root pool.
[token_ext]
basicConstraints = critical, CA:TRUE
keyUsage = critical, digitalSignature, keyCertSign
subjectKeyIdentifier = hash
";

/// Server TLS material for a registry: a throw-away CA and a leaf for
/// `127.0.0.1` and `localhost` signed by it.
#[derive(Clone, Debug)]
pub struct ServerCerts {
    /// PEM CA certificate that clients must trust.
    pub ca_cert: PathBuf,
    /// PEM server certificate (leaf only).
    pub cert: PathBuf,
    /// PEM server private key.
    pub key: PathBuf,
}

/// An ES256 (P-256) key used by the token server to sign JWTs, plus a
/// self-signed certificate for the same key that the registry trusts.
#[derive(Clone, Debug)]
pub struct SigningKey {
    /// Unencrypted PKCS#8 DER, the form `ring::signature::EcdsaKeyPair::from_pkcs8` wants.
    pub pkcs8_der: Vec<u8>,
    /// The certificate as DER, for the JWT header `x5c` (base64 standard alphabet).
    pub cert_der: Vec<u8>,
    /// The certificate as PEM, for the registry's `auth.token.rootcertbundle`.
    pub cert_pem_path: PathBuf,
}

/// Panics loudly when openssl is missing: the harness never silently skips.
pub fn require_openssl() {
    if !Path::new(OPENSSL_BIN).exists() {
        panic!(
            "openssl not found at {OPENSSL_BIN}: install the Debian package openssl \
             (the test harness needs it to make test certificates)"
        );
    }
}

/// Runs `openssl ARGS` in `dir`, panicking with its stderr on failure.
pub fn openssl(dir: &Path, args: &[&str]) {
    require_openssl();
    let out = Command::new(OPENSSL_BIN)
        .args(args)
        .current_dir(dir)
        .env("OPENSSL_CONF", dir.join("openssl.cnf"))
        .output()
        .unwrap_or_else(|e| panic!("cannot run {OPENSSL_BIN}: {e}"));
    if !out.status.success() {
        panic!(
            "openssl {} failed ({}):\n{}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn write_cnf(dir: &Path, extra_names: &[&str]) {
    fs::create_dir_all(dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    let extra: String = extra_names.iter().map(|n| format!(", DNS:{n}")).collect();
    let cnf = OPENSSL_CNF.replace("DNS:localhost\n", &format!("DNS:localhost{extra}\n"));
    fs::write(dir.join("openssl.cnf"), cnf).expect("write openssl.cnf");
}

fn new_p256_key(dir: &Path, file: &str) {
    openssl(
        dir,
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            file,
        ],
    );
}

/// A serial that differs between CAs made in the same second by parallel
/// tests; certificates with duplicate issuer+serial confuse some verifiers.
fn unique_serial() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("0x{:x}{:04x}", nanos, std::process::id() & 0xffff)
}

/// Creates a test CA and a server certificate for 127.0.0.1/localhost in `dir`.
pub fn make_server_certs(dir: &Path) -> ServerCerts {
    make_server_certs_for(dir, &[])
}

/// Like `make_server_certs`, with more DNS names in the server certificate.
pub fn make_server_certs_for(dir: &Path, extra_names: &[&str]) -> ServerCerts {
    write_cnf(dir, extra_names);
    new_p256_key(dir, "ca.key");
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-x509",
            "-config",
            "openssl.cnf",
            "-key",
            "ca.key",
            "-subj",
            "/CN=docker-image-pusher test CA",
            "-extensions",
            "ca_ext",
            "-sha256",
            "-days",
            "30",
            "-set_serial",
            &unique_serial(),
            "-out",
            "ca.crt",
        ],
    );
    new_p256_key(dir, "server.key");
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-config",
            "openssl.cnf",
            "-key",
            "server.key",
            "-subj",
            "/CN=localhost",
            "-out",
            "server.csr",
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-set_serial",
            &unique_serial(),
            "-extfile",
            "openssl.cnf",
            "-extensions",
            "server_ext",
            "-sha256",
            "-days",
            "30",
            "-out",
            "server.crt",
        ],
    );
    ServerCerts {
        ca_cert: dir.join("ca.crt"),
        cert: dir.join("server.crt"),
        key: dir.join("server.key"),
    }
}

/// Creates the token server's ES256 signing key and its self-signed cert in `dir`.
pub fn make_signing_key(dir: &Path) -> SigningKey {
    write_cnf(dir, &[]);
    new_p256_key(dir, "token.key");
    // ring wants PKCS#8 DER. (`openssl pkey -outform DER` would write SEC1
    // for EC keys; `pkcs8 -topk8` writes PKCS#8 and leaves the curve
    // parameters out of the inner ECPrivateKey, which ring also requires.)
    openssl(
        dir,
        &[
            "pkcs8",
            "-topk8",
            "-nocrypt",
            "-in",
            "token.key",
            "-outform",
            "DER",
            "-out",
            "token.pk8",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-x509",
            "-config",
            "openssl.cnf",
            "-key",
            "token.key",
            "-subj",
            "/CN=docker-image-pusher test token signer",
            "-extensions",
            "token_ext",
            "-sha256",
            "-days",
            "30",
            "-set_serial",
            &unique_serial(),
            "-out",
            "token.crt",
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-in",
            "token.crt",
            "-outform",
            "DER",
            "-out",
            "token.crt.der",
        ],
    );
    SigningKey {
        pkcs8_der: fs::read(dir.join("token.pk8")).expect("read token.pk8"),
        cert_der: fs::read(dir.join("token.crt.der")).expect("read token.crt.der"),
        cert_pem_path: dir.join("token.crt"),
    }
}
