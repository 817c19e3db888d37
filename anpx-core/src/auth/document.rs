//! DID documents: their id, verification methods and public keys.

use serde_json::{Map, Value};

use super::key::decode_base64url;
use super::{AuthError, PublicKey};

/// The parts of a DID document that authentication uses. Other members
/// (`@context`, `service`, ...) are ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DidDocument {
    /// The document's `id`: the DID it describes.
    pub id: String,
    /// `verificationMethod` entries.
    pub verification_methods: Vec<VerificationMethod>,
    /// `authentication` entries.
    pub authentication: Vec<Authentication>,
}

/// One `authentication` entry: a reference to a verification method or a
/// method embedded in place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authentication {
    /// The id of a method listed under `verificationMethod`.
    Reference(String),
    /// A method written out inside `authentication`.
    Embedded(VerificationMethod),
}

/// A verification method. The key is kept as written and decoded only when
/// used, so one unsupported key does not make the whole document unusable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerificationMethod {
    /// Full id, e.g. `did:wba:didhost.cc:anpproxy1#key-1` (or relative, `#key-1`).
    pub id: String,
    /// `type`, e.g. `EcdsaSecp256k1VerificationKey2019`.
    pub method_type: String,
    /// `controller`, when present.
    pub controller: Option<String>,
    /// The public key as written.
    pub key: KeyEncoding,
}

/// How a verification method writes its public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyEncoding {
    /// `publicKeyJwk`.
    Jwk(Jwk),
    /// `publicKeyMultibase` (base58btc, `z` prefix).
    Multibase(String),
    /// `publicKeyBase58`.
    Base58(String),
    /// None of the above.
    Missing,
}

/// The JWK members a public key needs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Jwk {
    /// `kty`: `EC` or `OKP`.
    pub kty: Option<String>,
    /// `crv`: `secp256k1` or `Ed25519`.
    pub crv: Option<String>,
    /// `x`, base64url.
    pub x: Option<String>,
    /// `y`, base64url (EC only).
    pub y: Option<String>,
}

const SECP256K1_2019: &str = "EcdsaSecp256k1VerificationKey2019";
const ED25519_2018: &str = "Ed25519VerificationKey2018";
const ED25519_2020: &str = "Ed25519VerificationKey2020";
const JSON_WEB_KEY_2020: &str = "JsonWebKey2020";

/// Multicodec prefixes some documents put before multibase key bytes.
const MULTICODEC_ED25519_PUB: [u8; 2] = [0xed, 0x01];
const MULTICODEC_SECP256K1_PUB: [u8; 2] = [0xe7, 0x01];

impl DidDocument {
    /// Parses a DID document from JSON.
    pub fn from_json(json: &[u8]) -> Result<Self, AuthError> {
        let value: Value = serde_json::from_slice(json)
            .map_err(|e| AuthError::BadDocument(format!("not JSON: {e}")))?;
        Self::from_value(&value)
    }

    /// Reads a DID document from an already parsed JSON value.
    pub fn from_value(value: &Value) -> Result<Self, AuthError> {
        let obj = value
            .as_object()
            .ok_or_else(|| bad_doc("not a JSON object"))?;
        let id = str_member(obj, "id")?.ok_or_else(|| bad_doc("no id"))?;
        let verification_methods = match obj.get("verificationMethod") {
            None => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .map(VerificationMethod::from_value)
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(bad_doc("verificationMethod is not an array")),
        };
        let authentication = match obj.get("authentication") {
            None => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .map(|item| match item {
                    Value::String(s) => Ok(Authentication::Reference(s.clone())),
                    other => VerificationMethod::from_value(other).map(Authentication::Embedded),
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(bad_doc("authentication is not an array")),
        };
        Ok(Self {
            id,
            verification_methods,
            authentication,
        })
    }

    /// The verification method with the full id `method_id`: looked for
    /// under `verificationMethod`, then among methods embedded in
    /// `authentication`, as the reference does. A method written with a
    /// relative id (`#key-1`) matches too.
    pub fn find_method(&self, method_id: &str) -> Option<&VerificationMethod> {
        let embedded = self.authentication.iter().filter_map(|a| match a {
            Authentication::Embedded(m) => Some(m),
            Authentication::Reference(_) => None,
        });
        self.verification_methods
            .iter()
            .chain(embedded)
            .find(|m| self.same_id(&m.id, method_id))
    }

    /// The methods listed under `authentication`, in order, with references
    /// resolved (unresolvable ones skipped).
    pub fn authentication_methods(&self) -> impl Iterator<Item = &VerificationMethod> {
        self.authentication.iter().filter_map(|a| match a {
            Authentication::Embedded(m) => Some(m),
            Authentication::Reference(r) => self
                .verification_methods
                .iter()
                .find(|m| self.same_id(&m.id, r)),
        })
    }

    fn same_id(&self, written: &str, wanted: &str) -> bool {
        written == wanted
            || (written.starts_with('#') && wanted.strip_prefix(self.id.as_str()) == Some(written))
    }
}

impl VerificationMethod {
    fn from_value(value: &Value) -> Result<Self, AuthError> {
        let obj = value
            .as_object()
            .ok_or_else(|| bad_doc("verification method is not an object"))?;
        let id = str_member(obj, "id")?.ok_or_else(|| bad_doc("verification method without id"))?;
        let method_type = str_member(obj, "type")?.unwrap_or_default();
        let controller = str_member(obj, "controller")?;
        // Same precedence as the reference: JWK, then multibase, then base58.
        let key = if let Some(jwk) = obj.get("publicKeyJwk") {
            let jwk = jwk
                .as_object()
                .ok_or_else(|| bad_doc("publicKeyJwk is not an object"))?;
            KeyEncoding::Jwk(Jwk {
                kty: str_member(jwk, "kty")?,
                crv: str_member(jwk, "crv")?,
                x: str_member(jwk, "x")?,
                y: str_member(jwk, "y")?,
            })
        } else if let Some(mb) = str_member(obj, "publicKeyMultibase")? {
            KeyEncoding::Multibase(mb)
        } else if let Some(b58) = str_member(obj, "publicKeyBase58")? {
            KeyEncoding::Base58(b58)
        } else {
            KeyEncoding::Missing
        };
        Ok(Self {
            id,
            method_type,
            controller,
            key,
        })
    }

    /// Decodes the public key, checking it fits the method's type.
    ///
    /// Supported: `EcdsaSecp256k1VerificationKey2019` (JWK or multibase),
    /// `Ed25519VerificationKey2018` and `Ed25519VerificationKey2020` (JWK,
    /// multibase or base58) and `JsonWebKey2020` (secp256k1 or Ed25519 JWK).
    pub fn public_key(&self) -> Result<PublicKey, AuthError> {
        let unsupported = || {
            AuthError::UnsupportedKeyType(format!(
                "{} with {}",
                display_type(&self.method_type),
                self.key.name()
            ))
        };
        match (self.method_type.as_str(), &self.key) {
            (SECP256K1_2019, KeyEncoding::Jwk(jwk)) => self
                .jwk_key(jwk, JwkKind::Secp256k1)
                .ok_or_else(|| self.bad_jwk(jwk))?,
            (SECP256K1_2019, KeyEncoding::Multibase(mb)) => {
                let bytes = self.multibase(mb)?;
                let bytes = strip_multicodec(&bytes, MULTICODEC_SECP256K1_PUB, 33);
                PublicKey::secp256k1_from_sec1(bytes)
                    .ok_or_else(|| self.bad("not a secp256k1 point"))
            }
            (ED25519_2018 | ED25519_2020, KeyEncoding::Jwk(jwk)) => self
                .jwk_key(jwk, JwkKind::Ed25519)
                .ok_or_else(|| self.bad_jwk(jwk))?,
            (ED25519_2018 | ED25519_2020, KeyEncoding::Multibase(mb)) => {
                let bytes = self.multibase(mb)?;
                let bytes = strip_multicodec(&bytes, MULTICODEC_ED25519_PUB, 32);
                PublicKey::ed25519_from_bytes(bytes).ok_or_else(|| self.bad("not an Ed25519 key"))
            }
            (ED25519_2018 | ED25519_2020, KeyEncoding::Base58(b58)) => {
                let bytes = bs58::decode(b58)
                    .into_vec()
                    .map_err(|_| self.bad("publicKeyBase58 is not base58"))?;
                PublicKey::ed25519_from_bytes(&bytes).ok_or_else(|| self.bad("not an Ed25519 key"))
            }
            (JSON_WEB_KEY_2020, KeyEncoding::Jwk(jwk)) => {
                let kind = match (jwk.kty.as_deref(), jwk.crv.as_deref()) {
                    (Some("EC"), Some("secp256k1")) => JwkKind::Secp256k1,
                    (Some("OKP"), Some("Ed25519")) => JwkKind::Ed25519,
                    (kty, crv) => {
                        return Err(AuthError::UnsupportedKeyType(format!(
                            "JsonWebKey2020 with kty {} crv {}",
                            kty.unwrap_or("(none)"),
                            crv.unwrap_or("(none)")
                        )))
                    }
                };
                self.jwk_key(jwk, kind).ok_or_else(|| self.bad_jwk(jwk))?
            }
            _ => Err(unsupported()),
        }
    }

    /// `Some(Err)` for a JWK of the wrong kty/crv, `Some(Ok)` for a good
    /// key, `None` when the coordinates do not decode to a key.
    fn jwk_key(&self, jwk: &Jwk, kind: JwkKind) -> Option<Result<PublicKey, AuthError>> {
        let (kty, crv) = match kind {
            JwkKind::Secp256k1 => ("EC", "secp256k1"),
            JwkKind::Ed25519 => ("OKP", "Ed25519"),
        };
        if jwk.kty.as_deref() != Some(kty) || jwk.crv.as_deref() != Some(crv) {
            return Some(Err(AuthError::UnsupportedKeyType(format!(
                "{} with a JWK of kty {} crv {}",
                display_type(&self.method_type),
                jwk.kty.as_deref().unwrap_or("(none)"),
                jwk.crv.as_deref().unwrap_or("(none)")
            ))));
        }
        let x = decode_base64url(jwk.x.as_deref()?)?;
        match kind {
            JwkKind::Secp256k1 => {
                let y = decode_base64url(jwk.y.as_deref()?)?;
                // The reference writes coordinates without leading zero
                // bytes; RFC 7518 wants 32. Both are read.
                if x.len() > 32 || y.len() > 32 {
                    return None;
                }
                let mut sec1 = [0u8; 65];
                sec1[0] = 0x04;
                sec1[33 - x.len()..33].copy_from_slice(&x);
                sec1[65 - y.len()..].copy_from_slice(&y);
                PublicKey::secp256k1_from_sec1(&sec1).map(Ok)
            }
            JwkKind::Ed25519 => PublicKey::ed25519_from_bytes(&x).map(Ok),
        }
    }

    fn multibase(&self, mb: &str) -> Result<Vec<u8>, AuthError> {
        let b58 = mb.strip_prefix('z').ok_or_else(|| {
            AuthError::UnsupportedKeyType("multibase other than base58btc".into())
        })?;
        bs58::decode(b58)
            .into_vec()
            .map_err(|_| self.bad("publicKeyMultibase is not base58btc"))
    }

    fn bad(&self, reason: &'static str) -> AuthError {
        AuthError::BadKey {
            id: self.id.clone(),
            reason,
        }
    }

    fn bad_jwk(&self, jwk: &Jwk) -> AuthError {
        if jwk.x.is_none() {
            self.bad("JWK without x")
        } else {
            self.bad("JWK coordinates are not a valid key")
        }
    }
}

#[derive(Clone, Copy)]
enum JwkKind {
    Secp256k1,
    Ed25519,
}

impl KeyEncoding {
    fn name(&self) -> &'static str {
        match self {
            Self::Jwk(_) => "publicKeyJwk",
            Self::Multibase(_) => "publicKeyMultibase",
            Self::Base58(_) => "publicKeyBase58",
            Self::Missing => "no supported public key member",
        }
    }
}

fn display_type(t: &str) -> &str {
    if t.is_empty() {
        "(no type)"
    } else {
        t
    }
}

/// Drops a multicodec prefix when the bytes are exactly prefix + key.
fn strip_multicodec(bytes: &[u8], prefix: [u8; 2], key_len: usize) -> &[u8] {
    match bytes.strip_prefix(&prefix[..]) {
        Some(rest) if rest.len() == key_len => rest,
        _ => bytes,
    }
}

fn str_member(obj: &Map<String, Value>, name: &str) -> Result<Option<String>, AuthError> {
    match obj.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(AuthError::BadDocument(format!("{name} is not a string"))),
    }
}

fn bad_doc(reason: &str) -> AuthError {
    AuthError::BadDocument(reason.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::KeyType;

    fn method(v: Value) -> VerificationMethod {
        VerificationMethod::from_value(&v).unwrap()
    }

    const ED_X: &str = "3d7XdbjNQYQlTlniAINIhubOS3vQMygXEFU88mqHsYQ";

    fn ed_bytes() -> Vec<u8> {
        decode_base64url(ED_X).unwrap()
    }

    #[test]
    fn ed25519_encodings_agree() {
        let jwk = method(serde_json::json!({
            "id": "d#k", "type": "Ed25519VerificationKey2018",
            "publicKeyJwk": {"kty": "OKP", "crv": "Ed25519", "x": ED_X}
        }))
        .public_key()
        .unwrap();
        let b58 = bs58::encode(ed_bytes()).into_string();
        let with_codec =
            bs58::encode([&MULTICODEC_ED25519_PUB[..], &ed_bytes()].concat()).into_string();
        for m in [
            serde_json::json!({"id": "d#k", "type": "Ed25519VerificationKey2018", "publicKeyBase58": b58}),
            serde_json::json!({"id": "d#k", "type": "Ed25519VerificationKey2018", "publicKeyMultibase": format!("z{b58}")}),
            serde_json::json!({"id": "d#k", "type": "Ed25519VerificationKey2020", "publicKeyMultibase": format!("z{with_codec}")}),
            serde_json::json!({"id": "d#k", "type": "JsonWebKey2020", "publicKeyJwk": {"kty": "OKP", "crv": "Ed25519", "x": ED_X}}),
        ] {
            assert_eq!(method(m.clone()).public_key().as_ref(), Ok(&jwk), "{m}");
        }
        assert_eq!(jwk.key_type(), KeyType::Ed25519);
    }

    #[test]
    fn secp256k1_encodings_agree() {
        let sk = k256::ecdsa::SigningKey::from_slice(&[7; 32]).unwrap();
        let pk = PublicKey::from_secp256k1(*sk.verifying_key());
        let (x, y) = pk.secp256k1_xy().unwrap();
        let enc = super::super::key::encode_base64url;
        let compressed = pk.to_bytes();
        let mb = format!("z{}", bs58::encode(&compressed).into_string());
        let mb_codec = format!(
            "z{}",
            bs58::encode([&MULTICODEC_SECP256K1_PUB[..], &compressed].concat()).into_string()
        );
        for m in [
            serde_json::json!({"id": "d#k", "type": "EcdsaSecp256k1VerificationKey2019",
                "publicKeyJwk": {"kty": "EC", "crv": "secp256k1", "x": enc(&x), "y": enc(&y)}}),
            serde_json::json!({"id": "d#k", "type": "JsonWebKey2020",
                "publicKeyJwk": {"kty": "EC", "crv": "secp256k1", "x": enc(&x), "y": enc(&y)}}),
            serde_json::json!({"id": "d#k", "type": "EcdsaSecp256k1VerificationKey2019", "publicKeyMultibase": mb}),
            serde_json::json!({"id": "d#k", "type": "EcdsaSecp256k1VerificationKey2019", "publicKeyMultibase": mb_codec}),
        ] {
            assert_eq!(method(m.clone()).public_key().as_ref(), Ok(&pk), "{m}");
        }
    }

    #[test]
    fn secp256k1_jwk_with_stripped_leading_zeros() {
        // Search for a key whose x starts with a zero byte, as the reference
        // would write it (shortened).
        let (pk, x, y) = (1u8..=255)
            .find_map(|i| {
                let sk = k256::ecdsa::SigningKey::from_slice(&[i; 32]).ok()?;
                let pk = PublicKey::from_secp256k1(*sk.verifying_key());
                let (x, y) = pk.secp256k1_xy()?;
                (x[0] == 0).then_some((pk, x, y))
            })
            .or_else(|| {
                (0u32..100_000).find_map(|i| {
                    let mut seed = [1u8; 32];
                    seed[..4].copy_from_slice(&i.to_be_bytes());
                    let sk = k256::ecdsa::SigningKey::from_slice(&seed).ok()?;
                    let pk = PublicKey::from_secp256k1(*sk.verifying_key());
                    let (x, y) = pk.secp256k1_xy()?;
                    (x[0] == 0).then_some((pk, x, y))
                })
            })
            .unwrap();
        let enc = super::super::key::encode_base64url;
        let m = method(
            serde_json::json!({"id": "d#k", "type": "EcdsaSecp256k1VerificationKey2019",
            "publicKeyJwk": {"kty": "EC", "crv": "secp256k1", "x": enc(&x[1..]), "y": enc(&y)}}),
        );
        assert_eq!(m.public_key(), Ok(pk));
    }

    #[test]
    fn unsupported_and_bad_keys() {
        let cases = [
            (
                serde_json::json!({"id": "d#k", "type": "EcdsaSecp256r1VerificationKey2019", "publicKeyHex": "04"}),
                "unsupported_key_type",
            ),
            (
                serde_json::json!({"id": "d#k", "type": "JsonWebKey2020", "publicKeyJwk": {"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}}),
                "unsupported_key_type",
            ),
            (
                serde_json::json!({"id": "d#k", "type": "EcdsaSecp256k1VerificationKey2019", "publicKeyJwk": {"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}}),
                "unsupported_key_type",
            ),
            (
                serde_json::json!({"id": "d#k", "type": "Ed25519VerificationKey2018", "publicKeyMultibase": "mAAAA"}),
                "unsupported_key_type",
            ),
            (
                serde_json::json!({"id": "d#k", "type": "Ed25519VerificationKey2018"}),
                "unsupported_key_type",
            ),
            (serde_json::json!({"id": "d#k"}), "unsupported_key_type"),
            (
                serde_json::json!({"id": "d#k", "type": "EcdsaSecp256k1VerificationKey2019", "publicKeyJwk": {"kty": "EC", "crv": "secp256k1", "x": "AQ", "y": "AQ"}}),
                "bad_key",
            ),
            (
                serde_json::json!({"id": "d#k", "type": "EcdsaSecp256k1VerificationKey2019", "publicKeyJwk": {"kty": "EC", "crv": "secp256k1", "x": "!!", "y": "AQ"}}),
                "bad_key",
            ),
            (
                serde_json::json!({"id": "d#k", "type": "EcdsaSecp256k1VerificationKey2019", "publicKeyJwk": {"kty": "EC", "crv": "secp256k1"}}),
                "bad_key",
            ),
            (
                serde_json::json!({"id": "d#k", "type": "EcdsaSecp256k1VerificationKey2019", "publicKeyMultibase": "z0OIl"}),
                "bad_key",
            ),
            (
                serde_json::json!({"id": "d#k", "type": "Ed25519VerificationKey2018", "publicKeyBase58": "abc"}),
                "bad_key",
            ),
        ];
        for (m, reason) in cases {
            let got = method(m.clone()).public_key();
            assert_eq!(
                got.as_ref().map_err(AuthError::reason),
                Err(reason),
                "{m}: {got:?}"
            );
        }
    }

    #[test]
    fn document_shapes() {
        assert!(DidDocument::from_json(b"[]").is_err());
        assert!(DidDocument::from_json(b"{}").is_err());
        assert!(DidDocument::from_json(br#"{"id": 1}"#).is_err());
        assert!(DidDocument::from_json(br#"{"id": "d", "verificationMethod": {}}"#).is_err());
        assert!(
            DidDocument::from_json(br#"{"id": "d", "verificationMethod": [{"type": "x"}]}"#)
                .is_err()
        );
        assert!(DidDocument::from_json(br#"{"id": "d", "authentication": [1]}"#).is_err());
        let d = DidDocument::from_json(br#"{"id": "d"}"#).unwrap();
        assert!(d.verification_methods.is_empty() && d.authentication.is_empty());
    }

    #[test]
    fn find_method_and_relative_ids() {
        let d = DidDocument::from_value(&serde_json::json!({
            "id": "did:wba:a.example",
            "verificationMethod": [{"id": "#key-1", "type": "t"}],
            "authentication": [
                "#key-1",
                {"id": "did:wba:a.example#key-2", "type": "t"},
                "did:wba:a.example#missing"
            ],
        }))
        .unwrap();
        assert_eq!(
            d.find_method("did:wba:a.example#key-1").unwrap().id,
            "#key-1"
        );
        assert_eq!(
            d.find_method("did:wba:a.example#key-2").unwrap().id,
            "did:wba:a.example#key-2"
        );
        assert!(d.find_method("did:wba:a.example#missing").is_none());
        assert!(d.find_method("did:wba:b.example#key-1").is_none());
        let auth: Vec<_> = d.authentication_methods().map(|m| m.id.as_str()).collect();
        assert_eq!(auth, ["#key-1", "did:wba:a.example#key-2"]);
    }

    proptest::proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            if let Ok(d) = DidDocument::from_json(&bytes) {
                for m in &d.verification_methods {
                    let _ = m.public_key();
                }
            }
        }
    }
}
