//! `anpx-smol` runs the same offline subcommands as `anpx`: `did new`
//! makes an identity that signs a handshake, `decode` reads frames,
//! `registry` edits a SQLite registry; and a gateway whose cluster cannot
//! be reached says so and stops.

use std::io::Write;
use std::process::{Command, Stdio};

use shell_common::did_credentials::DidCredentials;
use shell_common::Credentials;

#[test]
fn did_new_makes_an_identity_that_signs() {
    let out = std::env::temp_dir().join(format!("anpx-smol-did-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let run = Command::new(env!("CARGO_BIN_EXE_anpx-smol"))
        .args(["did", "new", "--host", "localhost:8800", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let creds =
        DidCredentials::load(&out.join("did.json"), &out.join("key-1_private.pem")).unwrap();
    assert_eq!(creds.did(), "did:wba:localhost%3A8800");
    let header = creds.authorization("localhost:8800").unwrap();
    assert!(header.starts_with("DIDWba "), "{header}");
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn decode_reports_a_bad_frame_as_json() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_anpx-smol"))
        .arg("decode")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"00ff\n").unwrap();
    let out = child.wait_with_output().unwrap();
    let line = String::from_utf8_lossy(&out.stdout);
    let json: serde_json::Value = serde_json::from_str(line.lines().next().unwrap()).unwrap();
    assert_eq!(json["frame"], 1, "{line}");
    assert!(json["error"].is_string(), "{line}");
}

#[test]
fn an_unreachable_cluster_stops_the_gateway_with_the_reason() {
    // Nothing listens on a port just freed.
    let nats = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut c = Command::new(env!("CARGO_BIN_EXE_anpx-smol"));
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("ANPX_")) {
        c.env_remove(k);
    }
    let out = c
        .args([
            "gateway",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "off",
        ])
        .args(["--cluster-nats-url", &format!("nats://{nats}")])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("gateway.cluster.nats_url")
            && stderr.contains(&format!("cannot connect to NATS at nats://{nats}")),
        "{stderr}"
    );
}

fn registry(url: &str, args: &[&str]) -> std::process::Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_anpx-smol"));
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("ANPX_")) {
        c.env_remove(k);
    }
    c.arg("registry")
        .args(args)
        .args(["--registry-url", url])
        .output()
        .unwrap()
}

fn stdout_of(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

#[test]
fn registry_add_list_remove_on_a_sqlite_file() {
    let dir = std::env::temp_dir().join(format!("anpx-smol-registry-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.join("registry.db").display());

    let add = ["add", "--did", "did:wba:a", "--service"];
    stdout_of(&registry(
        &url,
        &[&add[..], &["api.agent.com/one/ad.json"]].concat(),
    ));
    stdout_of(&registry(
        &url,
        &["add", "--did", "did:wba:b", "--service", "other.com/x"],
    ));
    assert_eq!(
        stdout_of(&registry(&url, &["list"])),
        "did:wba:a\tapi.agent.com/one\ndid:wba:b\tother.com/x\n"
    );
    assert_eq!(
        stdout_of(&registry(&url, &["list", "--did", "did:wba:b"])),
        "did:wba:b\tother.com/x\n"
    );

    // Another DID cannot take a URL that is already granted.
    let taken = registry(
        &url,
        &[
            "add",
            "--did",
            "did:wba:b",
            "--service",
            "api.agent.com/one",
        ],
    );
    assert!(!taken.status.success());

    let removed = registry(
        &url,
        &[
            "remove",
            "--did",
            "did:wba:a",
            "--service",
            "api.agent.com/one",
        ],
    );
    stdout_of(&removed);
    assert!(
        String::from_utf8_lossy(&removed.stderr)
            .starts_with("anpx-smol: did:wba:a no longer serves"),
        "{}",
        String::from_utf8_lossy(&removed.stderr)
    );
    assert_eq!(
        stdout_of(&registry(&url, &["list"])),
        "did:wba:b\tother.com/x\n"
    );
    // Removing what is not there fails and says so.
    let again = registry(
        &url,
        &[
            "remove",
            "--did",
            "did:wba:a",
            "--service",
            "api.agent.com/one",
        ],
    );
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("has no registry entry"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
