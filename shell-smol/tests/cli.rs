//! `anpx-smol` runs the same offline subcommands as `anpx`: `did new`
//! makes an identity that signs a handshake, `decode` reads frames; and it
//! refuses what only `anpx` does (a gateway cluster).

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
fn a_cluster_setting_is_refused_with_what_to_use_instead() {
    let mut c = Command::new(env!("CARGO_BIN_EXE_anpx-smol"));
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("ANPX_")) {
        c.env_remove(k);
    }
    let out = c
        .args(["gateway", "--listen", "127.0.0.1:0"])
        .args(["--cluster-nats-url", "nats://127.0.0.1:4222"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("gateway.cluster.nats_url is not supported by anpx-smol")
            && stderr.contains("use anpx"),
        "{stderr}"
    );
}
