//! `/api/v1/auth/login`, `/refresh`, `/verify`, `/logout`, `/me` and `/change-password`:
//! tokens and their forgeries, refresh rotation, throttling, and Flask-Security-Too hashes.
//! Each case runs on SQLite, PostgreSQL and MariaDB, through the real server on a real socket.

use std::collections::HashMap;

use killkrill::auth::{
    Role,
    token::{Claims, TokenSigner, TokenType},
};
use reqwest::Method;
use sea_orm::{ConnectionTrait, Statement};
use serde_json::{Value, json};

use crate::common::{Kind, TestDb, TestServer, rest::*};

cases! {
    on_all_databases:
        login_returns_tokens_user_and_tracks_the_login,
        wrong_password_and_unknown_user_get_the_same_401,
        inactive_users_cannot_log_in,
        forged_expired_and_misused_tokens_are_refused,
        refresh_rotates_and_reuse_revokes_the_session,
        logout_revokes_the_token_and_its_session,
        password_change_invalidates_earlier_tokens,
        repeated_failed_logins_are_throttled,
        a_burst_from_one_address_gets_no_more_password_checks_than_its_limit,
        flask_security_hashes_log_in_and_are_rehashed;
    tokio: a_remembered_token_is_still_refused_once_expired;
}

fn signer(server: &TestServer) -> TokenSigner {
    TokenSigner::new(server.state.config.jwt_secret.clone(), None)
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
    forged.push(("not valid before a minute from now", sign(&Claims { nbf: Some(now + 120), ..claims.clone() })));
    forged.push(("issued two minutes from now", sign(&Claims { iat: now + 120, ..claims.clone() })));
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
    // `nbf` in the past, or within the clock-skew leeway, is honoured and passes.
    for nbf in [now - 10, now + 30] {
        let token = sign(&Claims { nbf: Some(nbf), jti: uuid::Uuid::new_v4().to_string(), ..claims.clone() });
        assert_eq!(status(server.authed(Method::GET, "/api/v1/auth/verify", &token)).await, 200, "nbf {nbf}");
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
async fn a_remembered_token_is_still_refused_once_expired() {
    let db = TestDb::create(Kind::Sqlite).await;
    let server = TestServer::start(db.config()).await;
    let ann = server.create_user("ann", &[Role::Viewer]).await;
    // The clock is read after the login, which may take seconds while other cases hash
    // passwords: the token must still have its two seconds when first used.
    let token = server.token(&ann).await;
    let now = chrono::Utc::now().timestamp();
    let claims = signer(&server).verify(&token, TokenType::Access, now).unwrap();
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

/// The client address is counted before the password is checked, like the account: a
/// burst of guesses at many accounts from one address (so no account's own limit stops
/// them) gets at most the address's 60 password checks (argon2, the work an attacker
/// wants to cause); the others are refused (429) without one.
async fn a_burst_from_one_address_gets_no_more_password_checks_than_its_limit(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let admin = server.create_user("root", &[Role::Admin]).await;
    let admin_token = server.token(&admin).await;
    const BURST: usize = 75;
    let to = &server;
    let attempts = (0..BURST).map(|i| async move { to.login_response(&format!("nobody-{i}"), "wrong-password").await });
    let mut statuses = HashMap::new();
    for response in futures_util::future::join_all(attempts).await {
        *statuses.entry(response.status().as_u16()).or_insert(0) += 1;
    }
    assert_eq!(statuses.keys().filter(|s| ![401, 429].contains(*s)).count(), 0, "{statuses:?}");
    // Every attempt is audited: `failure` once its password was checked, `denied` when
    // refused before.
    let audit = server.get_json("/api/v1/audit?action=LOGIN&limit=1000", &admin_token).await;
    let rows = audit["audit"].as_array().unwrap();
    let checked = rows.iter().filter(|row| row["status"] == "failure").count();
    let refused = rows.iter().filter(|row| row["status"] == "denied").count();
    assert_eq!(checked + refused, BURST, "{statuses:?}");
    assert!(checked <= 60, "{checked} of {BURST} concurrent guesses from one address had their password checked");
    // The address is blocked now, for every account, with the right password too.
    assert_eq!(server.login_response("root", &admin.password).await.status(), 429);
    server.stop().await.unwrap();
}

/// Users carried over from a Flask-Security-Too database (hashes made by FST itself, see
/// tests/fixtures/fst/generate.py) log in, and their hash is upgraded to ours.
async fn flask_security_hashes_log_in_and_are_rehashed(db: TestDb) {
    let fixtures: Vec<Value> = serde_json::from_str(include_str!("../fixtures/fst/hashes.json")).unwrap();
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
