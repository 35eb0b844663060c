//! Load generator for `benches/grpc/run.sh`: the same log batches sent to a running
//! killkrill over REST (`POST /api/v1/logs`, one batch a request) and over gRPC
//! (`LogService/IngestLogs`, one client stream per worker), for a fixed time each.
//!
//! ```sh
//! cargo run --release --example ingest_load -- \
//!     --http 127.0.0.1:5000 --grpc 127.0.0.1:50051 --key kki_... --source <id> \
//!     --mode rest|grpc --workers 8 --seconds 10 --batch 1000
//! ```
//! Prints one JSON line: mode, workers, seconds, lines, batches, lines_per_second, errors.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use futures_util::StreamExt;
use killkrill::grpc::{
    convert::json_to_struct,
    proto::{IngestLogsRequest, IngestLogsResponse, LogEntry},
};
use prost::Message;
use serde_json::json;
use tonic::{
    Status,
    codec::{BufferSettings, Codec, DecodeBuf, Decoder, EncodeBuf, Encoder},
    codegen::{Bytes, http::uri::PathAndQuery},
};

struct Args {
    http: String,
    grpc: String,
    key: String,
    source: String,
    mode: String,
    workers: usize,
    seconds: u64,
    batch: usize,
}

fn args() -> Args {
    let mut args = Args {
        http: "127.0.0.1:5000".into(),
        grpc: "127.0.0.1:50051".into(),
        key: String::new(),
        source: String::new(),
        mode: "grpc".into(),
        workers: 8,
        seconds: 10,
        batch: 1000,
    };
    let mut it = std::env::args().skip(1);
    while let (Some(flag), Some(value)) = (it.next(), it.next()) {
        match flag.as_str() {
            "--http" => args.http = value,
            "--grpc" => args.grpc = value,
            "--key" => args.key = value,
            "--source" => args.source = value,
            "--mode" => args.mode = value,
            "--workers" => args.workers = value.parse().expect("--workers"),
            "--seconds" => args.seconds = value.parse().expect("--seconds"),
            "--batch" => args.batch = value.parse().expect("--batch"),
            other => panic!("unknown flag {other}"),
        }
    }
    assert!(!args.key.is_empty() && !args.source.is_empty(), "--key and --source are required");
    args
}

/// The simulated clock of the producers: every line sent takes the next millisecond from
/// a day ago, so timestamps go on increasing from batch to batch, as a live producer's
/// would (filled in when a batch is sent, as benches/http/data.sh does).
struct Clock {
    start: f64,
    lines: AtomicU64,
}

impl Clock {
    fn new() -> Self {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
        Clock { start: now - 86_400.0, lines: AtomicU64::new(0) }
    }

    /// The timestamps of the next `n` lines.
    fn take(&self, n: usize) -> impl Iterator<Item = f64> {
        let first = self.lines.fetch_add(n as u64, Ordering::Relaxed);
        let start = self.start;
        (0..n as u64).map(move |i| start + (first + i) as f64 * 0.001)
    }
}

const TS_MARK: &str = "\"@TS@\"";

/// Realistic entries (as benches/http/data.sh makes them): levels mostly info, messages of
/// 100-200 bytes, 12 hosts, 4 applications, small attributes.
fn entries(n: usize, seed: usize) -> Vec<(f64, &'static str, String, String, &'static str, serde_json::Value)> {
    let apps = ["api", "worker", "auth", "billing"];
    let now = 0.0;
    (0..n)
        .map(|i| {
            let k = seed * n + i;
            let level = match k % 100 {
                0..=74 => "info",
                75..=89 => "warning",
                90..=97 => "error",
                _ => "critical",
            };
            let message = format!(
                "GET /api/v1/orders/{k} completed in {} ms for tenant t-{} after {} retries; upstream cache {}",
                k % 997,
                k % 53,
                k % 3,
                if k.is_multiple_of(2) { "hit" } else { "miss, refreshed from the primary store" }
            );
            let app = apps[k % 4];
            let attributes = json!({"pid": 1000 + k % 64, "thread": format!("worker-{}", k % 8), "request_id": format!("{k:016x}"), "region": "eu-west-1"});
            (now, level, message, format!("web-{:02}", k % 12 + 1), app, attributes)
        })
        .collect()
}

/// An `IngestLogsRequest` encoded once, with where each entry's timestamp lies.
struct Encoded {
    bytes: Vec<u8>,
    timestamps: Vec<usize>,
}

impl Encoded {
    fn new(source_id: &str, logs: &[LogEntry]) -> Self {
        let mut bytes = IngestLogsRequest { source_id: source_id.to_owned(), logs: Vec::new() }.encode_to_vec();
        let mut timestamps = Vec::with_capacity(logs.len());
        for entry in logs {
            // Field 2 (logs), length-delimited, then the entry: its first field is the
            // timestamp, tag 0x09 and 8 bytes.
            let entry = entry.encode_to_vec();
            assert_eq!(entry[0], 0x09, "the timestamp is not the entry's first field");
            bytes.push(0x12);
            prost::encoding::encode_varint(entry.len() as u64, &mut bytes);
            timestamps.push(bytes.len() + 1);
            bytes.extend_from_slice(&entry);
        }
        // The splice must decode as the message it stands for.
        assert_eq!(IngestLogsRequest::decode(bytes.as_slice()).unwrap().logs.as_slice(), logs);
        Self { bytes, timestamps }
    }

    fn stamped(&self, clock: &Clock) -> Bytes {
        let mut bytes = self.bytes.clone();
        for (at, ts) in self.timestamps.iter().zip(clock.take(self.timestamps.len())) {
            bytes[*at..*at + 8].copy_from_slice(&ts.to_le_bytes());
        }
        Bytes::from(bytes)
    }
}

/// Sends pre-encoded requests as they are; decodes the response with prost.
struct Preencoded;

impl Codec for Preencoded {
    type Encode = Bytes;
    type Decode = IngestLogsResponse;
    type Encoder = Preencoded;
    type Decoder = Preencoded;

    fn encoder(&mut self) -> Self::Encoder {
        Preencoded
    }

    fn decoder(&mut self) -> Self::Decoder {
        Preencoded
    }
}

impl Encoder for Preencoded {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        prost::bytes::BufMut::put_slice(dst, &item);
        Ok(())
    }

    fn buffer_settings(&self) -> BufferSettings {
        BufferSettings::default()
    }
}

impl Decoder for Preencoded {
    type Item = IngestLogsResponse;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<IngestLogsResponse>, Status> {
        IngestLogsResponse::decode(src).map(Some).map_err(|e| Status::internal(e.to_string()))
    }
}

#[tokio::main]
async fn main() {
    killkrill::install_crypto_provider();
    let args = args();
    let batches = 16;
    let deadline = Duration::from_secs(args.seconds);
    let lines = Arc::new(AtomicU64::new(0));
    let sent_batches = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let clock = Arc::new(Clock::new());
    let started = Instant::now();
    let mut tasks = Vec::new();

    match args.mode.as_str() {
        "rest" => {
            // Each body with a mark where each timestamp goes, split there once.
            let bodies: Arc<Vec<Vec<String>>> = Arc::new(
                (0..batches)
                    .map(|b| {
                        let logs: Vec<serde_json::Value> = entries(args.batch, b)
                            .into_iter()
                            .map(|(_, level, message, host, app, attributes)| {
                                json!({"timestamp": "@TS@", "level": level, "message": message, "hostname": host, "application": app, "attributes": attributes})
                            })
                            .collect();
                        let text = serde_json::to_string(&json!({"source_id": args.source, "logs": logs})).unwrap();
                        text.split(TS_MARK).map(str::to_owned).collect()
                    })
                    .collect(),
            );
            let client = reqwest::Client::builder().pool_max_idle_per_host(args.workers).build().unwrap();
            for w in 0..args.workers {
                let (client, bodies, url, key) =
                    (client.clone(), bodies.clone(), format!("http://{}/api/v1/logs", args.http), args.key.clone());
                let (lines, sent_batches, errors, stop) =
                    (lines.clone(), sent_batches.clone(), errors.clone(), stop.clone());
                let clock = clock.clone();
                let batch = args.batch as u64;
                tasks.push(tokio::spawn(async move {
                    let mut i = w;
                    while !stop.load(Ordering::Relaxed) {
                        let parts = &bodies[i % bodies.len()];
                        i += 1;
                        let mut body =
                            String::with_capacity(parts.iter().map(String::len).sum::<usize>() + 20 * parts.len());
                        for (part, ts) in parts.iter().zip(clock.take(parts.len() - 1).map(Some).chain([None])) {
                            body.push_str(part);
                            if let Some(ts) = ts {
                                body.push_str(&format!("{ts:.3}"));
                            }
                        }
                        let response = client
                            .post(&url)
                            .header("x-api-key", &key)
                            .header("content-type", "application/json")
                            .body(body)
                            .send()
                            .await;
                        match response {
                            Ok(r) if r.status() == 202 => {
                                lines.fetch_add(batch, Ordering::Relaxed);
                                sent_batches.fetch_add(1, Ordering::Relaxed);
                            }
                            _ => {
                                errors.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                }));
            }
        }
        "grpc" => {
            // Each batch encoded once, as REST's bodies are built once: a send copies the
            // bytes and writes each entry's timestamp into its place (field 1, a fixed
            // 8-byte double at the start of the entry), instead of cloning and re-encoding
            // the messages (1.25 µs a line of the load generator's CPU, against REST's 0.5).
            let encoded: Arc<Vec<Encoded>> = Arc::new(
                (0..batches)
                    .map(|b| {
                        let logs: Vec<LogEntry> = entries(args.batch, b)
                            .into_iter()
                            .map(|(_, level, message, host, app, attributes)| LogEntry {
                                timestamp: 1.0,
                                level: level.into(),
                                message,
                                hostname: Some(host),
                                application: Some(app.into()),
                                attributes: Some(json_to_struct(attributes)),
                                labels: Default::default(),
                            })
                            .collect();
                        Encoded::new(&args.source, &logs)
                    })
                    .collect(),
            );
            for w in 0..args.workers {
                // A connection per worker, as separate producers (and REST's workers) have.
                let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", args.grpc))
                    .unwrap()
                    .initial_stream_window_size(4 * 1024 * 1024)
                    .initial_connection_window_size(4 * 1024 * 1024)
                    .connect()
                    .await
                    .unwrap();
                let (encoded, key) = (encoded.clone(), args.key.clone());
                let (lines, sent_batches, errors, stop) =
                    (lines.clone(), sent_batches.clone(), errors.clone(), stop.clone());
                let clock = clock.clone();
                let batch = args.batch as u64;
                tasks.push(tokio::spawn(async move {
                    // One stream per worker for the whole run; counted when it is accepted.
                    let sent = Arc::new(AtomicU64::new(0));
                    let counter = sent.clone();
                    let stop_stream = stop.clone();
                    let outgoing = futures_util::stream::iter(w..)
                        .take_while(move |_| std::future::ready(!stop_stream.load(Ordering::Relaxed)))
                        .map(move |i| {
                            counter.fetch_add(1, Ordering::Relaxed);
                            encoded[i % encoded.len()].stamped(&clock)
                        });
                    let mut request = tonic::Request::new(outgoing);
                    request.metadata_mut().insert("x-api-key", key.parse().unwrap());
                    let mut client = tonic::client::Grpc::new(channel)
                        .max_encoding_message_size(16 * 1024 * 1024)
                        .max_decoding_message_size(16 * 1024 * 1024);
                    client.ready().await.unwrap();
                    let path = PathAndQuery::from_static("/killkrill.v1.LogService/IngestLogs");
                    match client.client_streaming(request, path, Preencoded).await {
                        Ok(response) => {
                            let response: IngestLogsResponse = response.into_inner();
                            assert_eq!(response.accepted, response.batches * batch);
                            lines.fetch_add(response.accepted, Ordering::Relaxed);
                            sent_batches.fetch_add(response.batches, Ordering::Relaxed);
                        }
                        Err(status) => {
                            eprintln!("stream failed after {} batches: {status}", sent.load(Ordering::Relaxed));
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }));
            }
        }
        other => panic!("--mode must be rest or grpc, not {other}"),
    }

    tokio::time::sleep(deadline).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let total = lines.load(Ordering::Relaxed);
    println!(
        "{}",
        json!({
            "mode": args.mode,
            "workers": args.workers,
            "batch": args.batch,
            "seconds": elapsed,
            "lines": total,
            "batches": sent_batches.load(Ordering::Relaxed),
            "lines_per_second": (total as f64 / elapsed).round(),
            "errors": errors.load(Ordering::Relaxed),
        })
    );
}
