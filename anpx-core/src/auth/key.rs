//! Public keys of DID documents and the checking of signatures made with
//! them.

use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;

use super::AuthError;

/// The signature algorithms DID-WBA uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeyType {
    /// ECDSA on secp256k1 with SHA-256 (`EcdsaSecp256k1VerificationKey2019`).
    Secp256k1,
    /// Ed25519 (`Ed25519VerificationKey2018` / `2020`).
    Ed25519,
}

/// The shortest secp256k1 signature tried. The reference writes r and s
/// without their leading zero bytes, so a genuine signature is 64 bytes or,
/// rarely, shorter; 8 lost bytes already has odds near 2^-64, and the floor
/// bounds the splits tried for one header to 9.
pub const MIN_SECP256K1_SIGNATURE_LEN: usize = 56;

/// A public key taken from a DID document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey(Inner);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Inner {
    Secp256k1(k256::ecdsa::VerifyingKey),
    Ed25519(ed25519_dalek::VerifyingKey),
}

impl PublicKey {
    /// A secp256k1 key from its SEC1 encoding (33 bytes compressed or 65
    /// uncompressed); `None` when the bytes are not a point of the curve.
    pub fn secp256k1_from_sec1(bytes: &[u8]) -> Option<Self> {
        k256::ecdsa::VerifyingKey::from_sec1_bytes(bytes)
            .ok()
            .map(|k| Self(Inner::Secp256k1(k)))
    }

    /// An Ed25519 key from its 32 bytes; `None` when they are not a point.
    pub fn ed25519_from_bytes(bytes: &[u8]) -> Option<Self> {
        let bytes: &[u8; 32] = bytes.try_into().ok()?;
        ed25519_dalek::VerifyingKey::from_bytes(bytes)
            .ok()
            .map(|k| Self(Inner::Ed25519(k)))
    }

    pub(crate) fn from_secp256k1(key: k256::ecdsa::VerifyingKey) -> Self {
        Self(Inner::Secp256k1(key))
    }

    pub(crate) fn from_ed25519(key: ed25519_dalek::VerifyingKey) -> Self {
        Self(Inner::Ed25519(key))
    }

    /// Which algorithm the key is for.
    pub fn key_type(&self) -> KeyType {
        match self.0 {
            Inner::Secp256k1(_) => KeyType::Secp256k1,
            Inner::Ed25519(_) => KeyType::Ed25519,
        }
    }

    /// The key's bytes: SEC1 compressed (33) for secp256k1, raw (32) for
    /// Ed25519.
    pub fn to_bytes(&self) -> Vec<u8> {
        match &self.0 {
            Inner::Secp256k1(k) => k.to_encoded_point(true).as_bytes().to_vec(),
            Inner::Ed25519(k) => k.to_bytes().to_vec(),
        }
    }

    /// The uncompressed affine coordinates of a secp256k1 key, for JWKs.
    pub(crate) fn secp256k1_xy(&self) -> Option<([u8; 32], [u8; 32])> {
        let Inner::Secp256k1(k) = &self.0 else {
            return None;
        };
        let point = k.to_encoded_point(false);
        let x = (*point.x()?).into();
        let y = (*point.y()?).into();
        Some((x, y))
    }

    /// Checks `signature` (decoded, not base64) over the 32-byte content
    /// hash of a header.
    ///
    /// secp256k1: ECDSA with SHA-256 over the hash, r‖s big-endian. Either
    /// value may have lost leading zero bytes (the reference strips them),
    /// so every split into two parts of at most 32 bytes is tried, the even
    /// split first; high S is accepted, as the reference's verifier does.
    /// Ed25519: the 64-byte signature of the hash, checked strictly
    /// (canonical encodings, no small-order keys).
    pub fn verify(&self, content_hash: &[u8; 32], signature: &[u8]) -> Result<(), AuthError> {
        match &self.0 {
            Inner::Secp256k1(key) => verify_secp256k1(key, content_hash, signature),
            Inner::Ed25519(key) => {
                let sig = ed25519_dalek::Signature::from_slice(signature)
                    .map_err(|_| AuthError::BadSignature)?;
                key.verify_strict(content_hash, &sig)
                    .map_err(|_| AuthError::BadSignature)
            }
        }
    }
}

fn verify_secp256k1(
    key: &k256::ecdsa::VerifyingKey,
    msg: &[u8],
    sig: &[u8],
) -> Result<(), AuthError> {
    let len = sig.len();
    if !(MIN_SECP256K1_SIGNATURE_LEN..=64).contains(&len) {
        return Err(AuthError::BadSignature);
    }
    let even = len / 2;
    let others = (len - 32..=32).filter(|&r_len| r_len != even);
    for r_len in std::iter::once(even).chain(others) {
        let (r, s) = sig.split_at(r_len);
        if r.len() <= 32 && s.len() <= 32 && verify_rs(key, msg, r, s) {
            return Ok(());
        }
    }
    Err(AuthError::BadSignature)
}

fn verify_rs(key: &k256::ecdsa::VerifyingKey, msg: &[u8], r: &[u8], s: &[u8]) -> bool {
    use k256::ecdsa::signature::Verifier as _;
    let mut rb = [0u8; 32];
    let mut sb = [0u8; 32];
    rb[32 - r.len()..].copy_from_slice(r);
    sb[32 - s.len()..].copy_from_slice(s);
    let Ok(sig) = k256::ecdsa::Signature::from_scalars(rb, sb) else {
        return false;
    };
    // k256 verifies only low-S signatures; (r, n - s) is valid exactly when
    // (r, s) is, and the reference's OpenSSL signer emits either.
    let sig = sig.normalize_s().unwrap_or(sig);
    key.verify(msg, &sig).is_ok()
}

/// Decodes base64url as leniently as the reference does: padding optional,
/// the standard alphabet's `+` and `/` accepted, unused trailing bits ignored.
pub(crate) fn decode_base64url(s: &str) -> Option<Vec<u8>> {
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &alphabet::URL_SAFE,
        GeneralPurposeConfig::new()
            .with_decode_padding_mode(DecodePaddingMode::Indifferent)
            .with_decode_allow_trailing_bits(true),
    );
    let s = s.replace('+', "-").replace('/', "_");
    LENIENT.decode(s).ok()
}

/// base64url without padding, as the reference writes signatures and JWKs.
pub(crate) fn encode_base64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k256::ecdsa::signature::Signer as _;

    #[test]
    fn base64_leniency() {
        assert_eq!(decode_base64url("-_8").unwrap(), [0xfb, 0xff]);
        assert_eq!(decode_base64url("+/8=").unwrap(), [0xfb, 0xff]);
        // Trailing bits set: Python decodes this the same as "-_8".
        assert_eq!(decode_base64url("-_9").unwrap(), [0xfb, 0xff]);
        assert!(decode_base64url("a").is_none());
        assert!(decode_base64url("a b").is_none());
    }

    fn secp_key(seed: u8) -> k256::ecdsa::SigningKey {
        k256::ecdsa::SigningKey::from_slice(&[seed; 32]).unwrap()
    }

    /// A signature whose r or s starts with zero bytes, found by searching
    /// messages; shortened as the reference would write it.
    fn short_signature(key: &k256::ecdsa::SigningKey, r_zero: bool) -> ([u8; 32], Vec<u8>) {
        for i in 0u32.. {
            let mut msg = [0u8; 32];
            msg[..4].copy_from_slice(&i.to_be_bytes());
            let sig: k256::ecdsa::Signature = key.sign(&msg);
            let bytes = sig.to_bytes();
            let (r, s) = bytes.split_at(32);
            let strip = |v: &[u8]| {
                v.iter()
                    .skip_while(|&&b| b == 0)
                    .copied()
                    .collect::<Vec<_>>()
            };
            let (r2, s2) = (strip(r), strip(s));
            if (r_zero && r2.len() < 32 && s2.len() == 32)
                || (!r_zero && s2.len() < 32 && r2.len() == 32)
            {
                return (msg, [r2, s2].concat());
            }
        }
        unreachable!()
    }

    #[test]
    fn secp256k1_short_r_and_short_s() {
        let sk = secp_key(7);
        let pk = PublicKey::from_secp256k1(*sk.verifying_key());
        for r_zero in [true, false] {
            let (msg, sig) = short_signature(&sk, r_zero);
            assert!(sig.len() < 64);
            assert_eq!(pk.verify(&msg, &sig), Ok(()), "r_zero={r_zero}");
            let mut tampered = sig.clone();
            tampered[10] ^= 1;
            assert_eq!(pk.verify(&msg, &tampered), Err(AuthError::BadSignature));
        }
    }

    #[test]
    fn secp256k1_high_s_accepted() {
        let sk = secp_key(9);
        let pk = PublicKey::from_secp256k1(*sk.verifying_key());
        let msg = [3u8; 32];
        let low: k256::ecdsa::Signature = sk.sign(&msg);
        // n - s, built by hand: negate the scalar.
        let (r, s) = low.split_scalars();
        let high = k256::ecdsa::Signature::from_scalars(r.to_bytes(), (-*s).to_bytes()).unwrap();
        use k256::elliptic_curve::scalar::IsHigh as _;
        assert!(bool::from(high.s().is_high()));
        assert_eq!(pk.verify(&msg, &high.to_bytes()), Ok(()));
    }

    #[test]
    fn secp256k1_length_bounds() {
        let pk = PublicKey::from_secp256k1(*secp_key(1).verifying_key());
        for len in [0, 1, 32, 55, 65, 128] {
            assert_eq!(
                pk.verify(&[0; 32], &vec![1u8; len]),
                Err(AuthError::BadSignature)
            );
        }
        // Zero scalars are refused, not a panic.
        assert_eq!(
            pk.verify(&[0; 32], &[0u8; 64]),
            Err(AuthError::BadSignature)
        );
        assert_eq!(
            pk.verify(&[0; 32], &[0xffu8; 64]),
            Err(AuthError::BadSignature)
        );
    }

    #[test]
    fn ed25519_wrong_length() {
        let sk = ed25519_dalek::SigningKey::from_bytes(&[5; 32]);
        let pk = PublicKey::from_ed25519(sk.verifying_key());
        assert_eq!(
            pk.verify(&[0; 32], &[0u8; 63]),
            Err(AuthError::BadSignature)
        );
        assert_eq!(pk.key_type(), KeyType::Ed25519);
        assert_eq!(pk.to_bytes().len(), 32);
    }
}
