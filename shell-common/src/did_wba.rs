//! DID-WBA admission: a receiver signs its handshake with its DID key, and
//! the registry says which service URLs that DID may serve.
//!
//! Cheap checks (header syntax, timestamp window, nonce reuse) run before
//! any document is fetched, so a flood of bad handshakes costs little.
//!
//! The check is the same in every shell; a shell supplies only the
//! document fetch over its HTTP client and a way to read files off the
//! async threads ([`DocumentIo`]). Which fetch may start, its deadline,
//! how long a document is reused and what a fetch's outcome means are
//! decided by the core's [`DocumentFetches`], which the gateway machine
//! keeps with the spent nonces; the signature is checked here, outside
//! the machine's lock.
//!
//! [`DocumentFetches`]: anpx_core::handshake::DocumentFetches

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anpx_core::auth::{Checker, DidDocument, Login, VerifierConfig};
use anpx_core::registry::Registry;
use anpx_core::Identity;
use bytes::Bytes;

use crate::driver::{Driver, DriverGone};
use crate::receiver::BoxFuture;
use crate::{Admission, Admitted, Refusal};
use anpx_core::handshake::{DocumentStep, FetchLimits, FetchTicket};

pub use anpx_core::handshake::FETCH_TIMEOUT;

/// Why a document fetch failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// Not an http(s) URL.
    #[error("invalid url {0}")]
    Url(String),
    /// Took longer than allowed.
    #[error("timed out after {} ms", .0.as_millis())]
    Timeout(Duration),
    /// Connection, TLS or HTTP failure.
    #[error("{0}")]
    Transport(String),
    /// A status other than 200.
    #[error("status {0}")]
    Status(u16),
    /// The body exceeded the limit.
    #[error("body larger than {0} bytes")]
    TooLarge(usize),
}

/// What a shell does for the check: its HTTP(S) client and its way of
/// running blocking work.
pub trait DocumentIo: Send + Sync + 'static {
    /// GETs the document of `fetch`.
    fn get(&self, fetch: DocumentFetch) -> BoxFuture<Result<Bytes, FetchError>>;

    /// Runs `work` (file reads) off the async threads.
    fn unblock(&self, work: Box<dyn FnOnce() -> Option<Bytes> + Send>) -> BoxFuture<Option<Bytes>>;
}

/// One document GET: `url` (http or https, trusting `tls`), given up
/// after `timeout` in all, its body refused over `max_bytes`.
#[derive(Debug, Clone)]
pub struct DocumentFetch {
    /// The document's URL.
    pub url: String,
    /// How long the whole GET may take.
    pub timeout: Duration,
    /// The largest body accepted.
    pub max_bytes: usize,
    /// Whom an `https` server must be vouched for by.
    pub tls: Arc<rustls::ClientConfig>,
}

/// Where a document URL points, as a shell's HTTP client dials it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentUrl {
    /// `https` (else `http`).
    pub secure: bool,
    /// The host to dial and to name in TLS, without IPv6 brackets.
    pub host: String,
    /// The port, the scheme's default when the URL has none.
    pub port: u16,
    /// The `host` header: the URL's authority as written.
    pub authority: String,
    /// The request target.
    pub path_and_query: String,
}

impl DocumentUrl {
    /// Parses an `http` or `https` URL.
    ///
    /// ```
    /// use shell_common::did_wba::DocumentUrl;
    /// let u = DocumentUrl::parse("https://[::1]:8443/a/did.json?x").unwrap();
    /// assert_eq!((u.secure, u.host.as_str(), u.port), (true, "::1", 8443));
    /// assert_eq!((u.authority.as_str(), u.path_and_query.as_str()), ("[::1]:8443", "/a/did.json?x"));
    /// assert!(DocumentUrl::parse("ftp://x/").is_err());
    /// ```
    pub fn parse(url: &str) -> Result<DocumentUrl, FetchError> {
        let bad = || FetchError::Url(url.to_owned());
        let uri: http::Uri = url.parse().map_err(|_| bad())?;
        let secure = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(bad()),
        };
        let host = uri.host().ok_or_else(bad)?;
        Ok(DocumentUrl {
            secure,
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            port: uri.port_u16().unwrap_or(if secure { 443 } else { 80 }),
            authority: uri
                .authority()
                .map(|a| a.as_str().to_owned())
                .unwrap_or_default(),
            path_and_query: uri.path_and_query().map_or("/", |p| p.as_str()).to_owned(),
        })
    }
}

/// Collects a document body from its pieces, refusing it as soon as it is
/// over `max_bytes` (the rest is never read).
pub async fn read_limited<S, E>(mut pieces: S, max_bytes: usize) -> Result<Bytes, FetchError>
where
    S: futures_util::Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    use futures_util::StreamExt;
    let mut out = bytes::BytesMut::new();
    while let Some(piece) = pieces.next().await {
        let piece = piece.map_err(|e| FetchError::Transport(e.to_string()))?;
        if out.len() + piece.len() > max_bytes {
            return Err(FetchError::TooLarge(max_bytes));
        }
        out.extend_from_slice(&piece);
    }
    Ok(out.freeze())
}

/// Where DID documents come from.
#[derive(Clone)]
pub struct DocumentSources {
    /// A folder of `*.json` DID documents, matched by their `id`; consulted first.
    pub directory: Option<PathBuf>,
    /// Trust for `https://` document URLs.
    pub tls: Arc<rustls::ClientConfig>,
}

/// Finds DID documents: the local folder, then the gateway machine's
/// [`DocumentFetches`](anpx_core::handshake::DocumentFetches) (a short cache, a bounded fetch pool), fetching
/// through the shell's [`DocumentIo`] when it says so. One resolver serves
/// receiver logins and callers alike, and the machine keeps one pool, so
/// both share the cache and the fetches.
pub struct DocumentResolver {
    sources: DocumentSources,
    io: Arc<dyn DocumentIo>,
    max_document_bytes: usize,
    limits: FetchLimits,
}

/// The DID-WBA admission check: the pure checks here, the nonces in the
/// gateway machine.
pub struct DidWbaAdmission {
    checker: Checker,
    documents: Arc<DocumentResolver>,
    registry: Arc<dyn Registry>,
}

/// A fetch's place in the machine's pool, given back as abandoned if the
/// fetch is dropped before it ends (its handshake went away).
struct FetchPlace<'a> {
    gateway: &'a Driver,
    ticket: Option<FetchTicket>,
}

impl Drop for FetchPlace<'_> {
    fn drop(&mut self) {
        if let Some(ticket) = self.ticket.take() {
            self.gateway.document_abandoned(ticket);
        }
    }
}

/// The refusal of a login or call that found the gateway shutting down.
pub(crate) fn gone(e: DriverGone) -> Refusal {
    refusal("internal", e.to_string())
}

impl DocumentResolver {
    /// Documents from `sources` read through the shell's `io`, none over
    /// `max_document_bytes`.
    pub fn new(
        sources: DocumentSources,
        io: Arc<dyn DocumentIo>,
        max_document_bytes: usize,
    ) -> Self {
        DocumentResolver {
            sources,
            io,
            max_document_bytes,
            limits: FetchLimits::default(),
        }
    }

    /// Bounds document fetches with `limits` instead of
    /// [`FetchLimits::default`] (`gateway.auth.max_document_fetches` and
    /// its neighbours).
    pub fn with_fetch_limits(self, limits: FetchLimits) -> Self {
        DocumentResolver { limits, ..self }
    }

    /// The gateway machine `machine`, its fetch pool bounded by this
    /// resolver's limits.
    pub fn prepare(&self, machine: anpx_core::Gateway) -> anpx_core::Gateway {
        machine.with_fetch_limits(self.limits)
    }

    /// The document of `did`, found at `url` unless the local folder has
    /// it, through `gateway`'s pool and cache. `Err` is the refusal of the
    /// login or call that needed it.
    pub async fn document(&self, gateway: &Driver, did: &str, url: &str) -> Result<Bytes, Refusal> {
        if let Some(dir) = &self.sources.directory {
            let (dir, did, max) = (dir.clone(), did.to_owned(), self.max_document_bytes);
            let found = self
                .io
                .unblock(Box::new(move || find_in_directory(&dir, &did, max)))
                .await;
            if let Some(doc) = found {
                return Ok(doc);
            }
        }
        let host = DocumentUrl::parse(url)
            .map_or_else(|_| url.to_owned(), |u| u.authority.to_ascii_lowercase());
        let ticket = match gateway.document_lookup(url, &host).map_err(gone)?? {
            DocumentStep::Cached(doc) => return Ok(doc),
            DocumentStep::Fetch(ticket) => ticket,
        };
        let timeout = ticket.deadline.saturating_duration_since(Instant::now());
        let mut place = FetchPlace {
            gateway,
            ticket: Some(ticket),
        };
        let fetched = self
            .io
            .get(DocumentFetch {
                url: url.to_owned(),
                timeout,
                max_bytes: self.max_document_bytes,
                tls: self.sources.tls.clone(),
            })
            .await;
        match place.ticket.take() {
            Some(ticket) => gateway.document_fetched(ticket, fetched).map_err(gone)?,
            None => Err(refusal("internal", "document fetch lost its place")),
        }
    }
}

fn refusal(label: &'static str, reason: impl Into<String>) -> Refusal {
    Refusal::new(label, reason)
}

impl DidWbaAdmission {
    /// A check with `config` (window, resolver base URL, limits), documents
    /// from `sources` read through the shell's `io`, grants from `registry`.
    pub fn new(
        config: VerifierConfig,
        sources: DocumentSources,
        io: Arc<dyn DocumentIo>,
        registry: Arc<dyn Registry>,
    ) -> Self {
        let documents = Arc::new(DocumentResolver::new(
            sources,
            io,
            config.max_document_bytes,
        ));
        Self::with_resolver(config, documents, registry)
    }

    /// [`new`](Self::new) with a resolver shared with others (the callers'
    /// check), so that they share its limits.
    pub fn with_resolver(
        config: VerifierConfig,
        documents: Arc<DocumentResolver>,
        registry: Arc<dyn Registry>,
    ) -> Self {
        DidWbaAdmission {
            checker: Checker::new(config),
            documents,
            registry,
        }
    }

    async fn check_inner(
        &self,
        headers: &http::HeaderMap,
        service: &str,
        gateway: &Driver,
    ) -> Result<Admitted, Refusal> {
        // Each step's decision is the core's (`Login`); this only runs the
        // I/O between them: the document, then the registry. The signature
        // is checked here, outside the machine's lock; the nonce is looked
        // up and spent by the machine.
        let authorization = headers
            .get(http::header::AUTHORIZATION)
            .map(|v| v.as_bytes());
        let login = Login::start(&self.checker, SystemTime::now(), authorization, service)?;
        // A replay is refused before it costs a fetch.
        gateway
            .login_unspent(SystemTime::now(), &login)
            .map_err(gone)??;
        let document = self
            .documents
            .document(gateway, login.did(), login.document_url())
            .await?;
        let verified = login.document(&self.checker, SystemTime::now(), &document)?;
        // Another login may have spent the nonce during the fetch.
        gateway
            .login_unspent(SystemTime::now(), &login)
            .map_err(gone)??;
        let (did, key) = (verified.did.clone(), verified.verification_method.clone());
        let allowed = self.registry.grants_for(&verified.did).await;
        let admitted = gateway
            .finish_login(SystemTime::now(), login, verified, allowed)
            .map_err(gone)??;
        tracing::info!(%did, %key, "receiver authenticated");
        Ok(admitted)
    }
}

impl Admission for DidWbaAdmission {
    fn check<'a>(
        &'a self,
        headers: &'a http::HeaderMap,
        service: &'a str,
        gateway: &'a Driver,
    ) -> Pin<Box<dyn Future<Output = Result<Admitted, Refusal>> + Send + 'a>> {
        Box::pin(self.check_inner(headers, service, gateway))
    }

    fn prepare(&self, machine: anpx_core::Gateway) -> anpx_core::Gateway {
        self.documents
            .prepare(machine)
            .with_login_nonces(self.checker.config())
    }

    fn current_grants<'a>(
        &'a self,
        identity: &'a Identity,
    ) -> Option<anpx_core::registry::RegistryFuture<'a, Vec<anpx_core::ServiceUrl>>> {
        match identity {
            Identity::Did(did) => Some(self.registry.current_grants(did)),
            _ => None,
        }
    }
}

/// The document in `dir` whose `id` is `did`, if any (blocking).
fn find_in_directory(dir: &Path, did: &str, max_bytes: usize) -> Option<Bytes> {
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let too_big = entry
            .metadata()
            .map(|m| m.len() > max_bytes as u64)
            .unwrap_or(true);
        if too_big {
            continue;
        }
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        if DidDocument::from_json(&bytes).is_ok_and(|d| d.id == did) {
            return Some(Bytes::from(bytes));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A gateway machine keeping `admission`'s state, with no timer.
    fn gateway(admission: &DidWbaAdmission) -> Driver {
        let core = anpx_core::Gateway::new(anpx_core::GatewayConfig::default(), 1);
        Driver::new(admission.prepare(core), |_| std::future::pending()).0
    }

    fn pieces(
        parts: Vec<Result<&'static [u8], &'static str>>,
    ) -> impl futures_util::Stream<Item = Result<Bytes, &'static str>> + Unpin {
        futures_util::stream::iter(parts.into_iter().map(|p| p.map(Bytes::from_static)))
    }

    /// Documents from the test vectors' folder only; no network.
    struct LocalIo;

    impl DocumentIo for LocalIo {
        fn get(&self, fetch: DocumentFetch) -> BoxFuture<Result<Bytes, FetchError>> {
            let url = fetch.url;
            Box::pin(async move { Err(FetchError::Transport(format!("no network: {url}"))) })
        }

        fn unblock(
            &self,
            work: Box<dyn FnOnce() -> Option<Bytes> + Send>,
        ) -> BoxFuture<Option<Bytes>> {
            Box::pin(async move { work() })
        }
    }

    #[tokio::test]
    async fn a_login_refused_for_want_of_grants_spends_no_nonce() {
        let dir = PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../testdata/did-wba-vectors"
        ));
        let doc = std::fs::read(dir.join("ed25519-did.json")).unwrap();
        let pem = std::fs::read_to_string(dir.join("ed25519-key-1_private.pem")).unwrap();
        let registry = Arc::new(anpx_core::registry::StaticRegistry::new([]));
        let admission = DidWbaAdmission::new(
            VerifierConfig::default(),
            DocumentSources {
                directory: Some(dir),
                tls: crate::tls::client_config(None).unwrap(),
            },
            Arc::new(LocalIo),
            registry.clone(),
        );
        let gw = gateway(&admission);
        let service = "gateway.example.com";
        let header =
            anpx_core::auth::build_header(&doc, &pem, service, SystemTime::now(), [5; 16]).unwrap();
        let mut headers = http::HeaderMap::new();
        headers.insert(http::header::AUTHORIZATION, header.parse().unwrap());
        let label = |r: Result<Admitted, Refusal>| r.err().map(|r| r.label);
        // Refused for want of grants, twice: the first refusal did not
        // spend the nonce (else the second would be a replay).
        for _ in 0..2 {
            assert_eq!(
                label(admission.check(&headers, service, &gw).await),
                Some("no_grants")
            );
        }
        let did = DidDocument::from_json(&doc).unwrap().id;
        registry
            .add(&did, &"gateway.example.com/a".parse().unwrap())
            .await
            .unwrap();
        // Granted now, the same header logs in once, and only once.
        assert_eq!(label(admission.check(&headers, service, &gw).await), None);
        assert_eq!(
            label(admission.check(&headers, service, &gw).await),
            Some("replayed_nonce")
        );
    }

    /// Fetches that never answer.
    struct SilentIo;

    impl DocumentIo for SilentIo {
        fn get(&self, _fetch: DocumentFetch) -> BoxFuture<Result<Bytes, FetchError>> {
            Box::pin(std::future::pending())
        }

        fn unblock(
            &self,
            work: Box<dyn FnOnce() -> Option<Bytes> + Send>,
        ) -> BoxFuture<Option<Bytes>> {
            Box::pin(async move { work() })
        }
    }

    #[tokio::test]
    async fn a_silent_host_is_refused_at_once_past_its_share_and_local_logins_go_on() {
        use futures_util::FutureExt;
        let dir = PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../testdata/did-wba-vectors"
        ));
        let doc = std::fs::read(dir.join("ed25519-did.json")).unwrap();
        let pem = std::fs::read_to_string(dir.join("ed25519-key-1_private.pem")).unwrap();
        let did = DidDocument::from_json(&doc).unwrap().id;
        let registry = Arc::new(anpx_core::registry::StaticRegistry::new([(
            did.clone(),
            "gateway.example.com/a".parse().unwrap(),
        )]));
        let admission = DidWbaAdmission::new(
            VerifierConfig::default(),
            DocumentSources {
                directory: Some(dir),
                tls: crate::tls::client_config(None).unwrap(),
            },
            Arc::new(SilentIo),
            registry,
        );
        let gw = gateway(&admission);
        let service = "gateway.example.com";
        let headers = |did_in_header: &str, nonce: u8| {
            let header =
                anpx_core::auth::build_header(&doc, &pem, service, SystemTime::now(), [nonce; 16])
                    .unwrap()
                    .replace(&did, did_in_header);
            let mut h = http::HeaderMap::new();
            h.insert(http::header::AUTHORIZATION, header.parse().unwrap());
            h
        };
        // Handshakes naming documents on a host that never answers: the
        // host's share of fetches hangs...
        let per_host = FetchLimits::default().per_host;
        let slow: Vec<_> = (0..per_host as u8)
            .map(|n| headers(&format!("did:wba:silent.example:u{n}"), n))
            .collect();
        let mut hanging: Vec<_> = slow
            .iter()
            .map(|h| Box::pin(admission.check(h, service, &gw)))
            .collect();
        for f in &mut hanging {
            assert!(f.as_mut().now_or_never().is_none());
        }
        assert_eq!(gw.document_fetches_in_flight().unwrap(), per_host);
        // ...and the next is refused at once instead of holding a slot.
        let next = headers("did:wba:silent.example:more", 99);
        let refused = admission.check(&next, service, &gw).now_or_never();
        assert!(
            matches!(&refused, Some(Err(r)) if r.label == "document_fetch_refused"),
            "{:?}",
            refused.map(|r| r.err().map(|r| r.label))
        );
        // A DID whose document is local logs in meanwhile.
        let genuine = headers(&did, 200);
        assert!(admission.check(&genuine, service, &gw).await.is_ok());
        // Dropped handshakes give their places back, without marking the
        // host as failed.
        drop(hanging);
        assert_eq!(gw.document_fetches_in_flight().unwrap(), 0);
        let again = admission.check(&slow[0], service, &gw).now_or_never();
        assert!(again.is_none(), "a dropped fetch is not a failure");
    }

    #[tokio::test]
    async fn bodies_are_collected_up_to_the_limit_and_no_further() {
        let got = read_limited(pieces(vec![Ok(b"ab"), Ok(b""), Ok(b"cd")]), 4).await;
        assert_eq!(got.unwrap(), Bytes::from_static(b"abcd"));
        let over = read_limited(pieces(vec![Ok(b"abc"), Ok(b"de"), Err("unread")]), 4).await;
        assert!(matches!(over, Err(FetchError::TooLarge(4))), "{over:?}");
        let failed = read_limited(pieces(vec![Ok(b"a"), Err("reset")]), 4).await;
        assert!(matches!(failed, Err(FetchError::Transport(e)) if e == "reset"));
    }
}
