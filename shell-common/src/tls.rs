//! TLS with rustls (ring provider, no OpenSSL): the gateway's certificate,
//! and the roots a receiver trusts for `wss://` and DID document fetches.
//! Both shells build their configurations here; each wraps its own
//! sockets with them (tokio-rustls, futures-rustls).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore, ServerConfig};

/// A TLS setting that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or holds nothing usable.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// rustls refused the material.
    #[error("tls: {0}")]
    Rustls(#[from] rustls::Error),
    /// A host to dial that cannot be a TLS server name.
    #[error("{host:?} cannot be a TLS server name: {reason}")]
    ServerName {
        /// The host.
        host: String,
        /// Why.
        reason: String,
    },
}

/// How long a gateway waits for a client's TLS handshake, so a client that
/// connects and says nothing cannot hold a task forever.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let file_error = |reason: String| TlsError::File {
        path: path.to_owned(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_error(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(e.to_string()))?;
    if certs.is_empty() {
        return Err(file_error("no PEM certificate in the file".into()));
    }
    Ok(certs)
}

/// The gateway's TLS: certificate chain and private key, PEM. Offers
/// HTTP/1.1 over ALPN, and HTTP/2 first when `http2` (the shell's server
/// speaks it).
pub fn server_config(cert: &Path, key: &Path, http2: bool) -> Result<Arc<ServerConfig>, TlsError> {
    let chain = certs(cert)?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::File {
        path: key.to_owned(),
        reason: e.to_string(),
    })?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = if http2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    Ok(Arc::new(config))
}

/// What a receiver trusts: the system's roots, plus the certificates in
/// `ca_file` (a private CA) when given.
pub fn client_config(ca_file: Option<&Path>) -> Result<Arc<ClientConfig>, TlsError> {
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for cert in native.certs {
        // A broken system certificate must not stop the others from loading.
        let _ = roots.add(cert);
    }
    if let Some(path) = ca_file {
        for cert in certs(path)? {
            roots.add(cert)?;
        }
    }
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// What a client dials `host` with: `config` when given (a private CA),
/// else the system's roots; and the name the certificate must carry.
pub fn dial(
    host: &str,
    config: Option<Arc<ClientConfig>>,
) -> Result<(Arc<ClientConfig>, ServerName<'static>), TlsError> {
    let config = match config {
        Some(c) => c,
        None => client_config(None)?,
    };
    let name = ServerName::try_from(host.to_owned()).map_err(|e| TlsError::ServerName {
        host: host.to_owned(),
        reason: e.to_string(),
    })?;
    Ok((config, name))
}
