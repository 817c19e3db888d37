//! Grants follow the registry while a receiver stays connected: a service
//! URL removed from the registry stops routing to the DID's live
//! connection within `gateway.registry.refresh_secs` (new requests get
//! 404, the one in flight finishes), and one added starts routing to it,
//! without a reconnect. On both gateway binaries, with the registry in
//! SQLite and in PostgreSQL (a throwaway server; skipped by name when
//! PostgreSQL is not installed).

#[path = "support/identity.rs"]
mod identity;
mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anpx_test_servers::Postgres;
use identity::{new_identity, registry};
use support::{Binary, Proc};

const HOST: &str = "live.test";
/// `gateway.registry.refresh_secs` in these tests.
const REFRESH_SECS: u64 = 1;

fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// An HTTP/1.0 GET through the gateway: the status, or `None` when the
/// connection failed or the answer was not HTTP.
fn get(addr: SocketAddr, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(20))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {HOST}\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    text.split_whitespace().nth(1)?.parse().ok()
}

/// Polls until `path` answers `want`; the last answer otherwise.
fn wait_for(addr: SocketAddr, path: &str, want: u16) -> Option<u16> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let last = get(addr, path);
        if last == Some(want) || Instant::now() > deadline {
            return last;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The agent: `/…/slow` answers after two seconds, anything else at once.
fn agent() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            std::thread::spawn(move || answer(conn));
        }
    });
    addr
}

fn answer(mut conn: TcpStream) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match conn.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
    let line = String::from_utf8_lossy(&head).into_owned();
    if line
        .split_whitespace()
        .nth(1)
        .unwrap_or("")
        .ends_with("/slow")
    {
        std::thread::sleep(Duration::from_secs(2));
    }
    let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
}

/// The scenario on `gateway`'s binary with the registry at `url`.
fn follows(gateway: Binary, url: &str, dir: &Path) {
    let me = new_identity(dir, "live");
    registry(url, "add", &me.did, &format!("{HOST}/kept"));
    registry(url, "add", &me.did, &format!("{HOST}/withdrawn"));

    let public = free_addr();
    let gateway_log = dir.join("gateway.log");
    let _gateway = Proc(
        gateway
            .command()
            .args(["gateway", "--listen", &public.to_string()])
            .args(["--admin-listen", "off", "--auth-mode", "did-wba"])
            .arg("--auth-did-documents-dir")
            .arg(&me.documents_dir)
            .args(["--registry-url", url])
            .args(["--registry-refresh-secs", &REFRESH_SECS.to_string()])
            .env("RUST_LOG", "info")
            .stderr(std::fs::File::create(&gateway_log).unwrap())
            .spawn()
            .unwrap(),
    );
    // It declares no services: it serves whatever the registry grants.
    let _receiver = Proc(
        Binary::Anpx
            .command()
            .args(["receiver", "--gateway", &format!("ws://{public}/ws")])
            .args(["--upstream", &format!("http://{}", agent())])
            .arg("--did-document")
            .arg(&me.document)
            .arg("--private-key")
            .arg(&me.key)
            .args(["--reconnect-first-delay-ms", "100"])
            .stderr(std::fs::File::create(dir.join("receiver.log")).unwrap())
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    assert_eq!(wait_for(public, "/kept/x", 200), Some(200));
    assert_eq!(get(public, "/withdrawn/x"), Some(200));
    assert_eq!(get(public, "/added/x"), Some(404));

    // A request in flight on the route that is about to go.
    let slow = std::thread::spawn(move || get(public, "/withdrawn/slow"));
    std::thread::sleep(Duration::from_millis(300));
    registry(url, "remove", &me.did, &format!("{HOST}/withdrawn"));
    let withdrawn_at = Instant::now();
    assert_eq!(wait_for(public, "/withdrawn/x", 404), Some(404));
    let took = withdrawn_at.elapsed();
    assert_eq!(
        slow.join().unwrap(),
        Some(200),
        "the request in flight finished"
    );
    assert_eq!(get(public, "/kept/x"), Some(200), "the other grant stays");

    registry(url, "add", &me.did, &format!("{HOST}/added"));
    assert_eq!(wait_for(public, "/added/x", 200), Some(200));

    let log = std::fs::read_to_string(&gateway_log).unwrap();
    assert_eq!(
        log.matches("receiver connected").count(),
        1,
        "one connection throughout, no reconnect:\n{log}"
    );
    assert!(
        log.contains("receiver's grants changed in the registry"),
        "{log}"
    );
    eprintln!(
        "{gateway:?}: a withdrawn grant stopped routing after {took:?} (refresh {REFRESH_SECS} s)"
    );
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("anpx-live-grants-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn sqlite(name: &str, gateway: Binary) {
    let dir = scratch(name);
    let url = format!("sqlite://{}?mode=rwc", dir.join("registry.db").display());
    follows(gateway, &url, &dir);
    let _ = std::fs::remove_dir_all(&dir);
}

fn postgres(name: &str, gateway: Binary) {
    let Some(server) = Postgres::start_or_skip() else {
        return;
    };
    let dir = scratch(name);
    follows(gateway, &server.url(), &dir);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sqlite_grants_follow_the_registry_on_anpx() {
    sqlite("sqlite-anpx", Binary::Anpx);
}

#[test]
fn sqlite_grants_follow_the_registry_on_anpx_smol() {
    sqlite("sqlite-smol", Binary::AnpxSmol);
}

#[test]
fn postgres_grants_follow_the_registry_on_anpx() {
    postgres("pg-anpx", Binary::Anpx);
}

#[test]
fn postgres_grants_follow_the_registry_on_anpx_smol() {
    postgres("pg-smol", Binary::AnpxSmol);
}
