//! `/api/v1/audit` and `/api/v1/audit/verify`: the audit trail's hash chain and tampering.
//! Each case runs on SQLite, PostgreSQL and MariaDB, through the real server on a real socket.

use killkrill::auth::Role;
use reqwest::Method;
use sea_orm::{ConnectionTrait, Statement};
use serde_json::{Value, json};

use crate::common::{TestDb, TestServer, rest::*};

cases! {
    on_all_databases: audit_rows_chain_and_detect_tampering;
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
    assert_eq!(filtered["total"], 1);
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
