//! `/api/v1/status` (the service and the caller) and `/api/v1/admin/config` (the runtime log
//! level, admins only, audited).
//! Each case runs on SQLite, PostgreSQL and MariaDB, through the real server on a real socket.

use killkrill::auth::Role;
use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{Kind, TestDb, TestServer, rest::*};

cases! {
    on_all_databases:
        admin_config_sets_the_log_level_and_is_audited,
        status_describes_the_service_and_the_caller,
        admin_config_is_for_admins_only;
}

async fn status_describes_the_service_and_the_caller(db: TestDb) {
    let started = std::time::Instant::now();
    let server = TestServer::start(db.config()).await;
    let (vic, token) = user(&server, "vic", Role::Viewer).await;
    let (status, created) =
        send(call(&server, Method::POST, "/api/v1/auth/api-keys", &token).json(&json!({ "name": "status-probe" })))
            .await;
    assert_eq!(status, 201, "{created}");
    let api_key = created["key"].as_str().unwrap().to_owned();
    let backend = match db.kind {
        Kind::Sqlite => "sqlite",
        Kind::Postgres => "postgresql",
        Kind::MySql => "mysql",
    };

    for (cred, method) in [(token.as_str(), "jwt"), (api_key.as_str(), "api_key")] {
        let (status, body) = send(call(&server, Method::GET, "/api/v1/status", cred)).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["status"], "operational");
        assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(body["environment"], server.state.config.environment.as_str());
        let uptime = body["uptime_seconds"].as_u64().unwrap_or_else(|| panic!("{body}"));
        assert!(uptime <= started.elapsed().as_secs(), "{body}");
        assert_eq!(body["database"], json!({ "backend": backend, "status": "ok" }));
        assert_eq!(body["grpc"]["enabled"], true, "gRPC is served unless --no-grpc");
        assert_eq!(body["grpc"]["port"], server.state.config.grpc_port);
        assert!(body["license"]["tier"].is_string(), "{body}");
        assert_eq!(body["identity"]["username"], "vic");
        assert_eq!(body["identity"]["roles"], json!(["viewer"]));
        assert_eq!(body["identity"]["auth_method"], method);
        if let Some(id) = body["identity"].get("user_id") {
            assert_eq!(id, vic.id.as_str());
        }
    }
    let anonymous = call(&server, Method::GET, "/api/v1/status", "").send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    assert_eq!(anonymous.headers()["www-authenticate"], "Bearer");
    refused(call(&server, Method::GET, "/api/v1/status", "not-a-token"), 401).await;
    refused(call(&server, Method::GET, "/api/v1/status", "kk_not-a-key"), 401).await;
    server.stop().await.unwrap();
}

/// The audit rows of configuration changes.
async fn config_audit(server: &TestServer, admin: &str) -> Value {
    let (status, body) = send(call(server, Method::GET, "/api/v1/audit?action=UPDATE_CONFIG", admin)).await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn admin_config_is_for_admins_only(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let (_, admin) = user(&server, "root", Role::Admin).await;
    let (_, mia) = user(&server, "mia", Role::Maintainer).await;
    let (_, vic) = user(&server, "vic", Role::Viewer).await;
    let initial = server.state.config.log_level.as_str();
    let new_level = if initial == "DEBUG" { "ERROR" } else { "DEBUG" };

    let (status, config) = send(call(&server, Method::GET, "/api/v1/admin/config", &admin)).await;
    assert_eq!(status, 200, "{config}");
    assert_eq!(config["log_level"], initial);
    for token in [&mia, &vic] {
        refused(call(&server, Method::GET, "/api/v1/admin/config", token), 403).await;
        let put = call(&server, Method::PUT, "/api/v1/admin/config", token).json(&json!({ "log_level": new_level }));
        refused(put, 403).await;
    }
    refused(call(&server, Method::GET, "/api/v1/admin/config", ""), 401).await;
    refused(call(&server, Method::PUT, "/api/v1/admin/config", "").json(&json!({ "log_level": new_level })), 401).await;
    let (_, unchanged) = send(call(&server, Method::GET, "/api/v1/admin/config", &admin)).await;
    assert_eq!(unchanged["log_level"], initial, "a refused PUT changed the level");
    assert_eq!(server.state.log_level.get().as_str(), initial);
    // An invalid level is refused before anything is stored.
    let named =
        refused(call(&server, Method::PUT, "/api/v1/admin/config", &admin).json(&json!({ "log_level": "LOUD" })), 400)
            .await;
    assert_eq!(named, fields(&["log_level"]));
    assert_eq!(config_audit(&server, &admin).await["total"], 0);
    server.stop().await.unwrap();
}

async fn admin_config_sets_the_log_level_and_is_audited(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let (root, admin) = user(&server, "root", Role::Admin).await;
    let initial = server.state.config.log_level.as_str();
    let (status, config) = send(call(&server, Method::GET, "/api/v1/admin/config", &admin)).await;
    assert_eq!(status, 200, "{config}");
    assert_eq!(config["log_level"], initial);

    let new_level = if initial == "DEBUG" { "ERROR" } else { "DEBUG" };
    let put = call(&server, Method::PUT, "/api/v1/admin/config", &admin).json(&json!({ "log_level": new_level }));
    let (status, body) = send(put).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["log_level"], new_level);
    let (_, config) = send(call(&server, Method::GET, "/api/v1/admin/config", &admin)).await;
    assert_eq!(config["log_level"], new_level);
    assert_eq!(server.state.log_level.get().as_str(), new_level, "not applied at once");

    for bad in [json!({ "log_level": "LOUD" }), json!({ "log_level": "" }), json!({ "log_level": 10 })] {
        let put = call(&server, Method::PUT, "/api/v1/admin/config", &admin).json(&bad);
        let named = refused(put, 400).await;
        assert!(named.is_empty() || named == fields(&["log_level"]), "{bad}: {named:?}");
    }
    let named =
        refused(call(&server, Method::PUT, "/api/v1/admin/config", &admin).json(&json!({ "log_level": "LOUD" })), 400)
            .await;
    assert_eq!(named, fields(&["log_level"]));
    let (_, config) = send(call(&server, Method::GET, "/api/v1/admin/config", &admin)).await;
    assert_eq!(config["log_level"], new_level, "a refused level was applied");

    let audit = config_audit(&server, &admin).await;
    assert_eq!(audit["total"], 1, "{audit}");
    let row = &audit["audit"][0];
    assert_eq!(row["user_id"], root.id.as_str());
    assert_eq!(row["status"], "success");
    assert_eq!(row["resource_type"], "config");
    assert_eq!(row["client_ip"], "127.0.0.1");
    server.stop().await.unwrap();
}
