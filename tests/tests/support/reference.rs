//! The Python reference implementation, run for real next to ours.
//!
//! The reference's sources and its setup script live in the `shared/`
//! directory beside the repository (`<clone>/../shared`), or wherever
//! `ANPX_REFERENCE_DIR` points. [`reference`] makes a runnable copy with its
//! own virtualenv once per content of those files, under
//! `target/interop-reference/`, and the tests start its gateway and receiver
//! as child processes that are killed when dropped.
//!
//! When the reference cannot be set up (no `python3 -m venv`, no package
//! registry), a test says so by name and how to make it run; under CI
//! (`CI` set) it fails instead, so that a green CI run means the interop
//! suite ran.

use std::convert::Infallible;
use std::io::Write;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use sha2::{Digest, Sha256};

use super::Body;

/// A runnable copy of the reference: `src/` and `venv/`.
#[derive(Debug)]
pub struct Reference {
    dir: PathBuf,
}

/// The reference, set up on first use; `None` (after printing why, naming
/// `test`) when this machine cannot run it outside CI.
pub fn reference(test: &str) -> Option<&'static Reference> {
    static SETUP: OnceLock<Result<Reference, String>> = OnceLock::new();
    match SETUP.get_or_init(set_up) {
        Ok(r) => Some(r),
        Err(why) if std::env::var_os("CI").is_some() => {
            panic!("{test}: the Python reference is required under CI: {why}")
        }
        Err(why) => {
            // Straight to stderr: the test harness hides `eprintln!` of a
            // passing test, and a skip must be seen.
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED {test}: the live interop test against the Python reference did not run: {why}\n\
                 To run it: install python3 with venv (Debian: apt-get install python3-venv) with \
                 access to the Python package registry, keep shared/ (reference/ and \
                 reference-setup.sh) beside the clone or set ANPX_REFERENCE_DIR to it, then \
                 cargo test -p anpx-tests --test interop_reference"
            );
            None
        }
    }
}

fn shared_dir() -> PathBuf {
    std::env::var_os("ANPX_REFERENCE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared"))
}

/// The repository's `testdata/interop`, where the app the reference
/// receiver serves lives.
fn app_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/interop")
}

/// `target/`, found from the test binary (`target/debug/deps/…`).
fn target_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.parent()?.to_path_buf()))
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
}

/// SHA-256 over every file of the reference and its setup script, so that
/// a changed reference gets a fresh copy.
fn content_key(shared: &Path) -> Result<String, String> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            if path.is_dir() {
                walk(&path, out)?;
            } else {
                out.push(path);
            }
        }
        Ok(())
    }
    let mut files = vec![shared.join("reference-setup.sh")];
    walk(&shared.join("reference"), &mut files)
        .map_err(|e| format!("cannot read {}: {e}", shared.join("reference").display()))?;
    files.sort();
    let mut hash = Sha256::new();
    for f in files {
        let bytes = std::fs::read(&f).map_err(|e| format!("cannot read {}: {e}", f.display()))?;
        hash.update(
            f.strip_prefix(shared)
                .unwrap_or(&f)
                .to_string_lossy()
                .as_bytes(),
        );
        hash.update((bytes.len() as u64).to_be_bytes());
        hash.update(&bytes);
    }
    Ok(hex::encode(hash.finalize())[..16].to_owned())
}

fn set_up() -> Result<Reference, String> {
    let shared = shared_dir();
    if !shared.join("reference-setup.sh").is_file() {
        return Err(format!(
            "no reference-setup.sh in {} (set ANPX_REFERENCE_DIR)",
            shared.display()
        ));
    }
    let key = content_key(&shared)?;
    let dir = target_dir().join("interop-reference").join(&key);
    if dir.join("ready").is_file() {
        return Ok(Reference { dir });
    }
    // Built beside and renamed into place, so that a run killed half-way
    // leaves no copy that looks ready.
    let partial = dir.with_extension(format!("partial-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&partial);
    std::fs::create_dir_all(partial.parent().unwrap_or(Path::new(".")))
        .map_err(|e| format!("cannot create {}: {e}", partial.display()))?;
    eprintln!(
        "setting up the Python reference in {} (once per reference version)",
        dir.display()
    );
    let out = Command::new("bash")
        .arg(shared.join("reference-setup.sh"))
        .arg(&partial)
        .output()
        .map_err(|e| format!("cannot run bash: {e}"))?;
    if !out.status.success() {
        let _ = std::fs::remove_dir_all(&partial);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
        return Err(format!(
            "reference-setup.sh failed ({}): {}",
            out.status,
            tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
        ));
    }
    std::fs::write(partial.join("ready"), &key).map_err(|e| e.to_string())?;
    if std::fs::rename(&partial, &dir).is_err() {
        // Another run finished first; its copy is as good.
        let _ = std::fs::remove_dir_all(&partial);
        if !dir.join("ready").is_file() {
            return Err(format!("cannot move the copy to {}", dir.display()));
        }
    }
    Ok(Reference { dir })
}

/// A free loopback port (bound, read, released).
pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// A reference process; killed when dropped.
pub struct RefProcess {
    child: Child,
    log: PathBuf,
    name: String,
}

impl RefProcess {
    /// Everything it printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Fails the test when the process has exited.
    pub fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!(
                "reference {} exited ({status}); its log:\n{}",
                self.name,
                tail(&self.log(), 40)
            );
        }
    }
}

impl Drop for RefProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

impl Reference {
    /// The virtualenv's Python, which has the reference SDK (agent-connect).
    pub fn python(&self) -> PathBuf {
        self.dir.join("venv/bin/python")
    }

    /// Starts `anp_proxy.py` with `config` (TOML) as `name`.
    pub fn spawn(&self, name: &str, config: &str) -> RefProcess {
        let run = self.dir.join("runs");
        std::fs::create_dir_all(&run).expect("runs directory");
        let n = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let stem = format!("{name}-{}-{n}", std::process::id());
        let config_path = run.join(format!("{stem}.toml"));
        std::fs::write(&config_path, config).expect("write the reference's config");
        let log = run.join(format!("{stem}.log"));
        let out = std::fs::File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        let child = Command::new(self.dir.join("venv/bin/python"))
            .arg("anp_proxy.py")
            .arg("--config")
            .arg(&config_path)
            .current_dir(self.dir.join("src"))
            .env("PYTHONUNBUFFERED", "1")
            .env("PYTHONPATH", app_dir())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("start the reference");
        RefProcess {
            child,
            log,
            name: stem,
        }
    }

    /// A reference gateway on free loopback ports (public HTTP and the
    /// receivers' WebSocket), answering before this returns.
    pub async fn gateway(&self, log_level: &str) -> RefGateway {
        let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let ws: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let config = format!(
            r#"mode = "gateway"
[logging]
level = "{log_level}"
[gateway]
host = "127.0.0.1"
port = {}
wss_host = "127.0.0.1"
wss_port = {}
timeout = 60.0
ping_interval = 10.0
[gateway.tls]
enabled = false
[gateway.auth]
enabled = false
did_wba_enabled = false
"#,
            http.port(),
            ws.port()
        );
        let mut process = self.spawn("gateway", &config);
        let started = Instant::now();
        loop {
            process.assert_running();
            if let Ok(Ok(reply)) = tokio::time::timeout(
                Duration::from_secs(2),
                super::client().request(
                    http::Request::get(format!("http://{http}/health"))
                        .body(super::full(Bytes::new()))
                        .unwrap(),
                ),
            )
            .await
            {
                if reply.status() == 200 {
                    break;
                }
            }
            assert!(
                started.elapsed() < STARTUP,
                "reference gateway not answering after {STARTUP:?}; its log:\n{}",
                tail(&process.log(), 40)
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        RefGateway { http, ws, process }
    }

    /// A reference receiver dialing `url`, serving `testdata/interop/
    /// echo_app.py`, sending its JSON ping every `ping_interval` seconds.
    /// Not waited for: the caller watches its gateway for it.
    pub fn receiver(&self, url: &str, ping_interval: f64, log_level: &str) -> RefProcess {
        let config = format!(
            r#"mode = "receiver"
[logging]
level = "{log_level}"
[receiver]
gateway_url = "{url}"
local_app_module = "echo_app:app"
timeout = 60.0
ping_interval = {ping_interval}
reconnect_delay = 0.5
[receiver.tls]
enabled = false
[receiver.auth]
enabled = false
did_wba_enabled = false
"#
        );
        self.spawn("receiver", &config)
    }
}

/// How long a Python process may take to start on a loaded machine.
pub const STARTUP: Duration = Duration::from_secs(90);

/// A running reference gateway.
pub struct RefGateway {
    /// Public HTTP address.
    pub http: SocketAddr,
    /// Where receivers connect (any path).
    pub ws: SocketAddr,
    pub process: RefProcess,
}

/// The bytes of `/download/N`: byte i is i % 251 (as `echo_app.py`).
pub fn download_pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// The Rust twin of `testdata/interop/echo_app.py`, for anpx receivers:
/// the same paths, the same answers.
async fn echo(req: http::Request<Incoming>) -> Result<http::Response<Body>, Infallible> {
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    let method = req.method().clone();
    let mut seen = serde_json::Map::new();
    let mut want = None;
    for (name, value) in req.headers() {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        if name == "x-want-header" {
            want = value
                .split_once('=')
                .map(|(n, v)| (n.to_owned(), v.to_owned()));
        }
        // Repeated headers: joined as an HTTP server would present them.
        let joined = match seen.get(name.as_str()).and_then(|v| v.as_str()) {
            Some(was) => format!("{was}, {value}"),
            None => value,
        };
        seen.insert(name.as_str().to_owned(), joined.into());
    }
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let mut reply = http::Response::builder().header("content-type", "application/octet-stream");
    let out: Bytes = if let Some(code) = path.strip_prefix("/svc/status/") {
        let status: u16 = code.parse().unwrap_or(500);
        reply = http::Response::builder()
            .status(status)
            .header("content-type", "text/plain");
        if status == 204 || status == 304 {
            Bytes::new()
        } else {
            format!("status {status}").into()
        }
    } else if let Some(n) = path.strip_prefix("/svc/download/") {
        download_pattern(n.parse().unwrap_or(0)).into()
    } else {
        if let Some((n, v)) = want {
            reply = reply.header(n, v);
        }
        reply = reply
            .header("x-echo-method", method.as_str())
            .header("x-echo-path", path)
            .header("x-echo-query", query)
            .header(
                "x-echo-headers",
                serde_json::Value::Object(seen).to_string(),
            )
            .header("x-echo-body-len", body.len().to_string())
            .header("x-echo-body-sha256", hex::encode(Sha256::digest(&body)));
        body
    };
    let out = if method == http::Method::HEAD {
        reply = reply.header("content-length", out.len().to_string());
        Bytes::new()
    } else {
        out
    };
    Ok(reply.body(Full::new(out).boxed()).unwrap())
}

/// Starts the Rust echo service on an ephemeral loopback port.
pub async fn start_echo_backend() -> SocketAddr {
    super::serve_on_loopback(echo).await
}
