//! The PromQL benchmark of `benches/promql/run.sh`: the same samples written to KillKrill
//! and to Prometheus, then the same queries asked of both, timed side by side.
//!
//! ```sh
//! cargo run --release --example promql_bench -- load --killkrill <url> --ingest-key <kki_…>
//!     --prometheus <url> --end-ms <ms> [--scale 1]
//! cargo run --release --example promql_bench -- query --killkrill <url> --query-key <kk_…>
//!     --prometheus <url> --end-ms <ms> [--runs 20] [--scale 1]
//! ```
//!
//! The data (timestamps on a 15 s scrape grid ending at `--end-ms`, deterministic values):
//! - `x_total`: 1,000 counters (`job` one of 10, `instance`) over the last 65 minutes;
//! - `h_bucket`: a classic histogram of 12 buckets on 10 instances (120 series) over the
//!   last 24 h 5 min, with `h_sum` and `h_count` beside it;
//! - `y`: 10,000 gauges (`instance`, `group` one of 100) over the last 5 minutes.
//!
//! `--scale` divides the series counts (a quick smoke run). `load` sends the samples as
//! remote_write 1.0 requests of at most 5,000 samples, oldest first (Prometheus only takes
//! a series' samples in time order), to Prometheus' `/api/v1/write` and KillKrill's
//! `/prometheus/api/v1/write` (4 requests in flight; Prometheus only when `--prometheus`
//! is given), and prints one JSON line: samples,
//! requests and seconds for each.
//!
//! `query` asks each query `--runs` times of each server, alternating (2 warm-up asks each
//! first), times each from sending the request to the last byte of the answer, and checks
//! that both servers gave the same answer (label sets, timestamps, values within 1e-9
//! relative). It prints one JSON line a query: p50, p90 and max in ms for each, the ratio
//! of the p50s, the series and points answered, and `"same_answer"`.
//!
//! The queries (the issue's): (a) `sum by (job) (rate(x_total[5m]))` over the last hour at
//! a 15 s step; (b) `histogram_quantile(0.99, sum by (le) (rate(h_bucket[5m])))` over the
//! last 24 h at a 60 s step; (c) the instant query `y` (10,000 series) at `--end-ms`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use killkrill::protocol::remote_write::{Label, Sample, TimeSeries, WriteRequest};
use prost::Message;
use serde_json::{Value, json};

const SCRAPE_MS: i64 = 15_000;
const MAX_SAMPLES_PER_REQUEST: usize = 5_000;
const IN_FLIGHT: usize = 4;
const BUCKETS: [&str; 12] = ["0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf"];

struct Args {
    command: String,
    killkrill: String,
    ingest_key: String,
    query_key: String,
    prometheus: String,
    end_ms: i64,
    runs: usize,
    scale: usize,
}

fn args() -> Args {
    let mut raw = std::env::args().skip(1);
    let command = raw.next().unwrap_or_default();
    let mut args = Args {
        command,
        killkrill: String::new(),
        ingest_key: String::new(),
        query_key: String::new(),
        prometheus: String::new(),
        end_ms: 0,
        runs: 20,
        scale: 1,
    };
    while let Some(flag) = raw.next() {
        let value = raw.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--killkrill" => args.killkrill = value.trim_end_matches('/').to_owned(),
            "--ingest-key" => args.ingest_key = value,
            "--query-key" => args.query_key = value,
            "--prometheus" => args.prometheus = value.trim_end_matches('/').to_owned(),
            "--end-ms" => args.end_ms = value.parse().expect("--end-ms: milliseconds"),
            "--runs" => args.runs = value.parse().expect("--runs: a number"),
            "--scale" => args.scale = value.parse::<usize>().expect("--scale: a number").max(1),
            other => panic!("unknown flag {other}"),
        }
    }
    assert!(args.command == "load" || args.command == "query", "the command is load or query");
    assert!(args.end_ms > 0, "--end-ms is required");
    args
}

/// A small deterministic generator (xorshift), so both servers and every run get the
/// same values.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// One series: its labels (sorted, `__name__` first) and the time span it is sampled in.
struct Spec {
    labels: Vec<(String, String)>,
    from_ms: i64,
    kind: Kind,
}

#[derive(Clone, Copy)]
enum Kind {
    /// A counter growing by 0..=9 a scrape.
    Counter,
    /// Bucket `i` of a histogram's instance: cumulative, so each bucket grows at least as
    /// fast as the one below it.
    Bucket(usize),
    Gauge,
}

fn specs(end_ms: i64, scale: usize) -> Vec<Spec> {
    let mut specs = Vec::new();
    let label = |pairs: &[(&str, String)]| pairs.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect();
    for i in 0..1_000 / scale {
        specs.push(Spec {
            labels: label(&[
                ("__name__", "x_total".into()),
                ("instance", format!("i-{i:04}")),
                ("job", format!("job-{}", i % 10)),
            ]),
            from_ms: end_ms - 65 * 60_000,
            kind: Kind::Counter,
        });
    }
    for instance in 0..10 {
        for (b, le) in BUCKETS.iter().enumerate() {
            specs.push(Spec {
                labels: label(&[
                    ("__name__", "h_bucket".into()),
                    ("instance", format!("h-{instance}")),
                    ("le", (*le).into()),
                ]),
                from_ms: end_ms - (24 * 60 + 5) * 60_000,
                kind: Kind::Bucket(b),
            });
        }
    }
    for i in 0..10_000 / scale {
        specs.push(Spec {
            labels: label(&[
                ("__name__", "y".into()),
                ("group", format!("g-{}", i % 100)),
                ("instance", format!("y-{i:05}")),
            ]),
            from_ms: end_ms - 5 * 60_000,
            kind: Kind::Gauge,
        });
    }
    specs
}

/// The remote_write requests of all series, oldest first, at most
/// [`MAX_SAMPLES_PER_REQUEST`] samples each: the samples of 8 scrapes of every series
/// sampled then, a request per slice of series.
fn requests(end_ms: i64, scale: usize) -> (Vec<WriteRequest>, usize) {
    const BLOCK: i64 = 8;
    let specs = specs(end_ms, scale);
    let first = specs.iter().map(|s| s.from_ms).min().unwrap_or(end_ms);
    // Per series: the value it has reached; a histogram instance shares its increments.
    let mut values = vec![0.0_f64; specs.len()];
    let mut random = Random(0x9e37_79b9_7f4a_7c15);
    let mut requests = Vec::new();
    let mut total = 0;
    let mut block_start = first - (first - end_ms).rem_euclid(SCRAPE_MS);
    while block_start <= end_ms {
        let times: Vec<i64> = (0..BLOCK).map(|k| block_start + k * SCRAPE_MS).filter(|t| *t <= end_ms).collect();
        let mut series = Vec::new();
        let mut in_request = 0;
        // New observations of the current histogram instance, by scrape and bucket.
        let mut bucket_increments = [[0.0_f64; BUCKETS.len()]; BLOCK as usize];
        for (index, spec) in specs.iter().enumerate() {
            let mut samples = Vec::new();
            for (k, &t) in times.iter().enumerate() {
                if t < spec.from_ms {
                    continue;
                }
                let value = match spec.kind {
                    Kind::Counter => {
                        values[index] += (random.next() % 10) as f64;
                        values[index]
                    }
                    Kind::Bucket(b) => {
                        if b == 0 {
                            let mut cumulative = 0.0;
                            for increment in bucket_increments[k].iter_mut() {
                                cumulative += (random.next() % 4) as f64;
                                *increment = cumulative;
                            }
                        }
                        values[index] += bucket_increments[k][b];
                        values[index]
                    }
                    Kind::Gauge => (random.next() % 10_000) as f64 / 100.0,
                };
                samples.push(Sample { value, timestamp: t });
            }
            if samples.is_empty() {
                continue;
            }
            if in_request + samples.len() > MAX_SAMPLES_PER_REQUEST && !series.is_empty() {
                requests.push(WriteRequest { timeseries: std::mem::take(&mut series), metadata: Vec::new() });
                in_request = 0;
            }
            in_request += samples.len();
            total += samples.len();
            let labels = spec
                .labels
                .iter()
                .map(|(k, v)| Label { name: k.clone().into_bytes(), value: v.clone().into_bytes() })
                .collect();
            series.push(TimeSeries { labels, samples, histograms: Vec::new() });
        }
        if !series.is_empty() {
            requests.push(WriteRequest { timeseries: series, metadata: Vec::new() });
        }
        block_start += BLOCK * SCRAPE_MS;
    }
    (requests, total)
}

async fn write(client: &reqwest::Client, url: &str, bearer: Option<&str>, body: Vec<u8>) {
    for attempt in 0.. {
        let mut request = client
            .post(url)
            .header("Content-Type", "application/x-protobuf")
            .header("Content-Encoding", "snappy")
            .header("X-Prometheus-Remote-Write-Version", "0.1.0")
            .body(body.clone());
        if let Some(key) = bearer {
            request = request.bearer_auth(key);
        }
        let response = request.send().await.expect("the receiver answers");
        let status = response.status().as_u16();
        if status == 204 || status == 200 {
            return;
        }
        let text = response.text().await.unwrap_or_default();
        // Back-pressure is retried, as Prometheus' queue does.
        assert!((status == 429 || status == 503) && attempt < 50, "{url} answered {status}: {text}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn load(args: &Args) {
    let (requests, samples) = requests(args.end_ms, args.scale);
    let bodies: Vec<Vec<u8>> =
        requests.iter().map(|r| snap::raw::Encoder::new().compress_vec(&r.encode_to_vec()).expect("snappy")).collect();
    let client = reqwest::Client::new();

    // Prometheus only when given (a second backend reuses the one loaded first).
    let mut prometheus_seconds = None;
    if !args.prometheus.is_empty() {
        let started = Instant::now();
        let prometheus = format!("{}/api/v1/write", args.prometheus);
        for body in &bodies {
            write(&client, &prometheus, None, body.clone()).await;
        }
        prometheus_seconds = Some(started.elapsed().as_secs_f64());
    }

    let started = Instant::now();
    let killkrill = format!("{}/prometheus/api/v1/write", args.killkrill);
    for chunk in bodies.chunks(IN_FLIGHT) {
        let writes = chunk.iter().map(|body| write(&client, &killkrill, Some(&args.ingest_key), body.clone()));
        futures_util::future::join_all(writes).await;
    }
    let killkrill_seconds = started.elapsed().as_secs_f64();
    println!(
        "{}",
        json!({
            "samples": samples,
            "requests": bodies.len(),
            "prometheus_seconds": prometheus_seconds,
            "killkrill_seconds": killkrill_seconds,
        })
    );
}

struct Query {
    name: &'static str,
    params: Vec<(&'static str, String)>,
    path: &'static str,
}

fn queries(end_ms: i64) -> Vec<Query> {
    let seconds = |ms: i64| format!("{}", ms as f64 / 1000.0);
    vec![
        Query {
            name: "a: sum by (job) (rate(x_total[5m])), 1 h at 15 s",
            path: "query_range",
            params: vec![
                ("query", "sum by (job) (rate(x_total[5m]))".into()),
                ("start", seconds(end_ms - 3_600_000)),
                ("end", seconds(end_ms)),
                ("step", "15".into()),
            ],
        },
        Query {
            name: "b: histogram_quantile(0.99, sum by (le) (rate(h_bucket[5m]))), 24 h at 60 s",
            path: "query_range",
            params: vec![
                ("query", "histogram_quantile(0.99, sum by (le) (rate(h_bucket[5m])))".into()),
                ("start", seconds(end_ms - 86_400_000)),
                ("end", seconds(end_ms)),
                ("step", "60".into()),
            ],
        },
        Query {
            name: "c: y, an instant query of 10,000 series",
            path: "query",
            params: vec![("query", "y".into()), ("time", seconds(end_ms))],
        },
    ]
}

/// `text` percent-encoded for a form body.
fn encoded(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Asks `query` of one server: the time to the last byte of the answer, and the answer.
async fn ask(client: &reqwest::Client, base: &str, bearer: Option<&str>, query: &Query) -> (f64, Value) {
    let body = query.params.iter().map(|(k, v)| format!("{k}={}", encoded(v))).collect::<Vec<_>>().join("&");
    let mut request = client
        .post(format!("{base}/api/v1/{}", query.path))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(body);
    if let Some(key) = bearer {
        request = request.bearer_auth(key);
    }
    let started = Instant::now();
    let response = request.send().await.expect("the server answers");
    let status = response.status().as_u16();
    let body = response.bytes().await.expect("the answer arrives");
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    assert_eq!(status, 200, "{base} answered {status} to {}: {}", query.name, String::from_utf8_lossy(&body));
    (ms, serde_json::from_slice(&body).expect("a JSON answer"))
}

/// The answer's series by label set, each with its points as `(time, value)` text.
fn normalised(answer: &Value) -> Vec<(String, Vec<(f64, String)>)> {
    let mut series: Vec<(String, Vec<(f64, String)>)> = answer["data"]["result"]
        .as_array()
        .map(|result| {
            result
                .iter()
                .map(|s| {
                    let points = match (s.get("values"), s.get("value")) {
                        (Some(Value::Array(values)), _) => values.clone(),
                        (_, Some(value)) => vec![value.clone()],
                        _ => Vec::new(),
                    };
                    let points = points
                        .iter()
                        .map(|p| (p[0].as_f64().unwrap_or(f64::NAN), p[1].as_str().unwrap_or("").to_owned()))
                        .collect();
                    (s["metric"].to_string(), points)
                })
                .collect()
        })
        .unwrap_or_default();
    series.sort_by(|a, b| a.0.cmp(&b.0));
    series
}

fn same(a: &Value, b: &Value) -> bool {
    let (a, b) = (normalised(a), normalised(b));
    a.len() == b.len()
        && a.iter().zip(&b).all(|((la, pa), (lb, pb))| {
            la == lb
                && pa.len() == pb.len()
                && pa.iter().zip(pb).all(|((ta, va), (tb, vb))| {
                    let (x, y) = (va.parse::<f64>().unwrap_or(f64::NAN), vb.parse::<f64>().unwrap_or(f64::NAN));
                    ta == tb && (va == vb || (x - y).abs() <= 1e-9 * x.abs().max(y.abs()))
                })
        })
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

async fn query(args: &Args) {
    let client = reqwest::Client::new();
    let killkrill = format!("{}/prometheus", args.killkrill);
    for query in queries(args.end_ms) {
        for _ in 0..2 {
            ask(&client, &killkrill, Some(&args.query_key), &query).await;
            ask(&client, &args.prometheus, None, &query).await;
        }
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        let (mut our_answer, mut their_answer) = (Value::Null, Value::Null);
        for _ in 0..args.runs.max(1) {
            let (ms, answer) = ask(&client, &killkrill, Some(&args.query_key), &query).await;
            ours.push(ms);
            our_answer = answer;
            let (ms, answer) = ask(&client, &args.prometheus, None, &query).await;
            theirs.push(ms);
            their_answer = answer;
        }
        ours.sort_by(f64::total_cmp);
        theirs.sort_by(f64::total_cmp);
        let answered = normalised(&our_answer);
        println!(
            "{}",
            json!({
                "query": query.name,
                "runs": ours.len(),
                "killkrill_ms": {"p50": percentile(&ours, 0.5), "p90": percentile(&ours, 0.9), "max": percentile(&ours, 1.0)},
                "prometheus_ms": {"p50": percentile(&theirs, 0.5), "p90": percentile(&theirs, 0.9), "max": percentile(&theirs, 1.0)},
                "ratio_p50": percentile(&ours, 0.5) / percentile(&theirs, 0.5),
                "series": answered.len(),
                "points": answered.iter().map(|(_, p)| p.len()).sum::<usize>(),
                "same_answer": same(&our_answer, &their_answer),
            })
        );
    }
}

#[tokio::main]
async fn main() {
    killkrill::install_crypto_provider();
    let args = args();
    match args.command.as_str() {
        "load" => load(&args).await,
        _ => query(&args).await,
    }
}
