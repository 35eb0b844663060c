//! The license server client (outbound).
//!
//! With `LICENSE_KEY` set, the service validates at start-up and whenever its cached answer
//! is older than five minutes, checks the features it gates, and sends a keepalive with
//! usage figures. All of it runs in a background task with short timeouts: a license
//! server that is down, slow or answering garbage never blocks or fails a request. The last
//! good answer is kept for a seven-day grace period; failures are logged, counted in
//! `/metrics` (`killkrill_license_checks_total{result}`) and shown in `/api/v1/license`.
//! Without a key the service runs as the community tier and makes no outbound calls. The
//! key itself never appears in logs or responses.

use std::{
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

pub use crate::config::check_license_key_format;
use crate::{error::AppError, metrics::Metrics, time::rfc3339};

/// How long a validation answer is trusted before asking again.
pub const CACHE_TTL: Duration = Duration::from_secs(5 * 60);
/// How long the last good answer stands while the server cannot be reached.
pub const GRACE: Duration = Duration::from_secs(7 * 24 * 3600);
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// The features routes may require; asked for explicitly at every check.
pub const GATED_FEATURES: &[&str] = &["audit_export"];

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct Feature {
    pub name: String,
    pub entitled: bool,
}

/// The answer of `POST /api/v2/validate`.
#[derive(Clone, Debug, Deserialize)]
pub struct Validation {
    pub valid: bool,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub tier: Option<String>,
    #[serde(default)]
    pub expires_at: Option<String>,
    #[serde(default)]
    pub features: Vec<Feature>,
    #[serde(default)]
    pub metadata: Option<Value>,
}

#[derive(Deserialize)]
struct FeaturesAnswer {
    features: Vec<Feature>,
}

#[derive(Debug, Default)]
struct State {
    good: Option<Validation>,
    good_at: Option<(Instant, DateTime<Utc>)>,
    checked_at: Option<DateTime<Utc>>,
    last_error: Option<String>,
}

struct Remote {
    http: reqwest::Client,
    base: String,
    key: SecretString,
    product: String,
}

/// The license as the service knows it.
pub struct License {
    remote: Option<Remote>,
    state: RwLock<State>,
    metrics: Option<Arc<Metrics>>,
}

impl std::fmt::Debug for License {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("License").field("licensed", &self.remote.is_some()).finish()
    }
}

/// Why a call to the license server failed (for logs, metrics and `last_error`).
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("license server unreachable or timed out: {0}")]
    Transport(String),
    #[error("license server answered HTTP {0}")]
    Status(u16),
    #[error("license server answered something that is not the expected JSON: {0}")]
    Malformed(String),
}

impl License {
    pub fn community() -> Self {
        Self { remote: None, state: RwLock::new(State::default()), metrics: None }
    }

    /// `key` must already have passed [`check_license_key_format`].
    /// Calls are counted in `metrics` (`killkrill_license_checks_total{result}`).
    pub fn new(
        key: Option<SecretString>,
        server_url: &str,
        product: &str,
        metrics: Arc<Metrics>,
    ) -> Result<Self, reqwest::Error> {
        let Some(key) = key else { return Ok(Self::community()) };
        crate::install_crypto_provider();
        let http = reqwest::Client::builder().timeout(CALL_TIMEOUT).connect_timeout(CALL_TIMEOUT).build()?;
        Ok(Self {
            remote: Some(Remote {
                http,
                base: server_url.trim_end_matches('/').to_owned(),
                key,
                product: product.to_owned(),
            }),
            state: RwLock::new(State::default()),
            metrics: Some(metrics),
        })
    }

    pub fn is_licensed(&self) -> bool {
        self.remote.is_some()
    }

    async fn call<T: serde::de::DeserializeOwned>(&self, path: &str, body: Value) -> Result<T, CallError> {
        let Some(remote) = &self.remote else { return Err(CallError::Transport("no license key".into())) };
        let response = remote
            .http
            .post(format!("{}{path}", remote.base))
            .bearer_auth(remote.key.expose_secret())
            .json(&body)
            .send()
            .await
            .map_err(|e| CallError::Transport(e.without_url().to_string()));
        let result = match response {
            Ok(response) => Self::read(response).await,
            Err(err) => Err(err),
        };
        if let Some(metrics) = &self.metrics {
            metrics.observe_license_check(result.is_ok());
        }
        result
    }

    async fn read<T: serde::de::DeserializeOwned>(response: reqwest::Response) -> Result<T, CallError> {
        let status = response.status();
        if !status.is_success() {
            return Err(CallError::Status(status.as_u16()));
        }
        let bytes = response.bytes().await.map_err(|e| CallError::Transport(e.without_url().to_string()))?;
        serde_json::from_slice(&bytes).map_err(|e| CallError::Malformed(e.to_string()))
    }

    /// Validates now (and refreshes the gated features); keeps the last good answer on
    /// failure. Returns whether the server answered.
    pub async fn refresh(&self) -> Result<(), CallError> {
        let Some(remote) = &self.remote else { return Ok(()) };
        let product = remote.product.clone();
        let now = Utc::now();
        let result: Result<Validation, CallError> = async {
            let mut validation: Validation = self.call("/api/v2/validate", json!({ "product": product })).await?;
            for feature in GATED_FEATURES {
                let answer: FeaturesAnswer =
                    self.call("/api/v2/features", json!({ "product": product, "feature": feature })).await?;
                for f in answer.features {
                    validation.features.retain(|known| known.name != f.name);
                    validation.features.push(f);
                }
            }
            Ok(validation)
        }
        .await;
        let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
        state.checked_at = Some(now);
        match result {
            Ok(validation) => {
                if !validation.valid {
                    tracing::warn!(event = "license_invalid", message = validation.message.as_deref().unwrap_or(""));
                }
                state.good = Some(validation);
                state.good_at = Some((Instant::now(), now));
                state.last_error = None;
                Ok(())
            }
            Err(err) => {
                tracing::warn!(event = "license_check_failed", error = %err);
                state.last_error = Some(err.to_string());
                Err(err)
            }
        }
    }

    /// Whether the cached answer is older than [`CACHE_TTL`] (or missing).
    pub fn stale(&self) -> bool {
        let state = self.state.read().unwrap_or_else(|p| p.into_inner());
        state.good_at.is_none_or(|(at, _)| at.elapsed() >= CACHE_TTL)
    }

    /// The last good answer, if it is still inside the grace period.
    fn current(&self) -> Option<Validation> {
        let state = self.state.read().unwrap_or_else(|p| p.into_inner());
        match (&state.good, state.good_at) {
            (Some(good), Some((at, _))) if at.elapsed() < GRACE => Some(good.clone()),
            _ => None,
        }
    }

    pub fn entitled(&self, feature: &str) -> bool {
        self.current().is_some_and(|v| v.valid && v.features.iter().any(|f| f.name == feature && f.entitled))
    }

    /// 403 naming the feature unless the license entitles it.
    pub fn require(&self, feature: &str) -> Result<(), AppError> {
        if self.entitled(feature) {
            Ok(())
        } else {
            Err(AppError::Forbidden(format!("This feature requires a license that includes `{feature}`")))
        }
    }

    /// What `/api/v1/status` and `/api/v1/license` show. Never the key.
    pub fn summary(&self, server_url: &str) -> Value {
        if self.remote.is_none() {
            return json!({ "tier": "community", "valid": true, "licensed": false, "features": [],
                           "last_check": null, "last_success": null, "last_error": null });
        }
        let state = self.state.read().unwrap_or_else(|p| p.into_inner());
        let current = state.good.as_ref().filter(|_| state.good_at.is_some_and(|(at, _)| at.elapsed() < GRACE));
        let in_grace = current.is_some() && state.last_error.is_some();
        json!({
            "tier": current.and_then(|v| v.tier.clone()).unwrap_or_else(|| "community".to_owned()),
            "valid": current.is_some_and(|v| v.valid),
            "licensed": true,
            "message": current.and_then(|v| v.message.clone()),
            "expires_at": current.and_then(|v| v.expires_at.clone()),
            "features": current.map(|v| v.features.clone()).unwrap_or_default(),
            "server": server_url,
            "last_check": state.checked_at.map(rfc3339),
            "last_success": state.good_at.map(|(_, at)| rfc3339(at)),
            "last_error": state.last_error,
            "grace": in_grace,
        })
    }

    /// `POST /api/v2/keepalive` with usage figures.
    pub async fn keepalive(&self, usage: Value) -> Result<(), CallError> {
        let Some(remote) = &self.remote else { return Ok(()) };
        let server_id = self.current().and_then(|v| v.metadata).and_then(|m| m.get("server_id").cloned());
        let mut body = json!({ "product": remote.product, "server_id": server_id });
        if let (Some(body), Some(usage)) = (body.as_object_mut(), usage.as_object()) {
            body.extend(usage.clone());
        }
        self.call::<Value>("/api/v2/keepalive", body).await.map(|_| ())
    }
}
