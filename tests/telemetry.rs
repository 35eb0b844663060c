//! Sources, ingest keys, logs, metrics, status and runtime configuration, on SQLite,
//! PostgreSQL and MariaDB, through the real server on a real socket. Every expectation is
//! computed here from the data the test itself sends.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, SecondsFormat, Utc};
use common::{Kind, TestDb, TestServer, TestUser};
use killkrill::auth::Role;
use reqwest::{Method, RequestBuilder};
use sea_orm::{ConnectionTrait, Statement};
use serde_json::{Value, json};

on_all_databases!(
    deleting_a_source_deletes_its_metric_series_and_samples,
    deleting_a_source_while_replicas_ingest_into_it,
    an_ingest_key_ingests_metrics_for_its_own_source_only,
    the_series_list_shows_each_series_latest_value,
    range_queries_reduce_each_step_bucket,
    range_queries_accept_rfc3339_unix_seconds_and_durations,
    minute_rollups_answer_as_the_samples_do,
    rollups_are_built_from_samples_stored_before_them,
    five_second_slots_answer_without_the_samples,
    slots_are_built_for_rollups_stored_before_them,
    slots_an_older_replica_left_behind_are_not_used,
    a_metrics_batch_with_one_bad_sample_stores_nothing,
    concurrent_batches_into_the_same_series_all_succeed,
    concurrent_batches_creating_series_all_succeed,
    labels_at_their_limits_are_stored_whole,
    a_log_batch_just_under_the_body_limit_is_stored,
    metric_names_are_case_sensitive,
    source_names_and_types_match_exactly,
    a_message_of_exactly_64_kib_is_stored,
    a_config_of_exactly_64_kib_is_stored,
    text_search_matches_non_ascii_text,
    a_deleted_sources_ingest_key_is_refused_at_once,
    admin_config_sets_the_log_level_and_is_audited,
    creating_a_source_returns_every_field_and_its_location,
    invalid_sources_are_refused_naming_each_bad_field,
    source_names_are_unique_even_when_created_concurrently,
    unknown_and_malformed_source_ids_are_404,
    put_changes_only_the_fields_it_is_given,
    a_deleted_source_is_gone,
    sources_list_with_filters_and_pagination,
    viewers_read_but_only_maintainers_change_or_ingest,
    deleting_a_source_deletes_its_keys_and_logs,
    ingest_keys_are_shown_once_and_listed_by_prefix,
    an_ingest_key_only_ingests_for_its_own_source,
    allowed_cidrs_bound_where_an_ingest_key_may_ingest_from,
    a_deleted_ingest_key_is_refused_at_once,
    a_disabled_source_refuses_ingest,
    logs_ingest_as_json_batches_and_ndjson,
    a_log_batch_with_one_bad_entry_stores_nothing,
    a_full_log_batch_is_stored_whole_and_one_more_entry_is_refused,
    log_queries_filter_by_source_level_time_and_text,
    log_pages_visit_every_entry_exactly_once,
    the_log_cursor_is_stable_while_logs_arrive,
    invalid_range_queries_are_refused,
    status_describes_the_service_and_the_caller,
    admin_config_is_for_admins_only,
);

/// 2026-01-01T00:00:00Z: a whole minute, so 60 s buckets from it are round.
const T0: i64 = 1_767_225_600;

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// Creates a user with `role` and logs them in.
async fn user(server: &TestServer, name: &str, role: Role) -> (TestUser, String) {
    let user = server.create_user(name, &[role]).await;
    let token = server.token(&user).await;
    (user, token)
}

/// A request carrying `cred`: a key (`kk_...` or `kki_...`) goes in `X-API-Key`, anything
/// else is a bearer token, and `""` sends no credentials.
fn call(server: &TestServer, method: Method, path: &str, cred: &str) -> RequestBuilder {
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
fn with_query(path: &str, params: &[(&str, &str)]) -> String {
    if params.is_empty() {
        return path.to_owned();
    }
    let query = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(params).finish();
    format!("{path}?{query}")
}

/// Sends `request`; returns the status and the JSON body (`Null` when the body is empty).
async fn send(request: RequestBuilder) -> (u16, Value) {
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
async fn refused(request: RequestBuilder, expected: u16) -> BTreeSet<String> {
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

fn fields(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|n| (*n).to_owned()).collect()
}

fn rfc3339(seconds: i64) -> String {
    DateTime::from_timestamp(seconds, 0).unwrap().to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn instant(value: &Value) -> DateTime<Utc> {
    let text = value.as_str().unwrap_or_else(|| panic!("not a timestamp: {value}"));
    DateTime::parse_from_rfc3339(text).unwrap_or_else(|e| panic!("{text}: {e}")).with_timezone(&Utc)
}

fn at(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(seconds, 0).unwrap()
}

/// `before <= t <= after`, allowing for the server storing microseconds only.
fn assert_within(t: DateTime<Utc>, before: DateTime<Utc>, after: DateTime<Utc>, what: &str) {
    let slack = chrono::Duration::microseconds(1);
    assert!(before - slack <= t && t <= after + slack, "{what}: {t} is not between {before} and {after}");
}

/// Creates a source (asserting 201) and returns it.
async fn create_source(server: &TestServer, token: &str, body: Value) -> Value {
    let (status, source) = send(call(server, Method::POST, "/api/v1/sources", token).json(&body)).await;
    assert_eq!(status, 201, "{source}");
    source
}

/// Creates an `http` source named `name` and returns its id.
async fn new_source(server: &TestServer, token: &str, name: &str) -> String {
    let source = create_source(server, token, json!({ "name": name, "type": "http" })).await;
    source["id"].as_str().unwrap().to_owned()
}

async fn get_source(server: &TestServer, token: &str, id: &str) -> Value {
    let (status, source) = send(call(server, Method::GET, &format!("/api/v1/sources/{id}"), token)).await;
    assert_eq!(status, 200, "{source}");
    source
}

fn put_source(server: &TestServer, token: &str, id: &str, body: Value) -> RequestBuilder {
    call(server, Method::PUT, &format!("/api/v1/sources/{id}"), token).json(&body)
}

/// Lists sources with `query` (asserting 200).
async fn list_sources(server: &TestServer, token: &str, query: &str) -> Value {
    let (status, body) = send(call(server, Method::GET, &format!("/api/v1/sources{query}"), token)).await;
    assert_eq!(status, 200, "{body}");
    body
}

fn source_names(listing: &Value) -> BTreeSet<String> {
    listing["sources"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap().to_owned()).collect()
}

fn logs_request(server: &TestServer, cred: &str, source_id: &str, logs: Value) -> RequestBuilder {
    call(server, Method::POST, "/api/v1/logs", cred).json(&json!({ "source_id": source_id, "logs": logs }))
}

fn ndjson_request(server: &TestServer, cred: &str, source_id: &str, body: &str) -> RequestBuilder {
    call(server, Method::POST, &with_query("/api/v1/logs", &[("source_id", source_id)]), cred)
        .header("Content-Type", "application/x-ndjson")
        .body(body.to_owned())
}

fn metrics_request(server: &TestServer, cred: &str, source_id: &str, metrics: Value) -> RequestBuilder {
    call(server, Method::POST, "/api/v1/metrics", cred).json(&json!({ "source_id": source_id, "metrics": metrics }))
}

/// Ingests `logs` and asserts all of them were accepted.
async fn ingest_logs(server: &TestServer, cred: &str, source_id: &str, logs: Value) {
    let n = logs.as_array().unwrap().len();
    let (status, body) = send(logs_request(server, cred, source_id, logs)).await;
    assert_eq!((status, body), (202, json!({ "accepted": n })));
}

/// Ingests `metrics` and asserts all of them were accepted.
async fn ingest_metrics(server: &TestServer, cred: &str, source_id: &str, metrics: Value) {
    let n = metrics.as_array().unwrap().len();
    let (status, body) = send(metrics_request(server, cred, source_id, metrics)).await;
    assert_eq!((status, body), (202, json!({ "accepted": n })));
}

/// Query parameters of a log read.
type Params<'a> = Vec<(&'a str, &'a str)>;

/// `GET /api/v1/logs` with `params` (asserting 200).
async fn get_logs(server: &TestServer, token: &str, params: &[(&str, &str)]) -> Value {
    let (status, body) = send(call(server, Method::GET, &with_query("/api/v1/logs", params), token)).await;
    assert_eq!(status, 200, "{params:?}: {body}");
    body
}

/// The messages of every log matching `params`, in the order served (one page of 1000).
async fn messages(server: &TestServer, token: &str, params: &[(&str, &str)]) -> Vec<String> {
    let mut params = params.to_vec();
    params.push(("limit", "1000"));
    let body = get_logs(server, token, &params).await;
    assert!(body["next_cursor"].is_null(), "more than one page: {body}");
    body["logs"].as_array().unwrap().iter().map(|l| l["message"].as_str().unwrap().to_owned()).collect()
}

/// One page of logs: its entries and the cursor of the next page.
async fn log_page(
    server: &TestServer,
    token: &str,
    params: &[(&str, &str)],
    limit: u64,
    cursor: Option<&str>,
) -> (Vec<Value>, Option<String>) {
    let limit_text = limit.to_string();
    let mut params = params.to_vec();
    params.push(("limit", limit_text.as_str()));
    if let Some(cursor) = cursor {
        params.push(("cursor", cursor));
    }
    let body = get_logs(server, token, &params).await;
    assert_eq!(body["limit"], limit);
    let logs = body["logs"].as_array().unwrap().clone();
    assert!(logs.len() as u64 <= limit, "{} entries on a page of {limit}", logs.len());
    (logs, body["next_cursor"].as_str().map(str::to_owned))
}

/// Every log matching `params`, following `next_cursor` from the first page to the last.
async fn all_pages(server: &TestServer, token: &str, params: &[(&str, &str)], limit: u64) -> Vec<Value> {
    let mut entries = Vec::new();
    let mut cursor = None;
    for _ in 0..1000 {
        let (page, next) = log_page(server, token, params, limit, cursor.as_deref()).await;
        entries.extend(page);
        match next {
            Some(next) => cursor = Some(next),
            None => return entries,
        }
    }
    panic!("the cursor never reached the last page");
}

fn message_of(entry: &Value) -> String {
    entry["message"].as_str().unwrap().to_owned()
}

/// `GET /api/v1/metrics` with `query` (asserting 200).
async fn list_series(server: &TestServer, token: &str, query: &str) -> Value {
    let (status, body) = send(call(server, Method::GET, &format!("/api/v1/metrics{query}"), token)).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// `POST /api/v1/metrics/query` (asserting 200 and the Prometheus envelope); returns
/// `data.result`.
async fn range_query(server: &TestServer, token: &str, query: Value) -> Vec<Value> {
    let (status, body) = send(call(server, Method::POST, "/api/v1/metrics/query", token).json(&query)).await;
    assert_eq!(status, 200, "{query}: {body}");
    assert_eq!(body["status"], "success", "{body}");
    assert_eq!(body["data"]["resultType"], "matrix", "{body}");
    body["data"]["result"].as_array().unwrap().clone()
}

/// A result's `values` as (Unix seconds, value), asserting the values are strings.
fn points(series: &Value) -> Vec<(f64, f64)> {
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

/// What a range query must answer for one series' samples `(unix seconds, value)`:
/// step-wide buckets from `start`, samples in `[start, end]`, empty buckets omitted.
fn expected_points(samples: &[(f64, f64)], start: i64, end: i64, step: i64, aggregation: &str) -> Vec<(f64, f64)> {
    let micros = |s: f64| (s * 1e6).round() as i64;
    let (start_us, end_us, step_us) = (start * 1_000_000, end * 1_000_000, step * 1_000_000);
    let mut buckets: BTreeMap<i64, Vec<f64>> = BTreeMap::new();
    for &(ts, value) in samples {
        let ts = micros(ts);
        if (start_us..=end_us).contains(&ts) {
            buckets.entry((ts - start_us) / step_us).or_default().push(value);
        }
    }
    buckets
        .into_iter()
        .map(|(k, values)| {
            let sum: f64 = values.iter().sum();
            let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let min = values.iter().copied().fold(f64::INFINITY, f64::min);
            let value = match aggregation {
                "avg" => sum / values.len() as f64,
                "sum" => sum,
                "min" => min,
                "max" => max,
                "count" => values.len() as f64,
                "rate" => (max - min) / step as f64,
                other => panic!("no such aggregation {other}"),
            };
            ((start + k * step) as f64, value)
        })
        .collect()
}

fn assert_points(actual: &[(f64, f64)], expected: &[(f64, f64)], what: &str) {
    assert_eq!(actual.len(), expected.len(), "{what}: {actual:?} != {expected:?}");
    for ((ts, v), (want_ts, want_v)) in actual.iter().zip(expected) {
        assert_eq!(ts, want_ts, "{what}: {actual:?} != {expected:?}");
        assert!((v - want_v).abs() <= 1e-9 * want_v.abs().max(1.0), "{what}: {actual:?} != {expected:?}");
    }
}

/// Rows of `table`, counted directly in the database.
async fn count_rows(db: &TestDb, table: &str) -> i64 {
    let conn = db.connect().await;
    let sql = format!("SELECT COUNT(*) AS n FROM {table}");
    let row = conn.query_one_raw(Statement::from_string(conn.get_database_backend(), sql)).await.unwrap().unwrap();
    let n = row.try_get("", "n").unwrap();
    conn.close().await.unwrap();
    n
}

// ---------------------------------------------------------------------------------------
// Sources
// ---------------------------------------------------------------------------------------

async fn creating_a_source_returns_every_field_and_its_location(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let (mia, token) = user(&server, "mia", Role::Maintainer).await;
    let body = json!({
        "name": "edge-routers",
        "type": "syslog",
        "description": "Syslog of the edge routers",
        "enabled": true,
        "config": { "port": 514, "protocol": "udp", "tags": ["edge", "net"] },
        "allowed_cidrs": ["10.0.0.0/8", "192.168.1.0/24"],
    });
    let before = Utc::now();
    let response = call(&server, Method::POST, "/api/v1/sources", &token).json(&body).send().await.unwrap();
    let after = Utc::now();
    assert_eq!(response.status(), 201);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let source: Value = response.json().await.unwrap();

    let id = source["id"].as_str().unwrap();
    assert!(uuid::Uuid::parse_str(id).is_ok(), "id is not a UUID: {id}");
    assert_eq!(location, format!("/api/v1/sources/{id}"));
    assert_eq!(source["name"], "edge-routers");
    assert_eq!(source["type"], "syslog");
    assert_eq!(source["description"], "Syslog of the edge routers");
    assert_eq!(source["enabled"], true);
    assert_eq!(source["config"], body["config"]);
    assert_eq!(source["allowed_cidrs"], body["allowed_cidrs"]);
    assert_eq!(source["created_by"], mia.id.as_str());
    assert_within(instant(&source["created_at"]), before, after, "created_at");
    assert_eq!(source["updated_at"], source["created_at"]);

    // The Location serves the same source.
    let (status, fetched) = send(call(&server, Method::GET, &location, &token)).await;
    assert_eq!(status, 200);
    assert_eq!(fetched, source);

    // Only name and type are required; the rest have defaults.
    let minimal = create_source(&server, &token, json!({ "name": "minimal", "type": "otlp" })).await;
    assert_eq!(minimal["description"], "");
    assert_eq!(minimal["enabled"], true);
    assert_eq!(minimal["config"], json!({}));
    assert_eq!(minimal["allowed_cidrs"], json!([]));
    assert_ne!(minimal["id"], source["id"]);
    server.stop().await.unwrap();
}

async fn invalid_sources_are_refused_naming_each_bad_field(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let (_, token) = user(&server, "mia", Role::Maintainer).await;
    let long_name = "n".repeat(129);
    let cases: Vec<(Value, &[&str])> = vec![
        (json!({ "name": "", "type": "http" }), &["name"]),
        (json!({ "name": long_name, "type": "http" }), &["name"]),
        (json!({ "type": "http" }), &["name"]),
        (json!({ "name": "ok", "type": "carrier-pigeon" }), &["type"]),
        (json!({ "name": "bell\u{7}", "type": "http" }), &["name"]),
        (json!({ "name": "ok" }), &["type"]),
        (json!({ "name": "ok", "type": "http", "config": [1, 2] }), &["config"]),
        (json!({ "name": "ok", "type": "http", "config": "port=514" }), &["config"]),
        (json!({ "name": "ok", "type": "http", "allowed_cidrs": ["10.0.0.0/33"] }), &["allowed_cidrs"]),
        (
            json!({ "name": "ok", "type": "http", "allowed_cidrs": ["10.0.0.0/8", "not-an-address"] }),
            &["allowed_cidrs"],
        ),
        (
            json!({ "name": "", "type": "nope", "config": 7, "allowed_cidrs": ["1.2.3.4/99"] }),
            &["name", "type", "config", "allowed_cidrs"],
        ),
    ];
    for (body, bad) in cases {
        let named = refused(call(&server, Method::POST, "/api/v1/sources", &token).json(&body), 400).await;
        assert_eq!(named, fields(bad), "{body}");
    }
    // Not JSON at all, or an unknown field.
    let text = call(&server, Method::POST, "/api/v1/sources", &token)
        .header("Content-Type", "text/plain")
        .body(r#"{"name": "ok", "type": "http"}"#);
    refused(text, 415).await;
    let extra = json!({ "name": "ok", "type": "http", "owner": "someone-else" });
    refused(call(&server, Method::POST, "/api/v1/sources", &token).json(&extra), 400).await;
    let malformed = call(&server, Method::POST, "/api/v1/sources", &token)
        .header("Content-Type", "application/json")
        .body(r#"{"name": "ok", "#);
    refused(malformed, 400).await;
    let nul = call(&server, Method::POST, "/api/v1/sources", &token)
        .header("Content-Type", "application/json")
        .body(r#"{"name": "a\u0000b", "type": "http"}"#);
    refused(nul, 400).await;
    assert_eq!(list_sources(&server, &token, "").await["total"], 0, "a refused source was stored");

    // 128 characters is still a valid name.
    let longest = create_source(&server, &token, json!({ "name": "n".repeat(128), "type": "http" })).await;
    assert_eq!(longest["name"].as_str().unwrap().chars().count(), 128);
    // At most 256 CIDRs (a longer list overflowed MariaDB's column, and outside strict
    // mode was cut to nothing: no restriction at all).
    let cidrs: Vec<String> = (1..=257).map(|n| format!("2001:db8:{n:x}::/48")).collect();
    let body = json!({ "name": "many-cidrs", "type": "http", "allowed_cidrs": cidrs });
    let named = refused(call(&server, Method::POST, "/api/v1/sources", &token).json(&body), 400).await;
    assert_eq!(named, fields(&["allowed_cidrs"]));
    let body = json!({ "name": "many-cidrs", "type": "http", "allowed_cidrs": cidrs[..256] });
    let created = create_source(&server, &token, body).await;
    assert_eq!(created["allowed_cidrs"], json!(cidrs[..256]));
    let id = created["id"].as_str().unwrap();
    assert_eq!(get_source(&server, &token, id).await["allowed_cidrs"], json!(cidrs[..256]));
    server.stop().await.unwrap();
}

async fn source_names_are_unique_even_when_created_concurrently(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let (_, token) = user(&server, "mia", Role::Maintainer).await;
    create_source(&server, &token, json!({ "name": "web", "type": "http" })).await;
    let again = json!({ "name": "web", "type": "syslog" });
    refused(call(&server, Method::POST, "/api/v1/sources", &token).json(&again), 409).await;

    for round in 0..5 {
        let body = json!({ "name": format!("race-{round}"), "type": "http" });
        let first = call(&server, Method::POST, "/api/v1/sources", &token).json(&body).send();
        let second = call(&server, Method::POST, "/api/v1/sources", &token).json(&body).send();
        let (first, second) = tokio::join!(first, second);
        let mut statuses = [first.unwrap().status().as_u16(), second.unwrap().status().as_u16()];
        statuses.sort_unstable();
        assert_eq!(statuses, [201, 409], "round {round}");
    }
    let listing = list_sources(&server, &token, "").await;
    assert_eq!(listing["total"], 6);
    let expected: BTreeSet<String> =
        ["web", "race-0", "race-1", "race-2", "race-3", "race-4"].iter().map(|n| (*n).to_owned()).collect();
    assert_eq!(source_names(&listing), expected);
    server.stop().await.unwrap();
}

async fn unknown_and_malformed_source_ids_are_404(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let (_, token) = user(&server, "mia", Role::Maintainer).await;
    let exists = new_source(&server, &token, "exists").await;
    // A trailing space named the source on MariaDB (its collations ignore one).
    let padded = format!("{exists}%20");
    for id in [uuid::Uuid::new_v4().to_string(), "not-a-uuid".to_owned(), "42".to_owned(), padded] {
        let path = format!("/api/v1/sources/{id}");
        let response = call(&server, Method::GET, &path, &token).send().await.unwrap();
        assert_eq!(response.status(), 404, "GET {path}");
        let body: Value = response.json().await.unwrap();
        assert!(body["message"].as_str().unwrap().contains(id.trim_end_matches("%20")), "{body}");
        refused(call(&server, Method::GET, &path, &token), 404).await;
        refused(put_source(&server, &token, &id, json!({ "description": "x" })), 404).await;
        refused(call(&server, Method::DELETE, &path, &token), 404).await;
        refused(call(&server, Method::GET, &format!("{path}/keys"), &token), 404).await;
        let key = call(&server, Method::POST, &format!("{path}/keys"), &token).json(&json!({ "name": "k" }));
        refused(key, 404).await;
    }
    assert_eq!(list_sources(&server, &token, "").await["total"], 1);
    // Ids are UUIDs in any case: an upper-case id names the same source, everywhere.
    let upper = exists.to_uppercase();
    assert_eq!(get_source(&server, &token, &upper).await["id"], exists.as_str());
    let (key_id, key) = server.create_ingest_key(&token, &upper).await;
    ingest_logs(&server, &key, &upper, json!([{ "message": "upper" }])).await;
    assert_eq!(messages(&server, &token, &[("source_id", upper.as_str())]).await, ["upper"]);
    let path = format!("/api/v1/sources/{upper}/keys/{}", key_id.to_uppercase());
    assert_eq!(send(call(&server, Method::DELETE, &path, &token)).await.0, 204);
    // A filter that is not a UUID is refused rather than matched loosely.
    for filter in ["/api/v1/logs?source_id=nope", &format!("/api/v1/logs?source_id={exists}%20")] {
        assert_eq!(refused(call(&server, Method::GET, filter, &token), 400).await, fields(&["source_id"]), "{filter}");
    }
    let series = call(&server, Method::GET, &format!("/api/v1/metrics?source_id={exists}%20"), &token);
    assert_eq!(refused(series, 400).await, fields(&["source_id"]));
    server.stop().await.unwrap();
}

async fn put_changes_only_the_fields_it_is_given(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let (_, token) = user(&server, "mia", Role::Maintainer).await;
    let original = create_source(
        &server,
        &token,
        json!({
            "name": "app-logs",
            "type": "http",
            "description": "App",
            "config": { "format": "json" },
            "allowed_cidrs": ["10.0.0.0/8"],
        }),
    )
    .await;
    let id = original["id"].as_str().unwrap().to_owned();
    new_source(&server, &token, "taken").await;

    // Each PUT changes its fields and updated_at, nothing else.
    let changes = [
        json!({ "description": "Application logs" }),
        json!({ "enabled": false, "config": { "format": "logfmt", "port": 8080 } }),
        json!({ "type": "file", "allowed_cidrs": [] }),
        json!({ "name": "app-logs-v2" }),
    ];
    let mut current = original.clone();
    for change in changes {
        let (status, updated) = send(put_source(&server, &token, &id, change.clone())).await;
        assert_eq!(status, 200, "{change}: {updated}");
        let mut expected = current.clone();
        for (field, value) in change.as_object().unwrap() {
            expected[field] = value.clone();
        }
        expected["updated_at"] = updated["updated_at"].clone();
        assert_eq!(updated, expected, "{change}");
        assert!(instant(&updated["updated_at"]) > instant(&current["updated_at"]), "{change}: updated_at did not move");
        assert_eq!(get_source(&server, &token, &id).await, updated);
        current = updated;
    }
    assert_eq!(current["created_at"], original["created_at"]);
    assert_eq!(current["created_by"], original["created_by"]);

    // A rename onto another source's name, or an invalid value, changes nothing.
    refused(put_source(&server, &token, &id, json!({ "name": "taken" })), 409).await;
    let named = refused(put_source(&server, &token, &id, json!({ "type": "bogus", "config": [] })), 400).await;
    assert_eq!(named, fields(&["type", "config"]));
    assert_eq!(refused(put_source(&server, &token, &id, json!({ "name": "" })), 400).await, fields(&["name"]));
    assert_eq!(get_source(&server, &token, &id).await, current);
    server.stop().await.unwrap();
}

async fn a_deleted_source_is_gone(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let (_, token) = user(&server, "mia", Role::Maintainer).await;
    let id = new_source(&server, &token, "short-lived").await;
    let survivor = new_source(&server, &token, "survivor").await;
    let path = format!("/api/v1/sources/{id}");
    let response = call(&server, Method::DELETE, &path, &token).send().await.unwrap();
    assert_eq!(response.status(), 204);
    assert_eq!(response.text().await.unwrap(), "");
    refused(call(&server, Method::GET, &path, &token), 404).await;
    refused(call(&server, Method::DELETE, &path, &token), 404).await;
    let listing = list_sources(&server, &token, "").await;
    assert_eq!(listing["total"], 1);
    assert_eq!(listing["sources"][0]["id"], survivor.as_str());
    server.stop().await.unwrap();
}

async fn sources_list_with_filters_and_pagination(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let (_, token) = user(&server, "mia", Role::Maintainer).await;
    let specs = [
        ("alpha", "syslog", true),
        ("bravo", "http", false),
        ("charlie", "syslog", false),
        ("delta", "prometheus", true),
        ("echo", "syslog", true),
    ];
    for (name, kind, enabled) in specs {
        create_source(&server, &token, json!({ "name": name, "type": kind, "enabled": enabled })).await;
    }
    let expect = |filter: &dyn Fn(&(&str, &str, bool)) -> bool| -> BTreeSet<String> {
        specs.iter().filter(|s| filter(s)).map(|s| s.0.to_owned()).collect()
    };
    let cases: Vec<(&str, BTreeSet<String>)> = vec![
        ("", expect(&|_| true)),
        ("?type=syslog", expect(&|s| s.1 == "syslog")),
        ("?enabled=false", expect(&|s| !s.2)),
        ("?enabled=true", expect(&|s| s.2)),
        ("?type=syslog&enabled=true", expect(&|s| s.1 == "syslog" && s.2)),
        ("?type=otlp", BTreeSet::new()),
    ];
    for (query, names) in cases {
        let listing = list_sources(&server, &token, query).await;
        assert_eq!(source_names(&listing), names, "{query}");
        assert_eq!(listing["total"], names.len(), "{query}");
        assert_eq!(listing["limit"], 50, "{query}");
        assert_eq!(listing["offset"], 0, "{query}");
    }

    // Pages of two visit every source once.
    let mut seen = Vec::new();
    for (offset, size) in [(0, 2), (2, 2), (4, 1), (6, 0)] {
        let listing = list_sources(&server, &token, &format!("?limit=2&offset={offset}")).await;
        assert_eq!(listing["total"], 5);
        assert_eq!(listing["limit"], 2);
        assert_eq!(listing["offset"], offset);
        let page = listing["sources"].as_array().unwrap();
        assert_eq!(page.len(), size, "offset {offset}");
        seen.extend(page.iter().map(|s| s["name"].as_str().unwrap().to_owned()));
    }
    assert_eq!(seen.len(), 5, "{seen:?}");
    assert_eq!(seen.into_iter().collect::<BTreeSet<_>>(), expect(&|_| true));
    let filtered_page = list_sources(&server, &token, "?type=syslog&limit=2&offset=2").await;
    assert_eq!(filtered_page["total"], 3);
    assert_eq!(filtered_page["sources"].as_array().unwrap().len(), 1);

    // The largest offset the databases take is an empty page; one more is refused, not a panic.
    let far = list_sources(&server, &token, &format!("?offset={}", i64::MAX)).await;
    assert_eq!((far["total"].as_u64(), far["sources"].as_array().map(Vec::len)), (Some(5), Some(0)), "{far}");
    for (query, field) in [
        ("?limit=0", Some("limit")),
        ("?limit=1001", Some("limit")),
        ("?enabled=maybe", Some("enabled")),
        ("?type=carrier-pigeon", Some("type")),
        ("?type=SYSLOG", Some("type")),
        ("?offset=9223372036854775808", Some("offset")),
        ("?offset=18446744073709551615", Some("offset")),
    ] {
        let named = refused(call(&server, Method::GET, &format!("/api/v1/sources{query}"), &token), 400).await;
        assert_eq!(named, fields(&[field.unwrap()]), "{query}");
    }
    for query in ["?limit=abc", "?offset=-1", "?limit=-5"] {
        refused(call(&server, Method::GET, &format!("/api/v1/sources{query}"), &token), 400).await;
    }
    server.stop().await.unwrap();
}

async fn viewers_read_but_only_maintainers_change_or_ingest(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let (_, mia) = user(&server, "mia", Role::Maintainer).await;
    let (_, vic) = user(&server, "vic", Role::Viewer).await;
    let source = create_source(&server, &mia, json!({ "name": "shared", "type": "http" })).await;
    let id = source["id"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/sources/{id}");
    ingest_logs(&server, &mia, &id, json!([{ "message": "written by a maintainer" }])).await;

    // A viewer reads sources, logs and metrics ...
    assert_eq!(list_sources(&server, &vic, "").await["total"], 1);
    assert_eq!(get_source(&server, &vic, &id).await, source);
    assert_eq!(messages(&server, &vic, &[("source_id", id.as_str())]).await, ["written by a maintainer"]);
    assert_eq!(list_series(&server, &vic, "").await["total"], 0);
    let query = json!({ "metric": "up", "start": T0, "end": T0 + 60, "step": 60, "aggregation": "max" });
    assert_eq!(range_query(&server, &vic, query).await, Vec::<Value>::new());

    // ... and changes nothing.
    let create = call(&server, Method::POST, "/api/v1/sources", &vic).json(&json!({ "name": "mine", "type": "http" }));
    refused(create, 403).await;
    refused(put_source(&server, &vic, &id, json!({ "name": "hijacked" })), 403).await;
    refused(call(&server, Method::DELETE, &path, &vic), 403).await;
    refused(call(&server, Method::GET, &format!("{path}/keys"), &vic), 403).await;
    refused(call(&server, Method::POST, &format!("{path}/keys"), &vic).json(&json!({ "name": "k" })), 403).await;
    refused(logs_request(&server, &vic, &id, json!([{ "message": "sneaky" }])), 403).await;
    refused(metrics_request(&server, &vic, &id, json!([{ "name": "up", "value": 0 }])), 403).await;
    // Refused for the role before the body is read: a malformed or invalid body gets the
    // same 403, never a 400 describing what the body should be.
    for (method, path) in [
        (Method::POST, "/api/v1/sources".to_owned()),
        (Method::PUT, path.clone()),
        (Method::POST, format!("{path}/keys")),
        (Method::POST, "/api/v1/logs".to_owned()),
        (Method::POST, "/api/v1/metrics".to_owned()),
        (Method::PUT, "/api/v1/admin/config".to_owned()),
        (Method::POST, "/api/v1/users".to_owned()),
    ] {
        for body in [r#"{"name": "#, r#"{"unknown": 1}"#] {
            let request =
                call(&server, method.clone(), &path, &vic).header("Content-Type", "application/json").body(body);
            let (status, answer) = send(request).await;
            assert_eq!(status, 403, "{method} {path} {body}: {answer}");
        }
    }
    assert_eq!(get_source(&server, &mia, &id).await, source);
    assert_eq!(list_sources(&server, &mia, "").await["total"], 1);
    assert_eq!(messages(&server, &mia, &[("source_id", id.as_str())]).await, ["written by a maintainer"]);

    // Without credentials nothing at all.
    for (method, path) in [
        (Method::GET, "/api/v1/sources".to_owned()),
        (Method::GET, path.clone()),
        (Method::POST, "/api/v1/sources".to_owned()),
        (Method::GET, "/api/v1/logs".to_owned()),
        (Method::GET, "/api/v1/metrics".to_owned()),
    ] {
        let response = call(&server, method.clone(), &path, "").send().await.unwrap();
        assert_eq!(response.status(), 401, "{method} {path}");
        assert_eq!(response.headers()["www-authenticate"], "Bearer", "{method} {path}");
    }
    server.stop().await.unwrap();
}

async fn deleting_a_source_deletes_its_keys_and_logs(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let (_, mia) = user(&server, "mia", Role::Maintainer).await;
    let doomed = new_source(&server, &mia, "doomed").await;
    let kept = new_source(&server, &mia, "kept").await;
    let (_, key) = server.create_ingest_key(&mia, &doomed).await;
    let (_, kept_key) = server.create_ingest_key(&mia, &kept).await;
    let logs = json!([{ "message": "one" }, { "message": "two" }, { "message": "three" }]);
    ingest_logs(&server, &key, &doomed, logs).await;
    ingest_logs(&server, &kept_key, &kept, json!([{ "message": "kept" }])).await;
    assert_eq!(messages(&server, &mia, &[("source_id", doomed.as_str())]).await.len(), 3);

    let response = call(&server, Method::DELETE, &format!("/api/v1/sources/{doomed}"), &mia).send().await.unwrap();
    assert_eq!(response.status(), 204);

    assert_eq!(messages(&server, &mia, &[("source_id", doomed.as_str())]).await, Vec::<String>::new());
    refused(call(&server, Method::GET, &format!("/api/v1/sources/{doomed}/keys"), &mia), 404).await;
    // Its key is refused like any unknown key (once the 2 s ingest-key cache has
    // passed: `a_deleted_sources_ingest_key_is_refused_at_once` asks for it at once).
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    refused(logs_request(&server, &key, &doomed, json!([{ "message": "zombie" }])), 401).await;
    refused(metrics_request(&server, &key, &doomed, json!([{ "name": "up", "value": 1 }])), 401).await;

    // The other source keeps its logs and its key.
    assert_eq!(messages(&server, &mia, &[("source_id", kept.as_str())]).await, ["kept"]);
    ingest_logs(&server, &kept_key, &kept, json!([{ "message": "still here" }])).await;
    // Nothing is left behind in the tables either.
    assert_eq!(count_rows(&db, "logs").await, 2);
    assert_eq!(count_rows(&db, "ingest_keys").await, 1);
    server.stop().await.unwrap();
}

async fn deleting_a_source_deletes_its_metric_series_and_samples(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let (_, mia) = user(&server, "mia", Role::Maintainer).await;
    let doomed = new_source(&server, &mia, "doomed").await;
    let kept = new_source(&server, &mia, "kept").await;
    let depth = |queue: &str, value: f64| json!({ "name": "queue_depth", "labels": { "queue": queue }, "value": value, "timestamp": T0 });
    ingest_metrics(&server, &mia, &doomed, json!([depth("a", 1.0), depth("b", 2.0), depth("b", 3.0)])).await;
    ingest_metrics(&server, &mia, &kept, json!([depth("a", 7.0)])).await;
    assert_eq!(list_series(&server, &mia, &format!("?source_id={doomed}")).await["total"], 2);

    let response = call(&server, Method::DELETE, &format!("/api/v1/sources/{doomed}"), &mia).send().await.unwrap();
    assert_eq!(response.status(), 204);

    let series = list_series(&server, &mia, &format!("?source_id={doomed}")).await;
    assert_eq!(series["total"], 0, "{series}");
    // The other source keeps its series: the same name and labels answer only its value.
    assert_eq!(list_series(&server, &mia, "").await["total"], 1);
    let query = json!({ "metric": "queue_depth", "start": T0, "end": T0, "step": 60, "aggregation": "sum" });
    let result = range_query(&server, &mia, query).await;
    assert_eq!(result.len(), 1, "{result:?}");
    assert_points(&points(&result[0]), &[(T0 as f64, 7.0)], "kept's queue_depth");
    // The samples went with their series.
    assert_eq!(count_rows(&db, "metric_series").await, 1);
    assert_eq!(count_rows(&db, "metric_samples").await, 1);
    assert_eq!(count_rows(&db, "metric_rollups").await, 1);
    server.stop().await.unwrap();
}

/// Two replicas ingest logs and metrics into a source while a third request deletes it:
/// the deletion succeeds (PostgreSQL deadlocked it: 500 in 6 of 10 trials) and every
/// ingest is stored (202) or finds the source gone (404), never a 500 from the rows'
/// foreign key; nothing is left behind.
async fn deleting_a_source_while_replicas_ingest_into_it(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let replica = TestServer::start(db.config()).await;
    let (_, mia) = user(&server, "mia", Role::Maintainer).await;
    let id = new_source(&server, &mia, "doomed").await;
    let done = std::sync::atomic::AtomicBool::new(false);
    let worker = |to: &'static str, n: usize| {
        let (server, done, id, mia) = (if to == "a" { &server } else { &replica }, &done, &id, &mia);
        async move {
            let mut answers = Vec::new();
            let mut round = 0;
            while !done.load(std::sync::atomic::Ordering::SeqCst) || round < 3 {
                round += 1;
                let request = if n.is_multiple_of(2) {
                    let logs: Vec<Value> = (0..50).map(|i| json!({ "message": format!("{n}-{round}-{i}") })).collect();
                    logs_request(server, mia, id, json!(logs))
                } else {
                    let samples: Vec<Value> = (0..50)
                        .map(|i| {
                            sample(
                                "doomed_total",
                                "counter",
                                json!({ "i": format!("{n}-{i}") }),
                                1.0,
                                json!(T0 + round),
                            )
                        })
                        .collect();
                    metrics_request(server, mia, id, json!(samples))
                };
                answers.push(send(request).await.0);
            }
            answers
        }
    };
    let deletion = async {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let answer = send(call(&server, Method::DELETE, &format!("/api/v1/sources/{id}"), &mia)).await.0;
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        answer
    };
    let (deleted, a0, a1, b0, b1) =
        tokio::join!(deletion, worker("a", 0), worker("a", 1), worker("b", 2), worker("b", 3));
    assert_eq!(deleted, 204);
    let answers: Vec<u16> = [a0, a1, b0, b1].concat();
    assert!(answers.iter().all(|s| *s == 202 || *s == 404), "{answers:?}");
    assert!(answers.contains(&202) && answers.contains(&404), "{answers:?}");
    for table in ["logs", "metric_series", "metric_samples", "sources"] {
        assert_eq!(count_rows(&db, table).await, 0, "{table}");
    }
    replica.stop().await.unwrap();
    server.stop().await.unwrap();
}

async fn a_deleted_sources_ingest_key_is_refused_at_once(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let (_, mia) = user(&server, "mia", Role::Maintainer).await;
    let id = new_source(&server, &mia, "doomed").await;
    let (_, key) = server.create_ingest_key(&mia, &id).await;
    ingest_logs(&server, &key, &id, json!([{ "message": "last words" }])).await;
    let response = call(&server, Method::DELETE, &format!("/api/v1/sources/{id}"), &mia).send().await.unwrap();
    assert_eq!(response.status(), 204);
    // The key went with its source, as a deleted key does: 401, like any unknown key.
    refused(logs_request(&server, &key, &id, json!([{ "message": "zombie" }])), 401).await;
    server.stop().await.unwrap();
}

// ---------------------------------------------------------------------------------------
// Ingest keys
// ---------------------------------------------------------------------------------------

async fn ingest_keys_are_shown_once_and_listed_by_prefix(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let (mia, token) = user(&server, "mia", Role::Maintainer).await;
    let id = new_source(&server, &token, "collectors").await;
    let path = format!("/api/v1/sources/{id}/keys");

    let before = Utc::now();
    let response =
        call(&server, Method::POST, &path, &token).json(&json!({ "name": "collector-1" })).send().await.unwrap();
    let after = Utc::now();
    assert_eq!(response.status(), 201);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let first: Value = response.json().await.unwrap();
    let key = first["key"].as_str().unwrap().to_owned();
    let prefix = first["prefix"].as_str().unwrap().to_owned();
    assert!(key.starts_with("kki_") && key.len() >= 36, "{key}");
    assert!(prefix.len() > 4 && prefix.len() < key.len() && key.starts_with(&prefix), "{prefix} / {key}");
    assert!(uuid::Uuid::parse_str(first["id"].as_str().unwrap()).is_ok());
    assert_eq!(first["source_id"], id.as_str());
    assert_eq!(first["name"], "collector-1");
    assert_eq!(first["created_by"], mia.id.as_str());
    assert_within(instant(&first["created_at"]), before, after, "created_at");

    let (second_id, second_key) = server.create_ingest_key(&token, &id).await;
    assert_ne!(second_key, key);

    let listed = call(&server, Method::GET, &path, &token).send().await.unwrap();
    assert_eq!(listed.status(), 200);
    let text = listed.text().await.unwrap();
    assert!(!text.contains(&key) && !text.contains(&second_key), "a listing shows a key: {text}");
    let listed: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(listed["total"], 2);
    let keys = listed["keys"].as_array().unwrap();
    let ids: BTreeSet<&str> = keys.iter().map(|k| k["id"].as_str().unwrap()).collect();
    assert_eq!(ids, BTreeSet::from([first["id"].as_str().unwrap(), second_id.as_str()]));
    for listed_key in keys {
        assert!(listed_key.get("key").is_none(), "{listed_key}");
        let listed_prefix = listed_key["prefix"].as_str().unwrap();
        let plaintext = if listed_key["id"] == first["id"] { &key } else { &second_key };
        assert!(plaintext.starts_with(listed_prefix), "{listed_prefix}");
        assert_eq!(listed_key["source_id"], id.as_str());
    }
    // Only the digest is stored.
    let conn = db.connect().await;
    let sql = "SELECT key_hash FROM ingest_keys";
    let rows = conn.query_all_raw(Statement::from_string(conn.get_database_backend(), sql)).await.unwrap();
    let digests: BTreeSet<String> = rows.iter().map(|r| r.try_get("", "key_hash").unwrap()).collect();
    assert_eq!(
        digests,
        BTreeSet::from([killkrill::auth::keys::digest(&key), killkrill::auth::keys::digest(&second_key)])
    );
    conn.close().await.unwrap();

    let named = refused(call(&server, Method::POST, &path, &token).json(&json!({ "name": "" })), 400).await;
    assert_eq!(named, fields(&["name"]));
    let unknown_key = format!("{path}/{}", uuid::Uuid::new_v4());
    refused(call(&server, Method::DELETE, &unknown_key, &token), 404).await;
    server.stop().await.unwrap();
}

async fn an_ingest_key_only_ingests_for_its_own_source(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let (_, mia) = user(&server, "mia", Role::Maintainer).await;
    let mine = new_source(&server, &mia, "mine").await;
    let theirs = new_source(&server, &mia, "theirs").await;
    let (_, key) = server.create_ingest_key(&mia, &mine).await;

    let logs = json!([{ "message": "first from the key" }, { "message": "second from the key", "timestamp": T0 }]);
    ingest_logs(&server, &key, &mine, logs).await;
    let (status, body) = send(ndjson_request(&server, &key, &mine, "{\"message\": \"ndjson from the key\"}\n")).await;
    assert_eq!((status, body), (202, json!({ "accepted": 1 })));
    let stored = messages(&server, &mia, &[("source_id", mine.as_str())]).await;
    let stored: BTreeSet<String> = stored.into_iter().collect();
    assert_eq!(stored, fields(&["first from the key", "second from the key", "ndjson from the key"]));

    // Another source is off limits.
    refused(logs_request(&server, &key, &theirs, json!([{ "message": "intruder" }])), 403).await;
    refused(metrics_request(&server, &key, &theirs, json!([{ "name": "up", "value": 0 }])), 403).await;
    refused(ndjson_request(&server, &key, &theirs, "{\"message\": \"intruder\"}\n"), 403).await;
    assert_eq!(messages(&server, &mia, &[("source_id", theirs.as_str())]).await, Vec::<String>::new());
    assert_eq!(list_series(&server, &mia, &format!("?source_id={theirs}")).await["total"], 0);

    // It reads nothing and changes nothing else.
    let query = json!({ "metric": "up", "start": T0, "end": T0 + 60, "step": 60 });
    let forbidden: Vec<RequestBuilder> = vec![
        call(&server, Method::GET, "/api/v1/logs", &key),
        call(&server, Method::GET, &format!("/api/v1/logs?source_id={mine}"), &key),
        call(&server, Method::GET, "/api/v1/sources", &key),
        call(&server, Method::GET, &format!("/api/v1/sources/{mine}"), &key),
        call(&server, Method::GET, &format!("/api/v1/sources/{mine}/keys"), &key),
        call(&server, Method::GET, "/api/v1/metrics", &key),
        call(&server, Method::POST, "/api/v1/metrics/query", &key).json(&query),
        call(&server, Method::GET, "/api/v1/status", &key),
        call(&server, Method::GET, "/api/v1/auth/me", &key),
        call(&server, Method::POST, "/api/v1/sources", &key).json(&json!({ "name": "k", "type": "http" })),
        put_source(&server, &key, &mine, json!({ "enabled": false })),
        call(&server, Method::DELETE, &format!("/api/v1/sources/{mine}"), &key),
        call(&server, Method::POST, &format!("/api/v1/sources/{mine}/keys"), &key).json(&json!({ "name": "k" })),
    ];
    for request in forbidden {
        refused(request, 401).await;
    }
    assert_eq!(get_source(&server, &mia, &mine).await["enabled"], true);
    assert_eq!(list_sources(&server, &mia, "").await["total"], 2);

    // A made-up ingest key ingests nothing.
    refused(logs_request(&server, "kki_not-a-real-key", &mine, json!([{ "message": "forged" }])), 401).await;
    assert_eq!(messages(&server, &mia, &[("source_id", mine.as_str())]).await.len(), 3);
    server.stop().await.unwrap();
}

async fn an_ingest_key_ingests_metrics_for_its_own_source_only(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let (_, mia) = user(&server, "mia", Role::Maintainer).await;
    let mine = create_source(&server, &mia, json!({ "name": "mine", "type": "prometheus" })).await;
    let mine = mine["id"].as_str().unwrap().to_owned();
    let theirs = new_source(&server, &mia, "theirs").await;
    let (_, key) = server.create_ingest_key(&mia, &mine).await;
    let up = json!([{ "name": "up", "type": "gauge", "labels": { "job": "node" }, "value": 1, "timestamp": T0 }]);

    ingest_metrics(&server, &key, &mine, up.clone()).await;
    refused(metrics_request(&server, &key, &theirs, up.clone()), 403).await;
    // Fenced away from the client's address, then let in.
    send(put_source(&server, &mia, &mine, json!({ "allowed_cidrs": ["10.0.0.0/8"] }))).await;
    refused(metrics_request(&server, &key, &mine, up.clone()), 403).await;
    send(put_source(&server, &mia, &mine, json!({ "allowed_cidrs": ["127.0.0.0/8"] }))).await;
    let later =
        json!([{ "name": "up", "type": "gauge", "labels": { "job": "node" }, "value": 0, "timestamp": T0 + 60 }]);
    ingest_metrics(&server, &key, &mine, later).await;

    let listing = list_series(&server, &mia, "").await;
    assert_eq!(listing["total"], 1, "{listing}");
    assert_eq!(listing["metrics"][0]["source_id"], mine.as_str());
    assert_eq!(listing["metrics"][0]["last_value"].as_f64(), Some(0.0));
    let query = json!({ "metric": "up", "start": T0, "end": T0 + 119, "step": 60, "aggregation": "count" });
    let result = range_query(&server, &mia, query).await;
    assert_eq!(result.len(), 1);
    assert_points(&points(&result[0]), &[(T0 as f64, 1.0), ((T0 + 60) as f64, 1.0)], "up count");
    server.stop().await.unwrap();
}

async fn allowed_cidrs_bound_where_an_ingest_key_may_ingest_from(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let (_, mia) = user(&server, "mia", Role::Maintainer).await;
    let fenced =
        create_source(&server, &mia, json!({ "name": "fenced", "type": "syslog", "allowed_cidrs": ["10.0.0.0/8"] }))
            .await;
    let id = fenced["id"].as_str().unwrap().to_owned();
    let (_, key) = server.create_ingest_key(&mia, &id).await;

    // The test client connects from 127.0.0.1, outside 10.0.0.0/8.
    refused(logs_request(&server, &key, &id, json!([{ "message": "from loopback" }])), 403).await;
    refused(metrics_request(&server, &key, &id, json!([{ "name": "up", "value": 1 }])), 403).await;
    assert_eq!(messages(&server, &mia, &[("source_id", id.as_str())]).await, Vec::<String>::new());
    assert_eq!(list_series(&server, &mia, "").await["total"], 0);

    let mut accepted = 0;
    for cidrs in [json!(["127.0.0.0/8"]), json!(["192.168.0.0/16", "127.0.0.1/32"]), json!([])] {
        let (status, body) = send(put_source(&server, &mia, &id, json!({ "allowed_cidrs": cidrs }))).await;
        assert_eq!(status, 200, "{body}");
        ingest_logs(&server, &key, &id, json!([{ "message": format!("allowed by {cidrs}") }])).await;
        accepted += 1;
    }
    assert_eq!(messages(&server, &mia, &[("source_id", id.as_str())]).await.len(), accepted);

    // Fencing it again takes effect on the next batch (the test client is 127.0.0.1).
    let (status, _) = send(put_source(&server, &mia, &id, json!({ "allowed_cidrs": ["10.0.0.0/8", "::1/128"] }))).await;
    assert_eq!(status, 200);
    refused(logs_request(&server, &key, &id, json!([{ "message": "fenced again" }])), 403).await;
    assert_eq!(messages(&server, &mia, &[("source_id", id.as_str())]).await.len(), accepted);
    server.stop().await.unwrap();
}

async fn a_deleted_ingest_key_is_refused_at_once(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let (_, mia) = user(&server, "mia", Role::Maintainer).await;
    let id = new_source(&server, &mia, "rotating").await;
    let other = new_source(&server, &mia, "other").await;
    let (key_id, key) = server.create_ingest_key(&mia, &id).await;
    let (sibling_id, sibling) = server.create_ingest_key(&mia, &id).await;
    ingest_logs(&server, &key, &id, json!([{ "message": "before the rotation" }])).await;

    let path = format!("/api/v1/sources/{id}/keys/{key_id}");
    let response = call(&server, Method::DELETE, &path, &mia).send().await.unwrap();
    assert_eq!(response.status(), 204);
    // At once: the key was used (and cached) a moment ago.
    refused(logs_request(&server, &key, &id, json!([{ "message": "after the rotation" }])), 401).await;
    refused(metrics_request(&server, &key, &id, json!([{ "name": "up", "value": 1 }])), 401).await;
    refused(call(&server, Method::DELETE, &path, &mia), 404).await;

    // Its sibling still works, and cannot be deleted through another source's path.
    ingest_logs(&server, &sibling, &id, json!([{ "message": "from the sibling" }])).await;
    refused(call(&server, Method::DELETE, &format!("/api/v1/sources/{other}/keys/{sibling_id}"), &mia), 404).await;
    ingest_logs(&server, &sibling, &id, json!([{ "message": "still the sibling" }])).await;
    let listed: Value = send(call(&server, Method::GET, &format!("/api/v1/sources/{id}/keys"), &mia)).await.1;
    assert_eq!(listed["total"], 1);
    assert_eq!(listed["keys"][0]["id"], sibling_id.as_str());
    assert_eq!(
        messages(&server, &mia, &[("source_id", id.as_str())]).await.into_iter().collect::<BTreeSet<_>>(),
        fields(&["before the rotation", "from the sibling", "still the sibling"])
    );
    server.stop().await.unwrap();
}

async fn a_disabled_source_refuses_ingest(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let (_, mia) = user(&server, "mia", Role::Maintainer).await;
    let id = new_source(&server, &mia, "switchable").await;
    let (_, key) = server.create_ingest_key(&mia, &id).await;
    let (status, body) = send(put_source(&server, &mia, &id, json!({ "enabled": false }))).await;
    assert_eq!((status, &body["enabled"]), (200, &json!(false)));

    for cred in [key.as_str(), mia.as_str()] {
        refused(logs_request(&server, cred, &id, json!([{ "message": "while disabled" }])), 403).await;
        refused(ndjson_request(&server, cred, &id, "{\"message\": \"while disabled\"}\n"), 403).await;
        refused(metrics_request(&server, cred, &id, json!([{ "name": "up", "value": 1 }])), 403).await;
    }
    assert_eq!(messages(&server, &mia, &[("source_id", id.as_str())]).await, Vec::<String>::new());
    assert_eq!(list_series(&server, &mia, "").await["total"], 0);

    send(put_source(&server, &mia, &id, json!({ "enabled": true }))).await;
    ingest_logs(&server, &key, &id, json!([{ "message": "enabled again" }])).await;
    assert_eq!(messages(&server, &mia, &[("source_id", id.as_str())]).await, ["enabled again"]);
    server.stop().await.unwrap();
}

// ---------------------------------------------------------------------------------------
// Logs
// ---------------------------------------------------------------------------------------

async fn logs_ingest_as_json_batches_and_ndjson(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let (_, mia) = user(&server, "mia", Role::Maintainer).await;
    let id = new_source(&server, &mia, "app").await;

    let before = Utc::now();
    let batch = json!([
        { "message": "warn word", "level": "warn", "timestamp": rfc3339(T0 + 1) },
        { "message": "syslog severity", "level": 3, "timestamp": T0 + 2 },
        { "message": "shouting", "level": "WARNING", "timestamp": "2026-01-01T02:00:03+02:00" },
        { "message": "no level", "timestamp": T0 + 4 },
        {
            "message": "no timestamp",
            "level": "debug",
            "hostname": "web-1",
            "application": "api",
            "attributes": { "user_id": 42, "path": "/orders", "tags": ["a", "b"] },
        },
    ]);
    ingest_logs(&server, &mia, &id, batch).await;
    let after = Utc::now();

    let logs = get_logs(&server, &mia, &[("source_id", id.as_str())]).await;
    let logs = logs["logs"].as_array().unwrap();
    let order: Vec<String> = logs.iter().map(message_of).collect();
    assert_eq!(order, ["no timestamp", "no level", "shouting", "syslog severity", "warn word"]);
    let expected = [
        ("no timestamp", "debug", None),
        ("no level", "info", Some(T0 + 4)),
        ("shouting", "warning", Some(T0 + 3)),
        ("syslog severity", "error", Some(T0 + 2)),
        ("warn word", "warning", Some(T0 + 1)),
    ];
    for (entry, (message, level, ts)) in logs.iter().zip(expected) {
        assert_eq!(entry["message"], message);
        assert_eq!(entry["level"], level, "{message}");
        assert_eq!(entry["source_id"], id.as_str());
        match ts {
            Some(ts) => assert_eq!(instant(&entry["timestamp"]), at(ts), "{message}"),
            None => assert_within(instant(&entry["timestamp"]), before, after, "a missing timestamp"),
        }
        assert_within(instant(&entry["received_at"]), before, after, "received_at");
    }
    // Ids are UUID strings (docs/API.md's conventions), one per entry.
    let ids: BTreeSet<&str> = logs.iter().map(|entry| entry["id"].as_str().expect("a string id")).collect();
    assert_eq!(ids.len(), logs.len());
    assert!(ids.iter().all(|id| uuid::Uuid::parse_str(id).is_ok()), "{ids:?}");
    assert_eq!(logs[0]["hostname"], "web-1");
    assert_eq!(logs[0]["application"], "api");
    assert_eq!(logs[0]["attributes"], json!({ "user_id": 42, "path": "/orders", "tags": ["a", "b"] }));

    // NDJSON: one entry a line (blank lines and CRLF tolerated), source_id in the query.
    let ndjson = format!(
        "{}\n\n{}\r\n{}\n",
        json!({ "message": "nd one", "level": "err", "timestamp": T0 + 10 }),
        json!({ "message": "nd two", "level": "6", "timestamp": T0 + 11 }),
        json!({ "message": "nd three", "level": "Info", "timestamp": T0 + 12 }),
    );
    let (status, body) = send(ndjson_request(&server, &mia, &id, &ndjson)).await;
    assert_eq!((status, body), (202, json!({ "accepted": 3 })));
    let nd = get_logs(
        &server,
        &mia,
        &[("source_id", id.as_str()), ("until", rfc3339(T0 + 20).as_str()), ("since", rfc3339(T0 + 10).as_str())],
    )
    .await;
    let nd: Vec<(String, String)> = nd["logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| (message_of(l), l["level"].as_str().unwrap().to_owned()))
        .collect();
    let want = [("nd three", "info"), ("nd two", "info"), ("nd one", "error")];
    assert_eq!(nd, want.map(|(m, l)| (m.to_owned(), l.to_owned())));
    let named = refused(
        call(&server, Method::POST, "/api/v1/logs", &mia)
            .header("Content-Type", "application/x-ndjson")
            .body("{\"message\": \"where to?\"}\n"),
        400,
    )
    .await;
    assert_eq!(named, fields(&["source_id"]));
    server.stop().await.unwrap();
}

async fn a_full_log_batch_is_stored_whole_and_one_more_entry_is_refused(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let (_, mia) = user(&server, "mia", Role::Maintainer).await;
    let id = new_source(&server, &mia, "bulk").await;
    // 10,000 entries (the most a batch holds): several INSERT chunks on SQLite and
    // MariaDB, one statement on PostgreSQL. Every third has no hostname, every fifth
    // attributes; the last message holds a quote, a backslash and non-ASCII text.
    let entry = |i: i64| {
        let level = ["info", "error"][(i % 2) as usize];
        let mut entry = json!({ "message": format!("bulk-{i:05}"), "level": level, "timestamp": T0 + i });
        if i % 3 != 0 {
            entry["hostname"] = json!(format!("host-{}", i % 7));
        }
        if i % 5 == 0 {
            entry["attributes"] = json!({ "i": i, "tag": "x" });
        }
        entry
    };
    let mut batch: Vec<Value> = (0..10_000).map(entry).collect();
    batch[9_999]["message"] = json!("last \"one\" \\ é ✓");
    ingest_logs(&server, &mia, &id, Value::Array(batch.clone())).await;
    assert_eq!(count_rows(&db, "logs").await, 10_000);

    let newest = get_logs(&server, &mia, &[("source_id", id.as_str()), ("limit", "3")]).await;
    let newest = newest["logs"].as_array().unwrap();
    assert_eq!(newest[0]["message"], "last \"one\" \\ é ✓");
    for (entry, i) in newest.iter().zip([9_999, 9_998, 9_997]) {
        assert_eq!(instant(&entry["timestamp"]), at(T0 + i));
        assert_eq!(entry["level"], ["info", "error"][(i % 2) as usize]);
        let hostname = if i % 3 == 0 { Value::Null } else { json!(format!("host-{}", i % 7)) };
        assert_eq!(entry["hostname"], hostname, "entry {i}");
        let attributes = if i % 5 == 0 { json!({ "i": i, "tag": "x" }) } else { Value::Null };
        assert_eq!(entry["attributes"], attributes, "entry {i}");
    }
    let infos = get_logs(&server, &mia, &[("source_id", id.as_str()), ("level", "info"), ("limit", "1")]).await;
    assert_eq!(message_of(&infos["logs"][0]), "bulk-09998", "the newest entry is an error");

    batch.push(entry(10_000));
    refused(logs_request(&server, &mia, &id, Value::Array(batch)), 413).await;
    assert_eq!(count_rows(&db, "logs").await, 10_000, "a refused batch stored nothing");
    server.stop().await.unwrap();
}

async fn a_log_batch_with_one_bad_entry_stores_nothing(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let (_, mia) = user(&server, "mia", Role::Maintainer).await;
    let id = new_source(&server, &mia, "strict").await;
    let ok = json!({ "message": "fine", "level": "info" });

    let cases: Vec<(Value, &[&str])> = vec![
        (json!([ok, { "message": "" }, ok]), &["logs[1].message"]),
        (json!([ok, ok, { "level": "info" }]), &["logs[2].message"]),
        (json!([{ "message": "x", "level": "loud" }]), &["logs[0].level"]),
        (json!([ok, { "message": "x", "level": 9 }]), &["logs[1].level"]),
        (json!([ok, { "message": "x", "timestamp": "yesterday" }]), &["logs[1].timestamp"]),
        (
            json!([{ "message": "" }, ok, { "message": "x", "level": "loud", "timestamp": "never" }]),
            &["logs[0].message", "logs[2].level", "logs[2].timestamp"],
        ),
        (json!([ok, { "message": "x".repeat(64 * 1024 + 1) }]), &["logs[1].message"]),
        (json!([]), &["logs"]),
    ];
    // A NUL in any text (PostgreSQL cannot store one) is refused before the entries are
    // read, in a JSON batch and in NDJSON alike.
    let nul = r#"{"message": "a\u0000b"}"#;
    let with_nul = format!(r#"{{"source_id": "{id}", "logs": [{ok}, {nul}]}}"#);
    let json_nul = call(&server, Method::POST, "/api/v1/logs", &mia).header("Content-Type", "application/json");
    refused(json_nul.body(with_nul), 400).await;
    refused(ndjson_request(&server, &mia, &id, &format!("{ok}\n{nul}\n")), 400).await;
    for (logs, bad) in cases {
        let named = refused(logs_request(&server, &mia, &id, logs.clone()), 400).await;
        assert_eq!(named, fields(bad), "{bad:?}");
    }
    let ndjson = format!("{ok}\n{}\n{ok}\n", json!({ "message": "" }));
    assert_eq!(refused(ndjson_request(&server, &mia, &id, &ndjson), 400).await, fields(&["logs[1].message"]));
    refused(ndjson_request(&server, &mia, &id, &format!("{ok}\n{{\"message\": \n{ok}\n")), 400).await;
    let as_text = call(&server, Method::POST, "/api/v1/logs", &mia)
        .header("Content-Type", "text/plain")
        .body(json!({ "source_id": id, "logs": [ok] }).to_string());
    refused(as_text, 415).await;
    let malformed = call(&server, Method::POST, "/api/v1/logs", &mia)
        .header("Content-Type", "application/json")
        .body(format!(r#"{{"source_id": "{id}", "logs": [{{"message": "cut"#));
    refused(malformed, 400).await;
    assert_eq!(
        messages(&server, &mia, &[("source_id", id.as_str())]).await,
        Vec::<String>::new(),
        "a refused batch was stored"
    );
    server.stop().await.unwrap();
}

async fn a_message_of_exactly_64_kib_is_stored(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let (_, mia) = user(&server, "mia", Role::Maintainer).await;
    let id = new_source(&server, &mia, "large").await;
    let largest = "y".repeat(64 * 1024);
    ingest_logs(&server, &mia, &id, json!([{ "message": largest }])).await;
    assert_eq!(messages(&server, &mia, &[("source_id", id.as_str())]).await, [largest]);
    server.stop().await.unwrap();
}

async fn a_config_of_exactly_64_kib_is_stored(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let (_, mia) = user(&server, "mia", Role::Maintainer).await;
    // {"blob":"zzz…"}: 11 bytes of syntax around the string.
    let config = json!({ "blob": "z".repeat(64 * 1024 - 11) });
    assert_eq!(config.to_string().len(), 64 * 1024);
    let source = create_source(&server, &mia, json!({ "name": "big-config", "type": "file", "config": config })).await;
    assert_eq!(get_source(&server, &mia, source["id"].as_str().unwrap()).await["config"], config);
    let too_big = json!({ "name": "bigger", "type": "file", "config": { "blob": "z".repeat(64 * 1024 - 10) } });
    let named = refused(call(&server, Method::POST, "/api/v1/sources", &mia).json(&too_big), 400).await;
    assert_eq!(named, fields(&["config"]));
    server.stop().await.unwrap();
}

async fn text_search_matches_non_ascii_text(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let (_, mia) = user(&server, "mia", Role::Maintainer).await;
    let id = new_source(&server, &mia, "intl").await;
    let logs = json!([
        { "message": "Échec de connexion à la base", "timestamp": T0 },
        { "message": "ÜBERLAUF im Puffer", "timestamp": T0 + 1 },
        { "message": "日本語のログ 🚀", "timestamp": T0 + 2 },
    ]);
    ingest_logs(&server, &mia, &id, logs).await;
    // Stored and served unchanged.
    assert_eq!(
        messages(&server, &mia, &[("source_id", id.as_str())]).await,
        ["日本語のログ 🚀", "ÜBERLAUF im Puffer", "Échec de connexion à la base"]
    );
    assert_eq!(messages(&server, &mia, &[("q", "ログ 🚀")]).await, ["日本語のログ 🚀"]);
    assert_eq!(messages(&server, &mia, &[("q", "Échec")]).await, ["Échec de connexion à la base"]);
    assert_eq!(messages(&server, &mia, &[("q", "Échec de CONNEXION")]).await, ["Échec de connexion à la base"]);
    // SQLite's LOWER() folds ASCII letters only (documented); the others fold all of Unicode.
    if db.kind != Kind::Sqlite {
        assert_eq!(messages(&server, &mia, &[("q", "échec")]).await, ["Échec de connexion à la base"]);
        assert_eq!(messages(&server, &mia, &[("q", "überlauf")]).await, ["ÜBERLAUF im Puffer"]);
    }
    // Letters whose lower case Rust and the databases disagree on: the exact text is
    // always found (the needle was lowered by Rust, and these were missed).
    let odd = ["𐐀deseret", "STRASSE ẞ", "ΟΔΟΣ end", "İstanbul"];
    let logs: Vec<Value> = odd.iter().zip(10..).map(|(m, i)| json!({ "message": m, "timestamp": T0 + i })).collect();
    ingest_logs(&server, &mia, &id, json!(logs)).await;
    for message in odd {
        assert_eq!(messages(&server, &mia, &[("q", message)]).await, [message], "{message}");
    }
    server.stop().await.unwrap();
}

async fn log_queries_filter_by_source_level_time_and_text(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let (_, mia) = user(&server, "mia", Role::Maintainer).await;
    let alpha = new_source(&server, &mia, "alpha").await;
    let bravo = new_source(&server, &mia, "bravo").await;
    let entry = |message: &str, level: &str, offset: i64| json!({ "message": message, "level": level, "timestamp": T0 + offset });
    ingest_logs(
        &server,
        &mia,
        &alpha,
        json!([
            entry("Disk full on /var", "error", 0),
            entry("User LOGIN succeeded", "info", 10),
            entry("Backup 50% done", "info", 20),
            entry("Backup 5000 files", "notice", 30),
            entry("rotated file_name.txt", "warning", 40),
            entry("rotated fileXname.txt", "warning", 50),
            entry(r"saved C:\temp\out! ok", "info", 60),
        ]),
    )
    .await;
    ingest_logs(&server, &mia, &bravo, json!([entry("disk FULL on /data", "error", 5)])).await;

    let (since, until) = (rfc3339(T0 + 15), rfc3339(T0 + 45));
    let (since_unix, until_unix) = ((T0 + 15).to_string(), (T0 + 45).to_string());
    let early = rfc3339(T0 + 7);
    let cases: Vec<(Params, Vec<&str>)> = vec![
        (
            vec![],
            vec![
                r"saved C:\temp\out! ok",
                "rotated fileXname.txt",
                "rotated file_name.txt",
                "Backup 5000 files",
                "Backup 50% done",
                "User LOGIN succeeded",
                "disk FULL on /data",
                "Disk full on /var",
            ],
        ),
        (vec![("source_id", bravo.as_str())], vec!["disk FULL on /data"]),
        (vec![("source_id", "00000000-0000-0000-0000-000000000000")], vec![]),
        (vec![("level", "error")], vec!["disk FULL on /data", "Disk full on /var"]),
        (vec![("level", "error"), ("source_id", alpha.as_str())], vec!["Disk full on /var"]),
        (vec![("level", "WARN")], vec!["rotated fileXname.txt", "rotated file_name.txt"]),
        (vec![("level", "5")], vec!["Backup 5000 files"]),
        (
            vec![("since", since.as_str()), ("until", until.as_str())],
            vec!["rotated file_name.txt", "Backup 5000 files", "Backup 50% done"],
        ),
        (
            vec![("since", since_unix.as_str()), ("until", until_unix.as_str())],
            vec!["rotated file_name.txt", "Backup 5000 files", "Backup 50% done"],
        ),
        (vec![("since", since_unix.as_str()), ("source_id", bravo.as_str())], vec![]),
        (vec![("until", early.as_str())], vec!["disk FULL on /data", "Disk full on /var"]),
        (vec![("q", "login")], vec!["User LOGIN succeeded"]),
        (vec![("q", "DISK full")], vec!["disk FULL on /data", "Disk full on /var"]),
        (vec![("q", "50%")], vec!["Backup 50% done"]),
        (vec![("q", "file_name")], vec!["rotated file_name.txt"]),
        (vec![("q", "backup"), ("level", "notice")], vec!["Backup 5000 files"]),
        (vec![("q", "nothing like this")], vec![]),
        (vec![("q", r"c:\temp\OUT!")], vec![r"saved C:\temp\out! ok"]),
        (vec![("q", "!")], vec![r"saved C:\temp\out! ok"]),
    ];
    for (params, expected) in cases {
        assert_eq!(messages(&server, &mia, &params).await, expected, "{params:?}");
    }
    for (param, value) in
        [("level", "loud"), ("since", "yesterday"), ("until", "soon"), ("limit", "0"), ("limit", "1001")]
    {
        let named =
            refused(call(&server, Method::GET, &with_query("/api/v1/logs", &[(param, value)]), &mia), 400).await;
        assert_eq!(named, fields(&[param]), "{param}={value}");
    }
    server.stop().await.unwrap();
}

async fn log_pages_visit_every_entry_exactly_once(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let (_, mia) = user(&server, "mia", Role::Maintainer).await;
    let id = new_source(&server, &mia, "paged").await;
    let other = new_source(&server, &mia, "noise").await;
    // Five entries share each timestamp, so pages must break ties consistently.
    let logs: Vec<Value> =
        (0..25).map(|i| json!({ "message": format!("entry-{i:02}"), "timestamp": T0 + (i / 5) * 60 })).collect();
    ingest_logs(&server, &mia, &id, Value::Array(logs)).await;
    ingest_logs(&server, &mia, &other, json!([{ "message": "noise", "timestamp": T0 + 30 }])).await;

    let entries = all_pages(&server, &mia, &[("source_id", id.as_str())], 7).await;
    let names: Vec<String> = entries.iter().map(message_of).collect();
    assert_eq!(names.len(), 25, "{names:?}");
    let unique: BTreeSet<&String> = names.iter().collect();
    assert_eq!(unique.len(), 25, "an entry was repeated: {names:?}");
    let expected: BTreeSet<String> = (0..25).map(|i| format!("entry-{i:02}")).collect();
    assert_eq!(names.iter().cloned().collect::<BTreeSet<_>>(), expected);
    let stamps: Vec<DateTime<Utc>> = entries.iter().map(|e| instant(&e["timestamp"])).collect();
    assert!(stamps.windows(2).all(|w| w[0] >= w[1]), "not newest first: {stamps:?}");
    // The newest group comes first, the oldest last.
    let group = |range: std::ops::Range<usize>| names[range].iter().cloned().collect::<BTreeSet<_>>();
    assert_eq!(group(0..5), (20..25).map(|i| format!("entry-{i:02}")).collect());
    assert_eq!(group(20..25), (0..5).map(|i| format!("entry-{i:02}")).collect());

    // Page sizes: 7, 7, 7, 4, and the last page has no cursor.
    let (first, cursor) = log_page(&server, &mia, &[("source_id", id.as_str())], 7, None).await;
    assert_eq!(first.len(), 7);
    let cursor = cursor.unwrap();
    let (second, _) = log_page(&server, &mia, &[("source_id", id.as_str())], 7, Some(&cursor)).await;
    assert_eq!(second.len(), 7);
    let whole = all_pages(&server, &mia, &[], 1000).await;
    assert_eq!(whole.len(), 26);
    let (exact, none) = log_page(&server, &mia, &[("source_id", id.as_str())], 25, None).await;
    assert_eq!((exact.len(), none), (25, None));
    server.stop().await.unwrap();
}

async fn the_log_cursor_is_stable_while_logs_arrive(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let (_, mia) = user(&server, "mia", Role::Maintainer).await;
    let id = new_source(&server, &mia, "busy").await;
    let original: Vec<Value> =
        (0..30).map(|i| json!({ "message": format!("orig-{i:02}"), "timestamp": T0 + i * 10 })).collect();
    ingest_logs(&server, &mia, &id, Value::Array(original)).await;
    let filter = [("source_id", id.as_str())];

    let mut seen = Vec::new();
    let (page, mut cursor) = log_page(&server, &mia, &filter, 10, None).await;
    seen.extend(page.iter().map(message_of));
    let mut round = 0;
    while let Some(current) = cursor {
        // Between pages, newer logs and logs interleaved with the unread (and the read)
        // part arrive.
        let arrivals: Vec<Value> = (0..10)
            .map(|i| {
                let ts = if i % 2 == 0 { T0 + 10_000 + round * 100 + i } else { T0 + i * 30 + 5 };
                json!({ "message": format!("new-{round}-{i}"), "timestamp": ts })
            })
            .collect();
        ingest_logs(&server, &mia, &id, Value::Array(arrivals)).await;
        round += 1;
        let (page, next) = log_page(&server, &mia, &filter, 10, Some(&current)).await;
        seen.extend(page.iter().map(message_of));
        cursor = next;
        assert!(round < 10, "the cursor never reached the last page");
    }
    let expected: Vec<String> = (0..30).rev().map(|i| format!("orig-{i:02}")).collect();
    assert_eq!(seen, expected, "pages skipped, repeated or mixed in entries");
    assert!(round >= 2, "logs arrived between only {round} pages");

    // A fresh read sees everything, and garbage cursors are refused.
    assert_eq!(all_pages(&server, &mia, &filter, 1000).await.len(), 30 + 10 * round as usize);
    for garbage in ["garbage".to_owned(), URL_SAFE_NO_PAD.encode("v1:1:2"), URL_SAFE_NO_PAD.encode("v9:1:2:3")] {
        let request = call(&server, Method::GET, &with_query("/api/v1/logs", &[("cursor", garbage.as_str())]), &mia);
        assert_eq!(refused(request, 400).await, fields(&["cursor"]), "{garbage}");
    }
    server.stop().await.unwrap();
}

// ---------------------------------------------------------------------------------------
// Metrics
// ---------------------------------------------------------------------------------------

fn sample(name: &str, kind: &str, labels: Value, value: f64, ts: Value) -> Value {
    json!({ "name": name, "type": kind, "labels": labels, "value": value, "timestamp": ts })
}

async fn the_series_list_shows_each_series_latest_value(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let (_, mia) = user(&server, "mia", Role::Maintainer).await;
    let node = new_source(&server, &mia, "node").await;
    let other = new_source(&server, &mia, "other").await;
    let get = json!({ "method": "GET", "code": "200" });
    let post = json!({ "method": "POST", "code": "200" });
    let lab = json!({ "room": "lab" });
    let requests = "http_requests_total";
    let temperature = "room_temperature_celsius";
    ingest_metrics(
        &server,
        &mia,
        &node,
        json!([
            sample(requests, "counter", get.clone(), 5.0, json!(T0 + 10)),
            sample(requests, "counter", get.clone(), 12.0, json!(T0 + 70)),
            sample(requests, "counter", post.clone(), 1.0, json!(T0 + 10)),
            sample(temperature, "gauge", lab.clone(), 21.5, json!(rfc3339(T0 + 100))),
        ]),
    )
    .await;
    // Out of order: within a batch, and older than what is already stored. Label order
    // does not make another series.
    ingest_metrics(
        &server,
        &mia,
        &node,
        json!([
            sample(temperature, "gauge", lab.clone(), 22.25, json!(T0 + 200)),
            sample(temperature, "gauge", lab.clone(), 30.0, json!(T0 + 150)),
            sample(requests, "counter", json!({ "code": "200", "method": "GET" }), 9.0, json!(T0 + 40)),
        ]),
    )
    .await;
    ingest_metrics(&server, &mia, &other, json!([{ "name": "up", "value": 1, "timestamp": T0 }])).await;

    let listing = list_series(&server, &mia, &format!("?source_id={node}")).await;
    assert_eq!(listing["total"], 3, "{listing}");
    let series = listing["metrics"].as_array().unwrap();
    let find = |name: &str, labels: &Value| {
        series
            .iter()
            .find(|s| s["name"] == name && &s["labels"] == labels)
            .unwrap_or_else(|| panic!("no series {name} {labels} in {listing}"))
    };
    for (name, labels, kind, value, ts) in [
        (requests, &get, "counter", 12.0, T0 + 70),
        (requests, &post, "counter", 1.0, T0 + 10),
        (temperature, &lab, "gauge", 22.25, T0 + 200),
    ] {
        let s = find(name, labels);
        assert_eq!(s["type"], kind, "{s}");
        assert_eq!(s["last_value"].as_f64(), Some(value), "{s}");
        assert_eq!(instant(&s["last_timestamp"]), at(ts), "{s}");
        assert_eq!(s["source_id"], node.as_str());
        assert!(uuid::Uuid::parse_str(s["id"].as_str().expect("a string id")).is_ok(), "{s}");
    }
    assert_eq!(list_series(&server, &mia, &format!("?name={requests}")).await["total"], 2);
    assert_eq!(list_series(&server, &mia, "").await["total"], 4);
    let theirs = list_series(&server, &mia, &format!("?source_id={other}")).await;
    assert_eq!(theirs["total"], 1);
    assert_eq!(theirs["metrics"][0]["name"], "up");
    assert_eq!(theirs["metrics"][0]["type"], "gauge");
    assert_eq!(theirs["metrics"][0]["labels"], json!({}));
    let paged = list_series(&server, &mia, "?limit=3&offset=3").await;
    assert_eq!((paged["total"].as_u64(), paged["metrics"].as_array().unwrap().len()), (Some(4), 1));
    refused(call(&server, Method::GET, "/api/v1/metrics?limit=0", &mia), 400).await;
    server.stop().await.unwrap();
}

async fn concurrent_batches_into_the_same_series_all_succeed(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let (_, mia) = user(&server, "mia", Role::Maintainer).await;
    let id = new_source(&server, &mia, "fleet").await;
    // Two collectors report the same 30 series at once, round after round (the first
    // round creates the series, the later ones only update them).
    let batch = |round: i64, collector: i64| {
        let samples: Vec<Value> = (0..30)
            .map(|n| {
                let labels = json!({ "instance": format!("node-{n:02}") });
                sample(
                    "node_load1",
                    "gauge",
                    labels,
                    (round * 10 + collector) as f64,
                    json!(T0 + round * 60 + collector),
                )
            })
            .collect();
        Value::Array(samples)
    };
    for round in 0..4 {
        let first = send(metrics_request(&server, &mia, &id, batch(round, 0)));
        let second = send(metrics_request(&server, &mia, &id, batch(round, 1)));
        let (first, second) = tokio::join!(first, second);
        assert_eq!(first, (202, json!({ "accepted": 30 })), "round {round}, first collector");
        assert_eq!(second, (202, json!({ "accepted": 30 })), "round {round}, second collector");
    }
    let listing = list_series(&server, &mia, "?limit=1000").await;
    assert_eq!(listing["total"], 30);
    for series in listing["metrics"].as_array().unwrap() {
        assert_eq!(series["last_value"].as_f64(), Some(31.0), "{series}");
        assert_eq!(instant(&series["last_timestamp"]), at(T0 + 3 * 60 + 1), "{series}");
    }
    let query = json!({ "metric": "node_load1", "start": T0, "end": T0 + 239, "step": 60, "aggregation": "count" });
    let result = range_query(&server, &mia, query).await;
    assert_eq!(result.len(), 30);
    for series in &result {
        let t = T0 as f64;
        assert_points(&points(series), &[(t, 2.0), (t + 60.0, 2.0), (t + 120.0, 2.0), (t + 180.0, 2.0)], "count");
    }
    server.stop().await.unwrap();
}

/// Batches that each create a series (and its first rollup row), all at once: MariaDB
/// deadlocked 30 in 100 of these pairs (gap locks on the rollups), answering 500. Retrying
/// the victims still left a 500 in about 1 of 15 runs of 10 rounds of 8; 16 at once make
/// deadlocks that outlast the retries likelier.
async fn concurrent_batches_creating_series_all_succeed(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let (_, mia) = user(&server, "mia", Role::Maintainer).await;
    let a = new_source(&server, &mia, "collector-a").await;
    let b = new_source(&server, &mia, "collector-b").await;
    for round in 0..10 {
        let requests = (0..16).map(|n| {
            let source = if n % 2 == 0 { &a } else { &b };
            let labels = json!({ "trial": format!("{round}-{n}") });
            send(metrics_request(&server, &mia, source, json!([sample("pair_new", "gauge", labels, 1.0, json!(T0))])))
        });
        for (n, answer) in futures_util::future::join_all(requests).await.into_iter().enumerate() {
            assert_eq!(answer, (202, json!({ "accepted": 1 })), "round {round}, request {n}");
        }
    }
    assert_eq!(list_series(&server, &mia, "?name=pair_new").await["total"], 160);
    server.stop().await.unwrap();
}

/// Label sets at the documented limits (32 labels, 128-character names, 1,024-character
/// values) read back unchanged: on MariaDB they overflowed a `TEXT` column (500).
async fn labels_at_their_limits_are_stored_whole(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let (_, mia) = user(&server, "mia", Role::Maintainer).await;
    let id = new_source(&server, &mia, "wide").await;
    // JSON escapes each '"' and '\u{1}' into 2 and 6 bytes; emoji are 4 bytes each.
    let values = ["\"".repeat(1024), "\u{1}".repeat(1024), "😀".repeat(1024)];
    let labels: serde_json::Map<String, Value> =
        (0..32).map(|n| (format!("l{n:02}_{}", "x".repeat(124)), json!(values[n % 3]))).collect();
    let labels = Value::Object(labels);
    ingest_metrics(&server, &mia, &id, json!([sample("wide_labels", "gauge", labels.clone(), 1.0, json!(T0))])).await;
    let listing = list_series(&server, &mia, "?name=wide_labels").await;
    assert_eq!(listing["metrics"][0]["labels"], labels);
    let name = "n".repeat(129);
    let too_long = json!([sample("wide_labels", "gauge", json!({ name: "v" }), 1.0, json!(T0))]);
    assert_eq!(refused(metrics_request(&server, &mia, &id, too_long), 400).await, fields(&["metrics[0].labels"]));
    server.stop().await.unwrap();
}

/// 1,000 entries filling 16 MiB less 2 KiB of JSON are one valid batch; on MariaDB one
/// INSERT of them outgrew `max_allowed_packet` (500).
async fn a_log_batch_just_under_the_body_limit_is_stored(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let (_, mia) = user(&server, "mia", Role::Maintainer).await;
    let id = new_source(&server, &mia, "bulky").await;
    let message = "x".repeat(16_737);
    let logs: Vec<Value> = (0..1000).map(|i| json!({ "message": message, "timestamp": T0 + i })).collect();
    let body = json!({ "source_id": id, "logs": logs }).to_string();
    assert!(body.len() < 16 * 1024 * 1024 && body.len() > 16 * 1024 * 1024 - 4096, "{}", body.len());
    let request = call(&server, Method::POST, "/api/v1/logs", &mia).header("content-type", "application/json");
    assert_eq!(send(request.body(body)).await, (202, json!({ "accepted": 1000 })));
    assert_eq!(count_rows(&db, "logs").await, 1000);
    server.stop().await.unwrap();
}

async fn source_names_and_types_match_exactly(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let (_, mia) = user(&server, "mia", Role::Maintainer).await;
    // Names differing only in case or accents are different names, as on every backend.
    for name in ["cafe", "Cafe", "CAFE", "café"] {
        create_source(&server, &mia, json!({ "name": name, "type": "http" })).await;
    }
    refused(call(&server, Method::POST, "/api/v1/sources", &mia).json(&json!({ "name": "café", "type": "file" })), 409)
        .await;
    assert_eq!(list_sources(&server, &mia, "?type=http").await["total"], 4);
    // Types match exactly, also where the collation ignores case (MariaDB): "HTTP" is no
    // type at all, and is refused rather than read as "http".
    refused(call(&server, Method::GET, "/api/v1/sources?type=HTTP", &mia), 400).await;
    server.stop().await.unwrap();
}

async fn metric_names_are_case_sensitive(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let (_, mia) = user(&server, "mia", Role::Maintainer).await;
    let id = new_source(&server, &mia, "node").await;
    let batch = json!([
        { "name": "up", "value": 1, "timestamp": T0 },
        { "name": "UP", "value": 0, "timestamp": T0 },
    ]);
    ingest_metrics(&server, &mia, &id, batch).await;
    assert_eq!(list_series(&server, &mia, "").await["total"], 2);
    let listing = list_series(&server, &mia, "?name=up").await;
    assert_eq!(listing["total"], 1, "{listing}");
    let query = json!({ "metric": "up", "start": T0, "end": T0, "step": 60, "aggregation": "max" });
    let result = range_query(&server, &mia, query).await;
    assert_eq!(result.len(), 1, "{result:?}");
    assert_eq!(result[0]["metric"]["__name__"], "up");
    assert_points(&points(&result[0]), &[(T0 as f64, 1.0)], "up");
    server.stop().await.unwrap();
}

/// The counter samples of the range-query tests: (host, Unix seconds, value). Two lie
/// outside `[T0, T0 + 179]`.
fn cpu_samples() -> Vec<(&'static str, f64, f64)> {
    let t = T0 as f64;
    vec![
        ("a", t - 1.0, 999.0),
        ("a", t, 10.0),
        ("a", t + 15.0, 14.0),
        ("a", t + 45.0, 22.0),
        ("a", t + 120.0, 30.0),
        ("a", t + 150.0, 45.5),
        ("a", t + 179.0, 48.0),
        ("a", t + 180.0, 999.0),
        ("b", t + 60.0, 3.0),
        ("b", t + 61.0, 5.0),
        ("b", t + 119.5, 6.5),
        ("b", t + 170.0, 7.0),
    ]
}

/// Ingests `cpu_samples` as `cpu_seconds_total{host, env="prod"}`, plus distractors:
/// another host in another env, and another metric name.
async fn ingest_cpu_samples(server: &TestServer, token: &str, source_id: &str) {
    let mut batch: Vec<Value> = cpu_samples()
        .into_iter()
        .map(|(host, ts, value)| {
            sample("cpu_seconds_total", "counter", json!({ "host": host, "env": "prod" }), value, json!(ts))
        })
        .collect();
    batch.push(sample("cpu_seconds_total", "counter", json!({ "host": "c", "env": "dev" }), 77.0, json!(T0 + 10)));
    batch.push(sample("cpu_seconds", "gauge", json!({ "host": "a", "env": "prod" }), 1000.0, json!(T0 + 10)));
    ingest_metrics(server, token, source_id, Value::Array(batch)).await;
}

fn samples_of(host: &str) -> Vec<(f64, f64)> {
    cpu_samples().into_iter().filter(|(h, _, _)| *h == host).map(|(_, ts, v)| (ts, v)).collect()
}

async fn range_queries_reduce_each_step_bucket(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let (_, mia) = user(&server, "mia", Role::Maintainer).await;
    let id = new_source(&server, &mia, "hosts").await;
    ingest_cpu_samples(&server, &mia, &id).await;
    let (start, end) = (T0, T0 + 179);

    for step in [60, 45, 180] {
        for aggregation in ["avg", "sum", "min", "max", "count", "rate"] {
            let query = json!({
                "metric": "cpu_seconds_total",
                "labels": { "env": "prod" },
                "start": start,
                "end": end,
                "step": step,
                "aggregation": aggregation,
            });
            let result = range_query(&server, &mia, query).await;
            assert_eq!(result.len(), 2, "step {step} {aggregation}: {result:?}");
            for host in ["a", "b"] {
                let series = result
                    .iter()
                    .find(|s| s["metric"]["host"] == host)
                    .unwrap_or_else(|| panic!("no host {host} in {result:?}"));
                assert_eq!(series["metric"], json!({ "__name__": "cpu_seconds_total", "env": "prod", "host": host }));
                let expected = expected_points(&samples_of(host), start, end, step, aggregation);
                assert_points(&points(series), &expected, &format!("host {host}, step {step}, {aggregation}"));
            }
        }
    }
    // Spot-check the arithmetic the expectations rest on: host a, 60 s buckets.
    let t = T0 as f64;
    let rate = expected_points(&samples_of("a"), start, end, 60, "rate");
    assert_eq!(rate, [(t, (22.0 - 10.0) / 60.0), (t + 120.0, (48.0 - 30.0) / 60.0)]);

    // Label matchers select series; the metric name is matched too.
    let query = |labels: Value, metric: &str| json!({ "metric": metric, "labels": labels, "start": start, "end": end, "step": 60, "aggregation": "count" });
    fn hosts(result: &[Value]) -> BTreeSet<String> {
        result.iter().map(|s| s["metric"]["host"].as_str().unwrap().to_owned()).collect()
    }
    assert_eq!(
        hosts(&range_query(&server, &mia, query(json!({}), "cpu_seconds_total")).await),
        fields(&["a", "b", "c"])
    );
    assert_eq!(
        hosts(&range_query(&server, &mia, query(json!({ "host": "a" }), "cpu_seconds_total")).await),
        fields(&["a"])
    );
    assert_eq!(
        hosts(&range_query(&server, &mia, query(json!({ "env": "dev" }), "cpu_seconds_total")).await),
        fields(&["c"])
    );
    let none = range_query(&server, &mia, query(json!({ "host": "a", "env": "dev" }), "cpu_seconds_total")).await;
    assert_eq!(none, Vec::<Value>::new());
    let gauge = range_query(&server, &mia, query(json!({}), "cpu_seconds")).await;
    assert_eq!(gauge.len(), 1);
    assert_eq!(gauge[0]["metric"]["__name__"], "cpu_seconds");
    assert_points(&points(&gauge[0]), &[(t, 1.0)], "cpu_seconds count");
    assert_eq!(range_query(&server, &mia, query(json!({}), "no_such_metric")).await, Vec::<Value>::new());
    server.stop().await.unwrap();
}

/// `(Unix seconds, value)` of one gauge, sent in the batches below: minutes filled over
/// several batches, late samples for minutes already stored, negative values, a fraction
/// of a second, and a last minute that a query ending at `T0 + 150` cuts in two.
fn rollup_batches() -> Vec<Vec<(f64, f64)>> {
    let t = T0 as f64;
    vec![
        vec![(t, 4.0), (t + 30.0, -2.5), (t + 59.999, 8.0), (t + 61.0, 1.0), (t + 150.5, 3.0)],
        vec![(t + 20.0, 16.0), (t + 90.0, -7.0), (t + 125.0, 2.0), (t + 179.0, 5.0), (t + 240.0, 0.5)],
        vec![(t + 10.0, -1.0), (t + 30.0, 0.25), (t + 130.0, 11.0), (t + 185.0, 6.0), (t + 3605.0, 9.0)],
    ]
}

/// A server where mia, a maintainer, has sent the rollup batches to a new source.
async fn server_with_rollup_batches(db: &TestDb) -> (TestServer, TestUser, String) {
    let server = TestServer::start(db.config()).await;
    let (user_mia, mia) = user(&server, "mia", Role::Maintainer).await;
    let id = new_source(&server, &mia, "queues").await;
    ingest_rollup_batches(&server, &mia, &id).await;
    (server, user_mia, mia)
}

/// Deletes the samples behind the server's back: the queries the slots answer whole still
/// answer as the samples did, from the rollups alone.
async fn assert_slots_answer_without_the_samples(db: &TestDb, server: &TestServer, token: &str) {
    run_sql(db, &["DELETE FROM metric_samples"]).await;
    let all: Vec<(f64, f64)> = rollup_batches().concat();
    for (start, end, step) in SLOT_QUERIES {
        assert_range_queries(server, token, &all, start, end, step).await;
    }
}

async fn ingest_rollup_batches(server: &TestServer, token: &str, source_id: &str) {
    for batch in rollup_batches() {
        let batch = batch.into_iter().map(|(ts, v)| sample("queue_depth", "gauge", json!({ "q": "a" }), v, json!(ts)));
        ingest_metrics(server, token, source_id, Value::Array(batch.collect())).await;
    }
}

/// `(start, end, step)` in Unix seconds of queries that the five-second slots answer
/// whole: start and step multiples of 5 s (not both of a minute), and no sample in the
/// last slot, which `end` cuts short (it ends a microsecond later), so it is read from the
/// samples.
const SLOT_QUERIES: [(i64, i64, i64); 5] = [
    (T0, T0 + 299, 45),
    (T0 + 30, T0 + 299, 60),
    (T0 + 5, T0 + 3899, 15),
    (T0 - 20, T0 + 3700, 100),
    (T0, T0 + 184, 10),
];

/// Queries the rollup batches with every aggregation over ranges and steps that read the
/// minute rollups (whole minutes from a whole minute), the five-second slots, either with
/// or without a partial last minute or slot, and over ones that can read neither; each
/// answer is checked against the samples.
async fn assert_rollup_queries(server: &TestServer, token: &str) {
    let all: Vec<(f64, f64)> = rollup_batches().concat();
    let queries = [
        (T0, T0 + 299, 60),
        (T0, T0 + 150, 60),
        (T0, T0 + 299, 120),
        (T0, T0 + 185, 180),
        (T0, T0 + 59, 60),
        (T0 - 600, T0 + 600, 3600),
        (T0, T0 + 3899, 300),
        (T0 - 3600, T0 + 7199, 3600),
        (T0 + 20, T0 + 150, 100),
        (T0 + 3, T0 + 299, 45),
        (T0, T0 + 299, 7),
    ];
    for (start, end, step) in queries.into_iter().chain(SLOT_QUERIES) {
        assert_range_queries(server, token, &all, start, end, step).await;
    }
}

/// The query of `[start, end]` by `step` with every aggregation, checked against `samples`.
async fn assert_range_queries(
    server: &TestServer,
    token: &str,
    samples: &[(f64, f64)],
    start: i64,
    end: i64,
    step: i64,
) {
    for aggregation in ["avg", "sum", "min", "max", "count", "rate"] {
        let query =
            json!({ "metric": "queue_depth", "start": start, "end": end, "step": step, "aggregation": aggregation });
        let result = range_query(server, token, query).await;
        assert_eq!(result.len(), 1, "{start}..{end} step {step} {aggregation}: {result:?}");
        let expected = expected_points(samples, start, end, step, aggregation);
        let what = format!("T0{:+}..T0{:+} step {step} {aggregation}", start - T0, end - T0);
        assert_points(&points(&result[0]), &expected, &what);
    }
}

/// Runs each statement on the test's database, directly.
async fn run_sql(db: &TestDb, statements: &[&str]) {
    let conn = db.connect().await;
    let backend = conn.get_database_backend();
    for sql in statements {
        conn.execute_raw(Statement::from_string(backend, *sql)).await.unwrap();
    }
    conn.close().await.unwrap();
}

/// With the samples deleted behind the server's back, only the rollups can answer.
async fn five_second_slots_answer_without_the_samples(db: TestDb) {
    let (server, _, mia) = server_with_rollup_batches(&db).await;
    assert_slots_answer_without_the_samples(&db, &server, &mia).await;
    // A step the slots cannot answer reads the samples, which are gone: the check above
    // can tell the two apart.
    let query = json!({ "metric": "queue_depth", "start": T0, "end": T0 + 299, "step": 7 });
    assert_eq!(range_query(&server, &mia, query).await, Vec::<Value>::new());
    // Minutes rewritten without the mark, as a replica that keeps no slots rewrites them:
    // the slots are no longer believed, and the samples, gone, answer nothing.
    let unmarked = format!("UPDATE metric_rollups SET minutes = substr(minutes, 34) WHERE hour = {}", T0 * 1_000_000);
    run_sql(&db, &[unmarked.as_str()]).await;
    let query = json!({ "metric": "queue_depth", "start": T0, "end": T0 + 299, "step": 45 });
    assert_eq!(range_query(&server, &mia, query).await, Vec::<Value>::new());
    server.stop().await.unwrap();
}

/// A database whose rollups predate the slots (their migration is undone and run again by
/// the next start) gets them from the samples.
async fn slots_are_built_for_rollups_stored_before_them(db: TestDb) {
    let (server, user_mia, _) = server_with_rollup_batches(&db).await;
    server.stop().await.unwrap();
    run_sql(
        &db,
        &["ALTER TABLE metric_rollups DROP COLUMN fine", "DELETE FROM kk_schema_migrations WHERE version = 8"],
    )
    .await;

    let server = TestServer::start(db.config()).await;
    let mia = server.token(&user_mia).await;
    assert_rollup_queries(&server, &mia).await;
    // Built from the samples, not left empty: they answer alone.
    assert_slots_answer_without_the_samples(&db, &server, &mia).await;
    server.stop().await.unwrap();
}

/// A replica of the release before the slots, during a rolling update, writes rows
/// without them, and rewrites the minutes of others without the mark that says the slots
/// match them (the test strips it, as that replica's rewrite would). Such a row keeps no
/// slots after later batches, and queries it overlaps read the samples instead, whether it
/// comes before or after a row with slots (whose slots, already gathered, are then thrown
/// away).
async fn slots_an_older_replica_left_behind_are_not_used(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let (_, mia) = user(&server, "mia", Role::Maintainer).await;
    let older = ["UPDATE metric_rollups SET fine = NULL", "UPDATE metric_rollups SET minutes = substr(minutes, 34)"];
    let cases = older.iter().flat_map(|sql| [(sql, T0, T0 + 3600), (sql, T0 + 3600, T0)]);
    for (n, (older, without, with)) in cases.enumerate() {
        let id = new_source(&server, &mia, &format!("queues-{n}")).await;
        ingest_rollup_batches(&server, &mia, &id).await;
        let older = format!("{older} WHERE hour = {}", without * 1_000_000);
        run_sql(&db, &[older.as_str()]).await;
        let late = [(T0 as f64 + 42.0, 12.0), (T0 as f64 + 3610.0, -3.0)];
        let batch = late.iter().map(|(ts, v)| sample("queue_depth", "gauge", json!({ "q": "a" }), *v, json!(ts)));
        ingest_metrics(&server, &mia, &id, Value::Array(batch.collect())).await;
        assert_eq!(count_rows(&db, "metric_rollups WHERE fine IS NULL").await, 1);

        let mut all: Vec<(f64, f64)> = rollup_batches().concat();
        all.extend(late);
        for (start, end, step) in SLOT_QUERIES {
            assert_range_queries(&server, &mia, &all, start, end, step).await;
        }
        // The other hour's slots are still kept and used: without the samples, a query of
        // that hour alone still answers, and one that overlaps the hour without does not.
        run_sql(&db, &["DELETE FROM metric_samples"]).await;
        assert_range_queries(&server, &mia, &all, with, with + 295, 5).await;
        for (start, end) in [(without, without + 295), (T0 + 5, T0 + 3614)] {
            let query = json!({ "metric": "queue_depth", "start": start, "end": end, "step": 5 });
            assert_eq!(range_query(&server, &mia, query).await, Vec::<Value>::new());
        }
        let (status, body) = send(call(&server, Method::DELETE, &format!("/api/v1/sources/{id}"), &mia)).await;
        assert_eq!(status, 204, "{body}");
    }
    server.stop().await.unwrap();
}

async fn minute_rollups_answer_as_the_samples_do(db: TestDb) {
    let (server, _, mia) = server_with_rollup_batches(&db).await;
    // A row an hour that has samples: the hours from T0 and from T0 + 1 h.
    assert_eq!(count_rows(&db, "metric_rollups").await, 2);
    assert_rollup_queries(&server, &mia).await;
    server.stop().await.unwrap();
}

/// A database that had samples before the rollups existed (the rollups migration is
/// undone and run again by the next start) answers as one that always had them.
async fn rollups_are_built_from_samples_stored_before_them(db: TestDb) {
    let (server, user_mia, _) = server_with_rollup_batches(&db).await;
    server.stop().await.unwrap();

    run_sql(&db, &["DROP TABLE metric_rollups", "DELETE FROM kk_schema_migrations WHERE version IN (5, 8)"]).await;

    let server = TestServer::start(db.config()).await;
    assert_eq!(count_rows(&db, "metric_rollups").await, 2);
    let mia = server.token(&user_mia).await;
    assert_rollup_queries(&server, &mia).await;
    server.stop().await.unwrap();
}

async fn range_queries_accept_rfc3339_unix_seconds_and_durations(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let (_, mia) = user(&server, "mia", Role::Maintainer).await;
    let id = new_source(&server, &mia, "hosts").await;
    ingest_cpu_samples(&server, &mia, &id).await;
    let query = |start: Value, end: Value, step: Value| {
        json!({
            "metric": "cpu_seconds_total",
            "labels": { "host": "a" },
            "start": start,
            "end": end,
            "step": step,
            "aggregation": "sum",
        })
    };
    let baseline = range_query(&server, &mia, query(json!(T0), json!(T0 + 179), json!(60))).await;
    assert_eq!(baseline.len(), 1);
    assert_points(&points(&baseline[0]), &expected_points(&samples_of("a"), T0, T0 + 179, 60, "sum"), "baseline");

    let variants = [
        (json!(rfc3339(T0)), json!(rfc3339(T0 + 179)), json!("60s")),
        (json!("2026-01-01T01:00:00+01:00"), json!(T0 + 179), json!("1m")),
        (json!(T0), json!(rfc3339(T0 + 179)), json!("60")),
        (json!(T0 as f64), json!((T0 + 179) as f64), json!(60.0)),
    ];
    for (start, end, step) in variants {
        let result = range_query(&server, &mia, query(start.clone(), end.clone(), step.clone())).await;
        assert_eq!(result, baseline, "start {start}, end {end}, step {step}");
    }
    // One bucket an hour wide holds every sample in range.
    let hourly = range_query(&server, &mia, query(json!(T0), json!(T0 + 179), json!("1h"))).await;
    let in_range: f64 =
        samples_of("a").iter().filter(|(ts, _)| (T0 as f64..=(T0 + 179) as f64).contains(ts)).map(|s| s.1).sum();
    assert_points(&points(&hourly[0]), &[(T0 as f64, in_range)], "1h");
    server.stop().await.unwrap();
}

async fn invalid_range_queries_are_refused(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let (_, mia) = user(&server, "mia", Role::Maintainer).await;
    let base = json!({ "metric": "cpu_seconds_total", "start": T0, "end": T0 + 600, "step": 60, "aggregation": "avg" });
    let with = |changes: Value| {
        let mut query = base.clone();
        for (k, v) in changes.as_object().unwrap() {
            query[k] = v.clone();
        }
        query
    };
    let post = |query: &Value| call(&server, Method::POST, "/api/v1/metrics/query", &mia).json(query);
    assert_eq!(range_query(&server, &mia, base.clone()).await, Vec::<Value>::new());

    let cases = [
        (json!({ "end": T0 - 1 }), "end"),
        (json!({ "step": 0 }), "step"),
        (json!({ "step": "0s" }), "step"),
        (json!({ "step": -60 }), "step"),
        (json!({ "step": "soon" }), "step"),
        (json!({ "start": "yesterday" }), "start"),
        (json!({ "end": "later" }), "end"),
        (json!({ "aggregation": "median" }), "aggregation"),
        (json!({ "metric": "cpu seconds" }), "metric"),
        (json!({ "metric": "" }), "metric"),
        (json!({ "start": T0, "end": T0 + 11_000, "step": 1 }), "step"),
        (json!({ "start": T0, "end": T0 + 110_000, "step": "10s" }), "step"),
    ];
    for (change, field) in cases {
        let query = with(change);
        assert_eq!(refused(post(&query), 400).await, fields(&[field]), "{query}");
    }
    // 11,000 points is the most a query may ask for.
    let widest = with(json!({ "start": T0, "end": T0 + 10_999, "step": 1, "aggregation": "count" }));
    assert_eq!(range_query(&server, &mia, widest).await, Vec::<Value>::new());

    let mut without_metric = base.clone();
    without_metric.as_object_mut().unwrap().remove("metric");
    refused(post(&without_metric), 400).await;
    refused(post(&with(json!({ "query": "up" }))), 400).await;
    server.stop().await.unwrap();
}

async fn a_metrics_batch_with_one_bad_sample_stores_nothing(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let (_, mia) = user(&server, "mia", Role::Maintainer).await;
    let id = new_source(&server, &mia, "strict").await;
    let good = json!({ "name": "good_metric", "value": 1.5, "timestamp": T0 });

    let cases: Vec<(Value, &[&str])> = vec![
        (json!([good, { "name": "good_metric", "timestamp": T0 }]), &["metrics[1].value"]),
        (json!([good, { "name": "good_metric", "value": null }]), &["metrics[1].value"]),
        (json!([good, { "name": "9lives", "value": 1 }]), &["metrics[1].name"]),
        (json!([good, { "name": "has-dash", "value": 1 }]), &["metrics[1].name"]),
        (json!([{ "value": 1 }, good]), &["metrics[0].name"]),
        (json!([good, { "name": "ok", "value": 1, "type": "summary" }]), &["metrics[1].type"]),
        (json!([good, { "name": "ok", "value": 1, "labels": { "__name__": "x" } }]), &["metrics[1].labels"]),
        (json!([good, { "name": "ok", "value": 1, "labels": { "bad-label": "x" } }]), &["metrics[1].labels"]),
        (json!([good, { "name": "ok", "value": 1, "timestamp": "yesterday" }]), &["metrics[1].timestamp"]),
        (
            json!([good, { "name": "9", "type": "summary" }, good]),
            &["metrics[1].name", "metrics[1].type", "metrics[1].value"],
        ),
        (json!([]), &["metrics"]),
    ];
    for (metrics, bad) in cases {
        let named = refused(metrics_request(&server, &mia, &id, metrics.clone()), 400).await;
        assert_eq!(named, fields(bad), "{metrics}");
    }
    // A non-finite value cannot even be written in JSON: the whole body is refused.
    for value in ["1e999", "-1e999", "\"NaN\"", "\"Infinity\""] {
        let body = format!(
            r#"{{"source_id": "{id}", "metrics": [{{"name": "good_metric", "value": 1}}, {{"name": "good_metric", "value": {value}}}]}}"#
        );
        let request =
            call(&server, Method::POST, "/api/v1/metrics", &mia).header("Content-Type", "application/json").body(body);
        refused(request, 400).await;
    }
    assert_eq!(list_series(&server, &mia, "").await["total"], 0, "a refused batch created a series");
    let query =
        json!({ "metric": "good_metric", "start": T0 - 60, "end": T0 + 60, "step": 60, "aggregation": "count" });
    assert_eq!(range_query(&server, &mia, query.clone()).await, Vec::<Value>::new());

    // The good sample alone is accepted.
    ingest_metrics(&server, &mia, &id, json!([good])).await;
    let result = range_query(&server, &mia, query).await;
    assert_eq!(result.len(), 1);
    assert_points(&points(&result[0]), &[(T0 as f64, 1.0)], "good_metric count");
    server.stop().await.unwrap();
}

// ---------------------------------------------------------------------------------------
// Status and runtime configuration
// ---------------------------------------------------------------------------------------

async fn status_describes_the_service_and_the_caller(db: TestDb) {
    let started = std::time::Instant::now();
    let server = TestServer::start(db.config()).await;
    let (vic, token) = user(&server, "vic", Role::Viewer).await;
    let (status, created) =
        send(call(&server, Method::POST, "/api/v1/auth/api-keys", &token).json(&json!({ "name": "status-probe" })))
            .await;
    assert_eq!(status, 201, "{created}");
    let api_key = created["key"].as_str().unwrap().to_owned();
    let backend = match db.kind {
        Kind::Sqlite => "sqlite",
        Kind::Postgres => "postgresql",
        Kind::MySql => "mysql",
    };

    for (cred, method) in [(token.as_str(), "jwt"), (api_key.as_str(), "api_key")] {
        let (status, body) = send(call(&server, Method::GET, "/api/v1/status", cred)).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["status"], "operational");
        assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(body["environment"], server.state.config.environment.as_str());
        let uptime = body["uptime_seconds"].as_u64().unwrap_or_else(|| panic!("{body}"));
        assert!(uptime <= started.elapsed().as_secs(), "{body}");
        assert_eq!(body["database"], json!({ "backend": backend, "status": "ok" }));
        assert_eq!(body["grpc"]["enabled"], true, "gRPC is served unless --no-grpc");
        assert_eq!(body["grpc"]["port"], server.state.config.grpc_port);
        assert!(body["license"]["tier"].is_string(), "{body}");
        assert_eq!(body["identity"]["username"], "vic");
        assert_eq!(body["identity"]["roles"], json!(["viewer"]));
        assert_eq!(body["identity"]["auth_method"], method);
        if let Some(id) = body["identity"].get("user_id") {
            assert_eq!(id, vic.id.as_str());
        }
    }
    let anonymous = call(&server, Method::GET, "/api/v1/status", "").send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    assert_eq!(anonymous.headers()["www-authenticate"], "Bearer");
    refused(call(&server, Method::GET, "/api/v1/status", "not-a-token"), 401).await;
    refused(call(&server, Method::GET, "/api/v1/status", "kk_not-a-key"), 401).await;
    server.stop().await.unwrap();
}

/// The audit rows of configuration changes.
async fn config_audit(server: &TestServer, admin: &str) -> Value {
    let (status, body) = send(call(server, Method::GET, "/api/v1/audit?action=UPDATE_CONFIG", admin)).await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn admin_config_is_for_admins_only(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let (_, admin) = user(&server, "root", Role::Admin).await;
    let (_, mia) = user(&server, "mia", Role::Maintainer).await;
    let (_, vic) = user(&server, "vic", Role::Viewer).await;
    let initial = server.state.config.log_level.as_str();
    let new_level = if initial == "DEBUG" { "ERROR" } else { "DEBUG" };

    let (status, config) = send(call(&server, Method::GET, "/api/v1/admin/config", &admin)).await;
    assert_eq!(status, 200, "{config}");
    assert_eq!(config["log_level"], initial);
    for token in [&mia, &vic] {
        refused(call(&server, Method::GET, "/api/v1/admin/config", token), 403).await;
        let put = call(&server, Method::PUT, "/api/v1/admin/config", token).json(&json!({ "log_level": new_level }));
        refused(put, 403).await;
    }
    refused(call(&server, Method::GET, "/api/v1/admin/config", ""), 401).await;
    refused(call(&server, Method::PUT, "/api/v1/admin/config", "").json(&json!({ "log_level": new_level })), 401).await;
    let (_, unchanged) = send(call(&server, Method::GET, "/api/v1/admin/config", &admin)).await;
    assert_eq!(unchanged["log_level"], initial, "a refused PUT changed the level");
    assert_eq!(server.state.log_level.get().as_str(), initial);
    // An invalid level is refused before anything is stored.
    let named =
        refused(call(&server, Method::PUT, "/api/v1/admin/config", &admin).json(&json!({ "log_level": "LOUD" })), 400)
            .await;
    assert_eq!(named, fields(&["log_level"]));
    assert_eq!(config_audit(&server, &admin).await["total"], 0);
    server.stop().await.unwrap();
}

async fn admin_config_sets_the_log_level_and_is_audited(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let (root, admin) = user(&server, "root", Role::Admin).await;
    let initial = server.state.config.log_level.as_str();
    let (status, config) = send(call(&server, Method::GET, "/api/v1/admin/config", &admin)).await;
    assert_eq!(status, 200, "{config}");
    assert_eq!(config["log_level"], initial);

    let new_level = if initial == "DEBUG" { "ERROR" } else { "DEBUG" };
    let put = call(&server, Method::PUT, "/api/v1/admin/config", &admin).json(&json!({ "log_level": new_level }));
    let (status, body) = send(put).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["log_level"], new_level);
    let (_, config) = send(call(&server, Method::GET, "/api/v1/admin/config", &admin)).await;
    assert_eq!(config["log_level"], new_level);
    assert_eq!(server.state.log_level.get().as_str(), new_level, "not applied at once");

    for bad in [json!({ "log_level": "LOUD" }), json!({ "log_level": "" }), json!({ "log_level": 10 })] {
        let put = call(&server, Method::PUT, "/api/v1/admin/config", &admin).json(&bad);
        let named = refused(put, 400).await;
        assert!(named.is_empty() || named == fields(&["log_level"]), "{bad}: {named:?}");
    }
    let named =
        refused(call(&server, Method::PUT, "/api/v1/admin/config", &admin).json(&json!({ "log_level": "LOUD" })), 400)
            .await;
    assert_eq!(named, fields(&["log_level"]));
    let (_, config) = send(call(&server, Method::GET, "/api/v1/admin/config", &admin)).await;
    assert_eq!(config["log_level"], new_level, "a refused level was applied");

    let audit = config_audit(&server, &admin).await;
    assert_eq!(audit["total"], 1, "{audit}");
    let row = &audit["audit"][0];
    assert_eq!(row["user_id"], root.id.as_str());
    assert_eq!(row["status"], "success");
    assert_eq!(row["resource_type"], "config");
    assert_eq!(row["client_ip"], "127.0.0.1");
    server.stop().await.unwrap();
}
