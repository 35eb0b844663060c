//! PromQL against the real thing: a Prometheus 2.42 (`bash tests/clients/setup.sh`
//! installs it) and KillKrill are sent the same samples by remote_write, then every
//! expression of `tests/api/promql_corpus.txt` is asked of both, as instant queries at
//! three times and as a range query. Label sets, timestamps and result types must be
//! identical and values equal within 1e-9 relative (NaN equal to NaN); an expression
//! Prometheus refuses must be refused alike (same status and `errorType`).
//!
//! The corpus's "known differences" are expressions the engine does not answer as
//! Prometheus yet, each with its reason: they must still differ, so that fixing one
//! fails the run until it moves to the corpus proper. Set `KK_CONFORMANCE_REPORT` to a
//! file path to get every difference written there, with both answers.
//!
//! `promtool query instant|range|series|labels` runs against KillKrill in its own case.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    process::{Command, Stdio},
    time::Duration,
};

use prost::Message;
use reqwest::Method;
use serde_json::Value;

use super::{Cred, data, loaded, prom};
use crate::{
    common::{TestDb, eventually, rest::*},
    remote_write::{Killed, free_port, snappy},
};

cases! {
    on_all_databases:
        promql_answers_the_corpus_as_prometheus_2_42_does,
        promtool_queries_killkrill;
}

const CORPUS: &str = include_str!("../promql_corpus.txt");
const KNOWN: &str = "\n[known differences]\n";

/// The corpus: the expressions to match, and the known differences with their reasons.
pub fn corpus() -> (Vec<&'static str>, Vec<(&'static str, &'static str)>) {
    let (proper, known) = CORPUS.split_once(KNOWN).unwrap_or((CORPUS, ""));
    let lines = |text: &'static str| {
        text.lines().map(str::trim).filter(|line| !line.is_empty() && !line.starts_with('#')).collect::<Vec<_>>()
    };
    let known = lines(known)
        .into_iter()
        .map(|line| line.split_once(" ## ").unwrap_or_else(|| panic!("a known difference needs ` ## reason`: {line}")))
        .map(|(expr, reason)| (expr.trim(), reason.trim()))
        .collect();
    (lines(proper), known)
}

/// A Prometheus 2.42 on a free port, receiving remote_write, with its data in a
/// temporary directory; killed when dropped.
pub struct Prometheus {
    pub port: u16,
    _process: Killed,
    dir: tempfile::TempDir,
}

impl Prometheus {
    pub async fn start() -> Prometheus {
        let Ok(version) = Command::new("prometheus").arg("--version").output() else {
            panic!("prometheus is not installed: run bash tests/clients/setup.sh");
        };
        assert!(String::from_utf8_lossy(&version.stdout).contains("2.42"), "Prometheus 2.42 is the oracle");
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(&config, "global:\n  scrape_interval: 15s\n").unwrap();
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--web.enable-remote-write-receiver")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("prometheus starts");
        let prometheus = Prometheus { port, _process: Killed(child), dir };
        let client = reqwest::Client::new();
        let ready = eventually(Duration::from_secs(30), || async {
            let url = format!("http://127.0.0.1:{port}/-/ready");
            client.get(url).send().await.is_ok_and(|r| r.status() == 200)
        })
        .await;
        assert!(ready, "Prometheus did not get ready:\n{}", prometheus.log());
        prometheus
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    pub async fn write(&self, requests: &[killkrill::protocol::remote_write::WriteRequest]) {
        let client = reqwest::Client::new();
        for request in requests {
            let response = client
                .post(format!("http://127.0.0.1:{}/api/v1/write", self.port))
                .header("Content-Type", "application/x-protobuf")
                .header("Content-Encoding", "snappy")
                .header("X-Prometheus-Remote-Write-Version", "0.1.0")
                .body(snappy(&request.encode_to_vec()))
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            assert_eq!(status, 204, "Prometheus refused the samples: {}", response.text().await.unwrap());
        }
    }

    /// `GET /api/v1/<path>` with `params`: the status and JSON body.
    pub async fn get(&self, client: &reqwest::Client, path: &str, params: &[(&str, &str)]) -> (u16, Value) {
        let url = format!("http://127.0.0.1:{}{}", self.port, with_query(&format!("/api/v1{path}"), params));
        let response = client.get(url).send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or_else(|e| panic!("Prometheus {path}: not JSON ({e}): {text}")))
    }
}

/// The queries each expression is asked as.
#[derive(Clone, Debug)]
enum Ask {
    Instant(i64),
    Range { start: i64, end: i64, step: i64 },
}

impl Ask {
    fn params(&self, expr: &str) -> (&'static str, Vec<(&'static str, String)>) {
        let seconds = |ms: i64| format!("{}", ms as f64 / 1000.0);
        match self {
            Ask::Instant(t) => ("/query", vec![("query", expr.to_owned()), ("time", seconds(*t))]),
            Ask::Range { start, end, step } => (
                "/query_range",
                vec![
                    ("query", expr.to_owned()),
                    ("start", seconds(*start)),
                    ("end", seconds(*end)),
                    ("step", seconds(*step)),
                ],
            ),
        }
    }
}

/// A value as the API writes it: a string (`"NaN"`, `"+Inf"`) or a number.
fn number(value: &Value) -> Option<f64> {
    match value {
        Value::String(text) => text.parse().ok(),
        Value::Number(n) => n.as_f64(),
        _ => None,
    }
}

fn same_number(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan()) || a == b || (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
}

/// `[seconds, "value"]` as (milliseconds, value).
fn point(pair: &Value) -> Option<(i64, f64)> {
    let t = pair.get(0)?.as_f64()?;
    Some(((t * 1000.0).round() as i64, number(pair.get(1)?)?))
}

fn same_points(ours: &[(i64, f64)], theirs: &[(i64, f64)]) -> bool {
    ours.len() == theirs.len() && ours.iter().zip(theirs).all(|((t1, v1), (t2, v2))| t1 == t2 && same_number(*v1, *v2))
}

/// `metric → points` of a vector or matrix result; `Err` for a duplicate label set.
fn by_labels(result: &Value, key: &str) -> Result<BTreeMap<String, Vec<(i64, f64)>>, String> {
    let mut found = BTreeMap::new();
    for item in result.as_array().ok_or("result is not a list")? {
        let labels = item["metric"].to_string();
        let points: Vec<(i64, f64)> = if key == "value" {
            vec![point(&item["value"]).ok_or("bad value")?]
        } else {
            item[key].as_array().ok_or("no values")?.iter().map(point).collect::<Option<_>>().ok_or("bad values")?
        };
        if found.insert(canonical(&item["metric"]).unwrap_or(labels.clone()), points).is_some() {
            return Err(format!("the label set {labels} twice"));
        }
    }
    Ok(found)
}

/// A label set as sorted `k=v` text, whatever order the object was written in.
fn canonical(metric: &Value) -> Option<String> {
    let sorted: BTreeMap<&String, &Value> = metric.as_object()?.iter().collect();
    Some(format!("{sorted:?}"))
}

/// Why two answers differ, if they do.
fn difference(expr: &str, ours: &(u16, Value), theirs: &(u16, Value)) -> Option<String> {
    let (ours_status, ours) = ours;
    let (theirs_status, theirs) = theirs;
    if theirs_status != &200 || ours_status != &200 {
        let same_error = ours_status == theirs_status && ours["errorType"] == theirs["errorType"];
        return (!same_error).then(|| {
            format!("status/errorType {ours_status} {} vs {theirs_status} {}", ours["errorType"], theirs["errorType"])
        });
    }
    let (ours, theirs) = (&ours["data"], &theirs["data"]);
    if ours["resultType"] != theirs["resultType"] {
        return Some(format!("resultType {} vs {}", ours["resultType"], theirs["resultType"]));
    }
    let (a, b) = (&ours["result"], &theirs["result"]);
    match theirs["resultType"].as_str() {
        Some("scalar") => {
            let (x, y) = (point(a), point(b));
            let same = matches!((x, y), (Some((t1, v1)), Some((t2, v2))) if t1 == t2 && same_number(v1, v2));
            (!same).then(|| "scalar differs".to_owned())
        }
        Some("string") => (a != b).then(|| "string differs".to_owned()),
        Some(kind @ ("vector" | "matrix")) => {
            let key = if kind == "vector" { "value" } else { "values" };
            let (x, y) = match (by_labels(a, key), by_labels(b, key)) {
                (Ok(x), Ok(y)) => (x, y),
                (Err(err), _) => return Some(format!("ours: {err}")),
                (_, Err(err)) => return Some(format!("theirs: {err}")),
            };
            let ours_only: Vec<&String> = x.keys().filter(|k| !y.contains_key(*k)).collect();
            let theirs_only: Vec<&String> = y.keys().filter(|k| !x.contains_key(*k)).collect();
            if !ours_only.is_empty() || !theirs_only.is_empty() {
                return Some(format!("label sets: ours only {ours_only:?}, theirs only {theirs_only:?}"));
            }
            if let Some((labels, _)) = x.iter().find(|(k, points)| !same_points(points, &y[*k])) {
                return Some(format!("points of {labels}"));
            }
            // Sorting functions order the vector: the values must come in the same order.
            if kind == "vector" && expr.contains("sort") {
                let values = |r: &Value| -> Vec<f64> {
                    r.as_array().unwrap().iter().filter_map(|i| point(&i["value"]).map(|p| p.1)).collect()
                };
                let (v1, v2) = (values(a), values(b));
                if !v1.iter().zip(&v2).all(|(p, q)| same_number(*p, *q)) {
                    return Some("order of the sorted vector".to_owned());
                }
            }
            None
        }
        other => Some(format!("unknown resultType {other:?}")),
    }
}

fn shown(answer: &(u16, Value)) -> String {
    let text = format!("{} {}", answer.0, answer.1);
    if text.len() > 3000 { format!("{}… ({} bytes)", &text[..3000], text.len()) } else { text }
}

async fn promql_answers_the_corpus_as_prometheus_2_42_does(db: TestDb) {
    let (exprs, known) = corpus();
    assert!(exprs.len() + known.len() >= 150, "the corpus has {} expressions", exprs.len() + known.len());
    // Recent samples: Prometheus refuses those older than its head block's window.
    let now_ms = chrono::Utc::now().timestamp_millis();
    let start_ms = (now_ms - 55 * 60_000) / 60_000 * 60_000;
    let l = loaded(&db, start_ms).await;
    let prometheus = Prometheus::start().await;
    prometheus.write(&data::requests(start_ms, 10_000)).await;

    let minute = 60_000;
    let asks = [
        Ask::Instant(start_ms + 20 * minute + 7_500),
        Ask::Instant(start_ms + 33 * minute),
        Ask::Instant(start_ms + 52 * minute),
        Ask::Range { start: start_ms + 90_000, end: start_ms + 53 * minute, step: 45_000 },
    ];
    let client = reqwest::Client::new();
    let mut report = String::new();
    let mut failed = Vec::new();
    let mut still_known = Vec::new();
    let mut fixed = Vec::new();
    // Answers of Prometheus with data in them: a corpus matched on empty answers alone
    // would prove nothing.
    let (mut answered, mut with_data) = (0, 0);
    let all = exprs.iter().map(|e| (*e, None)).chain(known.iter().map(|(e, why)| (*e, Some(*why))));
    for (expr, known_reason) in all {
        let mut differences = Vec::new();
        for ask in &asks {
            let (path, params) = ask.params(expr);
            let params: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let (ours, theirs) = tokio::join!(
                prom(&l.server, Method::GET, path, &params, &l.viewer),
                prometheus.get(&client, path, &params)
            );
            if theirs.0 == 200 {
                answered += 1;
                let result = &theirs.1["data"]["result"];
                with_data += usize::from(result.as_array().is_none_or(|items| !items.is_empty()));
            }
            if let Some(why) = difference(expr, &ours, &theirs) {
                differences.push(format!(
                    "  {ask:?}: {why}\n    killkrill:  {}\n    prometheus: {}",
                    shown(&ours),
                    shown(&theirs)
                ));
            }
        }
        match (known_reason, differences.is_empty()) {
            (None, true) => {}
            (None, false) => {
                let _ = writeln!(report, "MISMATCH {expr}\n{}", differences.join("\n"));
                failed.push(expr);
            }
            (Some(reason), false) => {
                let _ = writeln!(report, "KNOWN {expr} ({reason})\n{}", differences.join("\n"));
                still_known.push(expr);
            }
            (Some(reason), true) => {
                let _ = writeln!(report, "FIXED {expr} (listed as a known difference: {reason})");
                fixed.push(expr);
            }
        }
    }
    let summary = format!(
        "promql conformance ({}): {} of {} expressions answered as Prometheus 2.42 ({} queries each; {with_data} of Prometheus' {answered} answers hold data); {} known differences still differ; {} mismatches; {} known differences now match",
        db.kind.name(),
        exprs.len() - failed.len(),
        exprs.len(),
        asks.len(),
        still_known.len(),
        failed.len(),
        fixed.len(),
    );
    println!("{summary}\n{report}");
    if let Ok(path) = std::env::var("KK_CONFORMANCE_REPORT") {
        let path = format!("{path}.{}", db.kind.name());
        std::fs::write(&path, format!("{summary}\n{report}")).unwrap();
    }
    assert!(with_data * 4 > answered * 3, "too few answers hold data: {summary}");
    assert!(failed.is_empty() && fixed.is_empty(), "{summary}\n{report}");
    l.server.stop().await.unwrap();
}

/// Runs promtool with `args`; its standard output, asserting it succeeded.
fn promtool(args: &[&str]) -> String {
    let output = Command::new("promtool").args(args).output().expect("promtool runs");
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "promtool {args:?}: {stdout}{stderr}");
    stdout.into_owned()
}

async fn promtool_queries_killkrill(db: TestDb) {
    let start_ms = super::START_MS;
    let l = loaded(&db, start_ms).await;
    // promtool sends no credential of its own: the URL's user and password become HTTP
    // Basic, the user's password or an API key as the password.
    let token = match &l.viewer {
        Cred::Bearer(token) => token.clone(),
        _ => unreachable!(),
    };
    let (status, created) = send(
        call(&l.server, Method::POST, "/api/v1/auth/api-keys", &token).json(&serde_json::json!({"name": "promtool"})),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let key = created["key"].as_str().unwrap();
    let with_password = format!("http://vic:vic-pw-123@{}/prometheus", l.server.addr);
    let with_key = format!("http://promtool:{key}@{}/prometheus", l.server.addr);
    let at = |i: i64| ((start_ms + i * data::INTERVAL_MS) / 1000).to_string();

    let instant =
        promtool(&["query", "-o", "json", "instant", "--time", &at(100), &with_password, "sum by (job) (up)"]);
    let vector: Value = serde_json::from_str(&instant).unwrap_or_else(|e| panic!("{e}: {instant}"));
    let jobs: BTreeMap<String, String> = vector
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["metric"]["job"].as_str().unwrap().to_owned(), s["value"][1].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(jobs, BTreeMap::from([("api".to_owned(), "2".to_owned()), ("web".to_owned(), "1".to_owned())]));

    let range = promtool(&[
        "query",
        "-o",
        "json",
        "range",
        "--start",
        &at(10),
        "--end",
        &at(20),
        "--step",
        "15s",
        &with_key,
        "queue_depth{instance=\"w2\"}",
    ]);
    let matrix: Value = serde_json::from_str(&range).unwrap_or_else(|e| panic!("{e}: {range}"));
    assert_eq!(matrix[0]["values"].as_array().unwrap().len(), 11, "{matrix}");

    let series = promtool(&["query", "series", "--match", "up", "--start", &at(0), "--end", &at(199), &with_password]);
    assert_eq!(series.lines().count(), 3, "{series}");
    assert!(series.contains("instance=\"web-1:80\""), "{series}");

    let labels = promtool(&["query", "labels", "--match", "queue_depth", &with_key, "instance"]);
    assert_eq!(labels.lines().collect::<Vec<_>>(), ["w1", "w2"], "{labels}");

    // A wrong password: promtool fails, saying so.
    let wrong = format!("http://vic:nope@{}/prometheus", l.server.addr);
    let output = Command::new("promtool").args(["query", "instant", &wrong, "1"]).output().unwrap();
    assert!(!output.status.success());
    l.server.stop().await.unwrap();
}
