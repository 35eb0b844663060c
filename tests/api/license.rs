//! The license client against a real local HTTP server standing in for the license server,
//! scripted to answer valid, invalid, slow, 500, malformed JSON, and to go away.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use crate::common::{Kind, TestDb, TestServer};
use axum::{Json, Router, extract::State, http::HeaderMap, routing::post};
use killkrill::{auth::Role, config::Config};
use reqwest::Method;
use serde_json::{Value, json};

cases! {
    tokio:
        without_a_key_the_community_tier_makes_no_calls,
        a_valid_license_is_shown_and_unlocks_its_features,
        an_invalid_license_or_missing_entitlement_refuses_the_premium_route,
        failures_keep_the_last_good_answer_and_are_reported_and_counted,
        a_hanging_license_server_never_slows_requests;
    test: a_malformed_key_is_a_startup_error_naming_the_variable;
}

const KEY: &str = "PENG-1A2B-3C4D-5E6F-7A8B-9C0D";

#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    Valid { export: bool },
    Invalid,
    Slow,
    ServerError,
    Garbage,
}

#[derive(Default)]
struct Script {
    mode: Mutex<Option<Mode>>,
    /// (path, Authorization header, body) of every call.
    calls: Mutex<Vec<(String, String, Value)>>,
}

struct Stub {
    url: String,
    script: Arc<Script>,
    task: tokio::task::JoinHandle<()>,
}

async fn answer(script: &Script, path: &str, headers: &HeaderMap, body: Value) -> axum::response::Response {
    use axum::response::IntoResponse;
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    script.calls.lock().unwrap().push((path.to_owned(), auth, body));
    let mode = script.mode.lock().unwrap().unwrap_or(Mode::Invalid);
    match mode {
        Mode::Slow => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            Json(json!({ "valid": true })).into_response()
        }
        Mode::ServerError => (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "boom").into_response(),
        Mode::Garbage => "<html>not json</html>".into_response(),
        Mode::Invalid if path == "/api/v2/validate" => {
            Json(json!({ "valid": false, "message": "license revoked", "tier": "enterprise", "features": [] }))
                .into_response()
        }
        Mode::Valid { .. } if path == "/api/v2/validate" => Json(json!({
            "valid": true, "message": "ok", "tier": "enterprise", "expires_at": "2027-12-31T00:00:00Z",
            "features": [{ "name": "sso", "entitled": true }], "metadata": { "server_id": "srv-42" }
        }))
        .into_response(),
        Mode::Valid { export } if path == "/api/v2/features" => {
            Json(json!({ "features": [{ "name": "audit_export", "entitled": export }] })).into_response()
        }
        Mode::Invalid if path == "/api/v2/features" => {
            Json(json!({ "features": [{ "name": "audit_export", "entitled": false }] })).into_response()
        }
        _ => Json(json!({ "ok": true })).into_response(),
    }
}

impl Stub {
    async fn start(mode: Mode) -> Stub {
        let script = Arc::new(Script::default());
        *script.mode.lock().unwrap() = Some(mode);
        let route = |path: &'static str| {
            post(move |State(s): State<Arc<Script>>, headers: HeaderMap, Json(body): Json<Value>| async move {
                answer(&s, path, &headers, body).await
            })
        };
        let app = Router::new()
            .route("/api/v2/validate", route("/api/v2/validate"))
            .route("/api/v2/features", route("/api/v2/features"))
            .route("/api/v2/keepalive", route("/api/v2/keepalive"))
            .with_state(script.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Stub { url, script, task }
    }

    fn set(&self, mode: Mode) {
        *self.script.mode.lock().unwrap() = Some(mode);
    }

    fn calls(&self) -> Vec<(String, String, Value)> {
        self.script.calls.lock().unwrap().clone()
    }
}

async fn licensed_server(stub: &Stub) -> (TestServer, TestDb) {
    let db = TestDb::create(Kind::Sqlite).await;
    let mut config: Config = db.config();
    config.license_key = Some(KEY.to_owned().into());
    config.license_server_url = stub.url.clone();
    (TestServer::start(config).await, db)
}

async fn license_view(server: &TestServer, token: &str) -> Value {
    let response = server.authed(Method::GET, "/api/v1/license", token).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    assert!(!text.contains(KEY), "the key leaked: {text}");
    serde_json::from_str(&text).unwrap()
}

fn a_malformed_key_is_a_startup_error_naming_the_variable() {
    for bad in
        ["PENG-1234", "peng-1a2b-3c4d-5e6f-7a8b-9c0d", "PENG-1A2B-3C4D-5E6F-7A8B-9C0G", "XXXX-1A2B-3C4D-5E6F-7A8B-9C0D"]
    {
        let err = killkrill::service::license::check_license_key_format(bad).unwrap_err();
        assert_eq!(err.variable, "LICENSE_KEY");
        assert!(!err.to_string().contains(bad), "the key is echoed: {err}");
    }
    assert!(killkrill::service::license::check_license_key_format(KEY).is_ok());
    let dir = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_killkrill"))
        .env_clear()
        .current_dir(dir.path())
        .env("LICENSE_KEY", "PENG-not-a-key")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("LICENSE_KEY") && !stderr.contains("PENG-not-a-key"), "{stderr}");
}

async fn without_a_key_the_community_tier_makes_no_calls() {
    let stub = Stub::start(Mode::Valid { export: true }).await;
    let db = TestDb::create(Kind::Sqlite).await;
    let mut config = db.config();
    config.license_server_url = stub.url.clone();
    let server = TestServer::start(config).await;
    let admin = server.create_user("root", &[Role::Admin]).await;
    let token = server.token(&admin).await;
    server.state.license.refresh().await.unwrap();
    let view = license_view(&server, &token).await;
    assert_eq!((view["tier"].as_str(), view["licensed"].as_bool()), (Some("community"), Some(false)));
    let status: Value =
        server.authed(Method::GET, "/api/v1/status", &token).send().await.unwrap().json().await.unwrap();
    assert_eq!(status["license"]["tier"], "community");
    assert_eq!(server.authed(Method::GET, "/api/v1/audit/export", &token).send().await.unwrap().status(), 403);
    assert!(stub.calls().is_empty(), "community tier called the license server");
    server.stop().await.unwrap();
}

async fn a_valid_license_is_shown_and_unlocks_its_features() {
    let stub = Stub::start(Mode::Valid { export: true }).await;
    let (server, _db) = licensed_server(&stub).await;
    let admin = server.create_user("root", &[Role::Admin]).await;
    let token = server.token(&admin).await;
    server.state.license.refresh().await.unwrap();
    let view = license_view(&server, &token).await;
    assert_eq!(view["tier"], "enterprise");
    assert_eq!(view["valid"], true);
    assert_eq!(view["expires_at"], "2027-12-31T00:00:00Z");
    assert!(view["features"].as_array().unwrap().contains(&json!({ "name": "audit_export", "entitled": true })));
    assert!(view["last_check"].is_string() && view["last_error"].is_null());
    let status: Value =
        server.authed(Method::GET, "/api/v1/status", &token).send().await.unwrap().json().await.unwrap();
    assert_eq!(status["license"]["tier"], "enterprise");
    // The premium route works, and the server saw the key as a bearer token and our product.
    let export = server.authed(Method::GET, "/api/v1/audit/export", &token).send().await.unwrap();
    assert_eq!(export.status(), 200);
    assert_eq!(export.headers()["content-type"], "application/x-ndjson");
    let calls = stub.calls();
    let validate = calls.iter().find(|c| c.0 == "/api/v2/validate").unwrap();
    assert_eq!(validate.1, format!("Bearer {KEY}"));
    assert_eq!(validate.2, json!({ "product": "killkrill" }));
    // Keepalive carries usage figures and the server id from the validation.
    server.state.license.keepalive(json!({ "users": 1 })).await.unwrap();
    let keepalive = stub.calls().into_iter().rev().find(|c| c.0 == "/api/v2/keepalive").unwrap();
    assert_eq!(keepalive.2["server_id"], "srv-42");
    assert_eq!(keepalive.2["users"], 1);
    server.stop().await.unwrap();
}

async fn an_invalid_license_or_missing_entitlement_refuses_the_premium_route() {
    let stub = Stub::start(Mode::Valid { export: false }).await;
    let (server, _db) = licensed_server(&stub).await;
    let admin = server.create_user("root", &[Role::Admin]).await;
    let token = server.token(&admin).await;
    server.state.license.refresh().await.unwrap();
    let refused = server.authed(Method::GET, "/api/v1/audit/export", &token).send().await.unwrap();
    assert_eq!(refused.status(), 403);
    let body: Value = refused.json().await.unwrap();
    assert!(body["message"].as_str().unwrap().contains("audit_export"), "{body}");
    stub.set(Mode::Invalid);
    server.state.license.refresh().await.unwrap();
    let view = license_view(&server, &token).await;
    assert_eq!(view["valid"], false);
    assert_eq!(view["message"], "license revoked");
    assert_eq!(server.authed(Method::GET, "/api/v1/audit/export", &token).send().await.unwrap().status(), 403);
    server.stop().await.unwrap();
}

async fn failures_keep_the_last_good_answer_and_are_reported_and_counted() {
    let stub = Stub::start(Mode::Valid { export: true }).await;
    let (server, _db) = licensed_server(&stub).await;
    let admin = server.create_user("root", &[Role::Admin]).await;
    let token = server.token(&admin).await;
    server.state.license.refresh().await.unwrap();
    for (mode, expected) in [(Mode::ServerError, "HTTP 500"), (Mode::Garbage, "not the expected JSON")] {
        stub.set(mode);
        assert!(server.state.license.refresh().await.is_err());
        let view = license_view(&server, &token).await;
        assert_eq!(view["tier"], "enterprise", "the last good answer stands ({mode:?})");
        assert_eq!(view["valid"], true);
        assert_eq!(view["grace"], true);
        assert!(view["last_error"].as_str().unwrap().contains(expected), "{view}");
        assert_eq!(server.authed(Method::GET, "/api/v1/audit/export", &token).send().await.unwrap().status(), 200);
    }
    // The server goes away entirely.
    stub.task.abort();
    let _ = stub.task.await;
    assert!(server.state.license.refresh().await.is_err());
    let view = license_view(&server, &token).await;
    assert!(view["last_error"].as_str().unwrap().contains("unreachable"), "{view}");
    assert_eq!(view["tier"], "enterprise");
    // Each failed refresh is one failed call (the first one of the cycle fails).
    let metrics = server.get("/metrics").await.text().await.unwrap();
    assert!(metrics.contains(r#"killkrill_license_checks_total{result="error"} 3"#), "{metrics}");
    assert!(metrics.contains(r#"killkrill_license_checks_total{result="ok"}"#), "{metrics}");
    server.stop().await.unwrap();
}

async fn a_hanging_license_server_never_slows_requests() {
    let stub = Stub::start(Mode::Slow).await;
    let (server, _db) = licensed_server(&stub).await;
    let admin = server.create_user("root", &[Role::Admin]).await;
    let token = server.token(&admin).await;
    let license = server.state.license.clone();
    let started = Instant::now();
    let check = tokio::spawn(async move { license.refresh().await });
    // While the check hangs, requests are served at normal latency.
    for _ in 0..20 {
        let t = Instant::now();
        assert_eq!(server.get("/healthz").await.status(), 200);
        assert_eq!(server.authed(Method::GET, "/api/v1/status", &token).send().await.unwrap().status(), 200);
        assert!(t.elapsed() < Duration::from_millis(500), "a request waited {:?}", t.elapsed());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The call itself gives up after its timeout (5 s), long before the stub's 30 s.
    assert!(check.await.unwrap().is_err());
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
    let view = license_view(&server, &token).await;
    assert!(view["last_error"].as_str().unwrap().contains("unreachable or timed out"), "{view}");
    server.stop().await.unwrap();
}
