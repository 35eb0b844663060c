//! docs/SECURITY.md's rules that no single area owns: every secret the service is handed
//! or hands out (a password, the API and ingest keys, access and refresh tokens) is absent
//! from every text column of every table after it has been used in all its forms, and an
//! ingest key reaches nothing but its own source's ingest. The other rules of that page are
//! tested by the area that owns them; the page names each test.

use killkrill::auth::Role;
use reqwest::Method;
use sea_orm::{ConnectionTrait, DbBackend, Statement};
use serde_json::{Value, json};

use crate::common::{TestDb, TestServer, rest::*};

cases! {
    on_all_databases:
        no_secret_is_stored_in_plain_text,
        an_ingest_key_reaches_only_its_own_sources_ingest;
}

/// The names of the service's tables on `db`.
async fn tables(db: &impl ConnectionTrait) -> Vec<String> {
    let sql = match db.get_database_backend() {
        DbBackend::Sqlite => "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
        DbBackend::Postgres => "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'",
        _ => "SELECT table_name FROM information_schema.tables WHERE table_schema = DATABASE()",
    };
    let rows = db.query_all_raw(Statement::from_string(db.get_database_backend(), sql)).await.unwrap();
    rows.iter().map(|row| row.try_get_by_index::<String>(0).unwrap()).collect()
}

/// Every text (or byte) value stored in any table, with where it was found.
async fn stored_text(db: &impl ConnectionTrait) -> Vec<(String, String)> {
    let backend = db.get_database_backend();
    let mut found = Vec::new();
    for table in tables(db).await {
        let quoted = if backend == DbBackend::MySql { format!("`{table}`") } else { format!("\"{table}\"") };
        let sql = format!("SELECT * FROM {quoted}");
        for row in db.query_all_raw(Statement::from_string(backend, sql)).await.unwrap() {
            for (index, column) in row.column_names().iter().enumerate() {
                let text = match row.try_get_by_index::<Option<String>>(index) {
                    Ok(text) => text,
                    Err(_) => row
                        .try_get_by_index::<Option<Vec<u8>>>(index)
                        .ok()
                        .flatten()
                        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned()),
                };
                if let Some(text) = text {
                    found.push((format!("{table}.{column}"), text));
                }
            }
        }
    }
    found
}

async fn no_secret_is_stored_in_plain_text(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let (_, admin) = user(&server, "sec-admin", Role::Admin).await;

    // A user created over the API, who logs in, refreshes and makes an API key.
    let password = "Plain-Secret-Password-42";
    let (status, _) = send(call(&server, Method::POST, "/api/v1/users", &admin).json(&json!({
        "username": "sec-user", "email": "sec-user@example.test", "password": password, "roles": ["maintainer"],
    })))
    .await;
    assert_eq!(status, 201);
    let login: Value = server.login_response("sec-user", password).await.json().await.unwrap();
    let access = login["access_token"].as_str().unwrap().to_owned();
    let refresh = login["refresh_token"].as_str().unwrap().to_owned();
    let (status, refreshed) = send(server.client.post(server.url("/api/v1/auth/refresh")).json(&json!({
        "refresh_token": refresh,
    })))
    .await;
    assert_eq!(status, 200);
    let access2 = refreshed["access_token"].as_str().unwrap().to_owned();
    let (status, key) =
        send(call(&server, Method::POST, "/api/v1/auth/api-keys", &access2).json(&json!({"name": "script"}))).await;
    assert_eq!(status, 201, "{key}");
    let api_key = key["key"].as_str().unwrap().to_owned();

    // An ingest key, used as agents send it (header, Bearer, Basic password).
    let source = new_source(&server, &api_key, "sec-source").await;
    let (_, ingest_key) = server.create_ingest_key(&access2, &source).await;
    let loki = || json!({"streams": [{"stream": {"job": "a"}, "values": [[now_nanos().to_string(), "hi"]]}]});
    let sent = [
        logs_request(&server, &ingest_key, &source, json!([{"message": "hello", "level": "info"}])),
        server.client.post(server.url("/loki/api/v1/push")).bearer_auth(&ingest_key).json(&loki()),
        server.client.post(server.url("/loki/api/v1/push")).basic_auth("agent", Some(&ingest_key)).json(&loki()),
    ];
    for request in sent {
        let status = request.send().await.unwrap().status().as_u16();
        assert!(status == 202 || status == 204, "ingest answered {status}");
    }
    // A wrong password and a logout leave rows too (throttle, revocations).
    assert_eq!(server.login_response("sec-user", "Wrong-Password-1").await.status(), 401);
    let (status, _) = send(call(&server, Method::POST, "/api/v1/auth/logout", &access2)).await;
    assert_eq!(status, 200);

    let conn = db.connect().await;
    let stored = stored_text(&conn).await;
    assert!(stored.iter().any(|(at, _)| at.starts_with("users.")), "the dump reads the users table");
    let secrets = [
        ("the password", password),
        ("the wrong password", "Wrong-Password-1"),
        ("the API key", api_key.as_str()),
        ("the ingest key", ingest_key.as_str()),
        ("an access token", access.as_str()),
        ("a refreshed access token", access2.as_str()),
        ("the refresh token", refresh.as_str()),
    ];
    for (what, secret) in secrets {
        // The part after a key's prefix is its secret; the listed prefix may be stored.
        let secret_part = &secret[secret.len().saturating_sub(24)..];
        for (at, text) in &stored {
            assert!(!text.contains(secret_part), "{what} is stored in plain text in {at}");
        }
    }
    server.stop().await.unwrap();
}

fn now_nanos() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
}

async fn an_ingest_key_reaches_only_its_own_sources_ingest(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let (_, admin) = user(&server, "sec-admin", Role::Admin).await;
    let own = new_source(&server, &admin, "own-source").await;
    let other = new_source(&server, &admin, "other-source").await;
    let (_, key) = server.create_ingest_key(&admin, &own).await;

    // Reads and management, in every form an agent sends the key: 403, never data.
    let reads = [
        (Method::GET, "/api/v1/sources".to_owned()),
        (Method::GET, format!("/api/v1/sources/{own}")),
        (Method::GET, format!("/api/v1/sources/{own}/keys")),
        (Method::POST, format!("/api/v1/sources/{own}/keys")),
        (Method::DELETE, format!("/api/v1/sources/{own}")),
        (Method::GET, "/api/v1/logs".to_owned()),
        (Method::GET, "/api/v1/metrics".to_owned()),
        (Method::GET, "/api/v1/users".to_owned()),
        (Method::GET, "/api/v1/audit".to_owned()),
        (Method::GET, "/api/v1/auth/api-keys".to_owned()),
        (Method::GET, "/api/v1/admin/config".to_owned()),
    ];
    for (method, path) in &reads {
        let request = server.client.request(method.clone(), server.url(path)).header("X-API-Key", &key);
        let (status, body) = send(request).await;
        assert_eq!(status, 403, "{method} {path} with an ingest key: {body}");
    }

    // Ingest into another source, by body, header or query: 403, nothing stored there.
    let line = json!([{"message": "elsewhere", "level": "info"}]);
    let (status, _) = send(logs_request(&server, &key, &other, line.clone())).await;
    assert_eq!(status, 403);
    let loki = json!({"streams": [{"stream": {"job": "a"}, "values": [[now_nanos().to_string(), "x"]]}]});
    let request = server.client.post(server.url("/loki/api/v1/push")).bearer_auth(&key).header("X-Source", &other);
    let status = request.json(&loki).send().await.unwrap().status().as_u16();
    assert!(status == 204 || status == 403, "an ingest key naming another source: {status}");
    let path = with_query("/api/v1/logs", &[("source_id", other.as_str())]);
    let (_, found) = send(call(&server, Method::GET, &path, &admin)).await;
    assert_eq!(found["logs"], json!([]), "nothing reached the other source");

    // Its own source's ingest works.
    let (status, _) = send(logs_request(&server, &key, &own, line)).await;
    assert_eq!(status, 202);
    server.stop().await.unwrap();
}
