//! Identity and access, on SQLite, PostgreSQL and MariaDB: login, tokens and their
//! forgeries, refresh rotation, logout, password changes, API keys, RBAC, user admin,
//! throttling and the audit trail.

mod common;

use common::{Kind, TestDb, TestServer};
use killkrill::auth::{
    Role,
    token::{Claims, TokenSigner, TokenType},
};
use reqwest::Method;
use sea_orm::{ConnectionTrait, Statement};
use serde_json::{Value, json};

on_all_databases!(
    login_returns_tokens_user_and_tracks_the_login,
    wrong_password_and_unknown_user_get_the_same_401,
    inactive_users_cannot_log_in,
    forged_expired_and_misused_tokens_are_refused,
    refresh_rotates_and_reuse_revokes_the_session,
    logout_revokes_the_token_and_its_session,
    password_change_invalidates_earlier_tokens,
    api_key_lifecycle,
    rbac_matrix,
    a_demoted_user_loses_rights_on_the_next_request,
    mass_assignment_is_refused,
    the_last_admin_is_protected,
    two_admins_cannot_remove_each_other_at_once,
    user_admin_crud_and_pagination,
    usernames_compare_exactly_and_emails_ignore_case,
    repeated_failed_logins_are_throttled,
    audit_rows_chain_and_detect_tampering,
    flask_security_hashes_log_in_and_are_rehashed,
);

/// A MariaDB database whose default character set is latin1 (an older server's default):
/// names keep their emoji and CJK (migration 6 gave the identity tables utf8mb4; they were
/// stored as `?`), the service's sessions are strict (a value too long for its column is
/// refused, never cut), and an API key's repeated roles are stored once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_with_a_latin1_default_stores_any_text() {
    let Some(db) = TestDb::create(Kind::MySql).await else { return };
    let conn = db.connect().await;
    conn.execute_unprepared("ALTER DATABASE CHARACTER SET latin1 COLLATE latin1_swedish_ci").await.unwrap();
    conn.close().await.unwrap();
    let server = TestServer::start(db.config()).await;
    let conn = server.state.db.conn();
    let mode =
        conn.query_one_raw(Statement::from_string(conn.get_database_backend(), "SELECT @@SESSION.sql_mode AS m"));
    let mode: String = mode.await.unwrap().unwrap().try_get("", "m").unwrap();
    assert!(mode.split(',').any(|m| m == "STRICT_ALL_TABLES"), "{mode}");

    let root = server.create_user("root", &[Role::Admin]).await;
    let token = server.token(&root).await;
    let user = json!({
        "username": "zoe", "email": "zoe@x.test", "password": "long-enough-1",
        "first_name": "中😀é", "last_name": "Żółć", "roles": ["viewer"]
    });
    let created = server.authed(Method::POST, "/api/v1/users", &token).json(&user).send().await.unwrap();
    assert_eq!(created.status(), 201);
    let path = format!("/api/v1/users/{}", created.json::<Value>().await.unwrap()["id"].as_str().unwrap());
    let stored: Value = server.authed(Method::GET, &path, &token).send().await.unwrap().json().await.unwrap();
    assert_eq!((stored["first_name"].as_str(), stored["last_name"].as_str()), (Some("中😀é"), Some("Żółć")));

    let key = json!({ "name": "key 😀 中 é", "roles": vec!["viewer"; 40] });
    let made = server.authed(Method::POST, "/api/v1/auth/api-keys", &token).json(&key).send().await.unwrap();
    assert_eq!(made.status(), 201);
    assert_eq!(made.json::<Value>().await.unwrap()["roles"], json!(["viewer"]));
    let listed: Value =
        server.authed(Method::GET, "/api/v1/auth/api-keys", &token).send().await.unwrap().json().await.unwrap();
    assert_eq!(listed["api_keys"][0]["name"], "key 😀 中 é");
    server.stop().await.unwrap();
}

fn signer(server: &TestServer) -> TokenSigner {
    TokenSigner::new(server.state.config.jwt_secret.clone(), None)
}

async fn status(request: reqwest::RequestBuilder) -> u16 {
    request.send().await.unwrap().status().as_u16()
}

async fn login_returns_tokens_user_and_tracks_the_login(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let ann = server.create_user("ann", &[Role::Maintainer]).await;
    let response = server.login_response("ann", &ann.password).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 24 * 3600);
    assert!(body["refresh_token"].as_str().is_some_and(|t| t.len() > 20));
    assert_eq!(body["user"]["username"], "ann");
    assert_eq!(body["user"]["roles"], json!(["maintainer"]));
    assert_eq!(body["user"]["permissions"], json!(["read", "write", "create", "update", "delete"]));
    let claims = signer(&server)
        .verify(body["access_token"].as_str().unwrap(), TokenType::Access, chrono::Utc::now().timestamp())
        .unwrap();
    assert_eq!(claims.sub, ann.id);
    assert_eq!(claims.exp - claims.iat, 24 * 3600);
    // The claims clients read (docs/API.md), which the server itself never trusts.
    let payload = {
        use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
        let segment = body["access_token"].as_str().unwrap().split('.').nth(1).unwrap();
        serde_json::from_slice::<Value>(&URL_SAFE_NO_PAD.decode(segment).unwrap()).unwrap()
    };
    assert_eq!(payload["username"], "ann");
    assert_eq!(payload["roles"], json!(["maintainer"]));
    assert_eq!(payload["permissions"], json!(["read", "write", "create", "update", "delete"]));
    assert_eq!(payload["type"], "access");

    // Login by email works too, and the login is tracked.
    let by_email = server
        .client
        .post(server.url("/api/v1/auth/login"))
        .json(&json!({ "email": "ann@example.test", "password": ann.password }))
        .send()
        .await
        .unwrap();
    assert_eq!(by_email.status(), 200);
    let token = by_email.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_owned();
    let me: Value = server.authed(Method::GET, "/api/v1/auth/me", &token).send().await.unwrap().json().await.unwrap();
    assert_eq!(me["login_count"], 2);
    assert_eq!(me["current_login_ip"], "127.0.0.1");
    assert!(me["last_login_at"].is_string());
    assert!(!me.to_string().contains("password"), "{me}");
    server.stop().await.unwrap();
}

async fn wrong_password_and_unknown_user_get_the_same_401(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    server.create_user("ann", &[Role::Viewer]).await;
    let wrong = server.login_response("ann", "not-the-password").await;
    let unknown = server.login_response("nobody", "not-the-password").await;
    for response in [wrong, unknown] {
        assert_eq!(response.status(), 401);
        assert_eq!(response.headers()["www-authenticate"], "Bearer");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["message"], "Invalid username or password");
    }
    server.stop().await.unwrap();
}

async fn inactive_users_cannot_log_in(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let admin = server.create_user("root", &[Role::Admin]).await;
    let ann = server.create_user("ann", &[Role::Viewer]).await;
    let admin_token = server.token(&admin).await;
    let ann_token = server.token(&ann).await;
    let deactivate = server
        .authed(Method::PUT, &format!("/api/v1/users/{}", ann.id), &admin_token)
        .json(&json!({ "active": false }));
    assert_eq!(status(deactivate).await, 200);
    assert_eq!(server.login_response("ann", &ann.password).await.status(), 401);
    // Tokens issued before the deactivation stop working too.
    assert_eq!(status(server.authed(Method::GET, "/api/v1/auth/verify", &ann_token)).await, 401);
    server.stop().await.unwrap();
}

async fn forged_expired_and_misused_tokens_are_refused(db: TestDb) {
    use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
    let server = TestServer::start(db.config()).await;
    let ann = server.create_user("ann", &[Role::Admin]).await;
    let good = server.token(&ann).await;
    assert_eq!(status(server.authed(Method::GET, "/api/v1/auth/verify", &good)).await, 200);
    let now = chrono::Utc::now().timestamp();
    let claims = signer(&server).verify(&good, TokenType::Access, now).unwrap();
    let sign = |c: &Claims| signer(&server).sign(c).unwrap();

    let mut forged = Vec::new();
    forged.push(("bad signature", format!("{}x", &good[..good.len() - 1])));
    forged.push((
        "other secret",
        TokenSigner::new("another-secret-another-secret-00".to_owned().into(), None).sign(&claims).unwrap(),
    ));
    let payload = good.split('.').nth(1).unwrap();
    for alg in ["none", "HS512", "RS256"] {
        let header = URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#));
        forged.push(("other algorithm", format!("{header}.{payload}.")));
    }
    forged.push(("expired", sign(&Claims { exp: now - 1, iat: now - 100, ..claims.clone() })));
    forged.push(("refresh used as access", sign(&Claims { token_type: TokenType::Refresh, ..claims.clone() })));
    forged.push(("stale token version", sign(&Claims { ver: claims.ver + 1, ..claims.clone() })));
    forged.push(("unknown user", sign(&Claims { sub: uuid::Uuid::new_v4().to_string(), ..claims.clone() })));
    let mut without_sub = serde_json::to_value(&claims).unwrap();
    without_sub.as_object_mut().unwrap().remove("sub");
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let body = URL_SAFE_NO_PAD.encode(without_sub.to_string());
    forged.push(("missing claim", sign_raw(&server, &format!("{header}.{body}"))));
    forged.push(("garbage", "not.a.token".to_owned()));

    for (case, token) in forged {
        let response = server.authed(Method::GET, "/api/v1/auth/verify", &token).send().await.unwrap();
        assert_eq!(response.status(), 401, "{case} was accepted");
        assert_eq!(response.headers()["www-authenticate"], "Bearer", "{case}");
    }
    // Roles in a token are not trusted: a viewer's token claiming admin stays a viewer.
    let viewer = server.create_user("vic", &[Role::Viewer]).await;
    let vic_token = server.token(&viewer).await;
    let vic = signer(&server).verify(&vic_token, TokenType::Access, now).unwrap();
    let boasting = sign(&Claims { roles: vec!["admin".into()], permissions: vec!["admin".into()], ..vic });
    assert_eq!(status(server.authed(Method::GET, "/api/v1/users", &boasting)).await, 403);
    server.stop().await.unwrap();
}

/// A token accepted once is remembered (its signature is not checked again), but its
/// expiry still is: the same bytes are refused the moment they expire.
#[tokio::test]
async fn a_remembered_token_is_still_refused_once_expired() {
    let db = TestDb::create(common::Kind::Sqlite).await.unwrap();
    let server = TestServer::start(db.config()).await;
    let ann = server.create_user("ann", &[Role::Viewer]).await;
    let now = chrono::Utc::now().timestamp();
    let claims = signer(&server).verify(&server.token(&ann).await, TokenType::Access, now).unwrap();
    let short = signer(&server).sign(&Claims { iat: now, exp: now + 2, ..claims }).unwrap();
    for _ in 0..2 {
        assert_eq!(status(server.authed(Method::GET, "/api/v1/auth/verify", &short)).await, 200);
    }
    tokio::time::sleep(std::time::Duration::from_millis(2_100)).await;
    assert_eq!(status(server.authed(Method::GET, "/api/v1/auth/verify", &short)).await, 401);
    server.stop().await.unwrap();
}

/// Signs an arbitrary `header.payload` with the server's secret (for malformed claims).
fn sign_raw(server: &TestServer, signing_input: &str) -> String {
    use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
    use hmac::{Hmac, KeyInit, Mac};
    use secrecy::ExposeSecret;
    let mut mac =
        <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(server.state.config.jwt_secret.expose_secret().as_bytes())
            .unwrap();
    mac.update(signing_input.as_bytes());
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()))
}

async fn refresh(server: &TestServer, token: &str) -> reqwest::Response {
    server
        .client
        .post(server.url("/api/v1/auth/refresh"))
        .json(&json!({ "refresh_token": token }))
        .send()
        .await
        .unwrap()
}

async fn refresh_rotates_and_reuse_revokes_the_session(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let ann = server.create_user("ann", &[Role::Viewer]).await;
    let login: Value = server.login_response("ann", &ann.password).await.json().await.unwrap();
    let first = login["refresh_token"].as_str().unwrap();

    let rotated = refresh(&server, first).await;
    assert_eq!(rotated.status(), 200);
    assert_eq!(rotated.headers()["cache-control"], "no-store");
    let rotated: Value = rotated.json().await.unwrap();
    let second = rotated["refresh_token"].as_str().unwrap();
    assert_ne!(second, first);
    let access = rotated["access_token"].as_str().unwrap();
    assert_eq!(status(server.authed(Method::GET, "/api/v1/auth/verify", access)).await, 200);

    // The first refresh token was rotated away: presenting it again is theft.
    assert_eq!(refresh(&server, first).await.status(), 401);
    // ... which ends the whole session, including the newest refresh token.
    assert_eq!(refresh(&server, second).await.status(), 401);
    // An access token is not a refresh token.
    assert_eq!(refresh(&server, access).await.status(), 401);
    server.stop().await.unwrap();
}

async fn logout_revokes_the_token_and_its_session(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let ann = server.create_user("ann", &[Role::Viewer]).await;
    let login: Value = server.login_response("ann", &ann.password).await.json().await.unwrap();
    let access = login["access_token"].as_str().unwrap();
    let other_session = server.token(&ann).await;
    let response = server.authed(Method::POST, "/api/v1/auth/logout", access).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.json::<Value>().await.unwrap()["message"], "Logged out successfully");
    assert_eq!(status(server.authed(Method::GET, "/api/v1/auth/verify", access)).await, 401);
    assert_eq!(refresh(&server, login["refresh_token"].as_str().unwrap()).await.status(), 401);
    // Another login of the same user is another session and stays valid.
    assert_eq!(status(server.authed(Method::GET, "/api/v1/auth/verify", &other_session)).await, 200);

    // Revocation lives in the database: a second replica on the same database agrees.
    let replica = TestServer::start(db.config()).await;
    assert_eq!(status(replica.authed(Method::GET, "/api/v1/auth/verify", access)).await, 401);
    assert_eq!(status(replica.authed(Method::GET, "/api/v1/auth/verify", &other_session)).await, 200);

    // One token logged out on both replicas at once, round after round: each answer is
    // 200 or 401, never a 500 from the second revocation of one token (as it was).
    for round in 0..5 {
        let token = server.token(&ann).await;
        let logouts = (0..6).map(|i| {
            let to = if i % 2 == 0 { &server } else { &replica };
            status(to.authed(Method::POST, "/api/v1/auth/logout", &token))
        });
        let answers = futures_util::future::join_all(logouts).await;
        assert!(answers.iter().all(|s| *s == 200 || *s == 401), "round {round}: {answers:?}");
        assert!(answers.contains(&200), "round {round}: {answers:?}");
    }
    replica.stop().await.unwrap();
    server.stop().await.unwrap();
}

async fn password_change_invalidates_earlier_tokens(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let ann = server.create_user("ann", &[Role::Viewer]).await;
    let old = server.token(&ann).await;
    let change = |current: &str, new: &str| {
        server
            .authed(Method::POST, "/api/v1/auth/change-password", &old)
            .json(&json!({ "current_password": current, "new_password": new }))
    };
    assert_eq!(status(change("wrong-current", "brand-new-pass")).await, 403);
    let short = change(&ann.password, "short").send().await.unwrap();
    assert_eq!(short.status(), 400);
    assert_eq!(short.json::<Value>().await.unwrap()["details"][0]["field"], "new_password");
    let changed = change(&ann.password, "brand-new-pass").send().await.unwrap();
    assert_eq!(changed.status(), 200);
    let fresh = changed.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_owned();
    assert_eq!(status(server.authed(Method::GET, "/api/v1/auth/verify", &old)).await, 401);
    assert_eq!(status(server.authed(Method::GET, "/api/v1/auth/verify", &fresh)).await, 200);
    assert_eq!(server.login_response("ann", &ann.password).await.status(), 401);
    assert_eq!(server.login_response("ann", "brand-new-pass").await.status(), 200);
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
    let touched = common::eventually(std::time::Duration::from_secs(5), || async {
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

async fn rbac_matrix(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let mut tokens = Vec::new();
    for (name, role) in [("adm", Role::Admin), ("mnt", Role::Maintainer), ("vwr", Role::Viewer)] {
        let user = server.create_user(name, &[role]).await;
        tokens.push((role, server.token(&user).await));
    }
    let new_user = |n: &str| json!({ "username": n, "email": format!("{n}@x.test"), "password": "long-enough-1" });
    // (method, path, body, [admin, maintainer, viewer])
    let routes: Vec<(Method, &str, Option<Value>, [u16; 3])> = vec![
        (Method::GET, "/api/v1/auth/verify", None, [200, 200, 200]),
        (Method::GET, "/api/v1/auth/me", None, [200, 200, 200]),
        (Method::GET, "/api/v1/auth/api-keys", None, [200, 200, 200]),
        (Method::GET, "/api/v1/users", None, [200, 403, 403]),
        (Method::GET, "/api/v1/roles", None, [200, 403, 403]),
        (Method::GET, "/api/v1/audit", None, [200, 403, 403]),
        (Method::GET, "/api/v1/audit/verify", None, [200, 403, 403]),
        (Method::POST, "/api/v1/users", Some(new_user("m1")), [201, 403, 403]),
        (Method::DELETE, "/api/v1/users/00000000-0000-0000-0000-000000000000", None, [404, 403, 403]),
    ];
    for (method, path, body, expected) in routes {
        let anonymous = server.client.request(method.clone(), server.url(path)).send().await.unwrap();
        assert_eq!(anonymous.status(), 401, "{method} {path} without credentials");
        assert_eq!(anonymous.headers()["www-authenticate"], "Bearer");
        for ((role, token), want) in tokens.iter().zip(expected) {
            let mut request = server.authed(method.clone(), path, token);
            if let Some(body) = &body {
                let mut body = body.clone();
                body["username"] = json!(format!("u{}{}", role.as_str(), path.len()));
                body["email"] = json!(format!("u{}@x.test", role.as_str()));
                request = request.json(&body);
            }
            assert_eq!(status(request).await, want, "{method} {path} as {role:?}");
        }
    }
    server.stop().await.unwrap();
}

async fn a_demoted_user_loses_rights_on_the_next_request(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let root = server.create_user("root", &[Role::Admin]).await;
    let ann = server.create_user("ann", &[Role::Admin]).await;
    let root_token = server.token(&root).await;
    let ann_token = server.token(&ann).await;
    assert_eq!(status(server.authed(Method::GET, "/api/v1/users", &ann_token)).await, 200);
    let demote = server
        .authed(Method::PUT, &format!("/api/v1/users/{}", ann.id), &root_token)
        .json(&json!({ "roles": ["viewer"] }));
    assert_eq!(status(demote).await, 200);
    assert_eq!(status(server.authed(Method::GET, "/api/v1/users", &ann_token)).await, 403);
    let delete = server.authed(Method::DELETE, &format!("/api/v1/users/{}", ann.id), &root_token);
    assert_eq!(status(delete).await, 204);
    assert_eq!(status(server.authed(Method::GET, "/api/v1/auth/verify", &ann_token)).await, 401);
    server.stop().await.unwrap();
}

async fn mass_assignment_is_refused(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let root = server.create_user("root", &[Role::Admin]).await;
    let token = server.token(&root).await;
    let base = json!({ "username": "eve", "email": "eve@x.test", "password": "long-enough-1" });
    for (field, value) in [
        ("id", json!("00000000-0000-0000-0000-000000000001")),
        ("password_hash", json!("x")),
        ("login_count", json!(99)),
        ("token_version", json!(5)),
    ] {
        let mut body = base.clone();
        body[field] = value.clone();
        let response = server.authed(Method::POST, "/api/v1/users", &token).json(&body).send().await.unwrap();
        assert_eq!(response.status(), 400, "POST with {field}");
        let update =
            server.authed(Method::PUT, &format!("/api/v1/users/{}", root.id), &token).json(&json!({ field: value }));
        assert_eq!(status(update).await, 400, "PUT with {field}");
    }
    // Nothing was created by the refused requests.
    let listed: Value = server.authed(Method::GET, "/api/v1/users", &token).send().await.unwrap().json().await.unwrap();
    assert_eq!(listed["total"], 1);
    // A non-admin cannot grant themselves a role.
    let vic = server.create_user("vic", &[Role::Viewer]).await;
    let vic_token = server.token(&vic).await;
    let grant = server
        .authed(Method::PUT, &format!("/api/v1/users/{}", vic.id), &vic_token)
        .json(&json!({ "roles": ["admin"] }));
    assert_eq!(status(grant).await, 403);
    server.stop().await.unwrap();
}

async fn the_last_admin_is_protected(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let root = server.create_user("root", &[Role::Admin]).await;
    let token = server.token(&root).await;
    let path = format!("/api/v1/users/{}", root.id);
    for body in [json!({ "roles": ["viewer"] }), json!({ "active": false })] {
        let response = server.authed(Method::PUT, &path, &token).json(&body).send().await.unwrap();
        assert_eq!(response.status(), 409, "{body}");
    }
    assert_eq!(status(server.authed(Method::DELETE, &path, &token)).await, 409);
    // With a second admin, the first may step down.
    server.create_user("root2", &[Role::Admin]).await;
    let step_down = server.authed(Method::PUT, &path, &token).json(&json!({ "roles": ["maintainer"] }));
    assert_eq!(status(step_down).await, 200);
    server.stop().await.unwrap();
}

/// Two admins deactivating each other at the same moment on two replicas: one wins, the
/// other is refused (409, or 401 once its own account is off). Both won before, leaving
/// no admin at all.
async fn two_admins_cannot_remove_each_other_at_once(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let replica = TestServer::start(db.config()).await;
    let first = server.create_user("adm0", &[Role::Admin]).await;
    let mut survivor = (first.id.clone(), server.token(&first).await);
    let off = json!({ "active": false });
    for round in 1..=4 {
        let newcomer = server.create_user(&format!("adm{round}"), &[Role::Admin]).await;
        let newcomer = (newcomer.id.clone(), server.token(&newcomer).await);
        let a = server.authed(Method::PUT, &format!("/api/v1/users/{}", newcomer.0), &survivor.1).json(&off);
        let b = replica.authed(Method::PUT, &format!("/api/v1/users/{}", survivor.0), &newcomer.1).json(&off);
        let (a, b) = tokio::join!(status(a), status(b));
        let won = [a, b].iter().filter(|s| **s == 200).count();
        assert_eq!(won, 1, "round {round}: {a} and {b}");
        assert!([a, b].iter().all(|s| [200, 401, 409].contains(s)), "round {round}: {a} and {b}");
        if b == 200 {
            survivor = newcomer;
        }
    }
    replica.stop().await.unwrap();
    server.stop().await.unwrap();
}

async fn user_admin_crud_and_pagination(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let root = server.create_user("root", &[Role::Admin]).await;
    let token = server.token(&root).await;
    let create = |username: &str| {
        server.authed(Method::POST, "/api/v1/users", &token).json(&json!({
            "username": username, "email": format!("{username}@x.test"), "password": "long-enough-1",
            "first_name": "First", "last_name": "Last", "roles": ["maintainer"]
        }))
    };
    let created = create("carol").send().await.unwrap();
    assert_eq!(created.status(), 201);
    let location = created.headers()["location"].to_str().unwrap().to_owned();
    let carol: Value = created.json().await.unwrap();
    assert_eq!(location, format!("/api/v1/users/{}", carol["id"].as_str().unwrap()));
    assert_eq!(carol["roles"], json!(["maintainer"]));
    assert!(!carol.to_string().contains("long-enough-1") && !carol.to_string().contains("password"));
    assert_eq!(status(create("carol")).await, 409, "duplicate username");

    let invalid = server
        .authed(Method::POST, "/api/v1/users", &token)
        .json(&json!({ "username": "x", "email": "nope", "password": "x" }))
        .send()
        .await
        .unwrap();
    assert_eq!(invalid.status(), 400);
    let details: Value = invalid.json().await.unwrap();
    let fields: Vec<&str> =
        details["details"].as_array().unwrap().iter().map(|d| d["field"].as_str().unwrap()).collect();
    assert_eq!(fields, ["username", "email", "password"]);

    assert_eq!(status(server.authed(Method::GET, &location, &token)).await, 200);
    assert_eq!(status(server.authed(Method::GET, "/api/v1/users/not-a-uuid", &token)).await, 404);
    // Any case names the user; a trailing space names nobody (it did on MariaDB).
    let upper = format!("/api/v1/users/{}", carol["id"].as_str().unwrap().to_uppercase());
    assert_eq!(status(server.authed(Method::GET, &upper, &token)).await, 200);
    assert_eq!(status(server.authed(Method::GET, &format!("{location}%20"), &token)).await, 404);
    let updated: Value = server
        .authed(Method::PUT, &location, &token)
        .json(&json!({ "first_name": "Caroline" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(updated["first_name"], "Caroline");
    assert_eq!(updated["last_name"], "Last", "PUT changes only the fields it is given");

    for name in ["dave", "erin", "frank"] {
        assert_eq!(status(create(name)).await, 201);
    }
    let page: Value = server
        .authed(Method::GET, "/api/v1/users?limit=2&offset=1", &token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["total"], 5);
    assert_eq!(page["limit"], 2);
    assert_eq!(page["offset"], 1);
    assert_eq!(page["users"].as_array().unwrap().len(), 2);
    for bad in ["limit=0", "limit=1001", "limit=abc", "offset=-1"] {
        let response = server.authed(Method::GET, &format!("/api/v1/users?{bad}"), &token).send().await.unwrap();
        assert_eq!(response.status(), 400, "{bad}");
        assert_eq!(response.json::<Value>().await.unwrap()["status_code"], 400);
    }
    assert_eq!(status(server.authed(Method::DELETE, &location, &token)).await, 204);
    assert_eq!(status(server.authed(Method::GET, &location, &token)).await, 404);
    server.stop().await.unwrap();
}

/// The same on all three databases (MariaDB's default collation ignored case until
/// migration 6): a username is matched exactly, an email in any case.
async fn usernames_compare_exactly_and_emails_ignore_case(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let root = server.create_user("root", &[Role::Admin]).await;
    let token = server.token(&root).await;
    let create = |username: &str, email: &str| {
        server.authed(Method::POST, "/api/v1/users", &token).json(&json!({
            "username": username, "email": email, "password": "long-enough-1", "roles": ["viewer"]
        }))
    };
    assert_eq!(status(create("casey", "casey@x.test")).await, 201);
    assert_eq!(status(create("Casey", "big.casey@x.test")).await, 201, "another user");
    assert_eq!(status(create("kasey", "CASEY@X.test")).await, 409, "emails ignore case");
    let logged_in_as = |login: &'static str| {
        let server = &server;
        async move {
            let response = server.login_response(login, "long-enough-1").await;
            match response.status().as_u16() {
                200 => Some(response.json::<Value>().await.unwrap()["user"]["username"].as_str().unwrap().to_owned()),
                401 => None,
                other => panic!("login as {login}: {other}"),
            }
        }
    };
    assert_eq!(logged_in_as("Casey").await.as_deref(), Some("Casey"));
    assert_eq!(logged_in_as("casey").await.as_deref(), Some("casey"));
    assert_eq!(logged_in_as("CASEY").await, None);
    assert_eq!(logged_in_as("Big.Casey@X.TEST").await.as_deref(), Some("Casey"));
    server.stop().await.unwrap();
}

async fn repeated_failed_logins_are_throttled(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    // A second replica on the same database: failures count wherever they land.
    let replica = TestServer::start(db.config()).await;
    let ann = server.create_user("ann", &[Role::Viewer]).await;
    // One count per account, whichever of its names each attempt uses.
    let names = ["ann", "ann@example.test"];
    for attempt in 1..=9 {
        let name = names[attempt % names.len()];
        let to = if attempt % 3 == 0 { &replica } else { &server };
        assert_eq!(to.login_response(name, "wrong-password").await.status(), 401, "attempt {attempt} as {name}");
    }
    let tenth = server.login_response("ann@example.test", "wrong-password").await;
    assert_eq!(tenth.status(), 429);
    let retry_after: u64 = tenth.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=900).contains(&retry_after), "{retry_after}");
    assert_eq!(tenth.json::<Value>().await.unwrap()["error"], "Too Many Requests");
    // While blocked, even the right password is refused, under any of its names, by both
    // replicas; another account is not affected.
    for (name, to) in names.into_iter().flat_map(|name| [(name, &server), (name, &replica)]) {
        assert_eq!(to.login_response(name, &ann.password).await.status(), 429, "{name}");
    }
    let bob = server.create_user("bob", &[Role::Viewer]).await;
    assert_eq!(replica.login_response("bob", &bob.password).await.status(), 200);

    // Concurrent failures on both replicas are all counted, and a burst gets no more
    // guesses than the limit: of 30 at once, at most 9 are answered 401 (the tenth starts
    // the block), however the attempts interleave.
    let cy = server.create_user("cyd", &[Role::Viewer]).await;
    let attempts = (0..30).map(|i| {
        let to = if i % 2 == 0 { &server } else { &replica };
        to.login_response("cyd", "wrong-password")
    });
    let mut answered_401 = 0;
    for response in futures_util::future::join_all(attempts).await {
        match response.status().as_u16() {
            401 => answered_401 += 1,
            429 => {}
            other => panic!("{other}"),
        }
    }
    assert!(answered_401 <= 9, "{answered_401} of 30 concurrent guesses were checked and answered 401");
    assert_eq!(replica.login_response("cyd", &cy.password).await.status(), 429);
    replica.stop().await.unwrap();
    server.stop().await.unwrap();
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

/// Users carried over from a Flask-Security-Too database (hashes made by FST itself, see
/// tests/fixtures/fst/generate.py) log in, and their hash is upgraded to ours.
async fn flask_security_hashes_log_in_and_are_rehashed(db: TestDb) {
    let fixtures: Vec<Value> = serde_json::from_str(include_str!("fixtures/fst/hashes.json")).unwrap();
    let mut config = db.config();
    config.security_password_salt = Some(fixtures[0]["salt"].as_str().unwrap().to_owned().into());
    let server = TestServer::start(config).await;
    let conn = db.connect().await;
    let backend = conn.get_database_backend();
    // One argon2 and one bcrypt user, inserted as a migration script would.
    for (n, fixture) in fixtures.iter().filter(|f| f["password"].as_str().unwrap().starts_with("correct")).enumerate() {
        let username = format!("flask{n}");
        let id = uuid::Uuid::new_v4().to_string();
        let insert = format!(
            "INSERT INTO users (id, username, email, password_hash, first_name, last_name, active, token_version, created_at, updated_at, login_count) \
             VALUES ('{id}', '{username}', '{username}@old.test', '{}', '', '', true, 0, 0, 0, 0)",
            fixture["hash"].as_str().unwrap()
        );
        conn.execute_raw(Statement::from_string(backend, insert)).await.unwrap();
        conn.execute_raw(Statement::from_string(
            backend,
            format!("INSERT INTO user_roles (user_id, role) VALUES ('{id}', 'viewer')"),
        ))
        .await
        .unwrap();
        let password = fixture["password"].as_str().unwrap();
        assert_eq!(server.login_response(&username, "wrong password!").await.status(), 401, "{}", fixture["scheme"]);
        assert_eq!(server.login_response(&username, password).await.status(), 200, "{}", fixture["scheme"]);
        let row = conn
            .query_one_raw(Statement::from_string(
                backend,
                format!("SELECT password_hash FROM users WHERE id = '{id}'"),
            ))
            .await
            .unwrap()
            .unwrap();
        let rehashed: String = row.try_get("", "password_hash").unwrap();
        assert_ne!(rehashed, fixture["hash"].as_str().unwrap(), "{} hash was not upgraded", fixture["scheme"]);
        assert!(rehashed.starts_with("$argon2id$v=19$m=65536,t=3,p=4$"), "{rehashed}");
        assert_eq!(server.login_response(&username, password).await.status(), 200);
    }
    server.stop().await.unwrap();
}
