//! TLS with rustls (ring provider, no OpenSSL): the gateway's certificate,
//! and the roots a receiver trusts for `wss://` and DID document fetches.
//! Both shells build their configurations here; each wraps its own
//! sockets with them (tokio-rustls, futures-rustls).

use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};

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
    /// A `receiver.pin_sha256` value that is no SHA-256 digest.
    #[error(
        "pin '{0}' is not a SHA-256 digest: write sha256// and its base64 (as curl's --pinnedpubkey) or 64 hex digits"
    )]
    Pin(String),
    /// The certificate verifier could not be built from the roots.
    #[error("certificate verifier: {0}")]
    Verifier(String),
    /// A host to dial that cannot be a TLS server name.
    #[error("'{host}' cannot be a TLS server name: {reason}")]
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
    server_config_swappable(cert, key, http2).map(|(config, _)| config)
}

/// [`server_config`], with the slot its certificate is read from: what
/// [`CertSlot::load`] puts there is what the next TLS handshakes present,
/// while connections already open keep theirs.
pub fn server_config_swappable(
    cert: &Path,
    key: &Path,
    http2: bool,
) -> Result<(Arc<ServerConfig>, Arc<CertSlot>), TlsError> {
    let slot = Arc::new(CertSlot(RwLock::new(Arc::new(certified_key(cert, key)?))));
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(slot.clone());
    config.alpn_protocols = if http2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    Ok((Arc::new(config), slot))
}

/// A certificate chain and its private key, PEM files, checked to match.
fn certified_key(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    let chain = certs(cert)?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::File {
        path: key.to_owned(),
        reason: e.to_string(),
    })?;
    Ok(CertifiedKey::from_der(chain, key, &provider())?)
}

/// The certificate a gateway presents, replaceable while it runs (SIGHUP
/// after a renewal).
#[derive(Debug)]
pub struct CertSlot(RwLock<Arc<CertifiedKey>>);

impl CertSlot {
    /// Reads `cert` and `key` again and, when they load and match, puts
    /// them in place for new handshakes. Returns whether the certificate
    /// chain differs from the one it replaces; on an error the running
    /// one stays.
    pub fn load(&self, cert: &Path, key: &Path) -> Result<bool, TlsError> {
        let fresh = certified_key(cert, key)?;
        let mut current = self.0.write().unwrap_or_else(PoisonError::into_inner);
        let changed = current.cert != fresh.cert;
        *current = Arc::new(fresh);
        Ok(changed)
    }
}

impl ResolvesServerCert for CertSlot {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.0
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        )
    }
}

/// What a receiver trusts: the system's roots, plus the certificates in
/// `ca_file` (a private CA) when given. A certificate in `ca_file` that the
/// gateway presents itself (a self-signed one, as `openssl req -x509`
/// makes) is trusted as it is, without a chain or name check.
pub fn client_config(ca_file: Option<&Path>) -> Result<Arc<ClientConfig>, TlsError> {
    receiver_client_config(ca_file, &[])
}

/// A receiver's trust (`receiver.ca_file`, `receiver.pin_sha256`): see
/// [`PinningVerifier`] for what each accepts. Handshake signatures are
/// checked in every case, so a gateway must hold the private key of the
/// certificate it presents.
pub fn receiver_client_config(
    ca_file: Option<&Path>,
    pins: &[String],
) -> Result<Arc<ClientConfig>, TlsError> {
    let provider = provider();
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for cert in native.certs {
        // A broken system certificate must not stop the others from loading.
        let _ = roots.add(cert);
    }
    let mut exact = Vec::new();
    if let Some(path) = ca_file {
        for cert in certs(path)? {
            roots.add(cert.clone())?;
            exact.push(cert);
        }
    }
    let pins = pins
        .iter()
        .map(|p| parse_pin(p))
        .collect::<Result<Vec<_>, _>>()?;
    // Without any root (a system without a store, no ca_file) only a pin
    // or an exact certificate can be trusted.
    let chain = if roots.is_empty() {
        None
    } else {
        Some(
            rustls::client::WebPkiServerVerifier::builder_with_provider(
                Arc::new(roots),
                provider.clone(),
            )
            .build()
            .map_err(|e| TlsError::Verifier(e.to_string()))?,
        )
    };
    let verifier = PinningVerifier {
        chain,
        exact,
        pins,
        provider: provider.clone(),
    };
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// A `receiver.pin_sha256` value: the SHA-256 of the certificate's
/// SubjectPublicKeyInfo (its public key, as curl's `--pinnedpubkey`), as
/// curl writes it (`sha256//` and base64) or as 64 hex digits.
pub fn parse_pin(pin: &str) -> Result<[u8; 32], TlsError> {
    use base64::Engine as _;
    let bad = || TlsError::Pin(pin.to_owned());
    let bytes = match pin.strip_prefix("sha256//") {
        Some(b64) => base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|_| bad())?,
        None => hex::decode(pin).map_err(|_| bad())?,
    };
    bytes.try_into().map_err(|_| bad())
}

/// The pin of a DER certificate: SHA-256 of its SubjectPublicKeyInfo.
pub fn spki_sha256(cert: &CertificateDer<'_>) -> Result<[u8; 32], rustls::Error> {
    use sha2::Digest as _;
    let parsed = webpki::EndEntityCert::try_from(cert)
        .map_err(|_| rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding))?;
    Ok(sha2::Sha256::digest(parsed.subject_public_key_info().as_ref()).into())
}

/// How a receiver decides whether the gateway's certificate is the one it
/// means, in this order:
/// 1. the certificate is one of `receiver.ca_file`'s, byte for byte: trusted
///    (a self-signed test certificate; its name and dates are the
///    operator's choice, as with any pin);
/// 2. `receiver.pin_sha256` is set: trusted exactly when the SHA-256 of its
///    public key (SPKI) is one of the pins; a CA-signed certificate with
///    another key is refused, so a pin also guards against a mis-issued
///    certificate;
/// 3. otherwise the usual check: a chain to the system's roots or
///    `ca_file`'s CAs, for the name dialed, within its dates.
///
/// In every case the handshake's signatures are verified with the
/// certificate's key, so only the holder of that key gets through.
#[derive(Debug)]
pub struct PinningVerifier {
    chain: Option<Arc<rustls::client::WebPkiServerVerifier>>,
    exact: Vec<CertificateDer<'static>>,
    pins: Vec<[u8; 32]>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for PinningVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if self.exact.iter().any(|c| c.as_ref() == end_entity.as_ref()) {
            return Ok(ServerCertVerified::assertion());
        }
        if !self.pins.is_empty() {
            let pin = spki_sha256(end_entity)?;
            return if self.pins.contains(&pin) {
                Ok(ServerCertVerified::assertion())
            } else {
                Err(rustls::Error::General(format!(
                    "the gateway's public key (sha256//{}) matches no receiver.pin_sha256",
                    {
                        use base64::Engine as _;
                        base64::engine::general_purpose::STANDARD.encode(pin)
                    }
                )))
            };
        }
        match &self.chain {
            Some(chain) => {
                chain.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            }
            None => Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::UnknownIssuer,
            )),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_read_as_curl_writes_them_or_as_hex() {
        let digest: [u8; 32] = std::array::from_fn(|i| u8::try_from(i * 7).unwrap_or(0));
        let b64 = {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD.encode(digest)
        };
        assert_eq!(parse_pin(&format!("sha256//{b64}")).unwrap(), digest);
        assert_eq!(parse_pin(&hex::encode(digest)).unwrap(), digest);
        for bad in ["sha256//short=", "abcd", "", &format!("sha1//{b64}")] {
            let err = parse_pin(bad).unwrap_err().to_string();
            assert!(err.contains("sha256//"), "{err}");
        }
    }
}
