//! A DID-WBA identity made the way an operator makes one (`anpx did new`),
//! for the tests that run a gateway in did-wba mode, and the one-shot
//! commands they run around it.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::Binary;

/// Runs `c` to its end; its standard output. Fails the test, with the
/// command's standard error, when it does not succeed.
pub fn ok(c: &mut Command) -> String {
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{c:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// What `anpx did new` made, and a directory of DID documents holding its
/// document, for a gateway's `--auth-did-documents-dir`.
pub struct Identity {
    /// The DID.
    pub did: String,
    /// Its DID document, for the receiver's `--did-document`.
    pub document: PathBuf,
    /// Its private key, for the receiver's `--private-key`.
    pub key: PathBuf,
    /// A directory with the document, for the gateway.
    pub documents_dir: PathBuf,
}

/// A new identity `did:wba:agents.example:<name>`, its files under `dir`.
pub fn new_identity(dir: &Path, name: &str) -> Identity {
    let id = dir.join(format!("id-{name}"));
    ok(Binary::Anpx
        .command()
        .args(["did", "new", "--host", "agents.example", "--path", name])
        .arg("--out")
        .arg(&id));
    let documents_dir = dir.join("docs");
    std::fs::create_dir_all(&documents_dir).unwrap();
    std::fs::copy(
        id.join("did.json"),
        documents_dir.join(format!("{name}.json")),
    )
    .unwrap();
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(id.join("did.json")).unwrap()).unwrap();
    Identity {
        did: doc["id"].as_str().unwrap().to_owned(),
        document: id.join("did.json"),
        key: id.join("key-1_private.pem"),
        documents_dir,
    }
}

/// `anpx registry <verb> --did <did> --service <service>` on the registry
/// at `url`.
pub fn registry(url: &str, verb: &str, did: &str, service: &str) {
    ok(Binary::Anpx.command().args([
        "registry",
        verb,
        "--registry-url",
        url,
        "--did",
        did,
        "--service",
        service,
    ]));
}
