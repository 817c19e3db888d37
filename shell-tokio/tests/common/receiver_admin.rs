//! The receiver's admin listener through a binary (`anpx` or `anpx-smol`):
//! `receiver.admin_listen` from the command line serves `/status` and
//! `/metrics`, and `both` refuses to put it on the gateway's admin address.
//! Shared by both shells' test suites.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn command(bin: &str) -> Command {
    let mut c = Command::new(bin);
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("ANPX_")) {
        c.env_remove(k);
    }
    c
}

/// A loopback address nothing listens on (a port just freed).
fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// `GET path` with `host` as the Host header: the status and body, or
/// `None` while nothing answers.
pub fn get(addr: SocketAddr, host: &str, path: &str) -> Option<(u16, String)> {
    let mut tcp = TcpStream::connect(addr).ok()?;
    tcp.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        tcp,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    tcp.read_to_string(&mut text).ok()?;
    let status = text.split(' ').nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n")?.1.to_owned();
    Some((status, body))
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A receiver whose gateway is down answers on its admin listener that it
/// is not connected, and why.
pub fn the_admin_listener_reports_a_gateway_it_cannot_reach(bin: &str) {
    let admin = free_addr();
    let gateway = free_addr();
    let child = command(bin)
        .args(["receiver", "--demo", "--admin-listen", &admin.to_string()])
        .args(["--gateway", &format!("ws://{gateway}/ws")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _child = Killed(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some((200, body)) = get(admin, &admin.to_string(), "/status") {
            let s: serde_json::Value = serde_json::from_str(&body).unwrap();
            let g = &s["gateways"][0];
            if !g["last_error"].is_null() {
                assert_eq!(g["url"], format!("ws://{gateway}/ws"), "{s}");
                assert_eq!(g["connected"], false, "{s}");
                assert!(
                    g["last_error"].as_str().unwrap().contains("cannot reach"),
                    "{s}"
                );
                assert_eq!(s["identity"], "anonymous", "{s}");
                break;
            }
        }
        assert!(Instant::now() < deadline, "no status on {admin}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (status, text) = get(admin, "localhost", "/metrics").unwrap();
    assert_eq!(status, 200);
    assert!(
        text.contains(&format!(
            "anpx_receiver_gateway_connected{{gateway=\"ws://{gateway}/ws\"}} 0\n"
        )),
        "{text}"
    );
}

/// `both` refuses the receiver's admin plane on the gateway's admin address
/// before binding anything.
pub fn both_keeps_the_two_admin_planes_apart(bin: &str) {
    let admin = free_addr().to_string();
    let out = command(bin)
        .args(["both", "--demo", "--listen", "127.0.0.1:0"])
        .args(["--admin-listen", &admin])
        .env("ANPX_RECEIVER_ADMIN_LISTEN", &admin)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("receiver.admin_listen: must differ from gateway.admin_listen"),
        "{stderr}"
    );
}
