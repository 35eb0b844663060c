//! Password hashing, verification and policy.
//!
//! # New hashes
//! [`Passwords::hash`] makes argon2id (v=19) hashes with m=65536 KiB, t=3, p=4, a random
//! 16-byte salt and a 32-byte output, as a PHC string
//! (`$argon2id$v=19$m=65536,t=3,p=4$<salt>$<hash>`). The password is NFKD-normalized first,
//! as Flask-Security-Too does, so the same password typed on another keyboard or OS (composed
//! or decomposed accents, full-width letters) still matches.
//!
//! # Hashes carried over from Flask-Security-Too (FST)
//! FST (checked in its 5.9.2 source: `utils.get_hmac`, `utils.hash_password`,
//! `utils.verify_and_update_password`, `password_util.PasswordUtil.normalize`) stores
//!
//! ```text
//! passlib_hash( base64_standard_padded( HMAC-SHA512(key = UTF-8(SECURITY_PASSWORD_SALT),
//!                                                   msg = UTF-8(NFKD(password))) ) )
//! ```
//!
//! - The NFKD normalization is done by FST's forms (`SECURITY_PASSWORD_NORMALIZE_FORM`,
//!   default `"NFKD"`) before `hash_password` and `verify_and_update_password` are called.
//! - The base64 is Python's `base64.b64encode`: the standard alphabet with `=` padding, so
//!   always 88 ASCII characters for the 64-byte digest.
//! - For bcrypt, FST passes only the first 72 bytes of those 88 characters (`password[:72]`):
//!   the password itself is never truncated, its whole HMAC is, so two passwords that differ
//!   after byte 72 still differ.
//! - FST >= 5.5 defaults to argon2 (passlib takes argon2-cffi's defaults, which since
//!   argon2-cffi 21.2 are argon2id, m=65536, t=3, p=4: the same as ours), earlier versions to
//!   bcrypt (`$2b$12$`; `$2a$` and `$2y$` are accepted too).
//!
//! Because FST argon2 hashes look exactly like ours, [`Passwords::verify`] first checks the
//! (normalized) password itself and, only if that fails and a salt is configured, the FST
//! pre-hashed form. Any match through the FST form, any bcrypt match, and any argon2 match whose
//! algorithm, version or parameters differ from ours reports `needs_rehash: true`: the caller
//! should then store [`Passwords::hash`] of the password it just verified. Other passlib
//! schemes (pbkdf2, sha512_crypt, plaintext, ...) are not supported and verify as
//! [`Verification::Invalid`].
//!
//! # Cost and timing
//! Hashing and verifying run on [`tokio::task::spawn_blocking`], never on the async worker
//! threads. A wrong password costs two argon2 runs when a salt is configured (the plain and the
//! FST form), a right one usually one. For a user who does not exist, call
//! [`Passwords::verify_dummy`]: it verifies against a fixed dummy hash made with our
//! parameters (computed once, on first use) through the same code path, so an unknown user and
//! a wrong password take about the same time.
//!
//! # Limits
//! Passwords longer than [`MAX_PASSWORD_BYTES`] are refused by [`check_policy`] and
//! [`Passwords::hash`], and verify as invalid without being hashed (FST itself caps passwords
//! at 128 characters, so no carried-over password is longer). Stored hashes whose cost is
//! absurd (argon2 memory over 1 GiB, t or p over 64, bcrypt cost over 16) verify as invalid
//! with a warning instead of tying up a thread for minutes or exhausting memory.
//!
//! # Secrets
//! Neither passwords, nor the salt, nor stored hashes are ever logged; [`Passwords`]'s `Debug`
//! shows the salt as redacted. The copies this module makes of the password (to move it to the
//! blocking thread, and its NFKD form) and of its FST HMAC are [`SecretString`]s, zeroized on
//! drop; the hashing crates' internal buffers and the raw HMAC digest are not.

use std::sync::{Arc, OnceLock};

use argon2::{Algorithm, Argon2, Params, PasswordHash, PasswordHasher, PasswordVerifier, Version};
use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha512;
use unicode_normalization::UnicodeNormalization;

/// Argon2 memory cost of new hashes, in KiB (64 MiB).
pub const ARGON2_M_COST_KIB: u32 = 65_536;
/// Argon2 iterations of new hashes.
pub const ARGON2_T_COST: u32 = 3;
/// Argon2 lanes of new hashes.
pub const ARGON2_P_COST: u32 = 4;
/// Argon2 output length of new hashes, in bytes.
pub const ARGON2_OUTPUT_LEN: usize = 32;
/// Minimum password length, in characters (Unicode scalar values after NFC composition).
pub const MIN_PASSWORD_CHARS: usize = 8;
/// Maximum password length, in UTF-8 bytes as received.
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// bcrypt reads at most this many bytes; FST truncates its base64 HMAC to it.
const BCRYPT_MAX_INPUT_BYTES: usize = 72;
/// Stored hashes above these costs are treated as corrupt (see the module doc).
const ARGON2_MAX_M_COST_KIB: u32 = 1024 * 1024;
const ARGON2_MAX_T_COST: u32 = 64;
const ARGON2_MAX_P_COST: u32 = 64;
const BCRYPT_MAX_COST: u32 = 16;

/// Password the dummy hash is made of. It is never compared with anything that matters: the
/// result of [`Passwords::verify_dummy`] is thrown away.
const DUMMY_PASSWORD: &str = "killkrill-dummy-password";
/// Fixed salt of the dummy hash, so making it needs no randomness that could fail.
const DUMMY_SALT: &[u8; 16] = b"killkrill-dummy!";

/// Why a hash could not be made or a verification could not run.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    /// The password is longer than [`MAX_PASSWORD_BYTES`]; [`check_policy`] refuses it first.
    #[error("password longer than {MAX_PASSWORD_BYTES} bytes")]
    TooLong,
    /// argon2 or the system's random number generator failed.
    #[error("password hashing failed: {0}")]
    Hash(String),
    /// The blocking task panicked or was cancelled (runtime shutting down).
    #[error("password hashing task failed: {0}")]
    Task(String),
}

/// The outcome of [`Passwords::verify`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verification {
    /// Wrong password, or a stored hash we cannot read.
    Invalid,
    /// Right password. With `needs_rehash`, store [`Passwords::hash`] of it in place of the old
    /// hash (an FST or bcrypt hash, or argon2 with other parameters than ours).
    Valid { needs_rehash: bool },
}

/// Hashes and verifies passwords; cheap to clone (the salt is shared).
#[derive(Clone, Debug)]
pub struct Passwords {
    /// FST's `SECURITY_PASSWORD_SALT`, only used to verify hashes carried over from FST.
    /// `SecretString`'s `Debug` prints it redacted.
    salt: Option<Arc<SecretString>>,
}

impl Passwords {
    /// `security_password_salt` is the Flask service's `SECURITY_PASSWORD_SALT`, or `None` if
    /// there are no FST hashes to accept. An empty salt counts as none (FST refuses one too).
    pub fn new(security_password_salt: Option<SecretString>) -> Self {
        let salt = security_password_salt.filter(|salt| !salt.expose_secret().is_empty()).map(Arc::new);
        Self { salt }
    }

    /// A new argon2id PHC string of `password` with our parameters and a random salt.
    pub async fn hash(&self, password: &str) -> Result<String, PasswordError> {
        if password.len() > MAX_PASSWORD_BYTES {
            return Err(PasswordError::TooLong);
        }
        let password = SecretString::from(password);
        run_blocking(move || hash_blocking(&normalize(password.expose_secret()))).await?
    }

    /// Checks `password` against `stored_hash` (ours, FST's argon2 or bcrypt). A stored hash we
    /// cannot read verifies as [`Verification::Invalid`] (with a warning that omits the hash),
    /// never as an error: errors only mean the blocking task itself failed.
    pub async fn verify(&self, password: &str, stored_hash: &str) -> Result<Verification, PasswordError> {
        if password.len() > MAX_PASSWORD_BYTES {
            return Ok(Verification::Invalid);
        }
        let password = SecretString::from(password);
        let stored_hash = SecretString::from(stored_hash);
        let salt = self.salt.clone();
        run_blocking(move || {
            verify_blocking(&normalize(password.expose_secret()), salt.as_deref(), stored_hash.expose_secret())
        })
        .await
    }

    /// Does the work of a failed [`Passwords::verify`] for a user that does not exist, so the
    /// response takes as long as for a wrong password. The first call also makes the dummy
    /// hash (once per process).
    pub async fn verify_dummy(&self, password: &str) {
        if password.len() > MAX_PASSWORD_BYTES {
            return;
        }
        let password = SecretString::from(password);
        let salt = self.salt.clone();
        let outcome = run_blocking(move || {
            let password = normalize(password.expose_secret());
            match dummy_hash() {
                Some(dummy) => {
                    verify_blocking(&password, salt.as_deref(), dummy);
                }
                // Cannot happen with our constant parameters; still spend the same work.
                None => {
                    let _ = hash_blocking(&password);
                }
            }
        })
        .await;
        if let Err(err) = outcome {
            tracing::warn!(event = "password_dummy_verify_failed", error = %err);
        }
    }
}

/// Checks a new password: at least [`MIN_PASSWORD_CHARS`] characters, at most
/// [`MAX_PASSWORD_BYTES`] bytes, and not the username (ignoring case). The error is a sentence
/// fit for an API 400 message.
pub fn check_policy(password: &str, username: &str) -> Result<(), String> {
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(format!("Password is too long: it must be at most {MAX_PASSWORD_BYTES} bytes."));
    }
    // Count what a person sees as characters: "ä" is one whether typed composed or not.
    if password.nfc().count() < MIN_PASSWORD_CHARS {
        return Err(format!("Password is too short: it must be at least {MIN_PASSWORD_CHARS} characters."));
    }
    let fold = |s: &str| s.nfkc().collect::<String>().to_lowercase();
    if !username.is_empty() && fold(password) == fold(username) {
        return Err("Password must not be the same as the username.".to_owned());
    }
    Ok(())
}

/// How many hashes may run at once: half the CPUs (at least one). A burst of logins then
/// queues instead of taking every core (and 64 MiB each) from the requests being served.
fn hash_permits() -> &'static tokio::sync::Semaphore {
    static PERMITS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    PERMITS.get_or_init(|| {
        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        tokio::sync::Semaphore::new((cpus / 2).max(1))
    })
}

/// Runs CPU-heavy work on the blocking pool, at most [`hash_permits`] at a time.
async fn run_blocking<T, F>(work: F) -> Result<T, PasswordError>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    // The permit moves into the blocking task: if the request is dropped (client gone,
    // timeout), the hash keeps running and keeps its permit until it really ends.
    let permit = hash_permits().acquire().await.map_err(|err| PasswordError::Task(err.to_string()))?;
    tokio::task::spawn_blocking(move || {
        let result = work();
        drop(permit);
        result
    })
    .await
    .map_err(|err| PasswordError::Task(err.to_string()))
}

/// NFKD, as FST's `SECURITY_PASSWORD_NORMALIZE_FORM` default does before hashing/verifying.
fn normalize(password: &str) -> SecretString {
    SecretString::from(password.nfkd().collect::<String>())
}

/// FST's `get_hmac`: base64 (standard alphabet, padded) of HMAC-SHA512 keyed by the salt.
fn fst_prehash(normalized: &SecretString, salt: &SecretString) -> SecretString {
    // HMAC takes a key of any length, so this cannot fail; map it to an empty MAC anyway.
    let digest = match Hmac::<Sha512>::new_from_slice(salt.expose_secret().as_bytes()) {
        Ok(mut mac) => {
            mac.update(normalized.expose_secret().as_bytes());
            mac.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(),
    };
    SecretString::from(base64::engine::general_purpose::STANDARD.encode(digest))
}

fn our_params() -> Result<Params, PasswordError> {
    Params::new(ARGON2_M_COST_KIB, ARGON2_T_COST, ARGON2_P_COST, Some(ARGON2_OUTPUT_LEN))
        .map_err(|err| PasswordError::Hash(err.to_string()))
}

fn our_argon2() -> Result<Argon2<'static>, PasswordError> {
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, our_params()?))
}

fn hash_blocking(normalized: &SecretString) -> Result<String, PasswordError> {
    our_argon2()?
        .hash_password(normalized.expose_secret().as_bytes())
        .map(|hash| hash.to_string())
        .map_err(|err| PasswordError::Hash(err.to_string()))
}

/// The dummy hash for [`Passwords::verify_dummy`], made once with our parameters.
fn dummy_hash() -> Option<&'static str> {
    static DUMMY: OnceLock<Option<String>> = OnceLock::new();
    DUMMY
        .get_or_init(|| {
            let made = our_argon2().and_then(|argon2| {
                argon2
                    .hash_password_with_salt(DUMMY_PASSWORD.as_bytes(), DUMMY_SALT)
                    .map(|hash| hash.to_string())
                    .map_err(|err| PasswordError::Hash(err.to_string()))
            });
            match made {
                Ok(hash) => Some(hash),
                Err(err) => {
                    tracing::error!(event = "password_dummy_hash_failed", error = %err);
                    None
                }
            }
        })
        .as_deref()
}

/// What a stored hash is, as far as we can tell without the password.
enum Stored<'a> {
    Argon2 {
        hash: Box<PasswordHash>,
        ours: bool,
    },
    Bcrypt(&'a str),
    /// Unreadable or unsupported; the reason is safe to log (it never quotes the hash).
    Unusable(&'static str),
}

fn classify(stored: &str) -> Stored<'_> {
    if stored.starts_with("$argon2") {
        let Ok(hash) = PasswordHash::new(stored) else {
            return Stored::Unusable("malformed argon2 hash");
        };
        let Ok(params) = Params::try_from(&hash) else {
            return Stored::Unusable("invalid argon2 parameters");
        };
        if params.m_cost() > ARGON2_MAX_M_COST_KIB
            || params.t_cost() > ARGON2_MAX_T_COST
            || params.p_cost() > ARGON2_MAX_P_COST
        {
            return Stored::Unusable("argon2 cost beyond sanity limits");
        }
        if hash.salt.is_none() || hash.hash.is_none() {
            return Stored::Unusable("argon2 hash without salt or output");
        }
        let ours = hash.algorithm == Algorithm::Argon2id.ident()
            && hash.version == Some(Version::V0x13.into())
            && params.m_cost() == ARGON2_M_COST_KIB
            && params.t_cost() == ARGON2_T_COST
            && params.p_cost() == ARGON2_P_COST
            && params.output_len() == Some(ARGON2_OUTPUT_LEN)
            && params.keyid().is_empty()
            && params.data().is_empty();
        return Stored::Argon2 { hash: Box::new(hash), ours };
    }
    if ["$2a$", "$2b$", "$2y$"].iter().any(|prefix| stored.starts_with(prefix)) {
        return match stored.parse::<bcrypt::HashParts>() {
            Ok(parts) if parts.get_cost() > BCRYPT_MAX_COST => Stored::Unusable("bcrypt cost beyond sanity limits"),
            Ok(_) => Stored::Bcrypt(stored),
            Err(_) => Stored::Unusable("malformed bcrypt hash"),
        };
    }
    Stored::Unusable("unknown hash scheme")
}

fn verify_blocking(normalized: &SecretString, salt: Option<&SecretString>, stored: &str) -> Verification {
    let password = normalized.expose_secret().as_bytes();
    match classify(stored) {
        Stored::Argon2 { hash, ours } => {
            let matches = |candidate: &[u8]| Argon2::default().verify_password(candidate, &*hash).is_ok();
            if matches(password) {
                return Verification::Valid { needs_rehash: !ours };
            }
            if let Some(salt) = salt
                && matches(fst_prehash(normalized, salt).expose_secret().as_bytes())
            {
                return Verification::Valid { needs_rehash: true };
            }
            Verification::Invalid
        }
        Stored::Bcrypt(stored) => {
            // bcrypt::verify reads at most 72 bytes, as passlib's bcrypt does.
            let matches = |candidate: &[u8]| bcrypt::verify(candidate, stored).unwrap_or(false);
            if matches(password) {
                return Verification::Valid { needs_rehash: true };
            }
            if let Some(salt) = salt {
                let prehash = fst_prehash(normalized, salt);
                let bytes = prehash.expose_secret().as_bytes();
                if matches(&bytes[..bytes.len().min(BCRYPT_MAX_INPUT_BYTES)]) {
                    return Verification::Valid { needs_rehash: true };
                }
            }
            Verification::Invalid
        }
        Stored::Unusable(reason) => {
            tracing::warn!(event = "password_hash_unusable", reason);
            Verification::Invalid
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    const SALT: &str = "killkrill-test-salt-7f3a9c2e";
    const OUR_PREFIX: &str = "$argon2id$v=19$m=65536,t=3,p=4$";

    fn with_salt(salt: &str) -> Passwords {
        Passwords::new(Some(SecretString::from(salt)))
    }

    #[derive(serde::Deserialize)]
    struct Fixture {
        scheme: String,
        salt: String,
        password: String,
        hash: String,
    }

    fn fixtures() -> Vec<Fixture> {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/fst/hashes.json");
        let text = std::fs::read_to_string(path).unwrap();
        let fixtures: Vec<Fixture> = serde_json::from_str(&text).unwrap();
        // The fixtures must cover what they claim to, or the tests below prove little.
        for scheme in ["argon2", "bcrypt"] {
            assert!(fixtures.iter().any(|f| f.scheme == scheme), "{scheme}");
        }
        assert!(fixtures.iter().any(|f| f.password.len() > BCRYPT_MAX_INPUT_BYTES));
        assert!(fixtures.iter().any(|f| f.password.nfkd().collect::<String>() != f.password));
        fixtures
    }

    /// Verifies every fixture concurrently (2 cores) and returns the outcomes in order.
    async fn verify_all(fixtures: &[Fixture], make: impl Fn(&Fixture) -> (Passwords, String)) -> Vec<Verification> {
        let mut tasks = tokio::task::JoinSet::new();
        for (index, fixture) in fixtures.iter().enumerate() {
            let (passwords, password) = make(fixture);
            let hash = fixture.hash.clone();
            tasks.spawn(async move { (index, passwords.verify(&password, &hash).await.unwrap()) });
        }
        let mut outcomes = vec![Verification::Invalid; fixtures.len()];
        while let Some(joined) = tasks.join_next().await {
            let (index, outcome) = joined.unwrap();
            outcomes[index] = outcome;
        }
        outcomes
    }

    #[tokio::test]
    async fn hash_then_verify_round_trip_needs_no_rehash() {
        // With a salt configured, so our own hash is not taken for an FST one.
        let passwords = with_salt(SALT);
        let hash = passwords.hash("pässwörd-Ωmega").await.unwrap();
        assert_eq!(
            passwords.verify("pässwörd-Ωmega", &hash).await.unwrap(),
            Verification::Valid { needs_rehash: false }
        );
        // Typed decomposed (NFD) it is the same password.
        let decomposed: String = "pässwörd-Ωmega".nfd().collect();
        assert_ne!(decomposed, "pässwörd-Ωmega");
        assert_eq!(passwords.verify(&decomposed, &hash).await.unwrap(), Verification::Valid { needs_rehash: false });
        assert_eq!(passwords.verify("pässwörd-Ωmegb", &hash).await.unwrap(), Verification::Invalid);
    }

    #[tokio::test]
    async fn new_hashes_are_argon2id_with_our_parameters_and_random_salts() {
        let passwords = Passwords::new(None);
        let first = passwords.hash("correct horse").await.unwrap();
        let second = passwords.hash("correct horse").await.unwrap();
        for hash in [&first, &second] {
            assert!(hash.starts_with(OUR_PREFIX), "{hash}");
            let parsed = PasswordHash::new(hash).unwrap();
            assert_eq!(parsed.salt.unwrap().len(), 16);
            assert_eq!(parsed.hash.unwrap().len(), ARGON2_OUTPUT_LEN);
        }
        assert_ne!(first, second, "each hash has its own random salt");
    }

    #[tokio::test]
    async fn wrong_password_is_invalid_without_salt() {
        let passwords = Passwords::new(None);
        let hash = passwords.hash("the right one").await.unwrap();
        assert_eq!(passwords.verify("the wrong one", &hash).await.unwrap(), Verification::Invalid);
    }

    #[tokio::test]
    async fn every_fst_fixture_verifies_with_the_salt_and_needs_rehash() {
        let fixtures = fixtures();
        let outcomes = verify_all(&fixtures, |f| (with_salt(&f.salt), f.password.clone())).await;
        for (fixture, outcome) in fixtures.iter().zip(outcomes) {
            assert_eq!(
                outcome,
                Verification::Valid { needs_rehash: true },
                "{} {:?}",
                fixture.scheme,
                fixture.password
            );
        }
    }

    #[tokio::test]
    async fn fst_fixtures_reject_wrong_password_wrong_salt_and_no_salt() {
        let fixtures = fixtures();
        // Change the last character: for the long password that is past byte 72, which only
        // an HMAC over the whole password (not a truncated one) notices.
        let wrong_password = |f: &Fixture| {
            let mut wrong = f.password.clone();
            let last = wrong.pop().unwrap();
            wrong.push(if last == 'x' { 'y' } else { 'x' });
            (with_salt(&f.salt), wrong)
        };
        let wrong_salt = |f: &Fixture| (with_salt(&format!("{}x", f.salt)), f.password.clone());
        let no_salt = |f: &Fixture| (Passwords::new(None), f.password.clone());
        for (case, outcomes) in [
            ("wrong password", verify_all(&fixtures, wrong_password).await),
            ("wrong salt", verify_all(&fixtures, wrong_salt).await),
            ("no salt", verify_all(&fixtures, no_salt).await),
        ] {
            for (fixture, outcome) in fixtures.iter().zip(outcomes) {
                assert_eq!(outcome, Verification::Invalid, "{case}: {} {:?}", fixture.scheme, fixture.password);
            }
        }
    }

    #[test]
    fn fst_prehash_is_padded_standard_base64_of_hmac_sha512_over_nfkd() {
        // Computed with Python: base64.b64encode(hmac.new(salt.encode(),
        //   unicodedata.normalize("NFKD", pw).encode(), hashlib.sha512).digest())
        let salt = SecretString::from("killkrill-test-salt");
        let prehash = fst_prehash(&normalize("pässwörd-Ωmega"), &salt);
        assert_eq!(
            prehash.expose_secret(),
            "PdMbyAmpaqRxFRJv7Sb8OSUME63iCbB2A4QeN6zlgsx/FZtk7Hy7Zj7SI3mJvIvt/LtobtXMlJ038rjyQgcWpA=="
        );
    }

    /// Cheap hashes of other kinds than ours, made here at low cost.
    fn weak_argon2(algorithm: Algorithm, password: &str) -> String {
        let params = Params::new(8, 1, 1, None).unwrap();
        Argon2::new(algorithm, Version::V0x13, params)
            .hash_password_with_salt(password.as_bytes(), b"sixteen-byte-slt")
            .unwrap()
            .to_string()
    }

    #[tokio::test]
    async fn argon2_with_other_parameters_or_variant_needs_rehash() {
        let passwords = Passwords::new(None);
        for algorithm in [Algorithm::Argon2id, Algorithm::Argon2i] {
            let hash = weak_argon2(algorithm, "old parameters");
            assert_eq!(
                passwords.verify("old parameters", &hash).await.unwrap(),
                Verification::Valid { needs_rehash: true },
                "{hash}"
            );
            assert_eq!(passwords.verify("other password", &hash).await.unwrap(), Verification::Invalid);
        }
    }

    #[tokio::test]
    async fn plain_bcrypt_in_every_prefix_verifies_and_needs_rehash() {
        let passwords = with_salt(SALT);
        let hash = bcrypt::hash("plain bcrypt pw", 4).unwrap();
        assert!(hash.starts_with("$2b$04$"), "{hash}");
        for prefix in ["$2a$", "$2b$", "$2y$"] {
            let variant = format!("{prefix}{}", &hash[4..]);
            assert_eq!(
                passwords.verify("plain bcrypt pw", &variant).await.unwrap(),
                Verification::Valid { needs_rehash: true },
                "{prefix}"
            );
            assert_eq!(passwords.verify("plain bcrypt px", &variant).await.unwrap(), Verification::Invalid);
        }
    }

    #[tokio::test]
    async fn unreadable_or_unsupported_stored_hashes_are_invalid_and_quick() {
        let passwords = with_salt(SALT);
        let garbage = [
            "",
            "not a hash",
            "plaintext-password",
            "$argon2id$",
            "$argon2id$v=19$m=65536,t=3,p=4$",
            "$argon2id$v=19$m=65536,t=3,p=4$c2l4dGVlbi1ieXRlLXNsdA",
            "$argon2id$v=19$m=65536,t=3,p=4$!!!$!!!",
            "$argon2id$v=19$m=4294967295,t=3,p=4$c2l4dGVlbi1ieXRlLXNsdA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "$argon2id$v=19$m=65536,t=4294967295,p=4$c2l4dGVlbi1ieXRlLXNsdA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "$2b$12$tooshort",
            "$2b$31$6SCU9Z/YPTlR.IFYkOX3EOmG9BjXFjJUqnHEtRXcedLEjnD8JHTT.",
            "$2x$04$6SCU9Z/YPTlR.IFYkOX3EOmG9BjXFjJUqnHEtRXcedLEjnD8JHTT.",
            "$pbkdf2-sha512$25000$c2FsdA$aGFzaA",
            "$6$rounds=656000$salt$hash",
        ];
        for stored in garbage {
            // Refused before any work: the absurd costs would take hours or terabytes (and a
            // blocking task cannot be cancelled, so a timeout alone would hang the test).
            assert!(matches!(classify(stored), Stored::Unusable(_)), "{stored}");
            let outcome = tokio::time::timeout(Duration::from_secs(5), passwords.verify("whatever password", stored))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(outcome, Verification::Invalid, "{stored}");
        }
    }

    #[tokio::test]
    async fn over_long_passwords_are_refused_without_hashing() {
        let passwords = Passwords::new(None);
        let long = "x".repeat(MAX_PASSWORD_BYTES + 1);
        assert!(matches!(passwords.hash(&long).await, Err(PasswordError::TooLong)));
        // Even against a hash of exactly that password (cheap params, made here).
        let hash = weak_argon2(Algorithm::Argon2id, &long);
        assert_eq!(passwords.verify(&long, &hash).await.unwrap(), Verification::Invalid);
        assert_eq!(
            passwords.verify(&long[1..], &weak_argon2(Algorithm::Argon2id, &long[1..])).await.unwrap(),
            Verification::Valid { needs_rehash: true },
            "the limit itself is allowed"
        );
    }

    #[tokio::test]
    async fn dummy_verification_runs_with_our_parameters() {
        let passwords = with_salt(SALT);
        let started = Instant::now();
        passwords.verify_dummy("no such user's password").await;
        passwords.verify_dummy("no such user's password").await;
        let elapsed = started.elapsed();
        let dummy = dummy_hash().unwrap();
        assert!(dummy.starts_with(OUR_PREFIX), "{dummy}");
        assert!(matches!(classify(dummy), Stored::Argon2 { ours: true, .. }));
        // It really did argon2 work: making the dummy plus two rounds of two verifications.
        assert!(elapsed > Duration::from_millis(20), "{elapsed:?}");
    }

    #[test]
    fn debug_never_shows_the_salt() {
        let debug = format!("{:?}", with_salt(SALT));
        assert!(!debug.contains(SALT), "{debug}");
        assert!(debug.contains("REDACTED"), "{debug}");
    }

    #[test]
    fn an_empty_salt_counts_as_none() {
        assert!(Passwords::new(Some(SecretString::from(""))).salt.is_none());
        assert!(with_salt(SALT).salt.is_some());
    }

    #[test]
    fn policy_accepts_reasonable_passwords() {
        assert_eq!(check_policy("correct horse", "alice"), Ok(()));
        assert_eq!(check_policy("12345678", "alice"), Ok(()));
        assert_eq!(check_policy("äöüßäöüß", "alice"), Ok(()));
        assert_eq!(check_policy(&"x".repeat(MAX_PASSWORD_BYTES), "alice"), Ok(()));
        // Containing the username is allowed; only equality is refused.
        assert_eq!(check_policy("alice-in-wonderland", "alice"), Ok(()));
    }

    #[test]
    fn policy_refuses_short_long_and_username_passwords() {
        let too_short = check_policy("1234567", "alice").unwrap_err();
        assert!(too_short.contains("at least 8 characters"), "{too_short}");
        assert!(check_policy("", "alice").is_err());
        // Seven accented letters typed decomposed are still seven characters.
        let decomposed: String = "äöüäöüä".nfd().collect();
        assert!(decomposed.chars().count() >= MIN_PASSWORD_CHARS);
        assert!(check_policy(&decomposed, "alice").is_err());

        let too_long = check_policy(&"x".repeat(MAX_PASSWORD_BYTES + 1), "alice").unwrap_err();
        assert!(too_long.contains("at most 1024 bytes"), "{too_long}");
        // 1024 bytes is the limit whatever the character count.
        assert!(check_policy(&"é".repeat(MAX_PASSWORD_BYTES / 2 + 1), "alice").is_err());

        let same = check_policy("AliceSmith", "alicesmith").unwrap_err();
        assert!(same.contains("same as the username"), "{same}");
        assert!(check_policy("ÉLODIE-ROSE", "élodie-rose").is_err());
    }
}
