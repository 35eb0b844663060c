//! The audit policy (docs/API.md, "Audit policy"): control-plane changes are audited,
//! requests that match no route, requests refused before a principal is known, and
//! ingest batches are not.

mod common;

use common::{TestDb, TestServer};
use futures_util::{StreamExt, stream};
use killkrill::auth::Role;
use reqwest::{Method, RequestBuilder};
use sea_orm::{ConnectionTrait, Statement};
use serde_json::json;

on_all_databases!(anonymous_requests_and_ingest_leave_no_audit_rows_but_a_source_create_does);

async fn audit_rows(db: &TestDb) -> i64 {
    let conn = db.connect().await;
    let sql = "SELECT COUNT(*) AS n FROM audit_log";
    let row = conn.query_one_raw(Statement::from_string(conn.get_database_backend(), sql)).await.unwrap().unwrap();
    row.try_get::<i64>("", "n").unwrap()
}

/// Sends every request, 32 at a time, and returns their statuses.
async fn statuses(requests: Vec<RequestBuilder>) -> Vec<u16> {
    stream::iter(requests)
        .map(|request| async move { request.send().await.unwrap().status().as_u16() })
        .buffer_unordered(32)
        .collect()
        .await
}

async fn anonymous_requests_and_ingest_leave_no_audit_rows_but_a_source_create_does(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let admin = server.create_user("root", &[Role::Admin]).await;
    let token = server.token(&admin).await;
    let created = server.authed(Method::POST, "/api/v1/sources", &token).json(&json!({"name": "app", "type": "http"}));
    let created: serde_json::Value = created.send().await.unwrap().json().await.unwrap();
    let source_id = created["id"].as_str().unwrap().to_owned();
    let (_, ingest_key) = server.create_ingest_key(&token, &source_id).await;
    let before = audit_rows(&db).await;
    assert!(before >= 3, "the user, the login, the source and the key were audited: {before}");

    let client = reqwest::Client::new();
    let unknown: Vec<_> = (0..1_000).map(|n| client.post(server.url(&format!("/api/v1/nothing/{n}")))).collect();
    assert!(statuses(unknown).await.iter().all(|s| *s == 404));
    let unauthenticated: Vec<_> = (0..100)
        .map(|_| client.post(server.url("/api/v1/sources")).json(&json!({"name": "x", "type": "http"})))
        .collect();
    assert!(statuses(unauthenticated).await.iter().all(|s| *s == 401));
    let batches: Vec<_> = (0..1_000)
        .map(|n| {
            let line = json!({"source_id": source_id, "logs": [{"message": format!("line {n}"), "level": "info"}]});
            let request = client.post(server.url("/api/v1/logs")).json(&line);
            // Half with the source's ingest key, half with the admin's token.
            if n % 2 == 0 { request.header("X-API-Key", &ingest_key) } else { request.bearer_auth(&token) }
        })
        .collect();
    assert!(statuses(batches).await.iter().all(|s| *s == 202));
    let metrics: Vec<_> = (0..100)
        .map(|n| {
            let sample = json!({"source_id": source_id, "metrics": [{"name": "up", "value": n}]});
            client.post(server.url("/api/v1/metrics")).header("X-API-Key", &ingest_key).json(&sample)
        })
        .collect();
    assert!(statuses(metrics).await.iter().all(|s| *s == 202));
    assert_eq!(audit_rows(&db).await, before, "no audit row for unknown routes, 401s or ingest");

    let second = server.authed(Method::POST, "/api/v1/sources", &token).json(&json!({"name": "db", "type": "http"}));
    assert_eq!(second.send().await.unwrap().status(), 201);
    assert_eq!(audit_rows(&db).await, before + 1, "a source create is audited");
    server.stop().await.unwrap();
}
