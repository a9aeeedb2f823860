//! A real nginx as a reverse proxy in front of a test registry, with a request body cap
//! (`client_max_body_size`), as many deployments run one: started by the harness like the
//! registry (foreground, not a daemon, its own config, pid, logs and temp paths in a temp
//! dir, on `127.0.0.1:<ephemeral>`), killed on drop. A missing nginx fails the test
//! loudly: install it with `scripts/ensure-deps.sh`.

use std::fs;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::TestRegistry;

const CANDIDATES: [&str; 3] = ["/usr/sbin/nginx", "/usr/bin/nginx", "/usr/local/sbin/nginx"];
const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);

pub struct NginxFront {
    port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

fn nginx_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("NGINX") {
        return PathBuf::from(path);
    }
    CANDIDATES
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "nginx is not installed (looked in {CANDIDATES:?}; set NGINX=/path/to/nginx): run scripts/ensure-deps.sh"
            )
        })
}

impl NginxFront {
    /// nginx on an ephemeral port relaying to `registry`, refusing bodies over
    /// `max_body` (nginx syntax: `20m`) with its own HTML 413 page.
    pub fn start(registry: &TestRegistry, max_body: &str) -> NginxFront {
        let binary = nginx_binary();
        let dir = super::workspace_tmp();
        for sub in ["client", "proxy", "logs"] {
            fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        let port = free_port();
        let config = dir.path().join("nginx.conf");
        fs::write(
            &config,
            config_text(dir.path(), port, &registry.host(), max_body),
        )
        .unwrap();
        let log = fs::File::create(dir.path().join("logs/stderr.log")).unwrap();
        let child = Command::new(&binary)
            .arg("-c")
            .arg(&config)
            .arg("-p")
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let mut front = NginxFront {
            port,
            child: Some(child),
            dir,
        };
        front.wait_ready();
        front
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.host())
    }

    /// nginx's access log: one line per request with its status and body size.
    pub fn access_log(&self) -> String {
        fs::read_to_string(self.dir.path().join("logs/access.log")).unwrap_or_default()
    }

    fn log(&self) -> String {
        let read = |name: &str| {
            fs::read_to_string(self.dir.path().join("logs").join(name)).unwrap_or_default()
        };
        format!("{}{}", read("stderr.log"), read("error.log"))
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("nginx exited at start ({status}):\n{}", self.log());
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "nginx did not listen on {} in time:\n{}",
                    self.host(),
                    self.log()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for NginxFront {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!("--- nginx log ({}) ---\n{}", self.host(), self.log());
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A registry front as the distribution docs show it: the client's `Host` passed on so
/// the registry's upload `Location`s point back at nginx, bodies buffered (nginx's
/// default), so a body over the cap is refused before the registry sees any of it.
fn config_text(root: &Path, port: u16, upstream: &str, max_body: &str) -> String {
    let root = root.display();
    format!(
        r#"daemon off;
master_process off;
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/logs/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log {root}/logs/access.log;
    client_body_temp_path {root}/client;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/client;
    uwsgi_temp_path {root}/client;
    scgi_temp_path {root}/client;
    server {{
        listen 127.0.0.1:{port};
        client_max_body_size {max_body};
        chunked_transfer_encoding on;
        location /v2/ {{
            proxy_pass http://{upstream};
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_read_timeout 120s;
        }}
    }}
}}
"#
    )
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}
