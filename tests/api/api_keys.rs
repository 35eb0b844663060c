//! `/api/v1/auth/api-keys` and `/api/v1/auth/api-keys/{id}`: a user's API keys.
//! Each case runs on SQLite, PostgreSQL and MariaDB, through the real server on a real socket.

use killkrill::auth::Role;
use reqwest::Method;
use sea_orm::{ConnectionTrait, Statement};
use serde_json::{Value, json};

use crate::common::{TestDb, TestServer, rest::*};

cases! {
    on_all_databases: api_key_lifecycle, a_bad_api_key_is_refused_even_beside_a_valid_bearer_token;
}

/// The first credential present decides (API key, then bearer token, then certificate):
/// a wrong key is refused with 401 although the bearer token beside it is valid, so a
/// client with a revoked or mistyped key learns so at once instead of acting silently as
/// whoever the other credential names.
async fn a_bad_api_key_is_refused_even_beside_a_valid_bearer_token(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let ann = server.create_user("ann", &[Role::Maintainer]).await;
    let token = server.token(&ann).await;
    let verify = |key: Option<&str>| {
        let request = server.authed(Method::GET, "/api/v1/auth/verify", &token);
        match key {
            Some(key) => request.header("X-API-Key", key),
            None => request,
        }
    };
    assert_eq!(verify(None).send().await.unwrap().status(), 200);
    for key in ["kk_not-a-key", "garbage", ""] {
        refused(verify(Some(key)), 401).await;
    }
    let response = verify(Some("kk_not-a-key")).send().await.unwrap();
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["message"], "Invalid API key");
    server.stop().await.unwrap();
}

async fn api_key_lifecycle(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let admin = server.create_user("root", &[Role::Admin]).await;
    let ann = server.create_user("ann", &[Role::Maintainer]).await;
    let ann_token = server.token(&ann).await;
    let admin_token = server.token(&admin).await;

    let created = server
        .authed(Method::POST, "/api/v1/auth/api-keys", &ann_token)
        .json(&json!({ "name": "ci", "expires_in_days": 30 }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let created: Value = created.json().await.unwrap();
    let key = created["key"].as_str().unwrap().to_owned();
    assert!(key.starts_with("kk_") && key.len() >= 46, "{key}");
    assert!(key.starts_with(created["prefix"].as_str().unwrap()));
    let key_id = created["id"].as_str().unwrap().to_owned();

    let verify = server.client.get(server.url("/api/v1/auth/verify")).header("X-API-Key", &key).send().await.unwrap();
    assert_eq!(verify.status(), 200);
    let verify: Value = verify.json().await.unwrap();
    assert_eq!(verify["auth_method"], "api_key");
    assert_eq!(verify["username"], "ann");

    // Only the digest is stored.
    let conn = db.connect().await;
    let stored = conn
        .query_one_raw(Statement::from_string(conn.get_database_backend(), "SELECT key_hash FROM api_keys"))
        .await
        .unwrap()
        .unwrap();
    let digest: String = stored.try_get("", "key_hash").unwrap();
    assert_eq!(digest, killkrill::auth::keys::digest(&key));

    // Listing shows the prefix and last use, never the key.
    let listed =
        server.authed(Method::GET, "/api/v1/auth/api-keys", &ann_token).send().await.unwrap().text().await.unwrap();
    assert!(!listed.contains(&key));
    let listed: Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(listed["total"], 1);
    let touched = crate::common::eventually(std::time::Duration::from_secs(5), || async {
        let listed: Value =
            server.authed(Method::GET, "/api/v1/auth/api-keys", &ann_token).send().await.unwrap().json().await.unwrap();
        listed["api_keys"][0]["last_used_at"].is_string()
    })
    .await;
    assert!(touched, "last_used_at was never recorded");

    // Another non-admin user neither sees nor deletes it; an admin sees everyone's.
    let bob = server.create_user("bob", &[Role::Viewer]).await;
    let bob_token = server.token(&bob).await;
    let bobs: Value =
        server.authed(Method::GET, "/api/v1/auth/api-keys", &bob_token).send().await.unwrap().json().await.unwrap();
    assert_eq!(bobs["total"], 0);
    assert_eq!(
        status(server.authed(Method::DELETE, &format!("/api/v1/auth/api-keys/{key_id}"), &bob_token)).await,
        404
    );
    let all: Value =
        server.authed(Method::GET, "/api/v1/auth/api-keys", &admin_token).send().await.unwrap().json().await.unwrap();
    assert_eq!(all["total"], 1);

    // Narrowing and lifetime bounds.
    let narrowed: Value = server
        .authed(Method::POST, "/api/v1/auth/api-keys", &admin_token)
        .json(&json!({ "name": "read-only", "roles": ["viewer"] }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let narrow_key = narrowed["key"].as_str().unwrap();
    // What a key may do, asked with the key itself: (status, JSON body or null).
    let by_key = |key: &str, method: Method, path: &str, body: Option<Value>| {
        let mut request = server.client.request(method, server.url(path)).header("X-API-Key", key);
        if let Some(body) = body {
            request = request.json(&body);
        }
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let users = by_key(narrow_key, Method::GET, "/api/v1/users", None).await;
    assert_eq!(users.0, 403, "a viewer-narrowed admin key has viewer powers only");
    // ... and has them: ranks include the ones below.
    let read = by_key(narrow_key, Method::GET, "/api/v1/sources", None).await;
    assert_eq!(read.0, 200, "a viewer-narrowed admin key reads: {}", read.1);
    let (_, verified) = by_key(narrow_key, Method::GET, "/api/v1/auth/verify", None).await;
    assert_eq!(verified["roles"], json!(["viewer"]), "{verified}");
    // A key made with a narrowed key, without roles, is narrowed as its maker is.
    let (_, child) = by_key(narrow_key, Method::POST, "/api/v1/auth/api-keys", Some(json!({ "name": "child" }))).await;
    assert_eq!(child["roles"], json!(["viewer"]), "{child}");
    let users = by_key(child["key"].as_str().unwrap(), Method::GET, "/api/v1/users", None).await;
    assert_eq!(users.0, 403, "a narrowed key cannot make itself an unnarrowed one");
    let too_long = server
        .authed(Method::POST, "/api/v1/auth/api-keys", &ann_token)
        .json(&json!({ "name": "forever", "expires_in_days": 366 }));
    assert_eq!(status(too_long).await, 400);
    let escalate = server
        .authed(Method::POST, "/api/v1/auth/api-keys", &ann_token)
        .json(&json!({ "name": "up", "roles": ["admin"] }));
    assert_eq!(status(escalate).await, 400);

    // An expired key is refused (expiry set in the past directly in the database).
    conn.execute_raw(Statement::from_string(
        conn.get_database_backend(),
        format!("UPDATE api_keys SET expires_at = 1 WHERE id = '{}'", narrowed["id"].as_str().unwrap()),
    ))
    .await
    .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await; // past the 2 s cache
    assert_eq!(status(server.client.get(server.url("/api/v1/auth/verify")).header("X-API-Key", narrow_key)).await, 401);

    // Deleted keys stop working at once.
    assert_eq!(
        status(server.authed(Method::DELETE, &format!("/api/v1/auth/api-keys/{key_id}"), &ann_token)).await,
        204
    );
    assert_eq!(status(server.client.get(server.url("/api/v1/auth/verify")).header("X-API-Key", &key)).await, 401);
    assert_eq!(
        status(server.client.get(server.url("/api/v1/auth/verify")).header("X-API-Key", "kk_made-up")).await,
        401
    );
    server.stop().await.unwrap();
}
