//! Payloads for `benches/protocols/run.sh`: the same batches of realistic log lines in the
//! encoding of each ingest protocol, and Prometheus remote_write requests.
//!
//! ```sh
//! cargo run --release --example protocol_payloads -- <dir> [--batches 20] [--lines 1000]
//!     [--source-id <id>] [--start-ms <ms>] [--rw-shards 4] [--rw-files 1500]
//!     [--rw-series 500] [--rw-samples 4] [--verify]
//! ```
//!
//! Writes into `<dir>`, for each batch `i` of `--lines` lines (the same lines in every file
//! of that batch):
//! - `json-<i>.json`: the JSON API's `{"source_id": …, "logs": […]}`; the source id is
//!   `--source-id`, else the placeholder `@SOURCE_ID@` for the caller to replace;
//! - `otlp-<i>.pb`: an OTLP `ExportLogsServiceRequest`, one `ResourceLogs` per
//!   application and host (`service.name`, `host.name`);
//! - `loki-<i>.pb.sz`: a Loki `PushRequest`, one stream per `{app, host, level}`, the
//!   other fields as structured metadata, snappy block compressed;
//! - `bulk-<i>.ndjson`: Elasticsearch `_bulk`, a `create` action and an ECS document per
//!   line;
//!
//! and `rw-<s>-<i>.pb.sz`: remote_write 1.0 `WriteRequest`s, snappy block compressed, in
//! `--rw-shards` shards of disjoint series (as Prometheus shards its queue: each shard
//! must be sent in order by one connection), each request `--rw-series` series of
//! `--rw-samples` samples; timestamps go on increasing from one file of a shard to the
//! next, so no two requests write the same series and time.
//!
//! Everything is deterministic but the start time (`--start-ms`, by default three hours
//! ago for the logs; the samples start one hour ago and span at most 50 minutes, so that
//! a Prometheus receiving them keeps them all in its head block). `--verify` decodes every
//! file written with the same message definitions and compares it with the lines and
//! samples it was made from. Prints one JSON line: what was written, with sizes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::{BTreeMap, HashMap},
    fmt::Write as _,
    fs,
    path::{Path, PathBuf},
    time::{SystemTime, UNIX_EPOCH},
};

use prost::Message;
use serde_json::{Value, json};

/// The OTLP logs messages used here (a subset of opentelemetry-proto's
/// `collector/logs/v1`, `logs/v1`, `resource/v1` and `common/v1`), by field number.
mod otlp {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ExportLogsServiceRequest {
        #[prost(message, repeated, tag = "1")]
        pub resource_logs: Vec<ResourceLogs>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ResourceLogs {
        #[prost(message, optional, tag = "1")]
        pub resource: Option<Resource>,
        #[prost(message, repeated, tag = "2")]
        pub scope_logs: Vec<ScopeLogs>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Resource {
        #[prost(message, repeated, tag = "1")]
        pub attributes: Vec<KeyValue>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ScopeLogs {
        #[prost(message, optional, tag = "1")]
        pub scope: Option<InstrumentationScope>,
        #[prost(message, repeated, tag = "2")]
        pub log_records: Vec<LogRecord>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct InstrumentationScope {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(string, tag = "2")]
        pub version: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct LogRecord {
        #[prost(fixed64, tag = "1")]
        pub time_unix_nano: u64,
        /// The `SeverityNumber` enum, an int32 on the wire.
        #[prost(int32, tag = "2")]
        pub severity_number: i32,
        #[prost(string, tag = "3")]
        pub severity_text: String,
        #[prost(message, optional, tag = "5")]
        pub body: Option<AnyValue>,
        #[prost(message, repeated, tag = "6")]
        pub attributes: Vec<KeyValue>,
        #[prost(bytes = "vec", tag = "9")]
        pub trace_id: Vec<u8>,
        #[prost(bytes = "vec", tag = "10")]
        pub span_id: Vec<u8>,
        #[prost(fixed64, tag = "11")]
        pub observed_time_unix_nano: u64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct AnyValue {
        #[prost(oneof = "Value", tags = "1, 2, 3, 4")]
        pub value: Option<Value>,
    }

    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Value {
        #[prost(string, tag = "1")]
        String(String),
        #[prost(bool, tag = "2")]
        Bool(bool),
        #[prost(int64, tag = "3")]
        Int(i64),
        #[prost(double, tag = "4")]
        Double(f64),
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct KeyValue {
        #[prost(string, tag = "1")]
        pub key: String,
        #[prost(message, optional, tag = "2")]
        pub value: Option<AnyValue>,
    }

    pub fn string(key: &str, value: &str) -> KeyValue {
        KeyValue { key: key.to_owned(), value: Some(AnyValue { value: Some(Value::String(value.to_owned())) }) }
    }

    pub fn int(key: &str, value: i64) -> KeyValue {
        KeyValue { key: key.to_owned(), value: Some(AnyValue { value: Some(Value::Int(value)) }) }
    }
}

/// Loki's push messages (`logproto.PushRequest`), by field number.
mod loki {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PushRequest {
        #[prost(message, repeated, tag = "1")]
        pub streams: Vec<StreamAdapter>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct StreamAdapter {
        /// The stream's labels in selector syntax: `{app="orders", level="info"}`.
        #[prost(string, tag = "1")]
        pub labels: String,
        #[prost(message, repeated, tag = "2")]
        pub entries: Vec<EntryAdapter>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct EntryAdapter {
        #[prost(message, optional, tag = "1")]
        pub timestamp: Option<prost_types::Timestamp>,
        #[prost(string, tag = "2")]
        pub line: String,
        #[prost(message, repeated, tag = "3")]
        pub structured_metadata: Vec<LabelPairAdapter>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct LabelPairAdapter {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(string, tag = "2")]
        pub value: String,
    }
}

/// Prometheus remote_write 1.0 messages (`prompb`), by field number.
mod prompb {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct WriteRequest {
        #[prost(message, repeated, tag = "1")]
        pub timeseries: Vec<TimeSeries>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TimeSeries {
        #[prost(message, repeated, tag = "1")]
        pub labels: Vec<Label>,
        #[prost(message, repeated, tag = "2")]
        pub samples: Vec<Sample>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Label {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(string, tag = "2")]
        pub value: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Sample {
        #[prost(double, tag = "1")]
        pub value: f64,
        /// Milliseconds since the Unix epoch.
        #[prost(int64, tag = "2")]
        pub timestamp: i64,
    }
}

const SOURCE_PLACEHOLDER: &str = "@SOURCE_ID@";

struct Args {
    dir: PathBuf,
    batches: usize,
    lines: usize,
    source_id: String,
    start_ms: i64,
    rw_shards: usize,
    rw_files: usize,
    rw_series: usize,
    rw_samples: usize,
    verify: bool,
}

fn args() -> Args {
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64;
    let mut args = Args {
        dir: PathBuf::new(),
        batches: 20,
        lines: 1000,
        source_id: SOURCE_PLACEHOLDER.to_owned(),
        // Whole seconds, three hours ago.
        start_ms: (now_ms / 1000 - 3 * 3600) * 1000,
        rw_shards: 4,
        rw_files: 1500,
        rw_series: 500,
        rw_samples: 4,
        verify: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().unwrap_or_else(|| panic!("{name} needs a value"));
        match arg.as_str() {
            "--batches" => args.batches = value("--batches").parse().expect("--batches"),
            "--lines" => args.lines = value("--lines").parse().expect("--lines"),
            "--source-id" => args.source_id = value("--source-id"),
            "--start-ms" => args.start_ms = value("--start-ms").parse().expect("--start-ms"),
            "--rw-shards" => args.rw_shards = value("--rw-shards").parse().expect("--rw-shards"),
            "--rw-files" => args.rw_files = value("--rw-files").parse().expect("--rw-files"),
            "--rw-series" => args.rw_series = value("--rw-series").parse().expect("--rw-series"),
            "--rw-samples" => args.rw_samples = value("--rw-samples").parse().expect("--rw-samples"),
            "--verify" => args.verify = true,
            flag if flag.starts_with("--") => panic!("unknown flag {flag}"),
            dir => args.dir = PathBuf::from(dir),
        }
    }
    assert!(!args.dir.as_os_str().is_empty(), "usage: protocol_payloads <dir> [flags]");
    assert!(args.batches >= 1 && (1..=10_000).contains(&args.lines), "--batches >= 1, --lines 1..=10000");
    assert!(args.rw_series * args.rw_samples <= 10_000, "at most 10,000 samples a remote_write request");
    args
}

/// SplitMix64: a small, fast generator; the same seed gives the same payloads.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }

    fn chance(&mut self, per_mille: u64) -> bool {
        self.next() % 1000 < per_mille
    }

    fn hex(&mut self, bytes: usize) -> String {
        (0..bytes).fold(String::with_capacity(2 * bytes), |mut s, _| {
            write!(s, "{:02x}", self.next() as u8).unwrap();
            s
        })
    }
}

/// One log line, before any encoding.
#[derive(Debug, Clone, PartialEq)]
struct Line {
    ts_ms: i64,
    level: &'static str,
    message: String,
    hostname: String,
    application: &'static str,
    pid: i64,
    thread: String,
    request_id: String,
    region: &'static str,
    /// 16 and 8 bytes as lowercase hex, for the lines logged inside a trace.
    trace: Option<(String, String)>,
}

const APPS: [&str; 6] = ["api-gateway", "orders", "billing", "auth", "search", "worker"];
const REGIONS: [&str; 3] = ["eu-west-1", "us-east-1", "ap-south-1"];
/// Lines are this far apart in time; batches follow each other.
const LINE_STEP_MS: i64 = 10;

fn message(rng: &mut Rng, level: &str) -> String {
    let mut m = match level {
        "error" | "critical" if rng.chance(500) => format!(
            "Connection to postgres://db-{}.internal:5432/orders failed: timeout after {} ms (attempt {} of 5)",
            rng.range(1, 4),
            rng.range(100, 5000),
            rng.range(1, 5)
        ),
        "error" | "critical" => format!(
            "Unhandled exception in {} handler: {} while processing order {} for customer {}",
            rng.pick(&["checkout", "refund", "invoice", "shipment"]),
            rng.pick(&["KeyError: currency", "NullPointerException", "deadline exceeded", "connection reset by peer"]),
            rng.range(1, 9_999_999),
            rng.range(1, 999_999)
        ),
        "warning" if rng.chance(500) => format!(
            "Slow query ({} ms): SELECT id, status, total FROM orders WHERE customer_id = $1 ORDER BY created_at DESC LIMIT 50",
            rng.range(500, 9000)
        ),
        "warning" => format!(
            "Retrying request to {} after HTTP 503 (attempt {}), backing off {} ms",
            rng.pick(&[
                "http://inventory.internal/v2/stock",
                "http://payments.internal/charge",
                "https://api.partner.example/orders"
            ]),
            rng.range(1, 4),
            rng.range(50, 3200)
        ),
        "debug" => format!(
            "Cache {} for key session:{} in region {}; ttl={} s, size={} bytes",
            rng.pick(&["hit", "miss"]),
            rng.hex(8),
            rng.pick(&REGIONS),
            rng.range(60, 3600),
            rng.range(100, 90_000)
        ),
        _ if rng.chance(600) => format!(
            "{} /api/v1/{}/{} {} {} ms bytes={} user_id={} ua=Mozilla/5.0 (X11; Linux x86_64)",
            rng.pick(&["GET", "GET", "GET", "POST", "PUT", "DELETE"]),
            rng.pick(&["orders", "customers", "products", "carts", "invoices"]),
            rng.range(1, 999_999),
            rng.pick(&["200", "200", "200", "201", "204", "304", "404"]),
            rng.range(1, 250),
            rng.range(100, 20_000),
            rng.range(1, 99_999)
        ),
        _ => format!(
            "Processed job {} from queue {} in {} ms: {} items, {} retries",
            rng.hex(6),
            rng.pick(&["emails", "thumbnails", "exports", "webhooks"]),
            rng.range(5, 4000),
            rng.range(1, 500),
            rng.range(0, 3)
        ),
    };
    // 100 to 200 bytes, as data.sh's lines (every generated character is ASCII).
    let target = rng.range(100, 200) as usize;
    while m.len() < target {
        m.push_str(" request_digest=");
        m.push_str(&rng.hex(16));
    }
    m.truncate(target);
    m
}

/// Batch `batch` of `n` lines: levels debug 10 %, info 65 %, warning 15 %, error 8 %,
/// critical 2 %; six applications, twelve hosts each.
fn lines(batch: usize, n: usize, start_ms: i64) -> Vec<Line> {
    let mut rng = Rng(0x6b69_6c6c_6b72_696c ^ batch as u64);
    (0..n)
        .map(|k| {
            let r = rng.range(0, 99);
            let level = match r {
                0..10 => "debug",
                10..75 => "info",
                75..90 => "warning",
                90..98 => "error",
                _ => "critical",
            };
            let application = rng.pick(&APPS);
            let prefix = if application == "worker" { "job" } else { "web" };
            let hostname = format!("{prefix}-{:02}", rng.range(1, 12));
            let message = message(&mut rng, level);
            let trace = rng.chance(500).then(|| (rng.hex(16), rng.hex(8)));
            Line {
                ts_ms: start_ms + ((batch * n + k) as i64) * LINE_STEP_MS,
                level,
                message,
                hostname,
                application,
                pid: rng.range(1000, 65_000) as i64,
                thread: format!("worker-{}", rng.range(0, 15)),
                request_id: rng.hex(8),
                region: rng.pick(&REGIONS),
                trace,
            }
        })
        .collect()
}

fn rfc3339_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).unwrap().format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

fn parse_rfc3339_ms(text: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(text).unwrap().timestamp_millis()
}

/// The attributes every encoding carries besides time, level, message, host and app.
fn attributes(line: &Line) -> Vec<(&'static str, Value)> {
    let mut out = vec![
        ("pid", json!(line.pid)),
        ("thread", json!(line.thread)),
        ("request_id", json!(line.request_id)),
        ("region", json!(line.region)),
    ];
    if let Some((trace, span)) = &line.trace {
        out.push(("trace_id", json!(trace)));
        out.push(("span_id", json!(span)));
    }
    out
}

fn json_batch(source_id: &str, lines: &[Line]) -> String {
    let logs: Vec<Value> = lines
        .iter()
        .map(|l| {
            json!({
                "timestamp": rfc3339_ms(l.ts_ms),
                "level": l.level,
                "message": l.message,
                "hostname": l.hostname,
                "application": l.application,
                "attributes": attributes(l).into_iter().map(|(k, v)| (k.to_owned(), v)).collect::<serde_json::Map<String, Value>>(),
            })
        })
        .collect();
    serde_json::to_string(&json!({"source_id": source_id, "logs": logs})).unwrap()
}

/// OpenTelemetry's severity number and text of a level (as the Python SDK names them).
fn severity(level: &str) -> (i32, &'static str) {
    match level {
        "debug" => (5, "DEBUG"),
        "info" => (9, "INFO"),
        "warning" => (13, "WARNING"),
        "error" => (17, "ERROR"),
        _ => (21, "CRITICAL"),
    }
}

/// Keys in order of first appearance, each with the indices of its items.
fn group_by<K: Eq + std::hash::Hash + Clone>(keys: impl Iterator<Item = K>) -> Vec<(K, Vec<usize>)> {
    let mut groups: Vec<(K, Vec<usize>)> = Vec::new();
    let mut index: HashMap<K, usize> = HashMap::new();
    for (i, key) in keys.enumerate() {
        let g = *index.entry(key.clone()).or_insert_with(|| {
            groups.push((key, Vec::new()));
            groups.len() - 1
        });
        groups[g].1.push(i);
    }
    groups
}

fn otlp_batch(lines: &[Line]) -> otlp::ExportLogsServiceRequest {
    let groups = group_by(lines.iter().map(|l| (l.application, l.hostname.clone())));
    let resource_logs = groups
        .into_iter()
        .map(|((app, host), members)| {
            let log_records = members
                .iter()
                .map(|&i| {
                    let l = &lines[i];
                    let (severity_number, severity_text) = severity(l.level);
                    let ns = l.ts_ms as u64 * 1_000_000;
                    let attributes = attributes(l)
                        .into_iter()
                        .filter(|(k, _)| !k.ends_with("_id") || *k == "request_id")
                        .map(|(k, v)| match v {
                            Value::Number(n) => otlp::int(k, n.as_i64().unwrap()),
                            v => otlp::string(k, v.as_str().unwrap()),
                        })
                        .collect();
                    let (trace_id, span_id) = l
                        .trace
                        .as_ref()
                        .map(|(t, s)| (hex::decode(t).unwrap(), hex::decode(s).unwrap()))
                        .unwrap_or_default();
                    otlp::LogRecord {
                        time_unix_nano: ns,
                        observed_time_unix_nano: ns + 1_000_000,
                        severity_number,
                        severity_text: severity_text.to_owned(),
                        body: Some(otlp::AnyValue { value: Some(otlp::Value::String(l.message.clone())) }),
                        attributes,
                        trace_id,
                        span_id,
                    }
                })
                .collect();
            otlp::ResourceLogs {
                resource: Some(otlp::Resource {
                    attributes: vec![
                        otlp::string("service.name", app),
                        otlp::string("host.name", &host),
                        otlp::string("deployment.environment", "production"),
                    ],
                }),
                scope_logs: vec![otlp::ScopeLogs {
                    scope: Some(otlp::InstrumentationScope { name: format!("{app}.app"), version: "1.4.2".into() }),
                    log_records,
                }],
            }
        })
        .collect();
    otlp::ExportLogsServiceRequest { resource_logs }
}

fn loki_labels(app: &str, host: &str, level: &str) -> String {
    format!(r#"{{app="{app}", host="{host}", level="{level}"}}"#)
}

fn loki_batch(lines: &[Line]) -> loki::PushRequest {
    let groups = group_by(lines.iter().map(|l| (l.application, l.hostname.clone(), l.level)));
    let streams = groups
        .into_iter()
        .map(|((app, host, level), members)| loki::StreamAdapter {
            labels: loki_labels(app, &host, level),
            entries: members
                .iter()
                .map(|&i| {
                    let l = &lines[i];
                    loki::EntryAdapter {
                        timestamp: Some(prost_types::Timestamp {
                            seconds: l.ts_ms.div_euclid(1000),
                            nanos: (l.ts_ms.rem_euclid(1000) * 1_000_000) as i32,
                        }),
                        line: l.message.clone(),
                        structured_metadata: attributes(l)
                            .into_iter()
                            .map(|(k, v)| loki::LabelPairAdapter {
                                name: k.to_owned(),
                                value: v.as_str().map_or_else(|| v.to_string(), str::to_owned),
                            })
                            .collect(),
                    }
                })
                .collect(),
        })
        .collect();
    loki::PushRequest { streams }
}

/// An ECS document, nested as Filebeat sends it.
fn ecs_document(l: &Line) -> Value {
    let mut doc = json!({
        "@timestamp": rfc3339_ms(l.ts_ms),
        "message": l.message,
        "log": {"level": l.level},
        "host": {"name": l.hostname},
        "service": {"name": l.application},
        "process": {"pid": l.pid, "thread": {"name": l.thread}},
        "cloud": {"region": l.region},
        "request_id": l.request_id,
    });
    if let Some((trace, span)) = &l.trace {
        doc["trace"] = json!({"id": trace});
        doc["span"] = json!({"id": span});
    }
    doc
}

fn bulk_batch(lines: &[Line]) -> String {
    let mut out = String::new();
    for l in lines {
        out.push_str("{\"create\":{\"_index\":\"logs\"}}\n");
        out.push_str(&ecs_document(l).to_string());
        out.push('\n');
    }
    out
}

/// The series of one remote_write shard: node, HTTP and process metrics of ten instances
/// a shard (fifty series each), labels sorted by name as the spec requires.
fn rw_series(shard: usize, count: usize) -> Vec<Vec<prompb::Label>> {
    const MODES: [&str; 8] = ["idle", "user", "system", "iowait", "irq", "softirq", "steal", "nice"];
    const LE: [&str; 12] = ["0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf"];
    const CODES: [&str; 8] = ["200", "201", "204", "304", "400", "404", "500", "503"];
    (0..count)
        .map(|j| {
            let instance = format!("10.{}.{}.{}:9100", shard, j / 50 / 250, j / 50 % 250);
            let k = j % 50;
            let mut labels: Vec<(&str, String)> = match k {
                0..24 => vec![
                    ("__name__", "node_cpu_seconds_total".into()),
                    ("cpu", (k / 8).to_string()),
                    ("mode", MODES[k % 8].into()),
                    ("job", "node".into()),
                ],
                24..36 => vec![
                    ("__name__", "http_request_duration_seconds_bucket".into()),
                    ("handler", "/api/v1/orders".into()),
                    ("le", LE[k - 24].into()),
                    ("job", "api".into()),
                ],
                36 | 37 => vec![
                    ("__name__", format!("http_request_duration_seconds_{}", if k == 36 { "sum" } else { "count" })),
                    ("handler", "/api/v1/orders".into()),
                    ("job", "api".into()),
                ],
                38..46 => vec![
                    ("__name__", "http_requests_total".into()),
                    ("code", CODES[k - 38].into()),
                    ("method", "GET".into()),
                    ("job", "api".into()),
                ],
                _ => vec![
                    (
                        "__name__",
                        ["process_resident_memory_bytes", "process_open_fds", "go_goroutines", "up"][k - 46].into(),
                    ),
                    ("job", "api".into()),
                ],
            };
            labels.push(("instance", instance));
            labels.sort_by(|a, b| a.0.cmp(b.0));
            labels.into_iter().map(|(name, value)| prompb::Label { name: name.into(), value }).collect()
        })
        .collect()
}

/// Sample `n` of series `j`: counters grow at a rate of their own, gauges move around.
fn rw_value(series: &[prompb::Label], j: usize, n: u64) -> f64 {
    let name = &series[0].value;
    let rate = 1.0 + (j % 97) as f64 / 8.0;
    if name.ends_with("_total") || name.ends_with("_bucket") || name.ends_with("_count") || name.ends_with("_sum") {
        (n as f64 * rate * 4.0).floor() + (j as f64) * 1000.0
    } else if name == "up" {
        1.0
    } else {
        let mut rng = Rng(((j as u64) << 32) | n);
        1.0e6 + (rng.next() % 50_000_000) as f64
    }
}

/// The step between two samples of a series, so that all the files span at most 50
/// minutes (at most 15 s).
fn rw_step_ms(args: &Args) -> i64 {
    (3_000_000 / (args.rw_files * args.rw_samples) as i64).clamp(1, 15_000)
}

fn rw_start_ms(args: &Args) -> i64 {
    // One hour ago by default: two hours after the logs' start.
    args.start_ms + 2 * 3600 * 1000
}

fn rw_request(args: &Args, series: &[Vec<prompb::Label>], file: usize) -> prompb::WriteRequest {
    let (step, start) = (rw_step_ms(args), rw_start_ms(args));
    let timeseries = series
        .iter()
        .enumerate()
        .map(|(j, labels)| prompb::TimeSeries {
            labels: labels.clone(),
            samples: (0..args.rw_samples)
                .map(|s| {
                    let n = (file * args.rw_samples + s) as u64;
                    prompb::Sample { value: rw_value(labels, j, n), timestamp: start + n as i64 * step }
                })
                .collect(),
        })
        .collect();
    prompb::WriteRequest { timeseries }
}

fn snappy(bytes: &[u8]) -> Vec<u8> {
    snap::raw::Encoder::new().compress_vec(bytes).unwrap()
}

fn unsnappy(bytes: &[u8]) -> Vec<u8> {
    snap::raw::Decoder::new().decompress_vec(bytes).unwrap()
}

#[derive(Default)]
struct Sizes {
    files: usize,
    bytes: u64,
    raw_bytes: u64,
}

fn write(path: &Path, bytes: &[u8], raw_len: usize, sizes: &mut Sizes) {
    fs::write(path, bytes).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    sizes.files += 1;
    sizes.bytes += bytes.len() as u64;
    sizes.raw_bytes += raw_len as u64;
}

fn main() {
    let args = args();
    fs::create_dir_all(&args.dir).unwrap();
    let mut sizes: BTreeMap<&str, Sizes> = BTreeMap::new();
    for batch in 0..args.batches {
        let lines = lines(batch, args.lines, args.start_ms);
        let dir = &args.dir;
        let json = json_batch(&args.source_id, &lines);
        write(&dir.join(format!("json-{batch}.json")), json.as_bytes(), json.len(), sizes.entry("json").or_default());
        let otlp = otlp_batch(&lines).encode_to_vec();
        write(&dir.join(format!("otlp-{batch}.pb")), &otlp, otlp.len(), sizes.entry("otlp").or_default());
        let loki = loki_batch(&lines).encode_to_vec();
        write(&dir.join(format!("loki-{batch}.pb.sz")), &snappy(&loki), loki.len(), sizes.entry("loki").or_default());
        let bulk = bulk_batch(&lines);
        write(&dir.join(format!("bulk-{batch}.ndjson")), bulk.as_bytes(), bulk.len(), sizes.entry("bulk").or_default());
        if args.verify {
            verify_logs(&args, batch, &lines);
        }
    }
    for shard in 0..args.rw_shards {
        let series = rw_series(shard, args.rw_series);
        for file in 0..args.rw_files {
            let raw = rw_request(&args, &series, file).encode_to_vec();
            let path = args.dir.join(format!("rw-{shard}-{file}.pb.sz"));
            write(&path, &snappy(&raw), raw.len(), sizes.entry("rw").or_default());
        }
    }
    if args.verify {
        verify_remote_write(&args);
    }
    let summary: serde_json::Map<String, Value> = sizes
        .iter()
        .map(|(name, s)| {
            let per_file = |n: u64| n / s.files.max(1) as u64;
            let info = json!({"files": s.files, "bytes_per_file": per_file(s.bytes), "uncompressed_bytes_per_file": per_file(s.raw_bytes)});
            ((*name).to_owned(), info)
        })
        .collect();
    println!(
        "{}",
        json!({
            "dir": args.dir,
            "lines_per_batch": args.lines,
            "batches": args.batches,
            "first_line_ms": args.start_ms,
            "rw_shards": args.rw_shards,
            "rw_files_per_shard": args.rw_files,
            "rw_samples_per_request": args.rw_series * args.rw_samples,
            "rw_first_sample_ms": rw_start_ms(&args),
            "rw_step_ms": rw_step_ms(&args),
            "verified": args.verify,
            "files": summary,
        })
    );
}

/// A line as read back from any encoding, in a form all of them can express.
type Seen = (i64, String, String, String, String, BTreeMap<String, String>);

fn expected(lines: &[Line]) -> Vec<Seen> {
    let mut out: Vec<Seen> = lines
        .iter()
        .map(|l| {
            let attrs = attributes(l)
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.as_str().map_or_else(|| v.to_string(), str::to_owned)))
                .collect();
            (l.ts_ms, l.level.to_owned(), l.message.clone(), l.hostname.clone(), l.application.to_owned(), attrs)
        })
        .collect();
    out.sort();
    out
}

fn check(what: &str, batch: usize, mut seen: Vec<Seen>, expected: &[Seen]) {
    seen.sort();
    assert_eq!(seen.len(), expected.len(), "{what}-{batch}: line count");
    for (s, e) in seen.iter().zip(expected) {
        assert_eq!(s, e, "{what}-{batch}: a line differs");
    }
}

fn text(value: &Value) -> String {
    value.as_str().map_or_else(|| value.to_string(), str::to_owned)
}

/// Reads back the four files of `batch` and compares each with the lines.
fn verify_logs(args: &Args, batch: usize, lines: &[Line]) {
    let want = expected(lines);
    let read = |name: String| fs::read(args.dir.join(name)).unwrap();

    let json: Value = serde_json::from_slice(&read(format!("json-{batch}.json"))).unwrap();
    assert_eq!(json["source_id"], args.source_id.as_str());
    let seen = json["logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let attrs = e["attributes"].as_object().unwrap().iter().map(|(k, v)| (k.clone(), text(v))).collect();
            let field = |name: &str| e[name].as_str().unwrap().to_owned();
            (
                parse_rfc3339_ms(&field("timestamp")),
                field("level"),
                field("message"),
                field("hostname"),
                field("application"),
                attrs,
            )
        })
        .collect();
    check("json", batch, seen, &want);

    let otlp = otlp::ExportLogsServiceRequest::decode(read(format!("otlp-{batch}.pb")).as_slice()).unwrap();
    let mut seen = Vec::new();
    for rl in &otlp.resource_logs {
        let resource: HashMap<&str, String> =
            rl.resource.as_ref().unwrap().attributes.iter().map(|kv| (kv.key.as_str(), any_text(&kv.value))).collect();
        for record in rl.scope_logs.iter().flat_map(|s| &s.log_records) {
            let mut attrs: BTreeMap<String, String> =
                record.attributes.iter().map(|kv| (kv.key.clone(), any_text(&kv.value))).collect();
            if !record.trace_id.is_empty() {
                attrs.insert("trace_id".into(), hex::encode(&record.trace_id));
                attrs.insert("span_id".into(), hex::encode(&record.span_id));
            }
            let level = ["debug", "info", "warning", "error", "critical"]
                .into_iter()
                .find(|l| severity(l) == (record.severity_number, record.severity_text.as_str()))
                .unwrap();
            assert_eq!(record.time_unix_nano % 1_000_000, 0);
            seen.push((
                (record.time_unix_nano / 1_000_000) as i64,
                level.to_owned(),
                any_text(&record.body),
                resource["host.name"].clone(),
                resource["service.name"].clone(),
                attrs,
            ));
        }
    }
    check("otlp", batch, seen, &want);

    let loki = loki::PushRequest::decode(unsnappy(&read(format!("loki-{batch}.pb.sz"))).as_slice()).unwrap();
    let mut seen = Vec::new();
    for stream in &loki.streams {
        let labels = parse_selector(&stream.labels);
        assert_eq!(stream.labels, loki_labels(&labels["app"], &labels["host"], &labels["level"]));
        let mut last = i64::MIN;
        for entry in &stream.entries {
            let ts = entry.timestamp.unwrap();
            let ms = ts.seconds * 1000 + i64::from(ts.nanos) / 1_000_000;
            assert!(ms > last, "loki-{batch}: a stream's entries must be in time order");
            last = ms;
            let attrs = entry.structured_metadata.iter().map(|p| (p.name.clone(), p.value.clone())).collect();
            let (level, host, app) = (labels["level"].clone(), labels["host"].clone(), labels["app"].clone());
            seen.push((ms, level, entry.line.clone(), host, app, attrs));
        }
    }
    check("loki", batch, seen, &want);

    let bulk = String::from_utf8(read(format!("bulk-{batch}.ndjson"))).unwrap();
    assert!(bulk.ends_with('\n'));
    let rows: Vec<Value> = bulk.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let mut seen = Vec::new();
    for pair in rows.chunks(2) {
        assert_eq!(pair[0], json!({"create": {"_index": "logs"}}));
        let d = &pair[1];
        let mut attrs = BTreeMap::from([
            ("pid".to_owned(), text(&d["process"]["pid"])),
            ("thread".to_owned(), text(&d["process"]["thread"]["name"])),
            ("request_id".to_owned(), text(&d["request_id"])),
            ("region".to_owned(), text(&d["cloud"]["region"])),
        ]);
        if let Some(trace) = d.get("trace") {
            attrs.insert("trace_id".into(), text(&trace["id"]));
            attrs.insert("span_id".into(), text(&d["span"]["id"]));
        }
        seen.push((
            parse_rfc3339_ms(d["@timestamp"].as_str().unwrap()),
            text(&d["log"]["level"]),
            text(&d["message"]),
            text(&d["host"]["name"]),
            text(&d["service"]["name"]),
            attrs,
        ));
    }
    check("bulk", batch, seen, &want);
}

fn any_text(value: &Option<otlp::AnyValue>) -> String {
    match value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(otlp::Value::String(s)) => s.clone(),
        Some(otlp::Value::Int(i)) => i.to_string(),
        Some(otlp::Value::Bool(b)) => b.to_string(),
        Some(otlp::Value::Double(d)) => d.to_string(),
        None => String::new(),
    }
}

/// `{a="x", b="y"}` → {a: x, b: y} (the values written here hold no quote or backslash).
fn parse_selector(text: &str) -> HashMap<String, String> {
    let inner = text.strip_prefix('{').and_then(|t| t.strip_suffix('}')).unwrap();
    inner
        .split(", ")
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap();
            (name.to_owned(), value.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap().to_owned())
        })
        .collect()
}

/// Reads back every remote_write file: the counts, sorted labels, series disjoint between
/// shards, and each series' timestamps strictly increasing across a shard's files.
fn verify_remote_write(args: &Args) {
    let mut owner: HashMap<Vec<(String, String)>, usize> = HashMap::new();
    for shard in 0..args.rw_shards {
        let mut last: HashMap<Vec<(String, String)>, i64> = HashMap::new();
        for file in 0..args.rw_files {
            let path = args.dir.join(format!("rw-{shard}-{file}.pb.sz"));
            let request = prompb::WriteRequest::decode(unsnappy(&fs::read(path).unwrap()).as_slice()).unwrap();
            assert_eq!(request.timeseries.len(), args.rw_series, "rw-{shard}-{file}: series");
            for ts in request.timeseries {
                let key: Vec<(String, String)> = ts.labels.into_iter().map(|l| (l.name, l.value)).collect();
                assert_eq!(key[0].0, "__name__", "rw-{shard}-{file}: __name__ first");
                assert!(key.windows(2).all(|w| w[0].0 < w[1].0), "rw-{shard}-{file}: labels sorted, unique");
                assert_eq!(*owner.entry(key.clone()).or_insert(shard), shard, "a series in two shards: {key:?}");
                assert_eq!(ts.samples.len(), args.rw_samples);
                let previous = last.entry(key).or_insert(i64::MIN);
                for sample in ts.samples {
                    assert!(sample.timestamp > *previous, "rw-{shard}-{file}: timestamps must increase");
                    *previous = sample.timestamp;
                }
            }
        }
        assert_eq!(last.len(), args.rw_series, "shard {shard}: distinct series");
    }
}
