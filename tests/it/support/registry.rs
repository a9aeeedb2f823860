//! Launches a real CNCF distribution registry (`/usr/bin/docker-registry`,
//! Debian's distribution 2.8 package) for a test.
//!
//! Every instance owns a temp dir holding its config, storage, certificates,
//! htpasswd file and log, listens on its own ephemeral port on 127.0.0.1 and
//! shares no global state, so tests can run in parallel.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::pki::{self, ServerCerts};
use super::tls_front::TlsFront;
use super::token::{TokenOptions, TokenServer};

pub const REGISTRY_BIN: &str = "/usr/bin/docker-registry";

/// Fixed `http.secret`. The registry signs upload-session state handed to
/// clients (the `_state` query parameter of upload URLs) with it; a random
/// per-start secret would invalidate in-flight uploads on `restart()`.
const HTTP_SECRET: &str = "docker-image-pusher-test-harness-fixed-http-secret";

/// Response header carrying a per-start id, so the readiness probe can tell
/// *our* registry apart from some other server that grabbed the same port.
const INSTANCE_HEADER: &str = "X-Test-Registry-Instance";

const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
const PORT_ATTEMPTS: usize = 8;

/// How clients must authenticate to the registry.
#[derive(Clone, Debug, Default)]
pub enum Auth {
    #[default]
    None,
    /// `auth.htpasswd` with one bcrypt user.
    Htpasswd { user: String, password: String },
    /// `auth.token`, backed by an in-process [`TokenServer`] that the
    /// registry instance starts and owns.
    Token(TokenOptions),
}

impl Auth {
    pub fn htpasswd(user: &str, password: &str) -> Auth {
        Auth::Htpasswd {
            user: user.to_string(),
            password: password.to_string(),
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct RegistryOptions {
    /// Serve HTTPS with a certificate for 127.0.0.1/localhost signed by a
    /// fresh test CA (see [`TestRegistry::ca_cert_path`]).
    pub tls: bool,
    pub auth: Auth,
}

impl RegistryOptions {
    pub fn plain() -> Self {
        Self::default()
    }

    pub fn tls(mut self, tls: bool) -> Self {
        self.tls = tls;
        self
    }

    pub fn auth(mut self, auth: Auth) -> Self {
        self.auth = auth;
        self
    }
}

/// A running (or stopped) registry process. Dropping it kills the process
/// and deletes its directory.
pub struct TestRegistry {
    opts: RegistryOptions,
    port: u16,
    certs: Option<ServerCerts>,
    token: Option<TokenServer>,
    /// With TLS, the token realm is served over HTTPS too, as a client of an `https://`
    /// registry refuses a plain-HTTP realm.
    token_front: Option<TlsFront>,
    child: Option<Child>,
    config_path: PathBuf,
    log_path: PathBuf,
    storage: PathBuf,
    starts: u32,
    // Last, so it is removed only after everything above is dropped.
    dir: TempDir,
}

/// Panics with the install hint if the registry binary is missing. Never skip:
/// a test suite that silently passes without a registry proves nothing.
pub fn require_registry_binary(path: &Path) {
    if !path.is_file() {
        panic!(
            "docker-registry not found at {}: install the Debian package docker-registry \
             (make test does this)",
            path.display()
        );
    }
}

impl TestRegistry {
    pub fn start(opts: RegistryOptions) -> TestRegistry {
        require_registry_binary(Path::new(REGISTRY_BIN));
        let dir = super::workspace_tmp();
        let storage = dir.path().join("storage");
        fs::create_dir_all(&storage).expect("create storage dir");

        let certs = opts
            .tls
            .then(|| pki::make_server_certs(&dir.path().join("tls")));
        let token = match &opts.auth {
            Auth::Token(t) => Some(TokenServer::start(t.clone(), &dir.path().join("token"))),
            _ => None,
        };
        let token_front = match (&certs, &token) {
            (Some(certs), Some(token)) => Some(TlsFront::start(certs, &token.addr().to_string())),
            _ => None,
        };
        if let Auth::Htpasswd { user, password } = &opts.auth {
            // Cost 4 is bcrypt's minimum: these are throw-away passwords and
            // the registry verifies on every request.
            let hash = bcrypt::hash(password, 4).expect("bcrypt hash");
            fs::write(dir.path().join("htpasswd"), format!("{user}:{hash}\n"))
                .expect("write htpasswd");
        }

        let mut reg = TestRegistry {
            opts,
            port: 0,
            certs,
            token,
            token_front,
            child: None,
            config_path: dir.path().join("config.yml"),
            log_path: dir.path().join("registry.log"),
            storage,
            starts: 0,
            dir,
        };

        // Pick a free port by binding :0 and releasing it. Another process
        // may grab it before the registry binds; then pick again.
        for attempt in 1..=PORT_ATTEMPTS {
            reg.port = free_port();
            match reg.spawn_and_wait() {
                Ok(()) => return reg,
                Err(StartError::PortInUse) if attempt < PORT_ATTEMPTS => continue,
                Err(e) => reg.fail_startup(&e),
            }
        }
        unreachable!()
    }

    /// `127.0.0.1:PORT`
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT` or `https://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme(), self.host())
    }

    pub fn scheme(&self) -> &'static str {
        if self.opts.tls { "https" } else { "http" }
    }

    pub fn is_tls(&self) -> bool {
        self.opts.tls
    }

    pub fn options(&self) -> &RegistryOptions {
        &self.opts
    }

    /// PEM certificate of the test CA that signed the server cert (TLS only).
    pub fn ca_cert_path(&self) -> Option<&Path> {
        self.certs.as_ref().map(|c| c.ca_cert.as_path())
    }

    /// The realm URL clients are sent to: the token server, behind HTTPS when the
    /// registry speaks TLS.
    pub fn token_realm(&self) -> Option<String> {
        let token = self.token.as_ref()?;
        Some(match &self.token_front {
            Some(front) => format!("https://{}/token", front.host()),
            None => token.realm(),
        })
    }

    /// The token server behind `Auth::Token`, to inspect issued tokens.
    pub fn token_server(&self) -> Option<&TokenServer> {
        self.token.as_ref()
    }

    /// `(user, password)` for `Auth::Htpasswd`.
    pub fn htpasswd_credentials(&self) -> Option<(String, String)> {
        match &self.opts.auth {
            Auth::Htpasswd { user, password } => Some((user.clone(), password.clone())),
            _ => None,
        }
    }

    /// Root of the filesystem storage driver (`docker/registry/v2/...` below it).
    pub fn storage_dir(&self) -> &Path {
        &self.storage
    }

    /// The instance's private temp dir (config, storage, certs, log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// Everything the registry printed so far, across restarts.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// An HTTP agent that trusts this registry's CA (if any) and uses no proxy.
    pub fn agent(&self) -> ureq::Agent {
        super::http_agent(self.ca_cert_path())
    }

    /// Graceful stop: SIGTERM, then SIGKILL if it has not exited in time.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if matches!(child.try_wait(), Ok(None)) {
            // std can only SIGKILL; use kill(1) for SIGTERM to avoid a libc dependency.
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .stderr(Stdio::null())
                .status();
            if wait_timeout(&mut child, STOP_TIMEOUT).is_none() {
                let _ = child.kill();
            }
        }
        let _ = child.wait();
    }

    /// Simulates a crash: SIGKILL, no chance to clean up.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops (if running) and starts again on the same port, with the same
    /// storage, certificates, secret and token server.
    pub fn restart(&mut self) {
        self.stop();
        // The port was released by the old process; something else could
        // have taken it meanwhile. Retry for a while, but never move ports:
        // callers rely on the URL staying the same.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.spawn_and_wait() {
                Ok(()) => return,
                Err(StartError::PortInUse) if Instant::now() < deadline => {
                    thread::sleep(Duration::from_millis(200))
                }
                Err(e) => self.fail_startup(&e),
            }
        }
    }

    fn write_config(&self, instance_id: &str) {
        let q = |p: &Path| serde_json::to_string(&p.to_string_lossy()).unwrap();
        // JSON strings are valid YAML double-quoted scalars, so quoting with
        // serde_json is safe for any path.
        let mut cfg = format!(
            "\
version: 0.1
log:
  level: info
  formatter: text
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: {storage}
  delete:
    enabled: true
  maintenance:
    # Never delete upload sessions behind a test's back.
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:{port}
  secret: {secret}
  draintimeout: 1s
  headers:
    {INSTANCE_HEADER}: [{instance_id}]
",
            storage = q(&self.storage),
            port = self.port,
            secret = HTTP_SECRET,
        );
        if let Some(c) = &self.certs {
            cfg.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                q(&c.cert),
                q(&c.key)
            ));
        }
        match &self.opts.auth {
            Auth::None => {}
            Auth::Htpasswd { .. } => cfg.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: test-registry\n    path: {}\n",
                q(&self.dir.path().join("htpasswd"))
            )),
            Auth::Token(_) => {
                let t = self.token.as_ref().expect("token server");
                let js = |s: &str| serde_json::to_string(s).unwrap();
                cfg.push_str(&format!(
                    "auth:\n  token:\n    realm: {}\n    service: {}\n    issuer: {}\n    rootcertbundle: {}\n",
                    js(&self.token_realm().expect("token realm")),
                    js(t.service()),
                    js(t.issuer()),
                    q(t.root_cert_path())
                ));
            }
        }
        fs::write(&self.config_path, cfg).expect("write registry config");
    }

    fn spawn_and_wait(&mut self) -> Result<(), StartError> {
        static INSTANCE: AtomicU64 = AtomicU64::new(0);
        let instance_id = format!(
            "{}-{}-{}",
            std::process::id(),
            INSTANCE.fetch_add(1, Ordering::SeqCst),
            self.port
        );
        self.write_config(&instance_id);
        self.starts += 1;

        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("open registry log");
        // Only this start's output counts when diagnosing why it exited.
        let log_offset = log.metadata().map(|m| m.len() as usize).unwrap_or(0);
        writeln!(
            log,
            "===== harness: start #{} on port {} =====",
            self.starts, self.port
        )
        .unwrap();
        let log_err = log.try_clone().expect("clone log handle");

        let mut cmd = Command::new(REGISTRY_BIN);
        cmd.arg("serve")
            .arg(&self.config_path)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err));
        // REGISTRY_* variables override the config file; never inherit them.
        super::scrub_env(&mut cmd);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {REGISTRY_BIN}: {e}"));
        self.child = Some(child);

        let result = self.wait_ready(&instance_id, log_offset);
        if result.is_err() {
            self.kill();
        }
        result
    }

    /// Polls `GET /v2/` until it answers 200 (no auth) or 401 (auth) with
    /// our instance header.
    fn wait_ready(&mut self, instance_id: &str, log_offset: usize) -> Result<(), StartError> {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .proxy(None)
            .timeout_global(Some(Duration::from_secs(2)))
            .tls_config(super::tls_config(self.ca_cert_path()))
            .build()
            .new_agent();
        let url = format!("{}/v2/", self.url());
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                let this_start = self.log().get(log_offset..).unwrap_or_default().to_string();
                return Err(if this_start.contains("address already in use") {
                    StartError::PortInUse
                } else {
                    StartError::Exited(status)
                });
            }
            let last = match agent.get(&url).call() {
                Ok(resp) => {
                    let ours = resp
                        .headers()
                        .get(INSTANCE_HEADER)
                        .and_then(|v| v.to_str().ok())
                        == Some(instance_id);
                    let status = resp.status().as_u16();
                    if ours && (status == 200 || status == 401) {
                        return Ok(());
                    }
                    if ours {
                        format!("GET /v2/ answered {status}")
                    } else {
                        // Someone else answers on "our" port.
                        format!("a foreign server answered {status}")
                    }
                }
                Err(e) => e.to_string(),
            };
            if Instant::now() > deadline {
                return Err(StartError::Timeout(last));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    fn fail_startup(&mut self, e: &StartError) -> ! {
        self.kill();
        let config = fs::read_to_string(&self.config_path).unwrap_or_default();
        panic!(
            "docker-registry failed to start on {}: {e:?}\n--- config ---\n{config}\n--- log tail ---\n{}",
            self.host(),
            tail(&self.log(), 40)
        );
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        // A failing test tears its registry down while unwinding; show what
        // the registry said, since the temp dir with the log is about to go.
        if thread::panicking() {
            eprintln!(
                "--- docker-registry log tail ({}) ---\n{}",
                self.host(),
                tail(&self.log(), 30)
            );
        }
        self.kill();
    }
}

#[derive(Debug)]
enum StartError {
    PortInUse,
    Exited(ExitStatus),
    Timeout(String),
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() > deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
