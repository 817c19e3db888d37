//! Private keys of the client side: loading, making from caller-supplied
//! randomness, signing.

use std::fmt;

use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _, KeypairBytes};

use super::{AuthError, KeyType, PublicKey};

/// 32 random bytes to make a key from, and which kind of key. The core
/// reads no entropy: the caller fills these from a CSPRNG.
#[derive(Clone, PartialEq, Eq)]
pub enum KeyMaterial {
    /// A secp256k1 secret scalar (the reference SDK's only kind of new key).
    Secp256k1([u8; 32]),
    /// An Ed25519 seed.
    Ed25519([u8; 32]),
}

impl fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Secp256k1(_) => f.write_str("KeyMaterial::Secp256k1(..)"),
            Self::Ed25519(_) => f.write_str("KeyMaterial::Ed25519(..)"),
        }
    }
}

/// A signing key: secp256k1 or Ed25519.
#[derive(Clone)]
pub struct PrivateKey(Inner);

#[derive(Clone)]
enum Inner {
    Secp256k1(k256::ecdsa::SigningKey),
    Ed25519(ed25519_dalek::SigningKey),
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PrivateKey({:?}, ..)", self.key_type())
    }
}

impl PrivateKey {
    /// Reads a PEM private key: PKCS#8 (`BEGIN PRIVATE KEY`, what the
    /// reference SDK writes) for secp256k1 or Ed25519, or SEC1 (`BEGIN EC
    /// PRIVATE KEY`) for secp256k1. Encrypted keys are not read.
    pub fn from_pem(pem: &str) -> Result<Self, AuthError> {
        if let Ok(k) = ed25519_dalek::SigningKey::from_pkcs8_pem(pem) {
            return Ok(Self(Inner::Ed25519(k)));
        }
        if let Ok(k) = k256::ecdsa::SigningKey::from_pkcs8_pem(pem) {
            return Ok(Self(Inner::Secp256k1(k)));
        }
        if let Ok(k) = k256::SecretKey::from_sec1_pem(pem) {
            return Ok(Self(Inner::Secp256k1(k.into())));
        }
        Err(AuthError::BadPrivateKey(
            "not an unencrypted PKCS#8 or SEC1 PEM secp256k1 or Ed25519 key",
        ))
    }

    /// Makes a key from caller-supplied random bytes. Fails only for the
    /// (2^-128-likely) secp256k1 bytes that are zero or not below the group
    /// order; draw new bytes then.
    pub fn from_material(material: &KeyMaterial) -> Result<Self, AuthError> {
        match material {
            KeyMaterial::Secp256k1(bytes) => k256::ecdsa::SigningKey::from_slice(bytes)
                .map(|k| Self(Inner::Secp256k1(k)))
                .map_err(|_| AuthError::BadPrivateKey("not a valid secp256k1 scalar")),
            KeyMaterial::Ed25519(seed) => Ok(Self(Inner::Ed25519(
                ed25519_dalek::SigningKey::from_bytes(seed),
            ))),
        }
    }

    /// The key as unencrypted PKCS#8 PEM, the form the reference SDK writes
    /// and reads.
    pub fn to_pem(&self) -> Result<String, AuthError> {
        let pem = match &self.0 {
            Inner::Secp256k1(k) => k256::SecretKey::from(k)
                .to_pkcs8_pem(LineEnding::LF)
                .map_err(|_| AuthError::BadPrivateKey("cannot encode as PKCS#8"))?,
            // PKCS#8 v1 (no public key inside), as OpenSSL and the vectors write it.
            Inner::Ed25519(k) => KeypairBytes {
                secret_key: k.to_bytes(),
                public_key: None,
            }
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|_| AuthError::BadPrivateKey("cannot encode as PKCS#8"))?,
        };
        Ok(pem.as_str().to_owned())
    }

    /// Which algorithm the key is for.
    pub fn key_type(&self) -> KeyType {
        match self.0 {
            Inner::Secp256k1(_) => KeyType::Secp256k1,
            Inner::Ed25519(_) => KeyType::Ed25519,
        }
    }

    /// The public half.
    pub fn public_key(&self) -> PublicKey {
        match &self.0 {
            Inner::Secp256k1(k) => PublicKey::from_secp256k1(*k.verifying_key()),
            Inner::Ed25519(k) => PublicKey::from_ed25519(k.verifying_key()),
        }
    }

    /// Signs a header's 32-byte content hash. secp256k1: ECDSA/SHA-256,
    /// deterministic (RFC 6979), low S, always 64 bytes r‖s so any verifier
    /// splits it right. Ed25519: the 64-byte signature.
    pub fn sign(&self, content_hash: &[u8; 32]) -> Vec<u8> {
        match &self.0 {
            Inner::Secp256k1(k) => {
                use k256::ecdsa::signature::Signer as _;
                let sig: k256::ecdsa::Signature = k.sign(content_hash);
                sig.to_bytes().to_vec()
            }
            Inner::Ed25519(k) => {
                use ed25519_dalek::Signer as _;
                k.sign(content_hash).to_bytes().to_vec()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECP_PEM: &str =
        include_str!("../../../testdata/did-wba-vectors/secp256k1-key-1_private.pem");
    const ED_PEM: &str =
        include_str!("../../../testdata/did-wba-vectors/ed25519-key-1_private.pem");

    #[test]
    fn loads_reference_keys_and_writes_them_back() {
        let secp = PrivateKey::from_pem(SECP_PEM).unwrap();
        assert_eq!(secp.key_type(), KeyType::Secp256k1);
        let ed = PrivateKey::from_pem(ED_PEM).unwrap();
        assert_eq!(ed.key_type(), KeyType::Ed25519);
        // The Ed25519 encoding is byte-for-byte OpenSSL's.
        assert_eq!(ed.to_pem().unwrap().trim(), ED_PEM.trim());
        for k in [secp, ed] {
            let again = PrivateKey::from_pem(&k.to_pem().unwrap()).unwrap();
            assert_eq!(again.public_key(), k.public_key());
        }
    }

    #[test]
    fn sec1_pem() {
        use k256::elliptic_curve::sec1::ToEncodedPoint as _;
        let sk = k256::SecretKey::from_slice(&[3; 32]).unwrap();
        let pem = sk.to_sec1_pem(LineEnding::LF).unwrap();
        let k = PrivateKey::from_pem(&pem).unwrap();
        assert_eq!(
            k.public_key().to_bytes(),
            sk.public_key().to_encoded_point(true).as_bytes()
        );
    }

    #[test]
    fn refusals() {
        for pem in [
            "",
            "garbage",
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        ] {
            assert!(matches!(
                PrivateKey::from_pem(pem),
                Err(AuthError::BadPrivateKey(_))
            ));
        }
        assert!(PrivateKey::from_material(&KeyMaterial::Secp256k1([0; 32])).is_err());
        assert!(PrivateKey::from_material(&KeyMaterial::Secp256k1([0xff; 32])).is_err());
        assert_eq!(
            format!("{:?}", KeyMaterial::Ed25519([9; 32])),
            "KeyMaterial::Ed25519(..)"
        );
    }

    #[test]
    fn signatures_are_fixed_width_and_verify() {
        for m in [
            KeyMaterial::Secp256k1([5; 32]),
            KeyMaterial::Ed25519([5; 32]),
        ] {
            let k = PrivateKey::from_material(&m).unwrap();
            for i in 0..50u8 {
                let hash = [i; 32];
                let sig = k.sign(&hash);
                assert_eq!(sig.len(), 64);
                assert_eq!(k.public_key().verify(&hash, &sig), Ok(()));
            }
        }
    }
}
