//! A receiver's DID-WBA identity: its DID document and private key, used to
//! sign every connection attempt with a fresh nonce and timestamp.

use std::path::Path;
use std::time::SystemTime;

use anpx_core::auth::{build_header_with_key, DidDocument, PrivateKey};

use crate::Credentials;

/// A DID document and its private key.
pub struct DidCredentials {
    document: DidDocument,
    key: PrivateKey,
}

/// The identity files could not be used.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    /// A file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The document or key is not valid.
    #[error("{0}")]
    Invalid(#[from] anpx_core::auth::AuthError),
}

impl DidCredentials {
    /// Loads `did.json` and a PKCS#8 PEM private key, and checks that the
    /// key can sign for the document: a key that matches none of its
    /// authentication methods is refused here, at start, rather than by
    /// every gateway the receiver dials.
    pub fn load(did_document: &Path, private_key: &Path) -> Result<Self, CredentialsError> {
        let read = |p: &Path| {
            std::fs::read(p).map_err(|source| CredentialsError::Read {
                path: p.display().to_string(),
                source,
            })
        };
        let document = DidDocument::from_json(&read(did_document)?)?;
        let pem = String::from_utf8_lossy(&read(private_key)?).into_owned();
        let key = PrivateKey::from_pem(&pem)?;
        build_header_with_key(&document, &key, "localhost", SystemTime::now(), [0; 16])?;
        Ok(DidCredentials { document, key })
    }

    /// The DID these credentials prove.
    pub fn did(&self) -> &str {
        &self.document.id
    }
}

impl Credentials for DidCredentials {
    fn authorization(&self, service: &str) -> Result<String, String> {
        let mut nonce = [0u8; 16];
        getrandom::fill(&mut nonce).map_err(|e| format!("no randomness for the nonce: {e}"))?;
        build_header_with_key(&self.document, &self.key, service, SystemTime::now(), nonce)
            .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anpx_core::auth::{generate_did_document, KeyMaterial};

    #[test]
    fn a_key_of_another_identity_is_refused_at_load() {
        let dir = std::env::temp_dir().join(format!("anpx-creds-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (doc, key) =
            generate_did_document("a.example", None, KeyMaterial::Secp256k1([1; 32])).unwrap();
        let (_, other_key) =
            generate_did_document("a.example", None, KeyMaterial::Secp256k1([2; 32])).unwrap();
        let (doc_path, key_path, other_path) = (
            dir.join("did.json"),
            dir.join("key.pem"),
            dir.join("other.pem"),
        );
        std::fs::write(&doc_path, doc).unwrap();
        std::fs::write(&key_path, key).unwrap();
        std::fs::write(&other_path, other_key).unwrap();

        assert!(DidCredentials::load(&doc_path, &key_path).is_ok());
        let Err(e) = DidCredentials::load(&doc_path, &other_path) else {
            panic!("a key that matches no method is refused");
        };
        assert!(
            e.to_string()
                .contains("matches no authentication method of the DID document"),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
