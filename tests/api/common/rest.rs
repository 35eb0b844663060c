//! Requests and checks that several API areas share: credentials, sending and reading a
//! JSON answer, error bodies, sources, ingest and a few time helpers.

use std::collections::BTreeSet;

use chrono::{DateTime, SecondsFormat, Utc};
use killkrill::auth::Role;
use reqwest::{Method, RequestBuilder};
use sea_orm::{ConnectionTrait, Statement};
use serde_json::{Value, json};

use crate::common::{TestDb, TestServer, TestUser};

/// 2026-01-01T00:00:00Z: a whole minute, so 60 s buckets from it are round.
pub const T0: i64 = 1_767_225_600;

/// Creates a user with `role` and logs them in.
pub async fn user(server: &TestServer, name: &str, role: Role) -> (TestUser, String) {
    let user = server.create_user(name, &[role]).await;
    let token = server.token(&user).await;
    (user, token)
}

/// A request carrying `cred`: a key (`kk_...` or `kki_...`) goes in `X-API-Key`, anything
/// else is a bearer token, and `""` sends no credentials.
pub fn call(server: &TestServer, method: Method, path: &str, cred: &str) -> RequestBuilder {
    let request = server.client.request(method, server.url(path));
    if cred.is_empty() {
        request
    } else if cred.starts_with("kk") {
        request.header("X-API-Key", cred)
    } else {
        request.bearer_auth(cred)
    }
}

/// `path?k=v&...`, each pair URL-encoded.
pub fn with_query(path: &str, params: &[(&str, &str)]) -> String {
    if params.is_empty() {
        return path.to_owned();
    }
    let query = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(params).finish();
    format!("{path}?{query}")
}

/// Sends `request`; returns the status and the JSON body (`Null` when the body is empty).
pub async fn send(request: RequestBuilder) -> (u16, Value) {
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    if text.is_empty() {
        return (status, Value::Null);
    }
    let body = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{status}: body is not JSON ({e}): {text}"));
    (status, body)
}

/// Sends `request`, asserts it is refused with `expected` and docs/API.md's error body, and
/// returns the fields its `details` name.
pub async fn refused(request: RequestBuilder, expected: u16) -> BTreeSet<String> {
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let correlation_id = response.headers()["x-correlation-id"].to_str().unwrap().to_owned();
    let text = response.text().await.unwrap();
    assert_eq!(status, expected, "{text}");
    let body: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("error body is not JSON ({e}): {text}"));
    let reason = reqwest::StatusCode::from_u16(expected).unwrap().canonical_reason().unwrap();
    assert_eq!(body["error"], reason, "{body}");
    assert_eq!(body["status_code"], expected, "{body}");
    assert_eq!(body["correlation_id"], correlation_id.as_str(), "{body}");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
    body["details"]
        .as_array()
        .map(|details| details.iter().map(|d| d["field"].as_str().unwrap().to_owned()).collect())
        .unwrap_or_default()
}

pub fn fields(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|n| (*n).to_owned()).collect()
}

pub fn rfc3339(seconds: i64) -> String {
    DateTime::from_timestamp(seconds, 0).unwrap().to_rfc3339_opts(SecondsFormat::Secs, true)
}

pub fn instant(value: &Value) -> DateTime<Utc> {
    let text = value.as_str().unwrap_or_else(|| panic!("not a timestamp: {value}"));
    DateTime::parse_from_rfc3339(text).unwrap_or_else(|e| panic!("{text}: {e}")).with_timezone(&Utc)
}

pub fn at(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(seconds, 0).unwrap()
}

/// `before <= t <= after`, allowing for the server storing microseconds only.
pub fn assert_within(t: DateTime<Utc>, before: DateTime<Utc>, after: DateTime<Utc>, what: &str) {
    let slack = chrono::Duration::microseconds(1);
    assert!(before - slack <= t && t <= after + slack, "{what}: {t} is not between {before} and {after}");
}

/// Creates a source (asserting 201) and returns it.
pub async fn create_source(server: &TestServer, token: &str, body: Value) -> Value {
    let (status, source) = send(call(server, Method::POST, "/api/v1/sources", token).json(&body)).await;
    assert_eq!(status, 201, "{source}");
    source
}

/// Creates an `http` source named `name` and returns its id.
pub async fn new_source(server: &TestServer, token: &str, name: &str) -> String {
    let source = create_source(server, token, json!({ "name": name, "type": "http" })).await;
    source["id"].as_str().unwrap().to_owned()
}

pub fn logs_request(server: &TestServer, cred: &str, source_id: &str, logs: Value) -> RequestBuilder {
    call(server, Method::POST, "/api/v1/logs", cred).json(&json!({ "source_id": source_id, "logs": logs }))
}

pub fn ndjson_request(server: &TestServer, cred: &str, source_id: &str, body: &str) -> RequestBuilder {
    call(server, Method::POST, &with_query("/api/v1/logs", &[("source_id", source_id)]), cred)
        .header("Content-Type", "application/x-ndjson")
        .body(body.to_owned())
}

pub fn metrics_request(server: &TestServer, cred: &str, source_id: &str, metrics: Value) -> RequestBuilder {
    call(server, Method::POST, "/api/v1/metrics", cred).json(&json!({ "source_id": source_id, "metrics": metrics }))
}

/// Ingests `logs` and asserts all of them were accepted (stored, none dropped).
pub async fn ingest_logs(server: &TestServer, cred: &str, source_id: &str, logs: Value) {
    let n = logs.as_array().unwrap().len();
    let (status, body) = send(logs_request(server, cred, source_id, logs)).await;
    assert_eq!((status, body), (202, json!({ "accepted": n, "dropped": 0 })));
}

/// Ingests `metrics` and asserts all of them were accepted (stored, none dropped).
pub async fn ingest_metrics(server: &TestServer, cred: &str, source_id: &str, metrics: Value) {
    let n = metrics.as_array().unwrap().len();
    let (status, body) = send(metrics_request(server, cred, source_id, metrics)).await;
    assert_eq!((status, body), (202, json!({ "accepted": n, "dropped": 0 })));
}

/// `GET /api/v1/logs` with `params` (asserting 200).
pub async fn get_logs(server: &TestServer, token: &str, params: &[(&str, &str)]) -> Value {
    let (status, body) = send(call(server, Method::GET, &with_query("/api/v1/logs", params), token)).await;
    assert_eq!(status, 200, "{params:?}: {body}");
    body
}

/// The messages of every log matching `params`, in the order served (one page of 1000).
pub async fn messages(server: &TestServer, token: &str, params: &[(&str, &str)]) -> Vec<String> {
    let mut params = params.to_vec();
    params.push(("limit", "1000"));
    let body = get_logs(server, token, &params).await;
    assert!(body["next_cursor"].is_null(), "more than one page: {body}");
    body["logs"].as_array().unwrap().iter().map(|l| l["message"].as_str().unwrap().to_owned()).collect()
}

/// `GET /api/v1/metrics` with `query` (asserting 200).
pub async fn list_series(server: &TestServer, token: &str, query: &str) -> Value {
    let (status, body) = send(call(server, Method::GET, &format!("/api/v1/metrics{query}"), token)).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// `POST /api/v1/metrics/query` (asserting 200 and the Prometheus envelope); returns
/// `data.result`.
pub async fn range_query(server: &TestServer, token: &str, query: Value) -> Vec<Value> {
    let (status, body) = send(call(server, Method::POST, "/api/v1/metrics/query", token).json(&query)).await;
    assert_eq!(status, 200, "{query}: {body}");
    assert_eq!(body["status"], "success", "{body}");
    assert_eq!(body["data"]["resultType"], "matrix", "{body}");
    body["data"]["result"].as_array().unwrap().clone()
}

/// A result's `values` as (Unix seconds, value), asserting the values are strings.
pub fn points(series: &Value) -> Vec<(f64, f64)> {
    series["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|pair| {
            let ts = pair[0].as_f64().unwrap_or_else(|| panic!("timestamp is not a number: {pair}"));
            let value = pair[1].as_str().unwrap_or_else(|| panic!("value is not a string: {pair}"));
            (ts, value.parse::<f64>().unwrap())
        })
        .collect()
}

pub fn assert_points(actual: &[(f64, f64)], expected: &[(f64, f64)], what: &str) {
    assert_eq!(actual.len(), expected.len(), "{what}: {actual:?} != {expected:?}");
    for ((ts, v), (want_ts, want_v)) in actual.iter().zip(expected) {
        assert_eq!(ts, want_ts, "{what}: {actual:?} != {expected:?}");
        assert!((v - want_v).abs() <= 1e-9 * want_v.abs().max(1.0), "{what}: {actual:?} != {expected:?}");
    }
}

/// Rows of `table`, counted directly in the database.
pub async fn count_rows(db: &TestDb, table: &str) -> i64 {
    let conn = db.connect().await;
    let sql = format!("SELECT COUNT(*) AS n FROM {table}");
    let row = conn.query_one_raw(Statement::from_string(conn.get_database_backend(), sql)).await.unwrap().unwrap();
    let n = row.try_get("", "n").unwrap();
    conn.close().await.unwrap();
    n
}

pub async fn status(request: reqwest::RequestBuilder) -> u16 {
    request.send().await.unwrap().status().as_u16()
}

pub fn sample(name: &str, kind: &str, labels: Value, value: f64, ts: Value) -> Value {
    json!({ "name": name, "type": kind, "labels": labels, "value": value, "timestamp": ts })
}
