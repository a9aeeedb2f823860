//! Where credentials come from, in the order docker and skopeo users expect: the command
//! line, the environment, then `~/.docker/config.json` (or `$DOCKER_CONFIG/config.json`)
//! with its `credHelpers`, `auths` and `credsStore`.

use std::collections::HashMap;
use std::fmt;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use base64::Engine as _;
use serde::Deserialize;

use crate::error::{Error, Result};

/// A password or token that never prints itself.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// Only the authenticator beside this module sends it.
    pub(super) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: Secret,
}

#[derive(Debug, Default, Deserialize)]
struct DockerConfig {
    #[serde(default, deserialize_with = "crate::image::nullable::or_empty")]
    auths: HashMap<String, AuthEntry>,
    #[serde(
        rename = "credHelpers",
        default,
        deserialize_with = "crate::image::nullable::or_empty"
    )]
    cred_helpers: HashMap<String, String>,
    #[serde(rename = "credsStore", default)]
    creds_store: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    identitytoken: Option<String>,
}

/// The docker config file to read, honouring `$DOCKER_CONFIG` as docker does.
pub fn docker_config_path() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    let home = std::env::var_os("HOME").filter(|h| !h.is_empty())?;
    Some(PathBuf::from(home).join(".docker").join("config.json"))
}

/// Credentials for `registry` (as written in the reference: `docker.io`, `host:port`) from
/// the docker config file, or `None` when it has none for that registry.
pub fn from_docker_config(registry: &str) -> Result<Option<Credentials>> {
    let Some(path) = docker_config_path() else {
        return Ok(None);
    };
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(crate::error::io_error("read", &path, e)),
    };
    let config: DockerConfig = serde_json::from_slice(&bytes).map_err(|e| {
        Error::auth(format!("{} is not valid JSON: {e}", path.display()))
            .hint("fix or remove the file")
    })?;
    lookup(&config, registry, &run_helper)
}

type HelperRunner<'a> = dyn Fn(&str, &str) -> Result<Option<Credentials>> + 'a;

fn lookup(
    config: &DockerConfig,
    registry: &str,
    helper: &HelperRunner,
) -> Result<Option<Credentials>> {
    let keys = config_keys(registry);
    if let Some(name) = keys.iter().find_map(|k| config.cred_helpers.get(k)) {
        return helper(name, &keys[0]);
    }
    if let Some(entry) = keys.iter().find_map(|k| config.auths.get(k))
        && let Some(credentials) = decode_entry(entry, registry)?
    {
        return Ok(Some(credentials));
    }
    match &config.creds_store {
        Some(store) if !store.is_empty() => helper(store, &helper_server_url(registry)),
        _ => Ok(None),
    }
}

/// The spellings docker config files use for one registry.
fn config_keys(registry: &str) -> Vec<String> {
    if registry == "docker.io" {
        return vec![
            "https://index.docker.io/v1/".into(),
            "index.docker.io".into(),
            "docker.io".into(),
            "registry-1.docker.io".into(),
            "https://index.docker.io/v1".into(),
        ];
    }
    vec![
        registry.to_string(),
        format!("https://{registry}"),
        format!("http://{registry}"),
        format!("https://{registry}/v1/"),
        format!("https://{registry}/v2/"),
    ]
}

fn helper_server_url(registry: &str) -> String {
    config_keys(registry).remove(0)
}

fn decode_entry(entry: &AuthEntry, registry: &str) -> Result<Option<Credentials>> {
    if let (Some(username), Some(password)) = (&entry.username, &entry.password)
        && !username.is_empty()
    {
        return Ok(Some(Credentials {
            username: username.clone(),
            password: Secret::new(password.clone()),
        }));
    }
    if let Some(auth) = entry.auth.as_deref().filter(|a| !a.is_empty()) {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .and_then(|text| {
                text.split_once(':')
                    .map(|(u, p)| (u.to_string(), p.to_string()))
            });
        let Some((username, password)) = decoded else {
            return Err(Error::auth(format!(
                "the docker config entry for {registry} has an unreadable \"auth\" value"
            ))
            .hint("run docker login again or fix config.json"));
        };
        return Ok(Some(Credentials {
            username,
            password: Secret::new(password),
        }));
    }
    if let Some(token) = entry.identitytoken.as_deref().filter(|t| !t.is_empty()) {
        // Identity tokens are refresh tokens; registries that issue them accept them as the
        // password of the `<token>` user in the token flow.
        return Ok(Some(Credentials {
            username: "<token>".into(),
            password: Secret::new(token),
        }));
    }
    Ok(None)
}

#[derive(Deserialize)]
struct HelperAnswer {
    #[serde(rename = "Username", default)]
    username: String,
    #[serde(rename = "Secret", default)]
    secret: String,
}

/// Runs `docker-credential-NAME get` with the server URL on stdin, as docker does.
fn run_helper(name: &str, server: &str) -> Result<Option<Credentials>> {
    let program = format!("docker-credential-{name}");
    let mut child = Command::new(&program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            Error::auth(format!("cannot run credential helper {program}: {e}"))
                .hint("install it, or remove it from the docker config, or pass -u/-p")
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        // A helper that exits without reading stdin is reported through its exit status.
        let _ = stdin.write_all(server.as_bytes());
    }
    let output = child
        .wait_with_output()
        .map_err(|e| Error::auth(format!("credential helper {program} failed: {e}")))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        // Helpers say "credentials not found in native keychain" when they have none.
        if stdout.contains("not found")
            || String::from_utf8_lossy(&output.stderr).contains("not found")
        {
            return Ok(None);
        }
        return Err(Error::auth(format!(
            "credential helper {program} failed ({})",
            output.status
        ))
        .hint("check the helper works: echo SERVER | docker-credential-NAME get"));
    }
    let answer: HelperAnswer = serde_json::from_slice(&output.stdout).map_err(|_| {
        Error::auth(format!(
            "credential helper {program} printed something that is not credentials"
        ))
    })?;
    if answer.secret.is_empty() {
        return Ok(None);
    }
    Ok(Some(Credentials {
        username: answer.username,
        password: Secret::new(answer.secret),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(json: &str) -> DockerConfig {
        serde_json::from_str(json).unwrap()
    }

    fn no_helper(_: &str, _: &str) -> Result<Option<Credentials>> {
        panic!("no helper expected")
    }

    #[test]
    fn auths_entries_decode_base64_and_plain_fields() {
        let c = config(r#"{"auths":{"reg.example.com:5000":{"auth":"dXNlcjpwYTpzcw=="}}}"#);
        let creds = lookup(&c, "reg.example.com:5000", &no_helper)
            .unwrap()
            .unwrap();
        assert_eq!(
            (creds.username.as_str(), creds.password.expose()),
            ("user", "pa:ss")
        );

        let c =
            config(r#"{"auths":{"https://index.docker.io/v1/":{"username":"u","password":"p"}}}"#);
        assert_eq!(
            lookup(&c, "docker.io", &no_helper)
                .unwrap()
                .unwrap()
                .username,
            "u"
        );
        assert!(
            lookup(&c, "other.example.com", &no_helper)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn cred_helpers_win_over_auths_and_creds_store_is_the_fallback() {
        let c = config(
            r#"{"auths":{"a.io":{"auth":"dTpw"}},"credHelpers":{"a.io":"pass"},"credsStore":"desktop"}"#,
        );
        let seen = std::cell::RefCell::new(Vec::new());
        let helper = |name: &str, server: &str| {
            seen.borrow_mut().push(format!("{name} {server}"));
            Ok(Some(Credentials {
                username: name.into(),
                password: Secret::new("s"),
            }))
        };
        assert_eq!(
            lookup(&c, "a.io", &helper).unwrap().unwrap().username,
            "pass"
        );
        assert_eq!(
            lookup(&c, "b.io", &helper).unwrap().unwrap().username,
            "desktop"
        );
        assert_eq!(*seen.borrow(), vec!["pass a.io", "desktop b.io"]);
    }

    #[test]
    fn broken_auth_value_is_an_auth_error() {
        let c = config(r#"{"auths":{"a.io":{"auth":"!!!"}}}"#);
        assert!(lookup(&c, "a.io", &no_helper).is_err());
    }

    #[test]
    fn secrets_do_not_print() {
        let creds = Credentials {
            username: "u".into(),
            password: Secret::new("hunter2"),
        };
        assert!(!format!("{creds:?}").contains("hunter2"));
    }
}
