//! HS256 JSON Web Tokens, and nothing else.
//!
//! Written on `hmac` + `sha2` instead of a general JWT library: the service accepts exactly
//! one algorithm, so the whole class of algorithm-confusion bugs (`alg: none`, RS/HS
//! swaps) is excluded by construction, and the dependency tree stays small.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, KeyInit, Mac};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// What a token is for; carried in the `type` claim.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenType {
    Access,
    Refresh,
}

/// The claims of access and refresh tokens.
///
/// `username`, `roles` and `permissions` are signed for clients to read, but the service
/// never trusts them (rights come from the database on every request), so verification
/// skips them instead of allocating them: they are empty in verified claims.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: String,
    #[serde(default, skip_deserializing)]
    pub username: String,
    #[serde(default, skip_deserializing)]
    pub roles: Vec<String>,
    #[serde(default, skip_deserializing)]
    pub permissions: Vec<String>,
    pub jti: String,
    pub iat: i64,
    pub exp: i64,
    /// Not before: tokens this service signs carry none; one that does is refused until
    /// then (with [`MAX_CLOCK_SKEW_SECONDS`] of leeway).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    #[serde(rename = "type")]
    pub token_type: TokenType,
    /// The user's token version when issued; a password change or deactivation bumps it.
    pub ver: i32,
    /// The login session (refresh-token family) the token belongs to.
    pub sid: String,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("malformed token")]
    Malformed,
    #[error("unsupported token algorithm")]
    Algorithm,
    #[error("invalid token signature")]
    Signature,
    #[error("token expired")]
    Expired,
    #[error("token not valid yet")]
    NotYetValid,
    #[error("wrong token type")]
    WrongType,
}

#[derive(Deserialize)]
struct Header {
    alg: String,
}

/// The base64url form of `{"alg":"HS256","typ":"JWT"}`, the header of every token this
/// service signs: a token with exactly this header needs no JSON decoding of it.
const HEADER_B64: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9";

/// How far in the future `iat` and `nbf` may be (clock skew between replicas, or between
/// this service and another signer of the same secret). `exp` gets no leeway: a token is
/// never used after its expiry on this replica's clock.
pub const MAX_CLOCK_SKEW_SECONDS: i64 = 60;

/// Signs with `JWT_SECRET`; verifies with it or, during a rotation, `JWT_SECRET_PREVIOUS`.
/// Holds the keyed HMAC states (computed once; cloned per token), not the secrets.
#[derive(Clone)]
pub struct TokenSigner {
    current: Hmac<Sha256>,
    previous: Option<Hmac<Sha256>>,
}

impl std::fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenSigner { .. }")
    }
}

impl TokenSigner {
    pub fn new(current: SecretString, previous: Option<SecretString>) -> Self {
        Self { current: keyed(&current), previous: previous.as_ref().map(keyed) }
    }

    pub fn sign(&self, claims: &Claims) -> Result<String, serde_json::Error> {
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims)?);
        let signing_input = format!("{HEADER_B64}.{payload}");
        let signature = URL_SAFE_NO_PAD.encode(mac(&self.current, signing_input.as_bytes()).finalize().into_bytes());
        Ok(format!("{signing_input}.{signature}"))
    }

    /// Checks structure, algorithm, signature, the times (`exp`, `nbf`, `iat`) and type;
    /// returns the claims.
    pub fn verify(&self, token: &str, expected: TokenType, now: i64) -> Result<Claims, TokenError> {
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        if header != HEADER_B64 && decode_json::<Header>(header)?.alg != "HS256" {
            return Err(TokenError::Algorithm);
        }
        let signature = URL_SAFE_NO_PAD.decode(signature).map_err(|_| TokenError::Malformed)?;
        let signing_input = &token[..header_len(token, payload)];
        let valid = std::iter::once(&self.current)
            .chain(self.previous.as_ref())
            .any(|secret| mac(secret, signing_input.as_bytes()).verify_slice(&signature).is_ok());
        if !valid {
            return Err(TokenError::Signature);
        }
        let claims: Claims = decode_json(payload)?;
        if claims.exp <= now {
            return Err(TokenError::Expired);
        }
        if claims.nbf.is_some_and(|nbf| nbf > now + MAX_CLOCK_SKEW_SECONDS) {
            return Err(TokenError::NotYetValid);
        }
        if claims.iat > now + MAX_CLOCK_SKEW_SECONDS {
            return Err(TokenError::NotYetValid);
        }
        if claims.token_type != expected {
            return Err(TokenError::WrongType);
        }
        Ok(claims)
    }
}

/// Length of `header.payload` within `token`.
fn header_len(token: &str, payload: &str) -> usize {
    token.find('.').map_or(0, |dot| dot + 1 + payload.len())
}

fn keyed(secret: &SecretString) -> Hmac<Sha256> {
    // HMAC accepts keys of any length, so this cannot fail.
    <Hmac<Sha256> as KeyInit>::new_from_slice(secret.expose_secret().as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"))
}

/// The MAC of `data` under an already keyed state.
fn mac(keyed: &Hmac<Sha256>, data: &[u8]) -> Hmac<Sha256> {
    let mut mac = keyed.clone();
    mac.update(data);
    mac
}

fn decode_json<T: serde::de::DeserializeOwned>(segment: &str) -> Result<T, TokenError> {
    let bytes = URL_SAFE_NO_PAD.decode(segment).map_err(|_| TokenError::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| TokenError::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(token_type: TokenType, exp: i64) -> Claims {
        Claims {
            sub: "u1".into(),
            username: "ann".into(),
            roles: vec!["viewer".into()],
            permissions: vec!["read".into()],
            jti: "j1".into(),
            iat: 1_000,
            exp,
            nbf: None,
            token_type,
            ver: 0,
            sid: "s1".into(),
        }
    }

    fn signer(secret: &str) -> TokenSigner {
        TokenSigner::new(SecretString::from(secret.to_owned()), None)
    }

    #[test]
    fn round_trip_and_rejections() {
        let signer = signer("k1");
        let token = signer.sign(&claims(TokenType::Access, 2_000)).unwrap();
        assert_eq!(signer.verify(&token, TokenType::Access, 1_500).unwrap().sub, "u1");
        assert_eq!(signer.verify(&token, TokenType::Refresh, 1_500), Err(TokenError::WrongType));
        assert_eq!(signer.verify(&token, TokenType::Access, 2_000), Err(TokenError::Expired));
        assert_eq!(self::signer("other").verify(&token, TokenType::Access, 1_500), Err(TokenError::Signature));
        let mut tampered = token.clone();
        tampered.insert(tampered.find('.').unwrap() + 5, 'x');
        assert!(signer.verify(&tampered, TokenType::Access, 1_500).is_err());
        assert_eq!(signer.verify("a.b", TokenType::Access, 1_500), Err(TokenError::Malformed));
    }

    #[test]
    fn a_token_not_valid_yet_is_refused_beyond_the_clock_skew() {
        let signer = signer("k1");
        let not_before = |nbf| Claims { nbf: Some(nbf), ..claims(TokenType::Access, 10_000) };
        let token = signer.sign(&not_before(5_000)).unwrap();
        assert_eq!(signer.verify(&token, TokenType::Access, 4_000), Err(TokenError::NotYetValid));
        assert_eq!(signer.verify(&token, TokenType::Access, 4_939), Err(TokenError::NotYetValid));
        assert!(signer.verify(&token, TokenType::Access, 4_940).is_ok(), "60 s of leeway");
        assert!(signer.verify(&token, TokenType::Access, 6_000).is_ok());
        // Issued in the future: refused beyond the same leeway.
        let issued = |iat| Claims { iat, ..claims(TokenType::Access, 10_000) };
        let token = signer.sign(&issued(5_000)).unwrap();
        assert_eq!(signer.verify(&token, TokenType::Access, 4_939), Err(TokenError::NotYetValid));
        assert!(signer.verify(&token, TokenType::Access, 4_940).is_ok());
        // Tokens this service signs carry no nbf.
        let plain = signer.sign(&claims(TokenType::Access, 2_000)).unwrap();
        let payload = plain.split('.').nth(1).unwrap();
        assert!(!String::from_utf8(URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap().contains("nbf"));
    }

    #[test]
    fn canonical_header_constant_is_its_base64() {
        assert_eq!(URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#), HEADER_B64);
    }

    #[test]
    fn a_token_with_another_hs256_header_still_verifies() {
        let signer = signer("k1");
        let header = URL_SAFE_NO_PAD.encode(br#"{"typ":"JWT","alg":"HS256"}"#);
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims(TokenType::Access, 2_000)).unwrap());
        let input = format!("{header}.{payload}");
        let signature = URL_SAFE_NO_PAD.encode(mac(&signer.current, input.as_bytes()).finalize().into_bytes());
        let verified = signer.verify(&format!("{input}.{signature}"), TokenType::Access, 1_500).unwrap();
        assert_eq!((verified.sub.as_str(), verified.jti.as_str()), ("u1", "j1"));
        assert!(verified.roles.is_empty(), "roles are not trusted, so not decoded");
    }

    #[test]
    fn alg_none_and_other_algorithms_are_refused() {
        let signer = signer("k1");
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims(TokenType::Access, 2_000)).unwrap());
        for alg in ["none", "HS512", "RS256", "hs256"] {
            let header = URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#));
            let token = format!("{header}.{payload}.");
            assert_eq!(signer.verify(&token, TokenType::Access, 1_500), Err(TokenError::Algorithm), "{alg}");
        }
    }

    #[test]
    fn previous_secret_still_verifies_during_rotation() {
        let old = signer("old-secret");
        let token = old.sign(&claims(TokenType::Access, 2_000)).unwrap();
        let rotated = TokenSigner::new(
            SecretString::from("new-secret".to_owned()),
            Some(SecretString::from("old-secret".to_owned())),
        );
        assert!(rotated.verify(&token, TokenType::Access, 1_500).is_ok());
        assert!(signer("new-secret").verify(&token, TokenType::Access, 1_500).is_err());
    }
}
