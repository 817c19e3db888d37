//! `anpx-smol` runs the same offline subcommands as `anpx`: `did new`
//! makes an identity that signs a handshake, `decode` reads frames,
//! `registry` edits a SQLite registry; and a gateway whose cluster cannot
//! be reached says so and stops.
//!
//! Built without the tokio integrations (`cargo test -p shell-smol
//! --no-default-features --test cli`, run by `.ci/run`), the gateway still
//! serves with the embedded defaults, and a registry database or a NATS
//! server in the configuration is refused at once, naming the feature.

use std::io::{BufRead, BufReader, Read, Write};
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

#[cfg(feature = "cluster")]
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

#[cfg(feature = "sql-registry")]
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

#[cfg(feature = "sql-registry")]
fn stdout_of(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

#[cfg(feature = "sql-registry")]
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

/// `anpx-smol` with `args` and no `ANPX_*` settings from the environment.
fn anpx_smol(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_anpx-smol"));
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("ANPX_")) {
        c.env_remove(k);
    }
    c.args(args);
    c
}

/// A gateway on a free port, without the admin plane.
const GATEWAY: &[&str] = &[
    "gateway",
    "--listen",
    "127.0.0.1:0",
    "--admin-listen",
    "off",
];

/// The gateway runs with the embedded defaults in every build: it prints
/// its public URL and answers the health path there.
#[test]
fn a_gateway_with_the_embedded_defaults_serves() {
    let mut child = anpx_smol(GATEWAY)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let addr = first
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no public URL in {first:?}"))
        .to_owned();
    let mut tcp = std::net::TcpStream::connect(&addr).unwrap();
    tcp.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

/// Runs each of `commands` with `key` set to `value` in the environment
/// and checks that it stops at once with exit code 2, naming the
/// configuration key and the feature to build with.
#[cfg(any(not(feature = "sql-registry"), not(feature = "cluster")))]
fn refused(commands: &[&[&str]], env: (&str, &str), key: &str, feature: &str) {
    for command in commands {
        let out = anpx_smol(command).env(env.0, env.1).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{command:?}: {stderr}");
        assert!(
            stderr.contains(key) && stderr.contains(&format!("`{feature}` feature")),
            "{command:?}: {stderr}"
        );
    }
}

/// Without the `sql-registry` feature, `gateway.registry.url` stops every
/// command that would use it, before anything starts.
#[cfg(not(feature = "sql-registry"))]
#[test]
fn without_sql_registry_a_registry_url_is_refused() {
    refused(
        &[&["check-config"], GATEWAY, &["registry", "list"]],
        ("ANPX_GATEWAY_REGISTRY_URL", "sqlite::memory:"),
        "gateway.registry.url",
        "sql-registry",
    );
}

/// Without the `cluster` feature, `gateway.cluster.nats_url` stops the
/// gateway and `check-config`.
#[cfg(not(feature = "cluster"))]
#[test]
fn without_cluster_a_nats_url_is_refused() {
    refused(
        &[&["check-config"], GATEWAY],
        ("ANPX_GATEWAY_CLUSTER_NATS_URL", "nats://127.0.0.1:4222"),
        "gateway.cluster.nats_url",
        "cluster",
    );
}
