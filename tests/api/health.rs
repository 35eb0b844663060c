//! Probes and metrics, on SQLite, PostgreSQL and MariaDB.

use crate::common::{TestDb, TestServer};
use serde_json::Value;

cases! {
    on_all_databases:
        healthz_reports_healthy_with_database_check,
        livez_and_readyz_answer,
        metrics_use_seed_names_and_route_templates;
}

async fn healthz_reports_healthy_with_database_check(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let response = server.get("/healthz").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    assert!(response.headers().contains_key("x-correlation-id"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "healthy");
    assert_eq!(body["service"], "killkrill-backend");
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(body["environment"], "testing");
    assert_eq!(body["checks"]["database"], "ok");
    let timestamp = body["timestamp"].as_str().unwrap();
    assert!(chrono::DateTime::parse_from_rfc3339(timestamp).is_ok(), "{timestamp}");
    assert!(timestamp.ends_with('Z'), "{timestamp}");
    server.stop().await.unwrap();
}

async fn livez_and_readyz_answer(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let live = server.get("/livez").await;
    assert_eq!(live.status(), 200);
    assert_eq!(live.json::<Value>().await.unwrap()["status"], "alive");
    let ready = server.get("/readyz").await;
    assert_eq!(ready.status(), 200);
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["status"], "ready");
    assert_eq!(body["checks"]["database"], "ok");
    server.stop().await.unwrap();
}

async fn metrics_use_seed_names_and_route_templates(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    for _ in 0..3 {
        assert_eq!(server.get("/healthz").await.status(), 200);
    }
    assert_eq!(server.get("/no/such/path/1").await.status(), 404);
    assert_eq!(server.get("/no/such/path/2").await.status(), 404);
    // Any token is a method to HTTP: the ones outside the standard set share one label.
    for method in ["ZZMETHOD1", "ZZMETHOD2"] {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        assert_eq!(server.client.request(method, server.url("/healthz")).send().await.unwrap().status(), 405);
    }
    let response = server.get("/metrics").await;
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/plain; version=0.0.4"));
    let text = response.text().await.unwrap();
    let expect = [
        r#"killkrill_flask_backend_requests_total{endpoint="/healthz",method="GET",status="200"} 3"#,
        // Unknown paths share one label value: cardinality stays bounded.
        r#"killkrill_flask_backend_requests_total{endpoint="unmatched",method="GET",status="404"} 2"#,
        r#"killkrill_flask_backend_requests_total{endpoint="/healthz",method="other",status="405"} 2"#,
        r#"killkrill_flask_backend_request_duration_seconds_count{endpoint="/healthz",method="GET"} 3"#,
        r#"killkrill_flask_backend_request_duration_seconds_bucket{endpoint="/healthz",method="GET",le="+Inf"} 3"#,
        "# TYPE killkrill_flask_backend_request_duration_seconds histogram",
        "killkrill_db_pool_max_connections 30",
    ];
    for line in expect {
        assert!(text.contains(line), "missing `{line}` in:\n{text}");
    }
    assert!(!text.contains("/no/such/path"), "raw paths leaked into labels:\n{text}");
    assert!(!text.contains("ZZMETHOD"), "a client's method name became a label value:\n{text}");
    for name in [
        "process_resident_memory_bytes ",
        "process_cpu_seconds_total ",
        "process_open_fds ",
        "killkrill_db_pool_connections ",
    ] {
        let value =
            text.lines().find_map(|l| l.strip_prefix(name)).unwrap_or_else(|| panic!("missing {name}in:\n{text}"));
        assert!(value.trim().parse::<f64>().is_ok(), "{name}= {value}");
    }
    let rss: f64 =
        text.lines().find_map(|l| l.strip_prefix("process_resident_memory_bytes ")).unwrap().trim().parse().unwrap();
    assert!(rss > 1_000_000.0, "implausible RSS {rss}");
    server.stop().await.unwrap();
}
