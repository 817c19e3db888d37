//! `anpx did new`: a fresh DID-WBA identity for a receiver. Both binaries
//! run this same command; its errors are the command's report to the user.

use std::path::Path;

use anpx_core::auth::{generate_did_document, KeyMaterial};
use anpx_core::cli::{DidAction, DidArgs, DidKeyType};
use anyhow::{bail, Context, Result};

/// Runs `did new`: writes `did.json` and the private key into the output
/// folder.
pub fn run(args: DidArgs) -> Result<()> {
    let DidAction::New(new) = args.action;
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(|e| anyhow::anyhow!("no randomness for the key: {e}"))?;
    let material = match new.key_type {
        DidKeyType::Secp256k1 => KeyMaterial::Secp256k1(secret),
        DidKeyType::Ed25519 => KeyMaterial::Ed25519(secret),
    };
    let (document, pem) = generate_did_document(&new.host, new.path.as_deref(), material)
        .context("making the DID document")?;
    std::fs::create_dir_all(&new.out).with_context(|| format!("creating {}", new.out.display()))?;
    let doc_path = new.out.join("did.json");
    let key_path = new.out.join("key-1_private.pem");
    for path in [&doc_path, &key_path] {
        if path.exists() && !new.force {
            bail!("{} exists; pass --force to overwrite", path.display());
        }
    }
    std::fs::write(&doc_path, &document)
        .with_context(|| format!("writing {}", doc_path.display()))?;
    write_private(&key_path, &pem).with_context(|| format!("writing {}", key_path.display()))?;
    let parsed: serde_json::Value = serde_json::from_str(&document)?;
    let did = parsed["id"].as_str().unwrap_or_default();
    let url = anpx_core::auth::Did::parse(did)
        .map(|d| d.document_url(None))
        .unwrap_or_default();
    println!("DID:          {did}");
    println!("document:     {} (publish it at {url})", doc_path.display());
    println!("private key:  {} (keep it secret)", key_path.display());
    println!(
        "receiver:     anpx receiver --did-document {} --private-key {} ...",
        doc_path.display(),
        key_path.display()
    );
    println!("gateway:      anpx registry add --did '{did}' --service HOST/PREFIX");
    Ok(())
}

/// Writes a secret readable by its owner only.
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)?;
        f.write_all(contents.as_bytes())
    }
    #[cfg(not(unix))]
    {
        std::fs::write(path, contents)
    }
}
