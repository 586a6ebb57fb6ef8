//! Secrets: stored as a salted SHA-256 hash, compared in constant time.
//!
//! The broker's auth file holds `secret_sha256 = "<salt hex>:<hash hex>"`,
//! where the hash is SHA-256 of the salt followed by the secret; `broker
//! hash-secret` makes one. Secrets are meant to be random tokens (16 bytes
//! or more), not passwords a person chooses: a fast hash is enough against
//! someone who reads the file, and nothing slows a client's handshake.

use sha2::{Digest, Sha256};

/// Bytes of salt in a new hash.
const SALT_BYTES: usize = 16;

/// Why a stored hash is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("secret_sha256 must be \"<salt hex>:<64 hex digits>\"")]
pub struct BadSecretHash;

/// A stored secret: salt and hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SecretHash {
    salt: Vec<u8>,
    hash: [u8; 32],
}

impl SecretHash {
    /// Parses `<salt hex>:<hash hex>`.
    pub(crate) fn parse(text: &str) -> Result<Self, BadSecretHash> {
        let (salt, hash) = text.split_once(':').ok_or(BadSecretHash)?;
        let salt = from_hex(salt).ok_or(BadSecretHash)?;
        let hash = from_hex(hash)
            .and_then(|h| <[u8; 32]>::try_from(h).ok())
            .ok_or(BadSecretHash)?;
        Ok(Self { salt, hash })
    }

    /// Hashes `secret` with a fresh salt drawn from `salt_source`.
    pub(crate) fn new(secret: &[u8], salt: [u8; SALT_BYTES]) -> Self {
        Self {
            hash: digest(&salt, secret),
            salt: salt.to_vec(),
        }
    }

    /// Whether `secret` is the one hashed; takes as long whatever it is.
    pub(crate) fn verify(&self, secret: &[u8]) -> bool {
        constant_time_eq(&digest(&self.salt, secret), &self.hash)
    }
}

impl std::fmt::Display for SecretHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", to_hex(&self.salt), to_hex(&self.hash))
    }
}

/// A salt from the operating system's randomness (through the standard
/// library's hash keys, which it seeds from there).
pub(crate) fn fresh_salt() -> [u8; SALT_BYTES] {
    use std::hash::BuildHasher;
    let key = std::collections::hash_map::RandomState::new();
    let mut salt = [0; SALT_BYTES];
    for (i, chunk) in salt.chunks_mut(8).enumerate() {
        chunk.copy_from_slice(&key.hash_one((i, std::process::id())).to_le_bytes());
    }
    salt
}

fn digest(salt: &[u8], secret: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(salt);
    hasher.update(secret);
    hasher.finalize().into()
}

/// Compares without stopping at the first difference.
fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn from_hex(text: &str) -> Option<Vec<u8>> {
    if text.is_empty() || !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_secret_and_nothing_else() {
        let hash = SecretHash::new(b"s3cret-token", fresh_salt());
        let parsed = SecretHash::parse(&hash.to_string()).unwrap();
        assert_eq!(parsed, hash);
        assert!(parsed.verify(b"s3cret-token"));
        assert!(!parsed.verify(b"s3cret-tokem"));
        assert!(!parsed.verify(b""));
        assert_ne!(fresh_salt(), fresh_salt(), "a new salt each time");
    }

    #[test]
    fn malformed_hashes_are_refused() {
        for bad in [
            "",
            "abc",
            "zz:00",
            "00:1234",
            "0:00",
            &format!("00:{}", "0".repeat(63)),
        ] {
            assert_eq!(SecretHash::parse(bad), Err(BadSecretHash), "{bad:?}");
        }
        assert!(SecretHash::parse(&format!("00:{}", "a".repeat(64))).is_ok());
    }
}
