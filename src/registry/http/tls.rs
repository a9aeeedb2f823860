//! The HTTP agent and what it trusts: the system's CA bundle, docker's `certs.d`, `--ca-cert`
//! files, or the built-in roots.

use std::path::{Path, PathBuf};

use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};

use super::transport::TransportOptions;
use crate::error::{Cause, Error, Result, TlsFailure};

/// Whether `host` answers a TLS handshake. Any answer over TLS, or a certificate to object
/// to, shows it does; a plain-HTTP answer or a failed connection shows nothing. One try,
/// bounded in time: it only decides which hint an error gets.
pub(crate) fn speaks_tls(agent: &ureq::Agent, host: &str) -> bool {
    let url = format!("https://{host}/v2/");
    let probe = agent
        .get(&url)
        .config()
        .timeout_global(Some(std::time::Duration::from_secs(10)))
        .build();
    match probe.call() {
        Ok(_) => true,
        Err(e) => matches!(
            super::errors::network_error(e, &url).cause,
            Some(Cause::Tls(TlsFailure::Untrusted | TlsFailure::WrongName))
        ),
    }
}

pub(crate) fn build_agent(host: &str, options: &TransportOptions) -> Result<ureq::Agent> {
    let tls = if options.skip_tls_verify {
        TlsConfig::builder().disable_verification(true).build()
    } else {
        TlsConfig::builder()
            .root_certs(root_certs(host, &options.ca_certs)?)
            .build()
    };
    let loopback = is_loopback_host(host);
    let timeout = Some(options.timeout);
    let config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .user_agent(concat!("docker-image-pusher/", env!("CARGO_PKG_VERSION")))
        .accept_encoding("identity")
        .tls_config(tls)
        // A proxy for the internet is never the way to a registry on this machine.
        .proxy(if loopback {
            None
        } else {
            ureq::Proxy::try_from_env()
        })
        .timeout_resolve(timeout)
        .timeout_connect(timeout)
        .timeout_per_read(timeout)
        .timeout_per_write(timeout)
        .timeout_recv_response(timeout)
        .timeout_send_request(timeout)
        .max_idle_connections_per_host(16)
        .build();
    let connector = ureq::unversioned::transport::DefaultConnector::new();
    Ok(ureq::Agent::with_parts(
        config,
        connector,
        crate::registry::http::resolve::HostResolver::default(),
    ))
}

pub(crate) fn is_loopback_host(host: &str) -> bool {
    let name = if host.starts_with('[') {
        host.split(']')
            .next()
            .unwrap_or(host)
            .trim_start_matches('[')
    } else {
        host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host)
    };
    name == "localhost" || name.starts_with("127.") || name == "::1"
}

/// Trust: the system's CA bundle, docker's per-registry `certs.d` directories, and any
/// `--ca-cert` files. With none of these, the built-in Mozilla roots.
pub(crate) fn root_certs(host: &str, extra: &[PathBuf]) -> Result<RootCerts> {
    let mut certs = Vec::new();
    let system = std::env::var_os("SSL_CERT_FILE")
        .map(PathBuf::from)
        .into_iter()
        .chain(
            [
                "/etc/ssl/certs/ca-certificates.crt",
                "/etc/pki/tls/certs/ca-bundle.crt",
                "/etc/ssl/ca-bundle.pem",
                "/etc/ssl/cert.pem",
                "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
            ]
            .map(PathBuf::from),
        );
    if let Some(bundle) = system.into_iter().find(|p| p.is_file()) {
        certs.extend(read_pem_certs(&bundle).unwrap_or_default());
    }
    for dir in ["/etc/docker/certs.d", "/etc/containers/certs.d"] {
        let Ok(entries) = std::fs::read_dir(Path::new(dir).join(host)) else {
            continue;
        };
        for entry in entries.flatten() {
            if entry.path().extension().is_some_and(|e| e == "crt") {
                certs.extend(read_pem_certs(&entry.path()).unwrap_or_default());
            }
        }
    }
    for path in extra {
        let found = read_pem_certs(path)?;
        if found.is_empty() {
            return Err(
                Error::usage(format!("{} contains no PEM certificate", path.display()))
                    .hint("--ca-cert takes a PEM file with -----BEGIN CERTIFICATE----- blocks"),
            );
        }
        certs.extend(found);
    }
    if certs.is_empty() {
        return Ok(RootCerts::WebPki);
    }
    Ok(RootCerts::from(certs))
}

pub(crate) fn read_pem_certs(path: &Path) -> Result<Vec<Certificate<'static>>> {
    let bytes = std::fs::read(path)
        .map_err(|e| crate::error::io_error("read", path, e).hint("check the --ca-cert path"))?;
    Ok(ureq::tls::parse_pem(&bytes)
        .filter_map(|item| match item {
            Ok(PemItem::Certificate(cert)) => Some(cert),
            _ => None,
        })
        .collect())
}
