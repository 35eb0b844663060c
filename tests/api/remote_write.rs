//! Prometheus remote_write: `POST /prometheus/api/v1/write` and `POST /api/v1/push`.
//! Requests are encoded here with the crate's own messages and snappy; the end-to-end case
//! runs a real Prometheus 2.42 (`bash tests/clients/setup.sh` installs it) that scrapes a
//! target of the test and remote-writes to KillKrill.
//! Each case runs on SQLite, PostgreSQL and MariaDB, through the real server on a real socket.

use std::{
    collections::BTreeMap,
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use killkrill::{
    auth::Role,
    protocol::remote_write::{Label, MetricMetadata, MetricType, Sample, TimeSeries, WriteRequest},
};
use prost::Message;
use reqwest::RequestBuilder;
use sea_orm::{ConnectionTrait, Statement};
use serde_json::{Value, json};

use crate::common::{TestDb, TestServer, eventually, rest::*};

cases! {
    on_all_databases:
        remote_write_stores_series_with_labels_values_and_metadata_types,
        remote_write_keeps_nan_stale_markers_and_infinities_exactly,
        remote_write_accepts_out_of_order_and_duplicate_samples,
        remote_write_refuses_bad_requests_in_plain_text_and_stores_nothing,
        remote_write_accepts_each_credential_form,
        remote_write_from_a_real_prometheus_matches_what_prometheus_reports;
}

const WRITE: &str = "/prometheus/api/v1/write";
const STALE_NAN: u64 = 0x7ff0_0000_0000_0002;
/// 2026-01-01T00:00:00Z in milliseconds.
const T0_MS: i64 = T0 * 1000;

pub fn snappy(bytes: &[u8]) -> Vec<u8> {
    snap::raw::Encoder::new().compress_vec(bytes).unwrap()
}

fn series(labels: &[(&str, &str)], samples: &[(f64, i64)]) -> TimeSeries {
    TimeSeries {
        labels: labels
            .iter()
            .map(|(n, v)| Label { name: n.as_bytes().to_vec(), value: v.as_bytes().to_vec() })
            .collect(),
        samples: samples.iter().map(|&(value, timestamp)| Sample { value, timestamp }).collect(),
        histograms: vec![],
    }
}

fn metadata(family: &str, t: MetricType, help: &str) -> MetricMetadata {
    MetricMetadata {
        r#type: t as i32,
        metric_family_name: family.to_owned(),
        help: help.to_owned(),
        unit: String::new(),
    }
}

/// A remote_write request as Prometheus sends it, with `body` (already compressed).
fn post_raw(server: &TestServer, path: &str, body: Vec<u8>) -> RequestBuilder {
    post_as(server, path, "application/x-protobuf", "snappy", body)
}

/// [`post_raw`] with another content type and encoding.
fn post_as(server: &TestServer, path: &str, content_type: &str, encoding: &str, body: Vec<u8>) -> RequestBuilder {
    server
        .client
        .post(server.url(path))
        .header("Content-Type", content_type)
        .header("Content-Encoding", encoding)
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .header("User-Agent", "Prometheus/2.42.0")
        .body(body)
}

fn post(server: &TestServer, key: &str, request: &WriteRequest) -> RequestBuilder {
    post_raw(server, WRITE, snappy(&request.encode_to_vec())).bearer_auth(key)
}

/// Sends `request`; the status and the body as text.
pub async fn answer(request: RequestBuilder) -> (u16, String) {
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let plain = response.headers().get("content-type").is_some_and(|v| v.to_str().unwrap().starts_with("text/plain"));
    let text = response.text().await.unwrap();
    assert!(status < 400 || plain, "{status}: an error is plain text: {text}");
    (status, text)
}

/// A maintainer's token, a source `node` and one of its ingest keys.
async fn setup(server: &TestServer) -> (String, String, String) {
    let (_, token) = user(server, "mia", Role::Maintainer).await;
    let source = new_source(server, &token, "node").await;
    let (_, key) = server.create_ingest_key(&token, &source).await;
    (token, source, key)
}

/// The series named `name` as `GET /api/v1/metrics` lists them, by their labels.
async fn series_named(server: &TestServer, token: &str, name: &str) -> BTreeMap<String, Value> {
    let body = list_series(server, token, &format!("?name={name}&limit=1000")).await;
    body["metrics"].as_array().unwrap().iter().map(|s| (label_key(&s["labels"]), s.clone())).collect()
}

/// A series' labels (a JSON object, `__name__` left out) as one comparable text,
/// whatever order the object was written in.
fn label_key(labels: &Value) -> String {
    let sorted: BTreeMap<&str, &str> = labels
        .as_object()
        .unwrap()
        .iter()
        .filter(|(name, _)| *name != "__name__")
        .map(|(name, value)| (name.as_str(), value.as_str().unwrap()))
        .collect();
    format!("{sorted:?}")
}

async fn remote_write_stores_series_with_labels_values_and_metadata_types(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let (token, source, key) = setup(&server).await;
    let request = WriteRequest {
        timeseries: vec![
            series(
                &[("__name__", "http_requests_total"), ("code", "200"), ("job", "api")],
                &[(5.0, T0_MS + 10_000), (12.0, T0_MS + 70_000)],
            ),
            series(&[("__name__", "http_requests_total"), ("code", "500"), ("job", "api")], &[(1.0, T0_MS + 10_000)]),
            series(&[("__name__", "latency_seconds_bucket"), ("job", "api"), ("le", "+Inf")], &[(9.0, T0_MS + 10_123)]),
            series(&[("__name__", "room_celsius")], &[(21.5, T0_MS + 10_000)]),
        ],
        metadata: vec![
            metadata("http_requests", MetricType::Counter, "Requests served."),
            metadata("latency_seconds", MetricType::Histogram, "Latency."),
        ],
    };
    assert_eq!(answer(post(&server, &key, &request)).await, (204, String::new()));

    let requests = series_named(&server, &token, "http_requests_total").await;
    assert_eq!(requests.len(), 2, "{requests:?}");
    let ok = &requests[&label_key(&json!({"code": "200", "job": "api"}))];
    assert_eq!(ok["type"], "counter");
    assert_eq!(ok["source_id"], source.as_str());
    assert_eq!(ok["last_value"], 12.0);
    assert_eq!(ok["last_timestamp"], rfc3339(T0 + 70).replace('Z', ".000000Z"));
    let bucket = series_named(&server, &token, "latency_seconds_bucket").await;
    let bucket = bucket.values().next().unwrap();
    assert_eq!(bucket["type"], "histogram");
    assert_eq!(bucket["labels"], json!({"job": "api", "le": "+Inf"}));
    assert_eq!(bucket["last_timestamp"], "2026-01-01T00:00:10.123000Z");
    let room = series_named(&server, &token, "room_celsius").await;
    assert_eq!(room.values().next().unwrap()["labels"], json!({}));

    let query = json!({"metric": "http_requests_total", "labels": {"code": "200"}, "start": T0, "end": T0 + 119,
        "step": "60s", "aggregation": "max"});
    let result = range_query(&server, &token, query).await;
    assert_eq!(result.len(), 1);
    assert_points(&points(&result[0]), &[(T0 as f64, 5.0), ((T0 + 60) as f64, 12.0)], "counter");

    // The alias Mimir users configure.
    let alias = WriteRequest {
        timeseries: vec![series(&[("__name__", "room_celsius")], &[(22.0, T0_MS + 20_000)])],
        metadata: vec![],
    };
    let body = snappy(&alias.encode_to_vec());
    assert_eq!(answer(post_raw(&server, "/api/v1/push", body).bearer_auth(&key)).await.0, 204);
    let room = series_named(&server, &token, "room_celsius").await;
    assert_eq!(room.values().next().unwrap()["last_value"], 22.0);

    // Metadata alone is a valid request (Prometheus sends it apart from samples).
    let only_metadata =
        WriteRequest { timeseries: vec![], metadata: vec![metadata("room_celsius", MetricType::Gauge, "Room.")] };
    assert_eq!(answer(post(&server, &key, &only_metadata)).await.0, 204);
    let exposition = server.get("/metrics").await.text().await.unwrap();
    let accepted =
        format!("killkrill_ingest_items_total{{source_id=\"{source}\",kind=\"samples\",outcome=\"accepted\"}} 6");
    assert!(exposition.contains(&accepted), "{exposition}");
    server.stop().await.unwrap();
}

async fn remote_write_keeps_nan_stale_markers_and_infinities_exactly(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let (_, _, key) = setup(&server).await;
    let values = [1.5, f64::from_bits(STALE_NAN), f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -2.5e-300];
    let samples: Vec<(f64, i64)> = values.iter().enumerate().map(|(i, v)| (*v, T0_MS + i as i64 * 1000)).collect();
    let request = WriteRequest { timeseries: vec![series(&[("__name__", "odd_values")], &samples)], metadata: vec![] };
    assert_eq!(answer(post(&server, &key, &request)).await.0, 204);
    let stored = stored_values(&db, "odd_values").await;
    let bits: Vec<u64> = stored.iter().map(|(_, v)| v.to_bits()).collect();
    let sent: Vec<u64> = values.iter().map(|v| v.to_bits()).collect();
    assert_eq!(bits, sent, "stored {stored:?}");
    server.stop().await.unwrap();
}

/// Every stored sample of the series named `name` (one series), oldest first, read from
/// the database as the storage layer reads a value back (`loaded_value`).
async fn stored_values(db: &TestDb, name: &str) -> Vec<(i64, f64)> {
    let conn = db.connect().await;
    let sql = format!(
        "SELECT s.ts AS ts, s.value AS value, s.bits AS bits FROM metric_samples s \
         JOIN metric_series m ON m.id = s.series_id WHERE m.name = '{name}' ORDER BY s.ts"
    );
    let rows = conn.query_all_raw(Statement::from_string(conn.get_database_backend(), sql)).await.unwrap();
    let values = rows
        .iter()
        .map(|row| {
            let ts: i64 = row.try_get("", "ts").unwrap();
            let value: f64 = row.try_get("", "value").unwrap();
            let bits: Option<i64> = row.try_get("", "bits").unwrap();
            (ts, killkrill::storage::samples::loaded_value(value, bits))
        })
        .collect();
    conn.close().await.unwrap();
    values
}

async fn remote_write_accepts_out_of_order_and_duplicate_samples(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let (_, _, key) = setup(&server).await;
    let first = WriteRequest {
        timeseries: vec![series(&[("__name__", "jobs")], &[(1.0, T0_MS + 30_000), (2.0, T0_MS + 60_000)])],
        metadata: vec![],
    };
    assert_eq!(answer(post(&server, &key, &first)).await.0, 204);
    // Older than what is stored, and the same timestamp again: accepted, the last write wins.
    let second = WriteRequest {
        timeseries: vec![series(
            &[("__name__", "jobs")],
            &[(0.5, T0_MS), (7.0, T0_MS + 60_000), (8.0, T0_MS + 60_000)],
        )],
        metadata: vec![],
    };
    assert_eq!(answer(post(&server, &key, &second)).await.0, 204);
    let stored = stored_values(&db, "jobs").await;
    assert_eq!(stored, vec![(T0 * 1_000_000, 0.5), ((T0 + 30) * 1_000_000, 1.0), ((T0 + 60) * 1_000_000, 8.0)]);
    server.stop().await.unwrap();
}

async fn remote_write_refuses_bad_requests_in_plain_text_and_stores_nothing(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let (_, source, key) = setup(&server).await;
    let good = |name: &str| series(&[("__name__", name)], &[(1.0, T0_MS)]);
    let encoded = |timeseries: Vec<TimeSeries>| snappy(&WriteRequest { timeseries, metadata: vec![] }.encode_to_vec());
    let limit = server.state.config.max_body_bytes;

    // Framed snappy (the stream format) instead of the block format.
    let mut framed = Vec::new();
    {
        use std::io::Write;
        let mut writer = snap::write::FrameEncoder::new(&mut framed);
        writer.write_all(&WriteRequest { timeseries: vec![good("up")], metadata: vec![] }.encode_to_vec()).unwrap();
    }
    let (status, text) = answer(post_raw(&server, WRITE, framed).bearer_auth(&key)).await;
    assert_eq!(status, 400, "{text}");
    assert!(text.to_lowercase().contains("fram"), "{text}");

    let (status, text) = answer(post_raw(&server, WRITE, b"\x05garbage-not-snappy".to_vec()).bearer_auth(&key)).await;
    assert_eq!(status, 400, "{text}");

    let (status, text) = answer(post_raw(&server, WRITE, snappy(b"\x0a\x05\x0a\x03abc")).bearer_auth(&key)).await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("protobuf"), "{text}");

    // A snappy header claiming more than the limit: refused before anything is allocated.
    let mut claim = Vec::new();
    let mut length = limit as u64 + 1;
    while length >= 0x80 {
        claim.push((length as u8) | 0x80);
        length >>= 7;
    }
    claim.push(length as u8);
    claim.extend_from_slice(b"\x00\x01");
    let (status, text) = answer(post_raw(&server, WRITE, claim).bearer_auth(&key)).await;
    assert_eq!(status, 413, "{text}");

    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            encoded(vec![good("ok"), series(&[("job", "api")], &[(1.0, T0_MS)])]),
            "timeseries[1]: {job=\"api\"} has no metric name",
        ),
        (encoded(vec![series(&[("__name__", "m"), ("bad-name", "x")], &[(1.0, T0_MS)])]), "`bad-name`"),
        (encoded(vec![series(&[("__name__", "m"), ("b", "x"), ("a", "y")], &[(1.0, T0_MS)])]), "sorted"),
        (encoded(vec![series(&[("__name__", "m"), ("a", "x"), ("a", "y")], &[(1.0, T0_MS)])]), "twice"),
        (
            {
                let mut bad = good("m");
                bad.labels.push(Label { name: b"job".to_vec(), value: vec![0xff] });
                encoded(vec![bad])
            },
            "UTF-8",
        ),
        (
            {
                let mut histogram = good("h");
                histogram.histograms.push(vec![0x08, 0x01]);
                encoded(vec![good("ok"), histogram])
            },
            "native histograms",
        ),
        (encoded(vec![good("ok"), series(&[("__name__", "m")], &[(1.0, -5)])]), "timeseries[1] m{} sample 0"),
        (encoded(vec![series(&[("__name__", "9m")], &[(1.0, T0_MS)])]), "9m"),
        (
            encoded(vec![good("ok"), series(&[("__name__", "m"), ("x", &"v".repeat(1025))], &[(1.0, T0_MS)])]),
            "timeseries[1] m{x=",
        ),
    ];
    for (body, wanted) in cases {
        let (status, text) = answer(post_raw(&server, WRITE, body).bearer_auth(&key)).await;
        assert_eq!(status, 400, "{wanted}: {text}");
        assert!(text.contains(wanted), "{wanted}: {text}");
    }

    // Remote-Write 2.0 is refused with 415, so a 2.0 sender falls back to 1.0.
    let rw2_type = "application/x-protobuf;proto=io.prometheus.write.v2.Request";
    let rw2 = post_as(&server, WRITE, rw2_type, "snappy", encoded(vec![good("up")])).bearer_auth(&key);
    assert_eq!(answer(rw2).await.0, 415);
    let json = post_as(&server, WRITE, "application/json", "snappy", b"{}".to_vec()).bearer_auth(&key);
    assert_eq!(answer(json).await.0, 415);
    let zstd = post_as(&server, WRITE, "application/x-protobuf", "zstd", encoded(vec![good("up")])).bearer_auth(&key);
    assert_eq!(answer(zstd).await.0, 415);

    // More samples than a batch holds.
    let many: Vec<(f64, i64)> = (0..10_001).map(|i| (1.0, T0_MS + i)).collect();
    let (status, text) =
        answer(post_raw(&server, WRITE, encoded(vec![series(&[("__name__", "m")], &many)])).bearer_auth(&key)).await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("max_samples_per_send"), "{text}");

    assert_eq!(count_rows(&db, "metric_samples").await, 0);
    assert_eq!(count_rows(&db, "metric_series").await, 0);
    let exposition = server.get("/metrics").await.text().await.unwrap();
    let refused =
        format!("killkrill_ingest_items_total{{source_id=\"{source}\",kind=\"samples\",outcome=\"refused\"}}");
    assert!(exposition.contains(&refused), "{exposition}");
    server.stop().await.unwrap();
}

async fn remote_write_accepts_each_credential_form(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let (token, source, key) = setup(&server).await;
    let (_, viewer) = user(&server, "vic", Role::Viewer).await;
    let request = |name: &str| {
        let body = WriteRequest { timeseries: vec![series(&[("__name__", name)], &[(1.0, T0_MS)])], metadata: vec![] };
        post_raw(&server, WRITE, snappy(&body.encode_to_vec()))
    };
    use base64::{Engine, engine::general_purpose::STANDARD};
    let basic = format!("Basic {}", STANDARD.encode(format!("prometheus:{key}")));
    let accepted = [
        ("bearer_key", request("bearer_key").bearer_auth(&key)),
        ("x_api_key", request("x_api_key").header("X-API-Key", &key)),
        ("basic_key", request("basic_key").header("Authorization", &basic)),
        ("user_x_source", request("user_x_source").bearer_auth(&token).header("X-Source", &source)),
        ("user_x_source_name", request("user_x_source_name").bearer_auth(&token).header("X-Source", "node")),
    ];
    for (name, request) in accepted {
        assert_eq!(answer(request).await, (204, String::new()), "{name}");
        assert_eq!(series_named(&server, &token, name).await.len(), 1, "{name}");
    }
    let with_query = server
        .client
        .post(server.url(&format!("{WRITE}?source={source}")))
        .header("Content-Type", "application/x-protobuf")
        .header("Content-Encoding", "snappy")
        .bearer_auth(&token)
        .body(snappy(
            &WriteRequest {
                timeseries: vec![series(&[("__name__", "query_source")], &[(1.0, T0_MS)])],
                metadata: vec![],
            }
            .encode_to_vec(),
        ));
    assert_eq!(answer(with_query).await.0, 204);

    let (status, text) = answer(request("no_source").bearer_auth(&token)).await;
    assert_eq!(status, 400, "{text}");
    assert!(text.to_lowercase().contains("source"), "{text}");
    assert_eq!(answer(request("none")).await.0, 401);
    assert_eq!(answer(request("wrong").bearer_auth("kki_not-a-key")).await.0, 401);
    assert_eq!(answer(request("viewer").bearer_auth(&viewer).header("X-Source", &source)).await.0, 403);
    for refused in ["no_source", "none", "wrong", "viewer"] {
        assert!(series_named(&server, &token, refused).await.is_empty(), "{refused}");
    }
    server.stop().await.unwrap();
}

/// A child process killed (and reaped) when dropped, so a failing test leaves none behind.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A scrape target: a counter that grows on every scrape, a gauge and a histogram.
async fn serve_target() -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let scrapes = Arc::new(AtomicU64::new(0));
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let n = scrapes.fetch_add(1, Ordering::Relaxed) + 1;
            async move {
                format!(
                    "# HELP e2e_hits_total Scrapes served.\n# TYPE e2e_hits_total counter\ne2e_hits_total{{path=\"/metrics\"}} {n}\n\
                     # HELP e2e_celsius A temperature.\n# TYPE e2e_celsius gauge\ne2e_celsius 21.5\n\
                     # HELP e2e_latency_seconds Latency.\n# TYPE e2e_latency_seconds histogram\n\
                     e2e_latency_seconds_bucket{{le=\"0.1\"}} 5\ne2e_latency_seconds_bucket{{le=\"+Inf\"}} 10\n\
                     e2e_latency_seconds_sum 3.5\ne2e_latency_seconds_count 10\n"
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    (addr, tokio::spawn(async move { axum::serve(listener, app).await.unwrap() }))
}

/// `GET /api/v1/query` of the Prometheus at `port`: the result vector.
async fn prometheus_query(client: &reqwest::Client, port: u16, query: &str) -> Vec<Value> {
    let url = format!("http://127.0.0.1:{port}{}", with_query("/api/v1/query", &[("query", query)]));
    let body: Value = client.get(url).send().await.unwrap().json().await.unwrap();
    assert_eq!(body["status"], "success", "{body}");
    body["data"]["result"].as_array().unwrap().clone()
}

async fn remote_write_from_a_real_prometheus_matches_what_prometheus_reports(db: TestDb) {
    let Ok(version) = Command::new("prometheus").arg("--version").output() else {
        panic!("prometheus is not installed: run bash tests/clients/setup.sh");
    };
    let version = String::from_utf8_lossy(&version.stderr).to_string() + &String::from_utf8_lossy(&version.stdout);
    let server = TestServer::start(db.config()).await;
    let (token, _, key) = setup(&server).await;
    let (target, target_task) = serve_target().await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
         scrape_configs:\n  - job_name: e2e\n    static_configs:\n      - targets: ['{target}']\n\
         remote_write:\n  - url: {url}\n    authorization:\n      credentials: {key}\n\
         \x20   queue_config:\n      batch_send_deadline: 1s\n      min_backoff: 100ms\n      max_backoff: 1s\n\
         \x20   metadata_config:\n      send_interval: 1s\n",
        url = server.url(WRITE)
    );
    let config_path = dir.path().join("prometheus.yml");
    std::fs::write(&config_path, config).unwrap();
    let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", config_path.display()))
        .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("prometheus starts");
    let _prometheus = Killed(child);
    let log_text = || std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default();

    // Series and the metadata sent apart from them both arrive.
    let arrived = eventually(Duration::from_secs(60), || async {
        let hits = series_named(&server, &token, "e2e_hits_total").await;
        let buckets = series_named(&server, &token, "e2e_latency_seconds_bucket").await;
        hits.values().any(|s| s["type"] == "counter" && s["last_value"].as_f64().is_some_and(|v| v >= 3.0))
            && buckets.len() == 2
            && buckets.values().all(|s| s["type"] == "histogram")
    })
    .await;
    assert!(arrived, "{version}: nothing arrived within 60 s; Prometheus said:\n{}", log_text());

    let client = reqwest::Client::new();
    let instance = target.to_string();
    // The gauge, the histogram and Prometheus' own `up`: same labels and values as Prometheus has.
    for name in
        ["e2e_celsius", "e2e_latency_seconds_bucket", "e2e_latency_seconds_sum", "e2e_latency_seconds_count", "up"]
    {
        let theirs = prometheus_query(&client, port, name).await;
        let ours = series_named(&server, &token, name).await;
        assert_eq!(ours.len(), theirs.len(), "{name}: {ours:?} vs {theirs:?}");
        for series in &theirs {
            let labels = &series["metric"];
            assert_eq!(labels["instance"], instance.as_str());
            let stored = ours.get(&label_key(labels)).unwrap_or_else(|| panic!("{name}{labels} not stored: {ours:?}"));
            let value: f64 = series["value"][1].as_str().unwrap().parse().unwrap();
            assert_eq!(stored["last_value"].as_f64(), Some(value), "{name}{labels:?}");
        }
    }
    let celsius = series_named(&server, &token, "e2e_celsius").await;
    assert_eq!(celsius.values().next().unwrap()["type"], "gauge");

    // The counter sample for sample: every one Prometheus scraped up to the last one stored.
    let hits = series_named(&server, &token, "e2e_hits_total").await;
    let hits = hits.values().next().unwrap().clone();
    let last = instant(&hits["last_timestamp"]);
    let theirs = prometheus_query(&client, port, "e2e_hits_total[1m]").await;
    let theirs: Vec<(i64, f64)> = theirs[0]["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| ((p[0].as_f64().unwrap() * 1000.0).round() as i64, p[1].as_str().unwrap().parse().unwrap()))
        .filter(|(ms, _)| *ms <= last.timestamp_millis())
        .collect();
    assert!(theirs.len() >= 3, "{theirs:?}");
    let ours: BTreeMap<i64, f64> =
        stored_values(&db, "e2e_hits_total").await.into_iter().map(|(micros, value)| (micros / 1000, value)).collect();
    for (ms, value) in &theirs {
        assert_eq!(ours.get(ms), Some(value), "sample at {ms} ms: ours {ours:?}");
    }
    let total = list_series(&server, &token, "?limit=1000").await["total"].clone();
    println!("prometheus e2e: {} samples of e2e_hits_total matched, {total} series in all", theirs.len());

    // The target goes away: Prometheus ends its series with stale markers, which arrive
    // with their exact bits.
    target_task.abort();
    let ended = eventually(Duration::from_secs(30), || async {
        stored_values(&db, "e2e_celsius").await.last().is_some_and(|(_, v)| v.to_bits() == STALE_NAN)
    })
    .await;
    assert!(ended, "no stale marker arrived; Prometheus said:\n{}", log_text());
    let gauge = series_named(&server, &token, "e2e_celsius").await;
    assert_eq!(gauge.values().next().unwrap()["last_value"], Value::Null, "a stale marker is no number");
    server.stop().await.unwrap();
}
