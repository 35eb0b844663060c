//! `/api/v1/audit` and `/api/v1/audit/verify`: the audit trail's hash chain and tampering,
//! and the audit policy (docs/API.md, "Audit policy"): control-plane changes are audited;
//! requests that match no route, requests refused before a principal is known, and ingest
//! batches are not.
//! Each case runs on SQLite, PostgreSQL and MariaDB, through the real server on a real socket.

use futures_util::{StreamExt, stream};
use killkrill::auth::Role;
use reqwest::{Method, RequestBuilder};
use sea_orm::{ConnectionTrait, Statement};
use serde_json::{Value, json};

use crate::common::{TestDb, TestServer, rest::*};

cases! {
    on_all_databases: audit_rows_chain_and_detect_tampering,
        anonymous_requests_and_ingest_leave_no_audit_rows_but_a_source_create_does;
}

async fn audit_rows_chain_and_detect_tampering(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let root = server.create_user("root", &[Role::Admin]).await;
    let vic = server.create_user("vic", &[Role::Viewer]).await;
    let token = server.token(&root).await;
    let vic_token = server.token(&vic).await;
    assert_eq!(server.login_response("root", "wrong-password").await.status(), 401);
    let refused = server
        .authed(Method::POST, "/api/v1/users", &vic_token)
        .header("X-Correlation-ID", "refused-1")
        .json(&json!({ "username": "zed", "email": "z@x.test", "password": "long-enough-1" }));
    assert_eq!(status(refused).await, 403);
    let created = server
        .authed(Method::POST, "/api/v1/users", &token)
        .header("X-Correlation-ID", "created-1")
        .json(&json!({ "username": "zed", "email": "z@x.test", "password": "long-enough-1" }));
    assert_eq!(status(created).await, 201);

    let rows: Value =
        server.authed(Method::GET, "/api/v1/audit?limit=100", &token).send().await.unwrap().json().await.unwrap();
    let rows = rows["audit"].as_array().unwrap().clone();
    let find = |pred: &dyn Fn(&Value) -> bool| rows.iter().find(|r| pred(r)).cloned();
    let failed_login = find(&|r| r["action"] == "LOGIN" && r["status"] == "failure").expect("failed login audited");
    assert_eq!(failed_login["user_id"], root.id.as_str());
    assert_eq!(failed_login["client_ip"], "127.0.0.1");
    let denied = find(&|r| r["correlation_id"] == "refused-1").expect("refused request audited");
    assert_eq!(denied["status"], "denied");
    assert_eq!(denied["user_id"], vic.id.as_str());
    assert_eq!(denied["action"], "POST /api/v1/users");
    let create = find(&|r| r["correlation_id"] == "created-1").expect("creation audited");
    assert_eq!((create["action"].as_str(), create["status"].as_str()), (Some("CREATE_USER"), Some("success")));
    // Ids are UUID strings, one per row.
    let ids: std::collections::BTreeSet<&str> = rows.iter().map(|r| r["id"].as_str().expect("a string id")).collect();
    assert_eq!(ids.len(), rows.len());
    assert!(ids.iter().all(|id| uuid::Uuid::parse_str(id).is_ok()), "{ids:?}");
    let filtered: Value = server
        .authed(Method::GET, "/api/v1/audit?action=CREATE_USER", &token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // root and vic were created through the same service, and audited alike.
    assert_eq!(filtered["total"], 3);
    let other_case = server.authed(Method::GET, "/api/v1/audit?action=create_user", &token);
    let other_case: Value = other_case.send().await.unwrap().json().await.unwrap();
    assert_eq!(other_case["total"], 0, "the action filter compares exactly, on MariaDB too");

    let verify = |server: &TestServer| server.authed(Method::GET, "/api/v1/audit/verify", &token).send();
    let report: Value = verify(&server).await.unwrap().json().await.unwrap();
    assert_eq!(report["valid"], true, "{report}");
    assert!(report["checked"].as_u64().unwrap() >= 4, "{report}");

    // Edit one sealed row behind the service's back: verification names it.
    let conn = db.connect().await;
    let backend = conn.get_database_backend();
    conn.execute_raw(Statement::from_string(backend, "UPDATE audit_log SET action = 'FORGED' WHERE seq = 2"))
        .await
        .unwrap();
    let report: Value = verify(&server).await.unwrap().json().await.unwrap();
    assert_eq!(report["valid"], false);
    assert_eq!(report["first_broken"]["seq"], 2, "{report}");
    let sealed = server.get_json("/api/v1/audit?limit=100", &token).await;
    let forged = sealed["audit"].as_array().unwrap().iter().find(|r| r["seq"] == 2).expect("row 2 listed");
    assert_eq!(report["first_broken"]["id"], forged["id"], "the id GET /api/v1/audit shows: {report}");

    // Removing a row is detected too.
    conn.execute_raw(Statement::from_string(backend, "DELETE FROM audit_log WHERE seq = 1")).await.unwrap();
    let report: Value = verify(&server).await.unwrap().json().await.unwrap();
    assert_eq!(report["valid"], false);
    assert_eq!(report["first_broken"]["seq"], 1, "{report}");
    assert_eq!(report["first_broken"]["reason"], "a row is missing from the chain");
    server.stop().await.unwrap();
}

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
    let bad = json!({"source_id": source_id, "logs": [{"message": "ok"}, {"message": "bad", "level": "loud"}]});
    let refused = client.post(server.url("/api/v1/logs")).bearer_auth(&token).json(&bad);
    assert_eq!(refused.send().await.unwrap().status(), 400);
    assert_eq!(audit_rows(&db).await, before, "no audit row for unknown routes, 401s or ingest");

    // Ingest is counted per source in /metrics instead.
    let exposition = client.get(server.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let count = |kind: &str, outcome: &str| {
        let series =
            format!("killkrill_ingest_items_total{{source_id=\"{source_id}\",kind=\"{kind}\",outcome=\"{outcome}\"}} ");
        let line = exposition.lines().find(|line| line.starts_with(&series));
        line.and_then(|line| line[series.len()..].parse::<u64>().ok())
    };
    assert_eq!(count("logs", "accepted"), Some(1_000), "{exposition}");
    assert_eq!(count("logs", "refused"), Some(2));
    assert_eq!(count("samples", "accepted"), Some(100));

    let second = server.authed(Method::POST, "/api/v1/sources", &token).json(&json!({"name": "db", "type": "http"}));
    assert_eq!(second.send().await.unwrap().status(), 201);
    assert_eq!(audit_rows(&db).await, before + 1, "a source create is audited");
    server.stop().await.unwrap();
}
