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
    /// Loads `did.json` and a PKCS#8 PEM private key.
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
