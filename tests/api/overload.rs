//! The in-flight body budget (`MAX_INFLIGHT_BODY_BYTES`) over real sockets: while a
//! request holds the budget, every ingest protocol answers what does not fit with 503,
//! `Retry-After` and its own error form, stores nothing of it, and the probes still
//! answer; once the budget is released the next request is stored. A body over the size
//! limit gets its 413 whole, never a reset.
//!
//! Each case runs on SQLite, PostgreSQL and MariaDB.

use std::{io::Write, time::Duration};

use killkrill::auth::Role;
use opentelemetry_proto::tonic::{
    collector::logs::v1::{ExportLogsServiceRequest, logs_service_client::LogsServiceClient},
    common::v1::{AnyValue, any_value::Value as V},
    logs::v1::{LogRecord, ResourceLogs, ScopeLogs},
};
use prost::Message;
use reqwest::{Method, RequestBuilder, Response};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::{
    common::{TestDb, TestServer, eventually, rest::*},
    otlp::RpcStatus,
};

cases! {
    on_all_databases:
        bodies_beyond_the_budget_are_503_with_retry_after_in_each_protocols_form,
        a_body_over_the_limit_gets_its_413_without_a_reset;
}

const MIB: usize = 1024 * 1024;

/// NDJSON log lines of about `bytes` bytes in all, each message marked with `mark`.
fn ndjson_lines(mark: &str, bytes: usize) -> String {
    let line = json!({ "message": format!("{mark} {}", "x".repeat(10_000)), "timestamp": T0 }).to_string() + "\n";
    line.repeat(bytes.div_ceil(line.len()))
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

/// Asserts a 503 with `Retry-After: 1` and returns the response for its body.
fn overloaded(response: Response, what: &str) -> Response {
    assert_eq!(response.status(), 503, "{what}");
    assert_eq!(response.headers()["retry-after"], "1", "{what}");
    response
}

async fn send(request: RequestBuilder) -> Response {
    request.send().await.unwrap()
}

async fn bodies_beyond_the_budget_are_503_with_retry_after_in_each_protocols_form(db: TestDb) {
    let mut config = db.config();
    config.max_body_bytes = MIB;
    config.max_inflight_body_bytes = MIB;
    let server = TestServer::start(config).await;
    let (_, token) = user(&server, "mia", Role::Maintainer).await;
    let source_id = new_source(&server, &token, "busy").await;
    let (_, key) = server.create_ingest_key(&token, &source_id).await;

    // A chunked NDJSON batch that sends 800 KB and then waits holds 800 KB of the budget.
    let (more, chunks) = mpsc::channel::<Vec<u8>>(4);
    let chunks = futures_util::stream::unfold(chunks, |mut chunks| async move {
        chunks.recv().await.map(|chunk| (Ok::<_, std::io::Error>(chunk), chunks))
    });
    let held = ndjson_lines("held", 800 * 1024);
    let (first, rest) = held.as_bytes().split_at(held.len() - 100);
    more.send(first.to_vec()).await.unwrap();
    let holder = call(&server, Method::POST, &with_query("/api/v1/logs", &[("source_id", &source_id)]), &key)
        .header("Content-Type", "application/x-ndjson")
        .body(reqwest::Body::wrap_stream(chunks))
        .send();
    let holder = tokio::spawn(holder);
    let budget = server.state.body_budget.clone();
    assert!(eventually(Duration::from_secs(10), || async { budget.held() >= first.len() }).await, "the batch holds");

    let body = ndjson_lines("refused", 300 * 1024);
    let logs = ndjson_request(&server, &key, &source_id, &body);
    let answer: Value = overloaded(send(logs).await, "JSON API").json().await.unwrap();
    assert_eq!(answer["status_code"], 503, "{answer}");
    assert!(answer["message"].as_str().unwrap().contains("retry"), "{answer}");

    let chunked = call(&server, Method::POST, &with_query("/api/v1/logs", &[("source_id", &source_id)]), &key)
        .header("Content-Type", "application/x-ndjson")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            body.as_bytes().chunks(64 * 1024).map(|c| Ok::<_, std::io::Error>(c.to_vec())).collect::<Vec<_>>(),
        )));
    let answer: Value = overloaded(send(chunked).await, "chunked").json().await.unwrap();
    assert_eq!(answer["status_code"], 503, "{answer}");

    let otlp = |body: Vec<u8>| {
        call(&server, Method::POST, "/v1/logs", &key).header("Content-Type", "application/x-protobuf").body(body)
    };
    let status =
        RpcStatus::decode(overloaded(send(otlp(vec![0; 300 * 1024])).await, "OTLP").bytes().await.unwrap()).unwrap();
    assert_eq!(status.code, tonic::Code::Unavailable as i32, "{status:?}");
    // Small on the wire, 300 KB once decompressed: the copy does not fit.
    let bomb = gzip(&vec![0; 300 * 1024]);
    assert!(bomb.len() < 4096);
    let response = send(otlp(bomb).header("Content-Encoding", "gzip")).await;
    let status = RpcStatus::decode(overloaded(response, "OTLP gzip").bytes().await.unwrap()).unwrap();
    assert_eq!(status.code, tonic::Code::Unavailable as i32, "{status:?}");
    let json_otlp = call(&server, Method::POST, "/v1/logs", &key).header("Content-Type", "application/json");
    let status: Value =
        overloaded(send(json_otlp.body(vec![b' '; 300 * 1024])).await, "OTLP JSON").json().await.unwrap();
    assert_eq!(status["code"], tonic::Code::Unavailable as i32, "{status}");

    for path in ["/prometheus/api/v1/write", "/loki/api/v1/push"] {
        let request = server
            .client
            .post(server.url(path))
            .bearer_auth(&key)
            .header("Content-Type", "application/x-protobuf")
            .header("Content-Encoding", "snappy")
            .body(vec![0; 300 * 1024]);
        let response = overloaded(send(request).await, path);
        assert_eq!(response.headers()["content-type"], "text/plain; charset=utf-8", "{path}");
        assert!(response.text().await.unwrap().contains("retry"), "{path}");
    }

    let bulk = call(&server, Method::POST, "/elastic/_bulk", &key)
        .header("Content-Type", "application/x-ndjson")
        .body(vec![b'\n'; 300 * 1024]);
    let response = overloaded(send(bulk).await, "_bulk");
    assert_eq!(response.headers()["x-elastic-product"], "Elasticsearch");
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["status"], 503, "{answer}");
    assert!(answer["error"]["reason"].as_str().unwrap().contains("retry"), "{answer}");

    // gRPC: the export's frames do not fit, UNAVAILABLE (the exporters retry it); the
    // health service still answers.
    let record = LogRecord {
        body: Some(AnyValue { value: Some(V::StringValue("y".repeat(300 * 1024))) }),
        ..Default::default()
    };
    let scope_logs = vec![ScopeLogs { log_records: vec![record], ..Default::default() }];
    let export = ExportLogsServiceRequest { resource_logs: vec![ResourceLogs { scope_logs, ..Default::default() }] };
    let mut request = tonic::Request::new(export);
    request.metadata_mut().insert("x-api-key", key.parse().unwrap());
    let refused = LogsServiceClient::new(server.grpc().await).export(request).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
    let mut health = tonic_health::pb::health_client::HealthClient::new(server.grpc().await);
    let serving = health.check(tonic_health::pb::HealthCheckRequest { service: String::new() }).await.unwrap();
    assert_eq!(serving.into_inner().status, tonic_health::pb::health_check_response::ServingStatus::Serving as i32);

    for probe in ["/healthz", "/livez", "/readyz"] {
        assert_eq!(server.get(probe).await.status(), 200, "{probe}");
    }

    // The held batch completes and is stored; its charge is released with its answer.
    more.send(rest.to_vec()).await.unwrap();
    drop(more);
    let response = holder.await.unwrap().unwrap();
    assert_eq!(response.status(), 202, "{:?}", response.text().await);
    assert!(eventually(Duration::from_secs(5), || async { budget.held() == 0 }).await, "released");
    let stored_before = count_rows(&db, "logs").await;
    assert_eq!(stored_before as usize, held.lines().count(), "only the held batch is stored");

    let later = ndjson_request(&server, &key, &source_id, &ndjson_lines("later", 300 * 1024));
    assert_eq!(send(later).await.status(), 202);
    let later_lines = ndjson_lines("later", 300 * 1024).lines().count();
    assert_eq!(count_rows(&db, "logs").await as usize, held.lines().count() + later_lines);
}

async fn a_body_over_the_limit_gets_its_413_without_a_reset(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let (_, token) = user(&server, "mia", Role::Maintainer).await;
    let source_id = new_source(&server, &token, "big").await;
    let (_, key) = server.create_ingest_key(&token, &source_id).await;
    let body = vec![b'x'; 17 * MIB];
    // Each is refused from its Content-Length before a byte is read; the client, still
    // writing, must read the 413 (no retry on a reset here: none may happen).
    for attempt in 0..5 {
        let logs = ndjson_request(&server, &key, &source_id, "").body(body.clone());
        let response = logs.send().await.unwrap_or_else(|err| panic!("attempt {attempt}: {err:?}"));
        assert_eq!(response.status(), 413, "attempt {attempt}");
        let answer: Value = response.json().await.unwrap();
        assert_eq!(answer["status_code"], 413, "{answer}");
        let otlp = call(&server, Method::POST, "/v1/logs", &key)
            .header("Content-Type", "application/x-protobuf")
            .body(body.clone());
        let response = otlp.send().await.unwrap_or_else(|err| panic!("attempt {attempt}: {err:?}"));
        assert_eq!(response.status(), 413, "attempt {attempt}");
        let status = RpcStatus::decode(response.bytes().await.unwrap()).unwrap();
        assert_eq!(status.code, tonic::Code::ResourceExhausted as i32);
    }
    assert_eq!(server.state.body_budget.held(), 0);
    assert_eq!(count_rows(&db, "logs").await, 0);
}
