//! Making a new DID: its document and private key (`anpx did new`).

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::key::encode_base64url;
use super::{AuthError, Did, KeyMaterial, PrivateKey};

/// Makes a DID document and its PKCS#8 PEM private key, shaped like the
/// reference SDK's: `@context`, `id`, one `verificationMethod` `#key-1` and
/// an `authentication` reference to it. secp256k1 keys are written as a
/// JWK with the SDK's `kid` (base64url SHA-256 of the compressed point),
/// Ed25519 keys as an OKP JWK under `Ed25519VerificationKey2018`.
///
/// `host` may carry a port (`didhost.cc:8443`, written `%3A8443` in the
/// DID); `path` is the DID's path, segments split on `/` or `:`
/// (`"user/alice"` gives `did:wba:host:user:alice`, served at
/// `https://host/user/alice/did.json`).
///
/// Returns `(did_document_json, private_key_pem)`.
///
/// ```
/// use anpx_core::auth::{generate_did_document, DidDocument, KeyMaterial};
/// let (doc, pem) =
///     generate_did_document("didhost.cc", Some("anpproxy1"), KeyMaterial::Secp256k1([42; 32])).unwrap();
/// let parsed = DidDocument::from_json(doc.as_bytes()).unwrap();
/// assert_eq!(parsed.id, "did:wba:didhost.cc:anpproxy1");
/// assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
/// ```
pub fn generate_did_document(
    host: &str,
    path: Option<&str>,
    key: KeyMaterial,
) -> Result<(String, String), AuthError> {
    let (host, port) = match host.rsplit_once(':') {
        Some((h, p)) => {
            let port = p.parse::<u16>().ok().filter(|&p| p != 0).ok_or_else(|| {
                AuthError::MalformedDid {
                    did: host.to_owned(),
                    reason: "bad port",
                }
            })?;
            (h, Some(port))
        }
        None => (host, None),
    };
    let segments: Vec<&str> = path
        .unwrap_or_default()
        .split(['/', ':'])
        .filter(|s| !s.is_empty())
        .collect();
    let did = Did::from_parts(host, port, &segments)?;
    let key = PrivateKey::from_material(&key)?;
    let method_id = format!("{}#key-1", did.as_str());

    let public = key.public_key();
    let (context, method_type, jwk) = match public.secp256k1_xy() {
        Some((x, y)) => (
            SECP256K1_CONTEXT,
            "EcdsaSecp256k1VerificationKey2019",
            JwkOut {
                kty: "EC",
                crv: "secp256k1",
                x: encode_base64url(&x),
                y: Some(encode_base64url(&y)),
                kid: Some(encode_base64url(&Sha256::digest(public.to_bytes()))),
            },
        ),
        None => (
            ED25519_CONTEXT,
            "Ed25519VerificationKey2018",
            JwkOut {
                kty: "OKP",
                crv: "Ed25519",
                x: encode_base64url(&public.to_bytes()),
                y: None,
                kid: None,
            },
        ),
    };
    let document = DocumentOut {
        context,
        id: did.as_str(),
        verification_method: [MethodOut {
            id: &method_id,
            method_type,
            controller: did.as_str(),
            public_key_jwk: jwk,
        }],
        authentication: [&method_id],
    };
    let json = serde_json::to_string_pretty(&document)
        .map_err(|e| AuthError::BadDocument(e.to_string()))?;
    Ok((json, key.to_pem()?))
}

const SECP256K1_CONTEXT: &[&str] = &[
    "https://www.w3.org/ns/did/v1",
    "https://w3id.org/security/suites/jws-2020/v1",
    "https://w3id.org/security/suites/secp256k1-2019/v1",
];

const ED25519_CONTEXT: &[&str] = &[
    "https://www.w3.org/ns/did/v1",
    "https://w3id.org/security/suites/ed25519-2018/v1",
];

// Structs rather than a JSON map so members keep the reference's order.
#[derive(Serialize)]
struct DocumentOut<'a> {
    #[serde(rename = "@context")]
    context: &'a [&'a str],
    id: &'a str,
    #[serde(rename = "verificationMethod")]
    verification_method: [MethodOut<'a>; 1],
    authentication: [&'a str; 1],
}

#[derive(Serialize)]
struct MethodOut<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    method_type: &'a str,
    controller: &'a str,
    #[serde(rename = "publicKeyJwk")]
    public_key_jwk: JwkOut,
}

#[derive(Serialize)]
struct JwkOut {
    kty: &'static str,
    crv: &'static str,
    x: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    y: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    kid: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use k256::pkcs8::DecodePrivateKey as _;

    #[test]
    fn shape_matches_the_reference_secp256k1_document() {
        // The reference's own document for the vectors' key, minus its
        // optional `service`, is what we make from the same key.
        let pem = include_str!("../../../testdata/did-wba-vectors/secp256k1-key-1_private.pem");
        let sk = k256::SecretKey::from_pkcs8_pem(pem).unwrap();
        let material = KeyMaterial::Secp256k1(sk.to_bytes().into());
        let (doc, _) = generate_did_document("didhost.cc", Some("anpproxy1"), material).unwrap();
        let ours: serde_json::Value = serde_json::from_str(&doc).unwrap();
        let mut reference: serde_json::Value = serde_json::from_str(include_str!(
            "../../../testdata/did-wba-vectors/secp256k1-did.json"
        ))
        .unwrap();
        reference.as_object_mut().unwrap().remove("service");
        assert_eq!(ours, reference);
        // Member order as the reference writes it.
        let keys: Vec<_> = [
            "\"@context\"",
            "\"id\"",
            "\"verificationMethod\"",
            "\"authentication\"",
        ]
        .iter()
        .map(|k| doc.find(k).unwrap())
        .collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn shape_matches_the_reference_ed25519_document() {
        let pem = include_str!("../../../testdata/did-wba-vectors/ed25519-key-1_private.pem");
        let sk = ed25519_dalek::SigningKey::from_pkcs8_pem(pem).unwrap();
        let material = KeyMaterial::Ed25519(sk.to_bytes());
        let (doc, pem_out) =
            generate_did_document("didhost.cc", Some("anpproxy2"), material).unwrap();
        let ours: serde_json::Value = serde_json::from_str(&doc).unwrap();
        let reference: serde_json::Value = serde_json::from_str(include_str!(
            "../../../testdata/did-wba-vectors/ed25519-did.json"
        ))
        .unwrap();
        assert_eq!(ours, reference);
        assert_eq!(pem_out.trim(), pem.trim());
    }

    #[test]
    fn hosts_ports_and_paths() {
        let id = |host, path| {
            let (doc, _) =
                generate_did_document(host, path, KeyMaterial::Ed25519([1; 32])).unwrap();
            crate::auth::DidDocument::from_json(doc.as_bytes())
                .unwrap()
                .id
        };
        assert_eq!(id("a.example", None), "did:wba:a.example");
        assert_eq!(
            id("a.example:8443", Some("user/alice")),
            "did:wba:a.example%3A8443:user:alice"
        );
        assert_eq!(id("a.example", Some("/x:y/")), "did:wba:a.example:x:y");
        for (host, path) in [
            ("", None),
            ("a.example:0", None),
            ("a.example:x", None),
            ("a b", None),
            ("a.example", Some("..")),
            ("a.example", Some("a?b")),
        ] {
            assert!(
                generate_did_document(host, path, KeyMaterial::Ed25519([1; 32])).is_err(),
                "{host:?} {path:?}"
            );
        }
        assert!(generate_did_document("a.example", None, KeyMaterial::Secp256k1([0; 32])).is_err());
    }
}
