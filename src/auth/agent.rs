//! The credential an agent (an OpenTelemetry exporter, Prometheus, Promtail, an
//! Elasticsearch client) carries, in the forms each can be configured to send, reduced
//! to the one secret it holds.

use base64::{Engine, engine::general_purpose::STANDARD};

use super::keys::{API_KEY_PREFIX, INGEST_KEY_PREFIX};

/// The secret an agent's request carries.
#[derive(Debug, PartialEq, Eq)]
pub enum AgentCredential {
    /// A source's ingest key (`kki_…`).
    IngestKey(String),
    /// A user's API key (`kk_…`).
    ApiKey(String),
    /// Anything else sent as a bearer token, or a Basic password shaped as one (three
    /// dot-separated parts): a user's access token.
    Bearer(String),
    /// Any other Basic password: a user's password, with the login (username or email)
    /// sent beside it.
    Password { login: String, password: String },
    /// A credential header in a form no agent sends, or not text.
    Malformed,
    /// No credential header.
    Absent,
}

impl AgentCredential {
    /// Reads `X-API-Key` (first) or `Authorization`: `Bearer <secret>`, `Basic
    /// base64(<user>:<secret>)` (a key or token with any user, else the user's password),
    /// `ApiKey <secret>` or `ApiKey base64(<id>:<secret>)` (Elasticsearch's forms). A
    /// header that is not text arrives as `Some("")`.
    pub fn read(api_key: Option<&str>, authorization: Option<&str>) -> Self {
        if let Some(key) = api_key {
            return Self::of_secret(key.trim(), false);
        }
        let Some(value) = authorization.map(str::trim) else { return Self::Absent };
        let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
        let rest = rest.trim();
        match scheme.to_ascii_lowercase().as_str() {
            "bearer" => Self::of_secret(rest, true),
            "basic" => match decoded_pair(rest) {
                Some((login, password)) => Self::of_basic(login, password),
                None => Self::Malformed,
            },
            "apikey" if rest.starts_with(INGEST_KEY_PREFIX) || rest.starts_with(API_KEY_PREFIX) => {
                Self::of_secret(rest, false)
            }
            "apikey" => match decoded_pair(rest) {
                Some((_, key)) => Self::of_secret(key.trim(), false),
                None => Self::Malformed,
            },
            _ => Self::Malformed,
        }
    }

    /// A Basic pair: a key or token as the password stands for itself (whatever the user
    /// name); anything else is the user's password, kept exactly as sent.
    fn of_basic(login: String, password: String) -> Self {
        let secret = password.trim();
        if secret.starts_with(INGEST_KEY_PREFIX) || secret.starts_with(API_KEY_PREFIX) || looks_like_token(secret) {
            return Self::of_secret(secret, true);
        }
        if password.is_empty() {
            return Self::Malformed;
        }
        Self::Password { login, password }
    }

    fn of_secret(secret: &str, may_be_token: bool) -> Self {
        if secret.is_empty() {
            Self::Malformed
        } else if secret.starts_with(INGEST_KEY_PREFIX) {
            Self::IngestKey(secret.to_owned())
        } else if secret.starts_with(API_KEY_PREFIX) || !may_be_token {
            Self::ApiKey(secret.to_owned())
        } else {
            Self::Bearer(secret.to_owned())
        }
    }
}

/// `base64(<a>:<b>)`, split at the first colon.
fn decoded_pair(encoded: &str) -> Option<(String, String)> {
    let bytes = STANDARD.decode(encoded).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (a, b) = text.split_once(':')?;
    Some((a.to_owned(), b.to_owned()))
}

/// A JWT's shape: three non-empty base64url parts separated by dots. No password a
/// person picks looks like that by accident.
fn looks_like_token(secret: &str) -> bool {
    let parts: Vec<&str> = secret.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
}

#[cfg(test)]
mod tests {
    use super::AgentCredential::{self, *};

    fn b64(text: &str) -> String {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(text)
    }

    #[test]
    fn every_agent_form_yields_its_secret() {
        let key = || IngestKey("kki_abc".to_owned());
        assert_eq!(AgentCredential::read(Some(" kki_abc "), None), key());
        assert_eq!(AgentCredential::read(None, Some("Bearer kki_abc")), key());
        assert_eq!(AgentCredential::read(None, Some(&format!("Basic {}", b64("promtail:kki_abc")))), key());
        assert_eq!(AgentCredential::read(None, Some("ApiKey kki_abc")), key());
        assert_eq!(AgentCredential::read(None, Some(&format!("ApiKey {}", b64("any-id:kki_abc")))), key());
        assert_eq!(AgentCredential::read(None, Some("ApiKey kk_user")), ApiKey("kk_user".to_owned()));
        assert_eq!(AgentCredential::read(Some("kk_user"), Some("Bearer x")), ApiKey("kk_user".to_owned()));
        assert_eq!(AgentCredential::read(None, Some("bearer eyJ.a.b")), Bearer("eyJ.a.b".to_owned()));
        assert_eq!(
            AgentCredential::read(None, Some(&format!("Basic {}", b64("u:eyJ.a.b")))),
            Bearer("eyJ.a.b".to_owned())
        );
        assert_eq!(
            AgentCredential::read(None, Some(&format!("Basic {}", b64("ann@example.test: s3cret:x ")))),
            Password { login: "ann@example.test".to_owned(), password: " s3cret:x ".to_owned() }
        );
        assert_eq!(
            AgentCredential::read(None, Some(&format!("Basic {}", b64("ann:a.b")))),
            Password { login: "ann".to_owned(), password: "a.b".to_owned() }
        );
    }

    #[test]
    fn other_forms_are_malformed_and_no_header_is_absent() {
        assert_eq!(AgentCredential::read(None, None), Absent);
        assert_eq!(AgentCredential::read(None, Some("Digest x")), Malformed);
        assert_eq!(AgentCredential::read(None, Some("Basic !!!")), Malformed);
        assert_eq!(AgentCredential::read(None, Some(&format!("Basic {}", b64("no-colon")))), Malformed);
        assert_eq!(AgentCredential::read(None, Some("Bearer ")), Malformed);
        assert_eq!(AgentCredential::read(None, Some(&format!("Basic {}", b64("ann:")))), Malformed);
        assert_eq!(AgentCredential::read(Some(""), None), Malformed);
    }
}
