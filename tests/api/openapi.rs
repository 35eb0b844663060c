//! The OpenAPI document is generated from the code that routes; this snapshot fails when
//! the API changes without `docs/openapi.json` being regenerated (and reviewed):
//! `KK_UPDATE_SNAPSHOTS=1 cargo test --test openapi`.

use crate::common::{Kind, TestDb, TestServer};
use serde_json::Value;

cases! {
    tokio:
        openapi_document_matches_the_committed_snapshot,
        openapi_describes_every_endpoint_with_security_schemes,
        documented_responses_include_what_the_shared_layers_answer,
        request_schema_bounds_are_the_servers,
        created_responses_document_the_location_they_send;
}

const SNAPSHOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.json");

async fn served_document() -> (TestServer, TestDb, Value) {
    let db = TestDb::create(Kind::Sqlite).await;
    let server = TestServer::start(db.config()).await;
    let response = server.get("/api/v1/openapi.json").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let doc = response.json().await.unwrap();
    (server, db, doc)
}

/// [`served_document`], and an admin's token to call what it describes.
async fn served_document_and_admin() -> (TestServer, TestDb, Value, String) {
    let (server, db, doc) = served_document().await;
    let admin = server.create_user("root", &[killkrill::auth::Role::Admin]).await;
    let token = server.token(&admin).await;
    (server, db, doc, token)
}

async fn openapi_document_matches_the_committed_snapshot() {
    let (server, _db, doc) = served_document().await;
    let rendered = serde_json::to_string_pretty(&doc).unwrap() + "\n";
    if std::env::var("KK_UPDATE_SNAPSHOTS").is_ok_and(|v| v == "1") {
        std::fs::write(SNAPSHOT, &rendered).unwrap();
    }
    let committed = std::fs::read_to_string(SNAPSHOT).expect("docs/openapi.json exists");
    assert!(
        committed == rendered,
        "the API changed: regenerate docs/openapi.json with KK_UPDATE_SNAPSHOTS=1 cargo test --test openapi and review the diff"
    );
    server.stop().await.unwrap();
}

async fn openapi_describes_every_endpoint_with_security_schemes() {
    let (server, _db, doc) = served_document().await;
    assert_eq!(doc["openapi"], "3.1.0");
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["bearer"]["scheme"], "bearer");
    assert_eq!(schemes["api_key"]["name"], "X-API-Key");
    let expected = [
        ("get", "/healthz"),
        ("get", "/livez"),
        ("get", "/readyz"),
        ("get", "/metrics"),
        ("post", "/api/v1/auth/login"),
        ("post", "/api/v1/auth/refresh"),
        ("get", "/api/v1/auth/verify"),
        ("post", "/api/v1/auth/logout"),
        ("get", "/api/v1/auth/me"),
        ("post", "/api/v1/auth/change-password"),
        ("get", "/api/v1/auth/api-keys"),
        ("post", "/api/v1/auth/api-keys"),
        ("delete", "/api/v1/auth/api-keys/{id}"),
        ("get", "/api/v1/users"),
        ("post", "/api/v1/users"),
        ("get", "/api/v1/users/{id}"),
        ("put", "/api/v1/users/{id}"),
        ("delete", "/api/v1/users/{id}"),
        ("get", "/api/v1/roles"),
        ("get", "/api/v1/audit"),
        ("get", "/api/v1/audit/verify"),
        ("get", "/api/v1/audit/export"),
        ("get", "/api/v1/license"),
        ("get", "/api/v1/status"),
        ("get", "/api/v1/admin/config"),
        ("put", "/api/v1/admin/config"),
        ("get", "/api/v1/sources"),
        ("post", "/api/v1/sources"),
        ("get", "/api/v1/sources/{id}"),
        ("put", "/api/v1/sources/{id}"),
        ("delete", "/api/v1/sources/{id}"),
        ("get", "/api/v1/sources/{id}/keys"),
        ("post", "/api/v1/sources/{id}/keys"),
        ("delete", "/api/v1/sources/{id}/keys/{key_id}"),
        ("get", "/api/v1/logs"),
        ("post", "/api/v1/logs"),
        ("get", "/api/v1/metrics"),
        ("post", "/api/v1/metrics"),
        ("post", "/api/v1/metrics/query"),
        ("get", "/api/v1/openapi.json"),
    ];
    let mut operation_ids = std::collections::HashSet::new();
    for (method, path) in expected {
        let operation = &doc["paths"][path][method];
        assert!(operation.is_object(), "{method} {path} is not documented");
        assert!(operation_ids.insert(operation["operationId"].as_str().unwrap().to_owned()), "duplicate operationId");
    }
    // And every documented operation is really served (no 404 from the fallback).
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            let url = path.replace("{id}", "00000000-0000-0000-0000-000000000000").replace("{key_id}", "x");
            let request = server.client.request(method.to_uppercase().parse().unwrap(), server.url(&url));
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            let unrouted =
                status == 404 && body["message"].as_str().is_some_and(|m| m.starts_with("Resource not found"));
            assert!(!unrouted && status != 405, "{method} {path} is documented but not served ({status})");
        }
    }
    server.stop().await.unwrap();
}

/// What the layers every request shares answer is documented wherever they can answer
/// it: a body that is not JSON, and a `limit` outside its documented bounds.
async fn documented_responses_include_what_the_shared_layers_answer() {
    let (server, _db, doc, token) = served_document_and_admin().await;
    let (mut bodies, mut limits) = (0, 0);
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let url = path.replace("{id}", "00000000-0000-0000-0000-000000000000").replace("{key_id}", "x");
            let method: reqwest::Method = method.to_uppercase().parse().unwrap();
            let documented = |status: u16| operation["responses"].get(status.to_string()).is_some();
            if operation.pointer("/requestBody/content/application~1json").is_some() {
                bodies += 1;
                let request = server.authed(method.clone(), &url, &token).header("content-type", "text/plain");
                let status = request.body("x").send().await.unwrap().status().as_u16();
                assert!(documented(status), "{method} {path} answered {status} to a text body; not documented");
            }
            let parameters = operation["parameters"].as_array().into_iter().flatten();
            if let Some(limit) = parameters.into_iter().find(|p| p["name"] == "limit" && p["in"] == "query") {
                limits += 1;
                assert_eq!(
                    (limit["schema"]["minimum"].as_u64(), limit["schema"]["maximum"].as_u64()),
                    (Some(1), Some(1000))
                );
                let request = server.authed(method.clone(), &format!("{url}?limit=1001"), &token);
                let status = request.send().await.unwrap().status().as_u16();
                assert!(documented(status), "{method} {path} answered {status} to limit=1001; not documented");
            }
        }
    }
    assert!(bodies >= 10 && limits >= 6, "{bodies} operations with JSON bodies, {limits} with a limit");
    server.stop().await.unwrap();
}

/// The bounds the request schemas state are the ones the server enforces: one past each
/// is refused with 400, and the bound itself is accepted.
async fn request_schema_bounds_are_the_servers() {
    use reqwest::Method;
    let (server, _db, doc, token) = served_document_and_admin().await;
    let schema = |name: &str, field: &str, bound: &str| {
        doc["components"]["schemas"][name]["properties"][field][bound]
            .as_u64()
            .unwrap_or_else(|| panic!("{name}.{field}"))
    };
    let status = |method: Method, path: &str, body: Value| {
        let request = server.authed(method, path, &token).json(&body);
        async move { request.send().await.unwrap().status().as_u16() }
    };
    let longest = schema("SourceInput", "name", "maxLength") as usize;
    let source = |name: String| serde_json::json!({"name": name, "type": "http"});
    assert_eq!(status(Method::POST, "/api/v1/sources", source("n".repeat(longest + 1))).await, 400);
    assert_eq!(status(Method::POST, "/api/v1/sources", source("n".repeat(longest))).await, 201);
    let pattern = doc["components"]["schemas"]["SourceInput"]["properties"]["type"]["pattern"].as_str().unwrap();
    assert!(pattern.contains("|otlp|"), "{pattern}");
    let typed = serde_json::json!({"name": "typed", "type": "HTTP"});
    assert_eq!(status(Method::POST, "/api/v1/sources", typed).await, 400);
    // A create requires what the document says it requires; an update requires nothing.
    let create = &doc["paths"]["/api/v1/sources"]["post"]["requestBody"]["content"]["application/json"]["schema"];
    let required: Vec<&str> = create["required"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert_eq!(required, ["name", "type"], "{create}");
    for field in required {
        let mut whole = serde_json::json!({"name": format!("without-{field}"), "type": "http"});
        whole.as_object_mut().unwrap().remove(field);
        assert_eq!(status(Method::POST, "/api/v1/sources", whole.clone()).await, 400, "{whole}");
        whole[field] = Value::Null;
        assert_eq!(status(Method::POST, "/api/v1/sources", whole.clone()).await, 400, "{whole}");
    }
    let update = &doc["paths"]["/api/v1/sources/{id}"]["put"]["requestBody"]["content"]["application/json"]["schema"];
    assert_eq!(update["$ref"], "#/components/schemas/SourceInput");
    assert!(doc["components"]["schemas"]["SourceInput"].get("required").is_none());

    let fewest_days = schema("CreateKeyRequest", "expires_in_days", "minimum");
    let key = |days: u64| serde_json::json!({"name": format!("k{days}"), "expires_in_days": days});
    assert_eq!(status(Method::POST, "/api/v1/auth/api-keys", key(fewest_days - 1)).await, 400);
    assert_eq!(status(Method::POST, "/api/v1/auth/api-keys", key(fewest_days)).await, 201);

    let shortest = schema("CreateUser", "password", "minLength") as usize;
    let user = |name: &str, password: String| serde_json::json!({"username": name, "email": format!("{name}@example.test"), "password": password});
    assert_eq!(status(Method::POST, "/api/v1/users", user("short", "p".repeat(shortest - 1))).await, 400);
    assert_eq!(status(Method::POST, "/api/v1/users", user("enough", "p".repeat(shortest))).await, 201);

    let levels = doc["components"]["schemas"]["ConfigChange"]["properties"]["log_level"]["pattern"].as_str().unwrap();
    assert_eq!(levels, "^(DEBUG|INFO|WARNING|ERROR)$");
    for (level, answer) in [("WARNING", 200), ("warning", 400), ("WARN", 400), ("INFO", 200)] {
        let change = serde_json::json!({ "log_level": level });
        assert_eq!(status(Method::PUT, "/api/v1/admin/config", change).await, answer, "{level}");
    }
    server.stop().await.unwrap();
}

/// A 201 documents `Location` exactly where the server sends one, and the header names
/// the new resource.
async fn created_responses_document_the_location_they_send() {
    use reqwest::Method;
    let (server, _db, doc, token) = served_document_and_admin().await;
    let source = serde_json::json!({"name": "located", "type": "http"});
    let response = server.authed(Method::POST, "/api/v1/sources", &token).json(&source).send().await.unwrap();
    let source_id = response.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let creations = [
        ("/api/v1/sources", serde_json::json!({"name": "second", "type": "http"})),
        (
            "/api/v1/users",
            serde_json::json!({"username": "lou", "email": "lou@example.test", "password": "long-enough-1"}),
        ),
        ("/api/v1/auth/api-keys", serde_json::json!({"name": "ci"})),
        ("/api/v1/sources/{id}/keys", serde_json::json!({"name": "agent"})),
    ];
    for (path, body) in creations {
        let url = path.replace("{id}", &source_id);
        let response = server.authed(Method::POST, &url, &token).json(&body).send().await.unwrap();
        assert_eq!(response.status(), 201, "{path}");
        let sent = response.headers().get("location").map(|v| v.to_str().unwrap().to_owned());
        let documented = doc["paths"][path]["post"]["responses"]["201"]["headers"].get("Location").is_some();
        assert_eq!(sent.is_some(), documented, "{path}: sent {sent:?}, documented: {documented}");
        if let Some(location) = sent {
            let created: Value = response.json().await.unwrap();
            assert_eq!(location, format!("{path}/{}", created["id"].as_str().unwrap()));
            let fetched = server.authed(Method::GET, &location, &token).send().await.unwrap();
            assert_eq!(fetched.status(), 200, "{location}");
        }
    }
    server.stop().await.unwrap();
}
