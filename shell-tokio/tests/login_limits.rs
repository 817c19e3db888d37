//! The DID-WBA login limits as an operator sets them, through both gateway
//! binaries: `gateway.auth.max_document_fetches_per_host` (flag) bounds the
//! document fetches to one host, so a login whose document host is busy
//! with another fetch is refused at once (`document_fetch_refused`); and
//! the nonce store's total, `gateway.auth.max_nonces`, is checked against
//! the per-DID quota before a gateway starts.

// Shared with other test files; this one uses only the identity's files.
#[allow(dead_code)]
#[path = "support/identity.rs"]
mod identity;
mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, SystemTime};

use anpx_core::auth::build_header;
use identity::new_identity;
use support::{Binary, Proc};

fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("anpx-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A DID resolver that accepts connections and never answers.
fn silent_resolver() -> (SocketAddr, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let held = std::thread::spawn(move || {
        let mut open = Vec::new();
        for conn in listener.incoming().take(8) {
            open.push(conn);
        }
        std::thread::sleep(Duration::from_secs(60));
    });
    (addr, held)
}

/// Starts a receiver handshake signed with `header`; the open socket.
fn handshake(gateway: SocketAddr, header: &str) -> TcpStream {
    let mut s = TcpStream::connect(gateway).unwrap();
    write!(
        s,
        "GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         X-Anpx-Services: api.agent.com/a\r\nAuthorization: {header}\r\n\r\n",
        gateway.port()
    )
    .unwrap();
    s
}

/// The status the gateway answered on `s`, or `None` if it said nothing
/// within `wait`.
fn status(s: &mut TcpStream, wait: Duration) -> Option<u16> {
    s.set_read_timeout(Some(wait)).unwrap();
    let mut buf = [0u8; 1024];
    let n = s.read(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
    text.split_whitespace().nth(1)?.parse().ok()
}

/// `series` from the admin plane's /metrics (0 when not listed yet);
/// `None` while the gateway does not answer.
fn metric(admin: SocketAddr, series: &str) -> Option<u64> {
    let mut s = TcpStream::connect(admin).ok()?;
    write!(s, "GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    if !text.contains("anpx_receivers") {
        return None;
    }
    Some(
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0),
    )
}

fn a_busy_document_host_refuses_the_next_login_at_once(gateway: Binary) {
    let dir = scratch(&format!("login-limits-{gateway:?}"));
    let one = new_identity(&dir, "a1");
    let two = new_identity(&dir, "a2");
    let (resolver, _held) = silent_resolver();
    let addr = free_addr();
    let admin = free_addr();
    let _gw = Proc(
        gateway
            .command()
            .args(["gateway", "--listen", &addr.to_string()])
            .args(["--admin-listen", &admin.to_string()])
            .args(["--auth-max-document-fetches-per-host", "1"])
            .env("ANPX_GATEWAY_AUTH_MODE", "did-wba")
            .env(
                "ANPX_GATEWAY_AUTH_RESOLVER_BASE_URL",
                format!("http://{resolver}/1.0/identifiers"),
            )
            .env(
                "ANPX_GATEWAY_REGISTRY_URL",
                format!("sqlite://{}?mode=rwc", dir.join("registry.db").display()),
            )
            .stderr(std::fs::File::create(dir.join("gateway.log")).unwrap())
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let series = "anpx_receiver_auth_refused_total{reason=\"document_fetch_refused\"}";
    for _ in 0..150 {
        if metric(admin, series).is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        metric(admin, series),
        Some(0),
        "the gateway did not start: {}",
        std::fs::read_to_string(dir.join("gateway.log")).unwrap_or_default()
    );
    let signed = |id: &identity::Identity, nonce: u8| {
        build_header(
            &std::fs::read(&id.document).unwrap(),
            &std::fs::read_to_string(&id.key).unwrap(),
            "127.0.0.1",
            SystemTime::now(),
            [nonce; 16],
        )
        .unwrap()
    };
    // The first login's document fetch hangs on the silent resolver and
    // takes the host's one place...
    let first = handshake(addr, &signed(&one, 1));
    std::thread::sleep(Duration::from_millis(500));
    // ...so the second, another DID on the same host, is refused at once
    // (with the default of 4 per host it would wait on the resolver too).
    let mut second = handshake(addr, &signed(&two, 2));
    // (A refused login is answered 401, whatever the reason; the reason is
    // counted.)
    assert_eq!(status(&mut second, Duration::from_secs(10)), Some(401));
    assert_eq!(metric(admin, series), Some(1));
    drop(first.shutdown(std::net::Shutdown::Both));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_busy_document_host_refuses_the_next_login_at_once_on_anpx() {
    a_busy_document_host_refuses_the_next_login_at_once(Binary::Anpx);
}

#[test]
fn a_busy_document_host_refuses_the_next_login_at_once_on_anpx_smol() {
    a_busy_document_host_refuses_the_next_login_at_once(Binary::AnpxSmol);
}

fn a_per_did_quota_over_the_nonce_store_is_refused_at_start(gateway: Binary) {
    let out = gateway
        .command()
        .args(["gateway", "--admin-listen", "off"])
        .args([
            "--auth-max-nonces",
            "500",
            "--auth-max-nonces-per-did",
            "1000",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "gateway.auth.max_nonces_per_did: 1000 is more than gateway.auth.max_nonces (500)"
        ),
        "{err}"
    );
    let out = gateway
        .command()
        .args(["check-config"])
        .env("ANPX_GATEWAY_AUTH_MAX_NONCES", "5000")
        .env("ANPX_GATEWAY_AUTH_MAX_DOCUMENT_FETCHES", "16")
        .env("ANPX_GATEWAY_AUTH_FAILED_HOST_MEMORY_SECS", "30")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for line in [
        "max_nonces = 5000",
        "max_document_fetches = 16",
        "max_document_fetches_per_host = 4",
        "failed_host_memory_secs = 30",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} not in\n{text}");
    }
}

#[test]
fn a_per_did_quota_over_the_nonce_store_is_refused_at_start_on_anpx() {
    a_per_did_quota_over_the_nonce_store_is_refused_at_start(Binary::Anpx);
}

#[test]
fn a_per_did_quota_over_the_nonce_store_is_refused_at_start_on_anpx_smol() {
    a_per_did_quota_over_the_nonce_store_is_refused_at_start(Binary::AnpxSmol);
}
