//! API keys (`kk_...`) and ingest keys (`kki_...`): 32 random bytes, URL-safe; stored
//! only as a SHA-256 hex digest, looked up by that digest.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use sha2::{Digest, Sha256};

pub const API_KEY_PREFIX: &str = "kk_";
pub const INGEST_KEY_PREFIX: &str = "kki_";
/// Characters of a key shown in listings (the kind prefix and a few random ones).
const SHOWN: usize = 8;

/// A freshly generated key: the plaintext (shown once), its digest and its shown prefix.
pub struct NewKey {
    pub plaintext: String,
    pub digest: String,
    pub prefix: String,
}

pub fn generate(kind_prefix: &str) -> Result<NewKey, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    let plaintext = format!("{kind_prefix}{}", URL_SAFE_NO_PAD.encode(bytes));
    Ok(NewKey {
        digest: digest(&plaintext),
        prefix: plaintext.chars().take(kind_prefix.len() + SHOWN).collect(),
        plaintext,
    })
}

/// SHA-256 hex digest: high-entropy keys need no slow hash.
pub fn digest(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_prefixed_random_and_digested() {
        let a = generate(API_KEY_PREFIX).unwrap();
        let b = generate(API_KEY_PREFIX).unwrap();
        assert!(a.plaintext.starts_with("kk_") && a.plaintext.len() >= 3 + 43);
        assert_ne!(a.plaintext, b.plaintext);
        assert_eq!(a.digest, digest(&a.plaintext));
        assert_eq!(a.digest.len(), 64);
        assert!(a.plaintext.starts_with(&a.prefix) && a.prefix.len() == 11);
        assert!(a.plaintext[3..].chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
    }
}
