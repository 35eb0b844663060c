//! `/api/v1/users`, `/api/v1/users/{id}` and `/api/v1/roles`: user admin, RBAC across the
//! routes, the last admin's protection, and text the identity tables store.
//! Each case runs on SQLite, PostgreSQL and MariaDB, through the real server on a real socket.

use killkrill::auth::Role;
use reqwest::Method;
use sea_orm::{ConnectionTrait, Statement};
use serde_json::{Value, json};

use crate::common::{Kind, TestDb, TestServer, rest::*};

cases! {
    on_all_databases:
        rbac_matrix,
        a_demoted_user_loses_rights_on_the_next_request,
        mass_assignment_is_refused,
        the_last_admin_is_protected,
        two_admins_cannot_remove_each_other_at_once,
        user_admin_crud_and_pagination,
        usernames_compare_exactly_and_emails_ignore_case;
    tokio_multi_thread[MySql]: mariadb_with_a_latin1_default_stores_any_text;
}

/// A MariaDB database whose default character set is latin1 (an older server's default):
/// names keep their emoji and CJK (migration 6 gave the identity tables utf8mb4; they were
/// stored as `?`), the service's sessions are strict (a value too long for its column is
/// refused, never cut), and an API key's repeated roles are stored once.
async fn mariadb_with_a_latin1_default_stores_any_text() {
    let db = TestDb::create(Kind::MySql).await;
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
