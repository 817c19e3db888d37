//! The gateway side: checking a `DIDWba` header in two steps around the
//! DID document fetch.

use std::time::{Duration, SystemTime};

use super::jcs::content_hash;
use super::key::decode_base64url;
use super::{
    parse_timestamp, service_domain, AuthError, AuthHeader, Did, DidDocument, KeyType, NonceStore,
};

/// Limits of a [`Verifier`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifierConfig {
    /// Oldest timestamp accepted (default 5 minutes, as the reference).
    pub max_age: Duration,
    /// Furthest a timestamp may be ahead of `now` (default 1 minute, as the
    /// reference).
    pub max_ahead: Duration,
    /// How long a used nonce is remembered (default 7 minutes). Never less
    /// than `max_age + max_ahead` is used, whatever is set: a header stays
    /// acceptable that long after its nonce was first seen.
    pub nonce_memory: Duration,
    /// Most nonces remembered at once (default 100 000). When full, new
    /// logins are refused with [`AuthError::NonceStoreFull`] until old
    /// nonces expire.
    pub max_nonces: usize,
    /// Most nonces remembered at once for one DID (default 1 000): a DID
    /// logging in more often than that within `nonce_memory` is refused
    /// with [`AuthError::NonceQuotaFull`], and other DIDs' logins are not
    /// affected.
    pub max_nonces_per_did: usize,
    /// Replaces `https://host[:port]` in document URLs, e.g. a local
    /// resolver or a test server.
    pub resolver_base: Option<String>,
    /// Largest DID document accepted by [`Verifier::verify_json`] (default
    /// 64 KiB; real ones are under 2 KiB). The shell should stop reading
    /// the fetch at this size too.
    pub max_document_bytes: usize,
    /// The service names a header may be signed for, lowercased, without
    /// port. Empty accepts any (the Host the client dialled), so a header
    /// signed for one gateway is accepted by every gateway reachable under
    /// that name.
    pub service_names: Vec<String>,
}

impl Default for VerifierConfig {
    fn default() -> Self {
        Self {
            max_age: Duration::from_secs(5 * 60),
            max_ahead: Duration::from_secs(60),
            nonce_memory: Duration::from_secs(7 * 60),
            max_nonces: 100_000,
            max_nonces_per_did: 1_000,
            resolver_base: None,
            max_document_bytes: 64 * 1024,
            service_names: Vec::new(),
        }
    }
}

/// A header that passed the cheap checks, and where its DID document is.
///
/// Made only by [`Checker::check_header`] (or [`Verifier::check_header`]);
/// hand it back with the fetched document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedHeader {
    header: AuthHeader,
    did: Did,
    document_url: String,
    service: String,
    timestamp: SystemTime,
    content_hash: [u8; 32],
    signature: Vec<u8>,
}

impl ParsedHeader {
    /// The header's fields.
    pub fn header(&self) -> &AuthHeader {
        &self.header
    }

    /// The DID claimed.
    pub fn did(&self) -> &Did {
        &self.did
    }

    /// Where to fetch the DID document from.
    pub fn document_url(&self) -> &str {
        &self.document_url
    }

    /// The service name the signature must cover.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// The header's timestamp.
    pub fn timestamp(&self) -> SystemTime {
        self.timestamp
    }
}

/// A DID that proved control of a key of its document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedDid {
    /// The DID.
    pub did: String,
    /// Full id of the key that signed, e.g. `did:wba:didhost.cc:anpproxy1#key-1`.
    pub verification_method: String,
    /// The key's algorithm.
    pub key_type: KeyType,
    /// The header's timestamp.
    pub timestamp: SystemTime,
}

/// The checks of a `DIDWba` header that record nothing: syntax, the
/// timestamp window, the service name, the document's id and key, the
/// signature. `&self` only, so the signature check (the expensive part)
/// runs outside whatever lock guards the nonces ([`Nonces`]).
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use anpx_core::auth::{
///     build_header, generate_did_document, AuthError, Checker, KeyMaterial, Nonces, VerifierConfig,
/// };
///
/// let (doc, pem) =
///     generate_did_document("didhost.cc", Some("agent1"), KeyMaterial::Secp256k1([7; 32])).unwrap();
/// let now = UNIX_EPOCH + Duration::from_secs(1_795_311_328);
/// let header = build_header(doc.as_bytes(), &pem, "gateway.example.com", now, [1; 16]).unwrap();
/// let config = VerifierConfig::default();
/// let (checker, mut nonces) = (Checker::new(config.clone()), Nonces::new(&config));
///
/// let parsed = checker.check_header(now, &header, "gateway.example.com").unwrap();
/// nonces.check(now, &parsed).unwrap();
/// checker.check_document_json(now, &parsed, doc.as_bytes()).unwrap();
/// nonces.spend(now, &parsed).unwrap();
/// // Spent: the checker still passes the header, the nonces refuse it.
/// let again = checker.check_header(now, &header, "gateway.example.com").unwrap();
/// assert_eq!(nonces.check(now, &again), Err(AuthError::ReplayedNonce));
/// ```
#[derive(Debug, Clone)]
pub struct Checker {
    config: VerifierConfig,
}

impl Checker {
    /// A checker with the given limits.
    pub fn new(config: VerifierConfig) -> Self {
        Checker { config }
    }

    /// The limits in force.
    pub fn config(&self) -> &VerifierConfig {
        &self.config
    }

    /// The checks that need no DID document and no memory of nonces.
    /// `service` is the gateway's host name as the client addressed it; a
    /// `:port` on it is dropped (the client signs the name without port).
    pub fn check_header(
        &self,
        now: SystemTime,
        header: &str,
        service: &str,
    ) -> Result<ParsedHeader, AuthError> {
        let header = AuthHeader::parse(header)?;
        let did = Did::parse(&header.did)?;
        let timestamp = parse_timestamp(&header.timestamp)?;
        self.check_window(now, timestamp)?;
        let signature = decode_base64url(&header.signature)
            .ok_or_else(|| AuthError::MalformedHeader("signature is not base64url".into()))?;
        if signature.len() > 64 {
            return Err(AuthError::BadSignature);
        }
        // The hash covers the name as signed; only the comparison folds case.
        let service = service_domain(service).to_owned();
        let names = &self.config.service_names;
        if !names.is_empty() && !names.iter().any(|n| n.eq_ignore_ascii_case(&service)) {
            return Err(AuthError::WrongService(service));
        }
        let content_hash = content_hash(&header.did, &header.nonce, &header.timestamp, &service)?;
        Ok(ParsedHeader {
            document_url: did.document_url(self.config.resolver_base.as_deref()),
            did,
            service,
            timestamp,
            content_hash,
            signature,
            header,
        })
    }

    /// [`check_document`](Self::check_document) on the fetched JSON.
    pub fn check_document_json(
        &self,
        now: SystemTime,
        parsed: &ParsedHeader,
        document_json: &[u8],
    ) -> Result<VerifiedDid, AuthError> {
        if document_json.len() > self.config.max_document_bytes {
            return Err(AuthError::BadDocument(format!(
                "larger than {} bytes",
                self.config.max_document_bytes
            )));
        }
        self.check_document(now, parsed, &DidDocument::from_json(document_json)?)
    }

    /// The checks that need the DID document: its id is the DID, the
    /// header's `verification_method` names a key in it (under
    /// `verificationMethod` or embedded in `authentication`), and the
    /// signature verifies with that key.
    pub fn check_document(
        &self,
        now: SystemTime,
        parsed: &ParsedHeader,
        document: &DidDocument,
    ) -> Result<VerifiedDid, AuthError> {
        self.check_window(now, parsed.timestamp)?;
        let did = parsed.did.as_str();
        if document.id != did {
            return Err(AuthError::DidMismatch {
                expected: did.to_owned(),
                found: document.id.clone(),
            });
        }
        let method_id = format!("{did}#{}", parsed.header.verification_method);
        let method = document
            .find_method(&method_id)
            .ok_or_else(|| AuthError::UnknownKey(method_id.clone()))?;
        let key = method.public_key()?;
        key.verify(&parsed.content_hash, &parsed.signature)?;
        Ok(VerifiedDid {
            did: did.to_owned(),
            verification_method: method_id,
            key_type: key.key_type(),
            timestamp: parsed.timestamp,
        })
    }

    fn check_window(&self, now: SystemTime, timestamp: SystemTime) -> Result<(), AuthError> {
        check_window(&self.config, now, timestamp)
    }
}

/// The nonces headers have spent, and the timestamp window a spend checks
/// again: the state of DID-WBA verification, apart from the [`Checker`]'s
/// pure checks. A gateway keeps one for receiver logins and one for
/// callers, so that callers cannot fill the receivers' memory.
#[derive(Debug, Clone)]
pub struct Nonces {
    max_age: Duration,
    max_ahead: Duration,
    store: NonceStore,
}

impl Nonces {
    /// Nothing spent yet, remembering for `config.nonce_memory` (never
    /// less than the timestamp window) at most `config.max_nonces`.
    pub fn new(config: &VerifierConfig) -> Self {
        let floor = config.max_age.saturating_add(config.max_ahead);
        let memory = config.nonce_memory.max(floor);
        Nonces {
            max_age: config.max_age,
            max_ahead: config.max_ahead,
            store: NonceStore::new(config.max_nonces, config.max_nonces_per_did, memory),
        }
    }

    /// Fails if the header's nonce was spent (or the store is full for
    /// it), as [`spend`](Self::spend) would; records nothing.
    pub fn check(&mut self, now: SystemTime, parsed: &ParsedHeader) -> Result<(), AuthError> {
        self.store
            .check(now, parsed.did.as_str(), &parsed.header.nonce)
    }

    /// Records the header's nonce as used, ending the login: the timestamp
    /// window and the nonce are checked again with this `now`, as the fetch
    /// and later checks took time and another login may have used the nonce
    /// meanwhile. Call it only for a login that passed every check.
    pub fn spend(&mut self, now: SystemTime, parsed: &ParsedHeader) -> Result<(), AuthError> {
        check_window_within(self.max_age, self.max_ahead, now, parsed.timestamp)?;
        self.store
            .insert(now, parsed.did.as_str(), &parsed.header.nonce)
    }

    /// How many used nonces are remembered now.
    pub fn len(&self) -> usize {
        self.store.len()
    }

    /// True when no nonce is remembered.
    pub fn is_empty(&self) -> bool {
        self.store.is_empty()
    }
}

fn check_window(
    config: &VerifierConfig,
    now: SystemTime,
    timestamp: SystemTime,
) -> Result<(), AuthError> {
    check_window_within(config.max_age, config.max_ahead, now, timestamp)
}

fn check_window_within(
    max_age: Duration,
    max_ahead: Duration,
    now: SystemTime,
    timestamp: SystemTime,
) -> Result<(), AuthError> {
    match now.duration_since(timestamp) {
        Ok(age) if age > max_age => Err(AuthError::Expired {
            age_secs: age.as_secs(),
            max_secs: max_age.as_secs(),
        }),
        Err(ahead) if ahead.duration() > max_ahead => Err(AuthError::FromFuture {
            ahead_secs: ahead.duration().as_secs(),
            max_secs: max_ahead.as_secs(),
        }),
        _ => Ok(()),
    }
}

/// Checks `DIDWba` headers: timestamp window, single-use nonces, document
/// id, key lookup and signature; a [`Checker`] and its [`Nonces`] together,
/// for a caller with no lock to keep the signature check out of.
///
/// The work is split in two so a failure costs the gateway little:
/// [`check_header`](Self::check_header) does everything that needs no DID
/// document (parsing, timestamp window, nonce not yet used) and says which
/// document to fetch; [`verify`](Self::verify) takes the fetched document,
/// checks the signature and only then records the nonce, so a forged
/// header cannot burn a genuine client's nonce.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use anpx_core::auth::{
///     build_header, generate_did_document, AuthError, KeyMaterial, Verifier, VerifierConfig,
/// };
///
/// // A client's DID and key (the seed would come from a CSPRNG).
/// let (doc, pem) =
///     generate_did_document("didhost.cc", Some("agent1"), KeyMaterial::Secp256k1([7; 32])).unwrap();
/// let now = UNIX_EPOCH + Duration::from_secs(1_795_311_328);
/// let header = build_header(doc.as_bytes(), &pem, "gateway.example.com", now, [1; 16]).unwrap();
///
/// // The gateway: cheap checks first, then fetch the document, then verify.
/// let mut verifier = Verifier::new(VerifierConfig::default());
/// let parsed = verifier.check_header(now, &header, "gateway.example.com").unwrap();
/// assert_eq!(parsed.document_url(), "https://didhost.cc/agent1/did.json");
/// let fetched = doc.as_bytes(); // what GET parsed.document_url() returned
/// let who = verifier.verify_json(now + Duration::from_secs(2), &parsed, fetched).unwrap();
/// assert_eq!(who.did, "did:wba:didhost.cc:agent1");
///
/// // The nonce is spent now: the same header again is refused before any fetch.
/// assert_eq!(
///     verifier.check_header(now, &header, "gateway.example.com"),
///     Err(AuthError::ReplayedNonce),
/// );
/// ```
#[derive(Debug, Clone)]
pub struct Verifier {
    checker: Checker,
    nonces: Nonces,
}

impl Verifier {
    /// A verifier with the given limits and no nonce used yet.
    pub fn new(config: VerifierConfig) -> Self {
        Self {
            nonces: Nonces::new(&config),
            checker: Checker::new(config),
        }
    }

    /// The limits in force.
    pub fn config(&self) -> &VerifierConfig {
        self.checker.config()
    }

    /// How many used nonces are remembered now.
    pub fn nonces_stored(&self) -> usize {
        self.nonces.len()
    }

    /// The checks that need no DID document. `service` is the gateway's
    /// host name as the client addressed it; a `:port` on it is dropped (the
    /// client signs the name without port).
    ///
    /// Records nothing: the nonce is only spent by a successful
    /// [`verify`](Self::verify).
    pub fn check_header(
        &mut self,
        now: SystemTime,
        header: &str,
        service: &str,
    ) -> Result<ParsedHeader, AuthError> {
        let parsed = self.checker.check_header(now, header, service)?;
        self.nonces.check(now, &parsed)?;
        Ok(parsed)
    }

    /// Parses the fetched DID document, then [`verify`](Self::verify)s.
    pub fn verify_json(
        &mut self,
        now: SystemTime,
        parsed: &ParsedHeader,
        document_json: &[u8],
    ) -> Result<VerifiedDid, AuthError> {
        let verified = self.check_document_json(now, parsed, document_json)?;
        self.spend(now, parsed)?;
        Ok(verified)
    }

    /// The checks that need the DID document, then the nonce is spent
    /// ([`check_document`](Self::check_document), then
    /// [`spend`](Self::spend)), for a caller with no check of its own after
    /// the signature.
    pub fn verify(
        &mut self,
        now: SystemTime,
        parsed: &ParsedHeader,
        document: &DidDocument,
    ) -> Result<VerifiedDid, AuthError> {
        let verified = self.check_document(now, parsed, document)?;
        self.spend(now, parsed)?;
        Ok(verified)
    }

    /// [`check_document`](Self::check_document) on the fetched JSON.
    pub fn check_document_json(
        &mut self,
        now: SystemTime,
        parsed: &ParsedHeader,
        document_json: &[u8],
    ) -> Result<VerifiedDid, AuthError> {
        let verified = self
            .checker
            .check_document_json(now, parsed, document_json)?;
        self.nonces.check(now, parsed)?;
        Ok(verified)
    }

    /// The checks that need the DID document ([`Checker::check_document`])
    /// and the nonce not spent meanwhile. Records nothing: a caller with
    /// further checks (the DID's grants) [`spend`](Self::spend)s the nonce
    /// once they pass, so a login that fails leaves no nonce behind.
    pub fn check_document(
        &mut self,
        now: SystemTime,
        parsed: &ParsedHeader,
        document: &DidDocument,
    ) -> Result<VerifiedDid, AuthError> {
        let verified = self.checker.check_document(now, parsed, document)?;
        self.nonces.check(now, parsed)?;
        Ok(verified)
    }

    /// [`Nonces::spend`].
    pub fn spend(&mut self, now: SystemTime, parsed: &ParsedHeader) -> Result<(), AuthError> {
        self.nonces.spend(now, parsed)
    }
}
