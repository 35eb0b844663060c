//! OTLP/gRPC load generator for `benches/protocols/run.sh`: sends the pre-encoded
//! `ExportLogsServiceRequest`s that `examples/protocol_payloads.rs` wrote (`otlp-<i>.pb`)
//! as unary calls to `opentelemetry.proto.collector.logs.v1.LogsService/Export`, with
//! `--concurrency` calls in flight (one worker and one HTTP/2 connection each, as wrk's
//! connections for the HTTP protocols), for `--warmup` and then `--seconds` seconds.
//!
//! ```sh
//! cargo run --release --example otlp_grpc_load -- --addr 127.0.0.1:50051 --key kki_... \
//!     --dir <payload dir> [--concurrency 4] [--seconds 10] [--warmup 2] [--lines 1000]
//! ```
//!
//! The bodies go on the wire as they are (a codec that writes the bytes and reads the
//! answer's length), so this depends on no generated OTLP types. Prints one JSON line:
//! calls, calls/s, lines/s, p50/p99 latency in ms, errors (with the first error's status),
//! and `partial`: answers that carry a body (an empty `ExportLogsServiceResponse` encodes
//! to nothing; a `partial_success` does not). Calls that end inside the measured window
//! count; `warmup_calls` are those that succeeded before. Worker `w` of `n` starts at file
//! `w * files / n` and goes on in order, so no file is sent twice unless a worker runs
//! into the next one's files (`repeated`). Exits with 1 if it cannot connect or no call
//! succeeded.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    fs,
    path::PathBuf,
    process::ExitCode,
    sync::Arc,
    time::{Duration, Instant},
};

use prost::bytes::{Buf, BufMut};
use serde_json::json;
use tonic::{
    Status,
    codec::{BufferSettings, Codec, DecodeBuf, Decoder, EncodeBuf, Encoder},
    codegen::{Bytes, http::uri::PathAndQuery},
    transport::{Channel, Endpoint},
};

const EXPORT: &str = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";
const MAX_MESSAGE: usize = 16 * 1024 * 1024;

struct Args {
    addr: String,
    key: String,
    dir: PathBuf,
    concurrency: usize,
    seconds: f64,
    warmup: f64,
    lines: u64,
}

fn args() -> Args {
    let mut args = Args {
        addr: "127.0.0.1:50051".into(),
        key: String::new(),
        dir: PathBuf::new(),
        concurrency: 4,
        seconds: 10.0,
        warmup: 2.0,
        lines: 1000,
    };
    let mut it = std::env::args().skip(1);
    while let (Some(flag), Some(value)) = (it.next(), it.next()) {
        match flag.as_str() {
            "--addr" => args.addr = value,
            "--key" => args.key = value,
            "--dir" => args.dir = PathBuf::from(value),
            "--concurrency" => args.concurrency = value.parse().expect("--concurrency"),
            "--seconds" => args.seconds = value.parse().expect("--seconds"),
            "--warmup" => args.warmup = value.parse().expect("--warmup"),
            "--lines" => args.lines = value.parse().expect("--lines"),
            other => panic!("unknown flag {other}"),
        }
    }
    assert!(!args.dir.as_os_str().is_empty(), "--dir is required");
    assert!(args.concurrency >= 1 && args.seconds > 0.0, "--concurrency >= 1, --seconds > 0");
    args
}

/// Writes pre-encoded messages as they are; reads an answer as its length in bytes.
#[derive(Clone, Copy)]
struct Raw;

impl Codec for Raw {
    type Encode = Bytes;
    type Decode = usize;
    type Encoder = Raw;
    type Decoder = Raw;

    fn encoder(&mut self) -> Raw {
        Raw
    }

    fn decoder(&mut self) -> Raw {
        Raw
    }
}

impl Encoder for Raw {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }

    fn buffer_settings(&self) -> BufferSettings {
        BufferSettings::default()
    }
}

impl Decoder for Raw {
    type Item = usize;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<usize>, Status> {
        let n = src.remaining();
        src.advance(n);
        Ok(Some(n))
    }
}

/// What one worker saw inside the measured window.
#[derive(Default)]
struct Tally {
    ok: u64,
    warmup_ok: u64,
    repeated: bool,
    partial: u64,
    errors: u64,
    first_error: Option<String>,
    latencies_us: Vec<u64>,
}

fn payloads(args: &Args) -> Vec<Bytes> {
    (0..).map_while(|i| fs::read(args.dir.join(format!("otlp-{i}.pb"))).ok()).map(Bytes::from).collect()
}

async fn connect(addr: &str) -> Result<Channel, String> {
    Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| e.to_string())?
        .connect_timeout(Duration::from_secs(5))
        .initial_stream_window_size(4 * 1024 * 1024)
        .initial_connection_window_size(4 * 1024 * 1024)
        .connect()
        .await
        .map_err(|e| format!("cannot connect to {addr}: {}", chain(&e)))
}

/// An error and its causes, `: `-separated (tonic's own message is only "transport error").
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

async fn worker(
    channel: Channel,
    key: Arc<str>,
    bodies: Arc<Vec<Bytes>>,
    (first, share): (usize, usize),
    window: (Instant, Instant),
) -> Tally {
    let (measure_from, deadline) = window;
    let mut client =
        tonic::client::Grpc::new(channel).max_encoding_message_size(MAX_MESSAGE).max_decoding_message_size(MAX_MESSAGE);
    let mut tally = Tally::default();
    let mut i = first;
    while Instant::now() < deadline {
        let mut request = tonic::Request::new(bodies[i % bodies.len()].clone());
        i += 1;
        tally.repeated |= i - first > share;
        request.metadata_mut().insert("x-api-key", key.parse().expect("the key is not valid metadata"));
        let started = Instant::now();
        let result = match client.ready().await {
            Ok(()) => client.unary(request, PathAndQuery::from_static(EXPORT), Raw).await,
            Err(e) => Err(Status::unavailable(format!("channel not ready: {e}"))),
        };
        let ended = Instant::now();
        if ended < measure_from {
            tally.warmup_ok += u64::from(result.is_ok());
            continue;
        }
        if ended > deadline {
            continue;
        }
        match result {
            Ok(response) => {
                tally.ok += 1;
                tally.partial += u64::from(response.into_inner() > 0);
                tally.latencies_us.push((ended - started).as_micros() as u64);
            }
            Err(status) => {
                tally.errors += 1;
                tally.first_error.get_or_insert_with(|| {
                    format!("{:?}: {}", status.code(), status.message().chars().take(300).collect::<String>())
                });
            }
        }
    }
    tally
}

fn percentile_ms(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let at = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[at] as f64 / 1000.0
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = args();
    let bodies = Arc::new(payloads(&args));
    if bodies.is_empty() {
        println!("{}", json!({"error": format!("no otlp-<i>.pb files in {}", args.dir.display())}));
        return ExitCode::FAILURE;
    }
    let mut channels = Vec::with_capacity(args.concurrency);
    for _ in 0..args.concurrency {
        match connect(&args.addr).await {
            Ok(channel) => channels.push(channel),
            Err(error) => {
                println!("{}", json!({"error": error, "calls": 0, "errors": 1}));
                return ExitCode::FAILURE;
            }
        }
    }
    let start = Instant::now();
    let measure_from = start + Duration::from_secs_f64(args.warmup);
    let deadline = measure_from + Duration::from_secs_f64(args.seconds);
    let key: Arc<str> = Arc::from(args.key.as_str());
    let tasks: Vec<_> = channels
        .into_iter()
        .enumerate()
        .map(|(w, channel)| {
            let first = w * bodies.len() / args.concurrency;
            let share = (w + 1) * bodies.len() / args.concurrency - first;
            tokio::spawn(worker(channel, key.clone(), bodies.clone(), (first, share), (measure_from, deadline)))
        })
        .collect();
    let mut total = Tally::default();
    for task in tasks {
        let tally = task.await.expect("a worker panicked");
        total.ok += tally.ok;
        total.warmup_ok += tally.warmup_ok;
        total.repeated |= tally.repeated;
        total.partial += tally.partial;
        total.errors += tally.errors;
        total.first_error = total.first_error.or(tally.first_error);
        total.latencies_us.extend(tally.latencies_us);
    }
    total.latencies_us.sort_unstable();
    let seconds = args.seconds;
    println!(
        "{}",
        json!({
            "concurrency": args.concurrency,
            "files": bodies.len(),
            "seconds": seconds,
            "calls": total.ok,
            "calls_per_second": (total.ok as f64 / seconds * 10.0).round() / 10.0,
            "lines_per_second": (total.ok as f64 * args.lines as f64 / seconds).round(),
            "p50_ms": percentile_ms(&total.latencies_us, 0.50),
            "p99_ms": percentile_ms(&total.latencies_us, 0.99),
            "errors": total.errors,
            "first_error": total.first_error,
            "partial": total.partial,
            "warmup_calls": total.warmup_ok,
            "repeated": total.repeated,
        })
    );
    if total.ok == 0 { ExitCode::FAILURE } else { ExitCode::SUCCESS }
}
