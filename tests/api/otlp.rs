//! OTLP: `POST /v1/logs`, `/v1/metrics` (and under `/otlp`) in protobuf and OTLP JSON, gzip
//! or not, and the gRPC `LogsService/Export` and `MetricsService/Export`; the credential
//! forms, partial success, OTLP's own error answers, and the mapping read back through
//! the JSON API. The last case drives the OpenTelemetry Python SDK's real exporters
//! (`tests/clients/otlp_send.py`; `bash tests/clients/setup.sh` installs them).
//! Each case runs on SQLite, PostgreSQL and MariaDB, through the real server on a real socket.

use std::{io::Write, path::PathBuf, time::Duration};

use chrono::Utc;
use killkrill::auth::Role;
use opentelemetry_proto::tonic::{
    collector::{
        logs::v1::{ExportLogsServiceRequest, ExportLogsServiceResponse, logs_service_client::LogsServiceClient},
        metrics::v1::{
            ExportMetricsServiceRequest, ExportMetricsServiceResponse, metrics_service_client::MetricsServiceClient,
        },
    },
    common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value::Value as V},
    logs::v1::{LogRecord, ResourceLogs, ScopeLogs},
    metrics::v1::{
        AggregationTemporality, ExponentialHistogram, ExponentialHistogramDataPoint, Gauge, Histogram,
        HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, Summary, SummaryDataPoint,
        metric::Data, number_data_point, summary_data_point::ValueAtQuantile,
    },
    resource::v1::Resource,
};
use prost::Message;
use reqwest::{Method, RequestBuilder};
use serde_json::{Value, json};
use tonic::codec::CompressionEncoding;

use crate::common::{TestDb, TestServer, rest::*};

cases! {
    on_all_databases:
        otlp_protobuf_logs_keep_time_level_body_labels_and_attributes,
        otlp_json_bodies_follow_otlp_rules_and_are_answered_in_json,
        otlp_every_credential_form_names_its_source,
        otlp_partial_success_stores_only_the_valid_items,
        otlp_bad_bodies_are_refused_with_a_status_and_store_nothing,
        otlp_metrics_map_to_prometheus_series,
        otlp_grpc_exports_with_gzip_and_answers_status_codes,
        otlp_python_sdk_exports_over_http_and_grpc;
}

/// `google.rpc.Status`, the body of OTLP's error answers.
#[derive(Clone, PartialEq, Message)]
pub struct RpcStatus {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
}

/// 2026-01-01T00:00:00.123456789Z in nanoseconds.
const NANOS: u64 = 1_767_225_600_123_456_789;

fn s(text: &str) -> Option<AnyValue> {
    Some(AnyValue { value: Some(V::StringValue(text.to_owned())) })
}

fn kv(key: &str, value: Option<AnyValue>) -> KeyValue {
    KeyValue { key: key.to_owned(), value, ..Default::default() }
}

fn resource() -> Option<Resource> {
    Some(Resource {
        attributes: vec![
            kv("service.name", s("checkout")),
            kv("service.namespace", s("shop")),
            kv("service.instance.id", s("pod-1")),
            kv("host.name", s("web-1")),
            kv("k8s.pod.name", s("checkout-7d9")),
            kv("cloud.region", s("eu-west-1")),
        ],
        ..Default::default()
    })
}

fn log_request(records: Vec<LogRecord>) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: resource(),
            scope_logs: vec![ScopeLogs {
                scope: Some(InstrumentationScope { name: "app".into(), version: "1.0".into(), ..Default::default() }),
                log_records: records,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn record(body: &str, severity: i32, nanos: u64) -> LogRecord {
    LogRecord { time_unix_nano: nanos, severity_number: severity, body: s(body), ..Default::default() }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// A protobuf OTLP request to `path` with `cred` (see `rest::call`).
fn protobuf(server: &TestServer, path: &str, cred: &str, body: Vec<u8>) -> RequestBuilder {
    call(server, Method::POST, path, cred).header("Content-Type", "application/x-protobuf").body(body)
}

/// Sends `request`, asserts a 200 protobuf answer and decodes it.
async fn exported<T: Message + Default>(request: RequestBuilder) -> T {
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let content_type = response.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned());
    let bytes = response.bytes().await.unwrap();
    assert_eq!(status, 200, "{:?}", RpcStatus::decode(&*bytes));
    assert_eq!(content_type.as_deref(), Some("application/x-protobuf"));
    T::decode(&*bytes).unwrap()
}

/// Sends `request`, asserts it is refused with `expected` and a protobuf `Status` of gRPC
/// `code`; returns its message.
async fn refused_status(request: RequestBuilder, expected: u16, code: tonic::Code) -> String {
    refused_answer(request.send().await.unwrap(), expected, code).await
}

/// [`refused_status`] of an answer already received.
async fn refused_answer(response: reqwest::Response, expected: u16, code: tonic::Code) -> String {
    let status = response.status().as_u16();
    let content_type = response.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned());
    let bytes = response.bytes().await.unwrap();
    assert_eq!(status, expected, "{}", String::from_utf8_lossy(&bytes));
    assert_eq!(content_type.as_deref(), Some("application/x-protobuf"));
    let body = RpcStatus::decode(&*bytes).unwrap();
    assert_eq!(body.code, code as i32, "{body:?}");
    assert!(!body.message.is_empty());
    body.message
}

/// A maintainer's token, a source named `name` and an ingest key of it.
async fn setup(server: &TestServer, name: &str) -> (String, String, String) {
    let (_, token) = user(server, "mia", Role::Maintainer).await;
    let source_id = new_source(server, &token, name).await;
    let (_, key) = server.create_ingest_key(&token, &source_id).await;
    (token, source_id, key)
}

async fn otlp_protobuf_logs_keep_time_level_body_labels_and_attributes(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let (token, source_id, key) = setup(&server, "shop").await;
    let mut warn = record("disk almost full", 13, NANOS);
    warn.severity_text = "WARN".into();
    warn.attributes = vec![kv("http.method", s("GET")), kv("retries", Some(AnyValue { value: Some(V::IntValue(2)) }))];
    warn.trace_id = hex::decode("5b8efff798038103d269b633813fc60c").unwrap();
    warn.span_id = hex::decode("eee19b7ec3c1b174").unwrap();
    let mut observed = record("observed only", 21, 0);
    observed.observed_time_unix_nano = NANOS + 1_000_000_000;
    let before = Utc::now();
    let request = log_request(vec![warn, observed, record("received now", 0, 0)]);
    // gzip, the Bearer form, and the `/otlp` prefix an exporter's base endpoint gives.
    let body = gzip(&request.encode_to_vec());
    let answer: ExportLogsServiceResponse =
        exported(protobuf(&server, "/otlp/v1/logs", "", body).bearer_auth(&key).header("Content-Encoding", "gzip"))
            .await;
    assert_eq!(answer.partial_success, None);
    let after = Utc::now();

    let logs = get_logs(&server, &token, &[("source_id", &source_id)]).await["logs"].as_array().unwrap().clone();
    assert_eq!(logs.len(), 3, "{logs:?}");
    let by_message = |m: &str| logs.iter().find(|l| l["message"] == m).unwrap_or_else(|| panic!("{m}: {logs:?}"));
    let warn = by_message("disk almost full");
    assert_eq!(warn["timestamp"], "2026-01-01T00:00:00.123456Z");
    assert_eq!(warn["level"], "warning");
    assert_eq!(warn["hostname"], "web-1");
    assert_eq!(warn["application"], "checkout");
    assert_eq!(
        warn["labels"],
        json!({
            "source": "shop", "level": "warning", "hostname": "web-1", "application": "checkout",
            "service_name": "checkout", "service_namespace": "shop", "k8s_pod_name": "checkout-7d9",
        })
    );
    assert_eq!(
        warn["attributes"],
        json!({
            "cloud.region": "eu-west-1", "service.instance.id": "pod-1",
            "otel.scope.name": "app", "otel.scope.version": "1.0",
            "http.method": "GET", "retries": 2,
            "trace_id": "5b8efff798038103d269b633813fc60c", "span_id": "eee19b7ec3c1b174",
        })
    );
    let observed = by_message("observed only");
    assert_eq!(observed["timestamp"], "2026-01-01T00:00:01.123456Z");
    assert_eq!(observed["level"], "critical");
    let now = by_message("received now");
    assert_eq!(now["level"], "info");
    assert_within(instant(&now["timestamp"]), before, after, "a record without a time");
}

async fn otlp_json_bodies_follow_otlp_rules_and_are_answered_in_json(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let (token, source_id, key) = setup(&server, "json").await;
    // As the specification's examples write it: hex ids, 64-bit integers as strings (or
    // numbers), enums as integers, unknown fields ignored.
    let logs = json!({"resourceLogs": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "my.service"}}]},
        "scopeLogs": [{"scope": {"name": "my.library"}, "logRecords": [{
            "timeUnixNano": "1544712660300000000", "severityNumber": 10, "severityText": "Information",
            "traceId": "5B8EFFF798038103D269B633813FC60C", "spanId": "EEE19B7EC3C1B174",
            "body": {"stringValue": "Example log record"}, "somethingNew": true,
            "attributes": [{"key": "int.attribute", "value": {"intValue": "10"}},
                           {"key": "map", "value": {"kvlistValue": {"values": [{"key": "k", "value": {"boolValue": true}}]}}}]
        }]}]
    }]});
    let response = call(&server, Method::POST, "/v1/logs", &key).json(&logs).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_eq!(response.json::<Value>().await.unwrap(), json!({}));
    let entry = get_logs(&server, &token, &[("source_id", &source_id)]).await["logs"][0].clone();
    assert_eq!(entry["message"], "Example log record");
    assert_eq!(entry["timestamp"], "2018-12-13T14:51:00.300000Z");
    assert_eq!(entry["level"], "info");
    assert_eq!(entry["labels"]["service_name"], "my.service");
    assert_eq!(entry["attributes"]["trace_id"], "5b8efff798038103d269b633813fc60c");
    assert_eq!(entry["attributes"]["int.attribute"], 10);
    assert_eq!(entry["attributes"]["map.k"], true);

    let metrics = json!({"resourceMetrics": [{"scopeMetrics": [{"metrics": [
        {"name": "jobs.done", "sum": {"aggregationTemporality": 2, "isMonotonic": true,
            "dataPoints": [{"asInt": "41", "timeUnixNano": "1767225600000000000"}]}},
        {"name": "jobs.rate", "sum": {"aggregationTemporality": 1, "isMonotonic": true,
            "dataPoints": [{"asDouble": 1.5, "timeUnixNano": 1767225600000000000u64}]}}
    ]}]}]});
    let response = call(&server, Method::POST, "/otlp/v1/metrics", &key).json(&metrics).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["partialSuccess"]["rejectedDataPoints"], "1", "{body}");
    assert!(body["partialSuccess"]["errorMessage"].as_str().unwrap().contains("delta temporality"), "{body}");
    let series = list_series(&server, &token, "?name=jobs_done_total").await;
    assert_eq!(series["metrics"][0]["last_value"], 41.0, "{series}");
    assert_eq!(series["metrics"][0]["type"], "counter");
    assert_eq!(list_series(&server, &token, "?name=jobs_rate_total").await["metrics"], json!([]));

    // A JSON error answer is a Status in JSON.
    let response = call(&server, Method::POST, "/v1/logs", &key)
        .header("Content-Type", "application/json")
        .body("{\"resourceLogs\": [")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let status: Value = response.json().await.unwrap();
    assert_eq!(status["code"], tonic::Code::InvalidArgument as i32, "{status}");
    assert!(status["message"].as_str().unwrap().starts_with("Malformed OTLP JSON body"), "{status}");
}

async fn otlp_every_credential_form_names_its_source(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let (token, source_id, key) = setup(&server, "creds").await;
    let api_key = {
        let created = server.authed(Method::POST, "/api/v1/auth/api-keys", &token).json(&json!({ "name": "otel" }));
        let created: Value = created.send().await.unwrap().json().await.unwrap();
        created["key"].as_str().unwrap().to_owned()
    };
    let body = |n: usize| log_request(vec![record(&format!("form {n}"), 9, NANOS)]).encode_to_vec();
    let post = |n: usize| protobuf(&server, "/v1/logs", "", body(n));
    let forms = [
        post(0).bearer_auth(&key),
        post(1).header("X-API-Key", &key),
        post(2).basic_auth("otel", Some(&key)),
        post(3).bearer_auth(&token).header("X-Source", "creds"),
        post(4).header("X-API-Key", &api_key).header("X-Source", &source_id),
        protobuf(&server, "/v1/logs?source=creds", "", body(5)).basic_auth("mia", Some(&api_key)),
    ];
    for (n, form) in forms.into_iter().enumerate() {
        let answer: ExportLogsServiceResponse = exported(form).await;
        assert_eq!(answer.partial_success, None, "form {n}");
    }
    let mut stored = messages(&server, &token, &[("source_id", &source_id)]).await;
    stored.sort();
    assert_eq!(stored, (0..6).map(|n| format!("form {n}")).collect::<Vec<_>>());

    let message = refused_status(post(9).bearer_auth(&token), 400, tonic::Code::InvalidArgument).await;
    assert!(message.contains("source"), "{message}");
    refused_status(post(9), 401, tonic::Code::Unauthenticated).await;
    refused_status(post(9).bearer_auth("kki_not-a-key"), 401, tonic::Code::Unauthenticated).await;
    let (_, viewer) = user(&server, "vic", Role::Viewer).await;
    let request = post(9).bearer_auth(&viewer).header("X-Source", "creds");
    refused_status(request, 403, tonic::Code::PermissionDenied).await;
    assert_eq!(count_rows(&db, "logs").await, 6);
}

async fn otlp_partial_success_stores_only_the_valid_items(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let (token, source_id, key) = setup(&server, "partial").await;
    let mut nul = record("bad\0line", 9, NANOS);
    nul.severity_text = "INFO".into();
    let request = log_request(vec![record("kept", 9, NANOS), record("", 9, NANOS), nul]);
    let answer: ExportLogsServiceResponse =
        exported(protobuf(&server, "/v1/logs", &key, request.encode_to_vec())).await;
    let partial = answer.partial_success.unwrap();
    assert_eq!(partial.rejected_log_records, 2, "{partial:?}");
    let first = "resource_logs[0].scope_logs[0].log_records[1].message: is required";
    assert!(partial.error_message.starts_with(first), "{partial:?}");
    assert!(partial.error_message.contains("log_records[2].message"), "{partial:?}");
    assert_eq!(messages(&server, &token, &[("source_id", &source_id)]).await, ["kept"]);

    let metrics = metric_request(vec![
        gauge("ok_gauge", 1.0),
        Metric {
            name: "exp".into(),
            data: Some(Data::ExponentialHistogram(ExponentialHistogram {
                data_points: vec![ExponentialHistogramDataPoint { count: 1, ..Default::default() }],
                aggregation_temporality: CUMULATIVE,
            })),
            ..Default::default()
        },
    ]);
    let answer: ExportMetricsServiceResponse =
        exported(protobuf(&server, "/v1/metrics", &key, metrics.encode_to_vec())).await;
    let partial = answer.partial_success.unwrap();
    assert_eq!(partial.rejected_data_points, 1);
    assert!(partial.error_message.contains("exponential histogram `exp`"), "{partial:?}");
    assert_eq!(count_rows(&db, "metric_samples").await, 1);
    // The refused items are counted for their source in /metrics.
    let exposition = server.get("/metrics").await.text().await.unwrap();
    let refused_line =
        format!("killkrill_ingest_items_total{{source_id=\"{source_id}\",kind=\"samples\",outcome=\"refused\"}} 1");
    assert!(exposition.contains(&refused_line), "{refused_line}");
}

async fn otlp_bad_bodies_are_refused_with_a_status_and_store_nothing(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let (_, _, key) = setup(&server, "bad").await;
    let message = refused_status(
        protobuf(&server, "/v1/logs", &key, b"\x0a\xff\xff\xff\x0f".to_vec()),
        400,
        tonic::Code::InvalidArgument,
    )
    .await;
    assert!(message.starts_with("Malformed protobuf body"), "{message}");
    let message = refused_status(
        protobuf(&server, "/v1/metrics", &key, b"not gzip".to_vec()).header("Content-Encoding", "gzip"),
        400,
        tonic::Code::InvalidArgument,
    )
    .await;
    assert!(!message.is_empty());
    // 17 MiB of zeros is a few KiB of gzip: refused once the decompressed size passes the limit.
    let bomb = gzip(&vec![0u8; 17 * 1024 * 1024]);
    assert!(bomb.len() < 64 * 1024);
    let request = protobuf(&server, "/v1/logs", &key, bomb).header("Content-Encoding", "gzip");
    refused_status(request, 413, tonic::Code::ResourceExhausted).await;
    // A body over the limit is refused from its Content-Length; the server then reads and
    // discards the rest before it closes, so the client, still writing, reads the 413.
    let answer = protobuf(&server, "/v1/logs", &key, vec![0u8; 17 * 1024 * 1024]).send().await.unwrap();
    refused_answer(answer, 413, tonic::Code::ResourceExhausted).await;
    let request = protobuf(&server, "/v1/logs", &key, Vec::new()).header("Content-Encoding", "br");
    let message = refused_status(request, 415, tonic::Code::InvalidArgument).await;
    assert!(message.contains("Content-Encoding"), "{message}");

    let response = call(&server, Method::POST, "/v1/logs", &key)
        .header("Content-Type", "text/plain")
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 415);
    let status: Value = response.json().await.unwrap();
    assert_eq!(status["code"], tonic::Code::InvalidArgument as i32);
    assert!(status["message"].as_str().unwrap().contains("application/x-protobuf"), "{status}");
    assert_eq!(count_rows(&db, "logs").await + count_rows(&db, "metric_samples").await, 0);

    // An empty export is a success that stores nothing.
    let empty: ExportLogsServiceResponse = exported(protobuf(&server, "/v1/logs", &key, Vec::new())).await;
    assert_eq!(empty.partial_success, None);
}

const CUMULATIVE: i32 = AggregationTemporality::Cumulative as i32;
/// 2026-01-01T00:00:00Z in nanoseconds.
const T0_NANOS: u64 = T0 as u64 * 1_000_000_000;

fn number(value: f64) -> NumberDataPoint {
    NumberDataPoint {
        time_unix_nano: T0_NANOS,
        value: Some(number_data_point::Value::AsDouble(value)),
        ..Default::default()
    }
}

fn gauge(name: &str, value: f64) -> Metric {
    Metric {
        name: name.into(),
        data: Some(Data::Gauge(Gauge { data_points: vec![number(value)] })),
        ..Default::default()
    }
}

fn metric_request(metrics: Vec<Metric>) -> ExportMetricsServiceRequest {
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: resource(),
            scope_metrics: vec![ScopeMetrics { metrics, ..Default::default() }],
            ..Default::default()
        }],
    }
}

async fn otlp_metrics_map_to_prometheus_series(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let (token, _, key) = setup(&server, "metrics").await;
    let mut counter_point = number(12.0);
    counter_point.attributes = vec![kv("http.method", s("GET"))];
    let mut stale = number(0.0);
    (stale.flags, stale.time_unix_nano) = (1, T0_NANOS + 60_000_000_000);
    let request = metric_request(vec![
        Metric {
            name: "http.requests".into(),
            description: "Requests served".into(),
            data: Some(Data::Sum(Sum {
                data_points: vec![counter_point],
                aggregation_temporality: CUMULATIVE,
                is_monotonic: true,
            })),
            ..Default::default()
        },
        Metric {
            name: "queue.depth".into(),
            data: Some(Data::Sum(Sum {
                data_points: vec![number(-3.0)],
                aggregation_temporality: CUMULATIVE,
                is_monotonic: false,
            })),
            ..Default::default()
        },
        Metric {
            name: "latency".into(),
            data: Some(Data::Histogram(Histogram {
                data_points: vec![HistogramDataPoint {
                    time_unix_nano: T0_NANOS,
                    count: 6,
                    sum: Some(0.75),
                    bucket_counts: vec![3, 2, 1],
                    explicit_bounds: vec![0.1, 1_000_000.0],
                    ..Default::default()
                }],
                aggregation_temporality: CUMULATIVE,
            })),
            ..Default::default()
        },
        Metric {
            name: "rpc".into(),
            data: Some(Data::Summary(Summary {
                data_points: vec![SummaryDataPoint {
                    time_unix_nano: T0_NANOS,
                    count: 4,
                    sum: 2.0,
                    quantile_values: vec![ValueAtQuantile { quantile: 0.5, value: 0.4 }],
                    ..Default::default()
                }],
            })),
            ..Default::default()
        },
        Metric {
            name: "temp".into(),
            data: Some(Data::Gauge(Gauge { data_points: vec![number(21.5), stale] })),
            ..Default::default()
        },
    ]);
    let answer: ExportMetricsServiceResponse = exported(
        protobuf(&server, "/v1/metrics", &key, gzip(&request.encode_to_vec())).header("Content-Encoding", "gzip"),
    )
    .await;
    assert_eq!(answer.partial_success, None);

    let series = list_series(&server, &token, "?limit=100").await["metrics"].as_array().unwrap().clone();
    let shown: Vec<String> = {
        let mut shown: Vec<String> = series
            .iter()
            .map(|s| {
                let mut labels = s["labels"].as_object().unwrap().clone();
                assert_eq!(labels.remove("job"), Some(json!("shop/checkout")), "{s}");
                assert_eq!(labels.remove("instance"), Some(json!("pod-1")), "{s}");
                let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap())).collect();
                format!(
                    "{}{{{}}} {} {}",
                    s["name"].as_str().unwrap(),
                    labels.join(","),
                    s["type"].as_str().unwrap(),
                    s["last_value"]
                )
            })
            .collect();
        shown.sort();
        shown
    };
    assert_eq!(
        shown,
        [
            "http_requests_total{http_method=GET} counter 12.0",
            "latency_bucket{le=+Inf} histogram 6.0",
            "latency_bucket{le=0.1} histogram 3.0",
            "latency_bucket{le=1e+06} histogram 5.0",
            "latency_count{} histogram 6.0",
            "latency_sum{} histogram 0.75",
            "queue_depth{} gauge -3.0",
            "rpc_count{} summary 4.0",
            "rpc_sum{} summary 2.0",
            "rpc{quantile=0.5} summary 0.4",
            // The last sample is the stale marker (no recorded value), shown as null.
            "temp{} gauge null",
        ]
    );
    let query =
        json!({ "metric": "latency_bucket", "labels": { "le": "1e+06" }, "start": T0, "end": T0 + 59, "step": 60 });
    let result = range_query(&server, &token, query).await;
    assert_eq!(result.len(), 1, "{result:?}");
    assert_eq!(result[0]["metric"]["le"], "1e+06");
    assert_points(&points(&result[0]), &[(T0 as f64, 5.0)], "latency_bucket{le=1e+06}");
    let query = json!({ "metric": "temp", "start": T0, "end": T0 + 59, "step": 60 });
    assert_points(&points(&range_query(&server, &token, query).await[0]), &[(T0 as f64, 21.5)], "temp");
}

/// A gRPC request carrying `metadata`.
fn with<T>(message: T, metadata: &[(&'static str, &str)]) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    for (name, value) in metadata {
        request.metadata_mut().insert(*name, value.parse().unwrap());
    }
    request
}

async fn otlp_grpc_exports_with_gzip_and_answers_status_codes(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let (token, source_id, key) = setup(&server, "grpc").await;
    let channel = server.grpc().await;
    let mut logs = LogsServiceClient::new(channel.clone())
        .send_compressed(CompressionEncoding::Gzip)
        .accept_compressed(CompressionEncoding::Gzip);
    let export = log_request(vec![record("over grpc", 17, NANOS), record("", 9, NANOS)]);
    let bearer = format!("Bearer {key}");
    let answer = logs.export(with(export.clone(), &[("authorization", &bearer)])).await.unwrap().into_inner();
    assert_eq!(answer.partial_success.map(|p| p.rejected_log_records), Some(1));
    let entry = get_logs(&server, &token, &[("source_id", &source_id)]).await["logs"][0].clone();
    assert_eq!((entry["message"].as_str(), entry["level"].as_str()), (Some("over grpc"), Some("error")));
    assert_eq!(entry["labels"]["service_name"], "checkout");

    let user_bearer = format!("Bearer {token}");
    let mut metrics = MetricsServiceClient::new(channel.clone()).send_compressed(CompressionEncoding::Gzip);
    let answer = metrics
        .export(with(metric_request(vec![gauge("g", 2.0)]), &[("authorization", &user_bearer), ("x-source", "grpc")]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.partial_success, None);
    assert_eq!(list_series(&server, &token, "?name=g").await["metrics"][0]["last_value"], 2.0);

    let code = |result: Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status>| result.unwrap_err().code();
    assert_eq!(code(logs.export(with(export.clone(), &[])).await), tonic::Code::Unauthenticated);
    assert_eq!(
        code(logs.export(with(export.clone(), &[("x-api-key", "kki_wrong")])).await),
        tonic::Code::Unauthenticated
    );
    assert_eq!(
        code(logs.export(with(export.clone(), &[("authorization", &user_bearer)])).await),
        tonic::Code::InvalidArgument
    );
    let (_, viewer) = user(&server, "vic", Role::Viewer).await;
    let viewer = format!("Bearer {viewer}");
    let denied = logs.export(with(export.clone(), &[("authorization", &viewer), ("x-source", "grpc")])).await;
    assert_eq!(code(denied), tonic::Code::PermissionDenied);
    // A message over the body limit.
    let huge = log_request(vec![record(&"x".repeat(17 * 1024 * 1024), 9, NANOS)]);
    let too_big = logs.export(with(huge, &[("x-api-key", &key)])).await;
    assert_eq!(code(too_big), tonic::Code::ResourceExhausted);
    assert_eq!(count_rows(&db, "logs").await, 1);
}

/// The Python interpreter of the clients' venv: `$KK_CLIENTS_VENV` or `target/clients-venv`.
fn clients_python() -> PathBuf {
    let venv = std::env::var_os("KK_CLIENTS_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/clients-venv"));
    let python = venv.join("bin/python");
    assert!(
        python.exists(),
        "the OpenTelemetry SDK is not installed at {}: run bash tests/clients/setup.sh",
        venv.display()
    );
    python
}

/// Runs `tests/clients/otlp_send.py` with `config`, asserting it reports success.
async fn python_sends(config: Value) {
    let python = clients_python();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/clients/otlp_send.py");
    let arg = config.to_string();
    let run = tokio::task::spawn_blocking(move || std::process::Command::new(python).arg(script).arg(arg).output());
    let output = tokio::time::timeout(Duration::from_secs(90), run).await.expect("the SDK finishes within 90 s");
    let output = output.unwrap().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{config}: {stderr}");
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "ok", "{stderr}");
}

async fn otlp_python_sdk_exports_over_http_and_grpc(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let (token, source_id, key) = setup(&server, "python").await;
    let before = Utc::now();
    python_sends(json!({
        "transport": "http",
        "endpoint": server.url("/otlp"),
        "headers": { "Authorization": format!("Bearer {key}") },
    }))
    .await;
    python_sends(json!({
        "transport": "grpc",
        "endpoint": format!("http://{}", server.grpc_addr),
        "headers": { "x-api-key": key },
    }))
    .await;
    let after = Utc::now();

    let logs = get_logs(&server, &token, &[("source_id", &source_id)]).await["logs"].as_array().unwrap().clone();
    assert_eq!(logs.len(), 6, "{logs:?}");
    for transport in ["http", "grpc"] {
        let message = format!("disk almost full ({transport})");
        let warn = logs.iter().find(|l| l["message"] == message.as_str()).unwrap_or_else(|| panic!("{logs:?}"));
        assert_eq!(warn["timestamp"], "2026-01-01T00:00:00.123456Z");
        assert_eq!(warn["level"], "warning");
        assert_eq!(warn["hostname"], "e2e-host");
        assert_eq!(warn["application"], "checkout");
        assert_eq!(warn["labels"]["service_name"], "checkout");
        assert_eq!(warn["labels"]["service_namespace"], "shop");
        assert_eq!(warn["labels"]["deployment_environment"], "test");
        assert_eq!(warn["labels"]["source"], "python");
        let attributes = &warn["attributes"];
        assert_eq!(attributes["disk.free_mb"], 42, "{attributes}");
        assert_eq!(attributes["mount"], "/var");
        assert_eq!(attributes["cloud.region"], "eu-west-1");
        assert_eq!(attributes["service.instance.id"], format!("{transport}-1"));
        assert_eq!(attributes["otel.scope.name"], "e2e.logs");
        assert_eq!(attributes["trace_id"], "5b8efff798038103d269b633813fc60c");
        assert_eq!(attributes["span_id"], "eee19b7ec3c1b174");
        let untimed = format!("no time given ({transport})");
        let untimed = logs.iter().find(|l| l["message"] == untimed.as_str()).unwrap();
        assert_eq!(untimed["level"], "critical");
        assert_within(instant(&untimed["timestamp"]), before, after, "the observed time");
    }
    let payments: Vec<&Value> = logs.iter().filter(|l| l["level"] == "error").collect();
    assert_eq!(payments.len(), 2);
    assert_eq!(
        serde_json::from_str::<Value>(payments[0]["message"].as_str().unwrap()).unwrap(),
        json!({"event": "payment_failed", "amount": 12.5})
    );
    assert_eq!(payments[0]["timestamp"], "2026-01-01T00:00:01.000000Z");

    for (transport, instance) in [("http", "http-1"), ("grpc", "grpc-1")] {
        let series = list_series(&server, &token, "?limit=200").await["metrics"].as_array().unwrap().clone();
        let find = |name: &str, le: Option<&str>| {
            series
                .iter()
                .find(|s| {
                    s["name"] == name
                        && s["labels"]["instance"] == instance
                        && le.is_none_or(|le| s["labels"]["le"] == le)
                })
                .unwrap_or_else(|| panic!("{transport}: {name} {le:?} in {series:?}"))
                .clone()
        };
        let orders = find("orders_placed_total", None);
        assert_eq!(orders["type"], "counter");
        assert_eq!(orders["last_value"], 5.0);
        assert_eq!(orders["labels"]["shop_region"], "eu");
        assert_eq!(orders["labels"]["job"], "shop/checkout");
        assert_eq!(orders["labels"]["otel_scope_name"], "e2e.metrics");
        assert_eq!(orders["labels"]["otel_scope_version"], "2.0");
        assert_within(instant(&orders["last_timestamp"]), before, after, "a cumulative sum's time");
        assert_eq!(
            (find("queue_depth", None)["last_value"].clone(), find("queue_depth", None)["type"].clone()),
            (json!(3.0), json!("gauge"))
        );
        assert_eq!(find("room_temperature", None)["last_value"], 21.5);
        assert_eq!(find("request_duration_bucket", Some("5"))["last_value"], 0.0);
        assert_eq!(find("request_duration_bucket", Some("10"))["last_value"], 1.0);
        assert_eq!(find("request_duration_bucket", Some("50"))["last_value"], 2.0);
        assert_eq!(find("request_duration_bucket", Some("+Inf"))["last_value"], 2.0);
        assert_eq!(find("request_duration_sum", None)["last_value"], 37.0);
        assert_eq!(find("request_duration_count", None)["type"], "histogram");
    }
    let query = json!({ "metric": "orders_placed_total", "labels": { "instance": "grpc-1" },
        "start": before.timestamp() - 60, "end": after.timestamp() + 60, "step": 3600, "aggregation": "max" });
    let result = range_query(&server, &token, query).await;
    assert_eq!(result.len(), 1, "{result:?}");
    assert_eq!(points(&result[0])[0].1, 5.0);
}
