//! The whole DID-WBA flow through the `anpx` binary, as an operator runs it:
//! make an identity, register what it may serve, start a gateway in
//! did-wba mode and a signed receiver, and reach the agent through it.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn anpx() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_anpx"));
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("ANPX_")) {
        c.env_remove(k);
    }
    c
}

fn ok(c: &mut Command) -> String {
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{:?}: {}",
        c,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A plain HTTP/1.0 GET; returns the status line's code.
fn get(addr: SocketAddr, host: &str, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    text.split_whitespace().nth(1)?.parse().ok()
}

fn wait_for(addr: SocketAddr, host: &str, path: &str, want: u16) -> u16 {
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut last = 0;
    while Instant::now() < deadline {
        last = get(addr, host, path).unwrap_or(0);
        if last == want {
            return last;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    last
}

fn did_of(dir: &Path) -> String {
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("did.json")).unwrap()).unwrap();
    doc["id"].as_str().unwrap().to_owned()
}

#[test]
fn identity_registry_gateway_and_receiver_from_the_command_line() {
    let dir = std::env::temp_dir().join(format!("anpx-flow-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let docs = dir.join("docs");
    std::fs::create_dir_all(&docs).unwrap();
    let id = dir.join("id");
    ok(anpx()
        .args([
            "did",
            "new",
            "--host",
            "agents.example",
            "--path",
            "a1",
            "--out",
        ])
        .arg(&id));
    std::fs::copy(id.join("did.json"), docs.join("a1.json")).unwrap();
    let did = did_of(&id);
    let registry = format!("sqlite://{}?mode=rwc", dir.join("registry.db").display());
    ok(anpx().args([
        "registry",
        "add",
        "--registry-url",
        &registry,
        "--did",
        &did,
        "--service",
        "api.agent.com/a1",
    ]));

    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let _gateway = Killed(
        anpx()
            .args([
                "gateway",
                "--listen",
                &addr.to_string(),
                "--admin-listen",
                "off",
            ])
            .env("ANPX_GATEWAY_AUTH_MODE", "did-wba")
            .env("ANPX_GATEWAY_AUTH_DID_DOCUMENTS_DIR", &docs)
            .env("ANPX_GATEWAY_REGISTRY_URL", &registry)
            .stderr(std::fs::File::create(dir.join("gateway.log")).unwrap())
            .spawn()
            .unwrap(),
    );
    let _receiver = Killed(
        anpx()
            .args([
                "receiver",
                "--demo",
                "--gateway",
                &format!("ws://{addr}/ws"),
                "--did-document",
            ])
            .arg(id.join("did.json"))
            .arg("--private-key")
            .arg(id.join("key-1_private.pem"))
            .stderr(std::fs::File::create(dir.join("receiver.log")).unwrap())
            .spawn()
            .unwrap(),
    );
    assert_eq!(
        wait_for(addr, "api.agent.com", "/a1/hello", 200),
        200,
        "the signed receiver serves its route"
    );
    assert_eq!(
        get(addr, "api.agent.com", "/other"),
        Some(404),
        "and nothing else"
    );

    // An unsigned receiver is refused: it never serves anything.
    let _intruder = Killed(
        anpx()
            .args([
                "receiver",
                "--demo",
                "--gateway",
                &format!("ws://{addr}/ws"),
                "--service",
                "api.agent.com/b",
            ])
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(get(addr, "api.agent.com", "/b/x"), Some(404));
    std::fs::remove_dir_all(&dir).unwrap();
}
