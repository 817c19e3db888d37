//! `anpx did new` writes an identity a receiver can sign with and a gateway
//! can verify.

use std::process::Command;
use std::time::{Duration, SystemTime};

use anpx_core::auth::{Verifier, VerifierConfig};
use shell_tokio::receiver::{Credentials, DidCredentials};

#[test]
fn did_new_makes_a_working_identity() {
    let dir = std::env::temp_dir().join(format!("anpx-did-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    for key_type in ["secp256k1", "ed25519"] {
        let out = dir.join(key_type);
        let run = Command::new(env!("CARGO_BIN_EXE_anpx"))
            .args([
                "did",
                "new",
                "--host",
                "localhost:8800",
                "--path",
                "agents/a1",
                "--key-type",
                key_type,
                "--out",
            ])
            .arg(&out)
            .output()
            .unwrap();
        assert!(
            run.status.success(),
            "{}",
            String::from_utf8_lossy(&run.stderr)
        );
        let printed = String::from_utf8_lossy(&run.stdout);
        assert!(
            printed.contains("did:wba:localhost%3A8800:agents:a1"),
            "{printed}"
        );
        assert!(
            printed.contains("https://localhost:8800/agents/a1/did.json"),
            "{printed}"
        );

        let creds =
            DidCredentials::load(&out.join("did.json"), &out.join("key-1_private.pem")).unwrap();
        let header = creds.authorization("gateway.example.com").unwrap();
        let mut verifier = Verifier::new(VerifierConfig::default());
        let now = SystemTime::now() + Duration::from_secs(1);
        let parsed = verifier
            .check_header(now, &header, "gateway.example.com")
            .unwrap();
        let document = std::fs::read(out.join("did.json")).unwrap();
        let verified = verifier.verify_json(now, &parsed, &document).unwrap();
        assert_eq!(verified.did, creds.did());

        // A second run refuses to overwrite the key.
        let again = Command::new(env!("CARGO_BIN_EXE_anpx"))
            .args(["did", "new", "--host", "localhost:8800", "--out"])
            .arg(&out)
            .output()
            .unwrap();
        assert!(!again.status.success());
        assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
