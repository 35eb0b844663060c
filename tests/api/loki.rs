//! Loki push: `POST /loki/api/v1/push`, protobuf compressed with snappy (as Promtail,
//! Grafana Alloy and the Loki clients send it) and JSON (gzip allowed). No Loki client is
//! installable here, so the requests those agents document are replayed.
//! Each case runs on SQLite, PostgreSQL and MariaDB, through the real server on a real socket.

use std::io::Write;

use killkrill::{
    auth::Role,
    protocol::loki::{EntryAdapter, LabelPairAdapter, PushRequest, StreamAdapter},
};
use prost::Message;
use reqwest::RequestBuilder;
use serde_json::{Value, json};

use crate::{
    common::{TestDb, TestServer, rest::*},
    remote_write::{answer, snappy},
};

cases! {
    on_all_databases:
        loki_protobuf_push_as_promtail_sends_it_is_stored_with_labels_and_attributes,
        loki_json_push_with_gzip_is_stored,
        loki_refuses_bad_pushes_in_plain_text_and_stores_nothing,
        loki_accepts_each_credential_form;
}

const PUSH: &str = "/loki/api/v1/push";
/// 2026-01-01T00:00:00Z in nanoseconds.
const T0_NS: i64 = T0 * 1_000_000_000;

fn entry(nanos: i64, line: &str, metadata: &[(&str, &str)]) -> EntryAdapter {
    EntryAdapter {
        timestamp: Some(prost_types::Timestamp {
            seconds: nanos.div_euclid(1_000_000_000),
            nanos: nanos.rem_euclid(1_000_000_000) as i32,
        }),
        line: line.as_bytes().to_vec(),
        structured_metadata: metadata
            .iter()
            .map(|(n, v)| LabelPairAdapter { name: n.as_bytes().to_vec(), value: v.as_bytes().to_vec() })
            .collect(),
    }
}

fn stream(labels: &str, entries: Vec<EntryAdapter>) -> StreamAdapter {
    StreamAdapter { labels: labels.as_bytes().to_vec(), entries }
}

/// A push as Promtail sends it: protobuf, snappy block format, its content type.
fn protobuf(server: &TestServer, key: &str, request: &PushRequest) -> RequestBuilder {
    raw(server, snappy(&request.encode_to_vec())).header("Content-Type", "application/x-protobuf").bearer_auth(key)
}

fn raw(server: &TestServer, body: Vec<u8>) -> RequestBuilder {
    server.client.post(server.url(PUSH)).header("User-Agent", "promtail/2.9.4").body(body)
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

async fn setup(server: &TestServer) -> (String, String, String) {
    let (_, token) = user(server, "mia", Role::Maintainer).await;
    let source = new_source(server, &token, "web").await;
    let (_, key) = server.create_ingest_key(&token, &source).await;
    (token, source, key)
}

/// Every stored log, oldest first.
async fn stored_logs(server: &TestServer, token: &str) -> Vec<Value> {
    let body = get_logs(server, token, &[("limit", "1000")]).await;
    let mut logs = body["logs"].as_array().unwrap().clone();
    logs.reverse();
    logs
}

async fn loki_protobuf_push_as_promtail_sends_it_is_stored_with_labels_and_attributes(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let (token, source, key) = setup(&server).await;
    let request = PushRequest {
        streams: vec![
            stream(
                r#"{filename="/var/log/app.log", host="web-1", job="varlogs", level="warn"}"#,
                vec![
                    entry(T0_NS + 123_456_789, "disk almost full", &[("trace_id", "4bf92f3577b34da6a3ce929d0e0e4736")]),
                    entry(T0_NS + 1_000_000_000, "disk full", &[]),
                ],
            ),
            stream(
                r#"{app="billing", job="worker", namespace="prod"}"#,
                vec![entry(T0_NS + 2_000_000_000, "invoice 42 sent", &[("level", "error"), ("user.id", "7")])],
            ),
        ],
    };
    assert_eq!(answer(protobuf(&server, &key, &request)).await, (204, String::new()));
    let logs = stored_logs(&server, &token).await;
    assert_eq!(logs.len(), 3, "{logs:?}");
    let first = &logs[0];
    assert_eq!(first["message"], "disk almost full");
    assert_eq!(first["timestamp"], "2026-01-01T00:00:00.123456Z");
    assert_eq!(first["level"], "warning");
    assert_eq!(first["hostname"], "web-1");
    assert_eq!(first["source_id"], source.as_str());
    assert_eq!(first["attributes"], json!({"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736"}));
    let labels = &first["labels"];
    assert_eq!(labels["filename"], "/var/log/app.log");
    assert_eq!(labels["job"], "varlogs");
    assert_eq!(labels["source"], "web");
    assert_eq!(labels["level"], "warning");
    assert_eq!(labels["hostname"], "web-1");
    assert_eq!(logs[1]["attributes"], Value::Null);
    let third = &logs[2];
    assert_eq!(third["level"], "error");
    assert_eq!(third["application"], "billing");
    assert_eq!(third["labels"]["application"], "billing");
    assert_eq!(third["labels"]["namespace"], "prod");
    assert_eq!(third["attributes"], json!({"level": "error", "user.id": "7"}));

    // `Content-Encoding: snappy` is only a label of what the protobuf body always is.
    let labelled =
        protobuf(&server, &key, &PushRequest { streams: vec![stream("{}", vec![entry(T0_NS, "again", &[])])] })
            .header("Content-Encoding", "snappy");
    assert_eq!(answer(labelled).await.0, 204);
    // An empty push is nothing to store.
    assert_eq!(answer(protobuf(&server, &key, &PushRequest { streams: vec![] })).await.0, 204);
    assert_eq!(stored_logs(&server, &token).await.len(), 4);
    let exposition = server.get("/metrics").await.text().await.unwrap();
    let accepted =
        format!("killkrill_ingest_items_total{{source_id=\"{source}\",kind=\"logs\",outcome=\"accepted\"}} 4");
    assert!(exposition.contains(&accepted), "{exposition}");
    server.stop().await.unwrap();
}

async fn loki_json_push_with_gzip_is_stored(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let (token, _, key) = setup(&server).await;
    let body = json!({"streams": [
        {"stream": {"job": "api", "service_name": "checkout", "detected_level": "ERROR"},
         "values": [
            [(T0_NS + 5_000_000_000_i64).to_string(), "payment failed"],
            [(T0_NS + 6_000_001_000_i64).to_string(), "payment retried", {"trace_id": "abc", "attempt": "2"}],
         ]},
        {"stream": {"hostname": "db-1"}, "values": [[(T0_NS + 7_000_000_000_i64).to_string(), "checkpoint"]]},
    ]});
    let request = raw(&server, gzip(body.to_string().as_bytes()))
        .header("Content-Type", "application/json")
        .header("Content-Encoding", "gzip")
        .header("X-API-Key", &key);
    assert_eq!(answer(request).await, (204, String::new()));
    let logs = stored_logs(&server, &token).await;
    assert_eq!(logs.len(), 3, "{logs:?}");
    assert_eq!(logs[0]["message"], "payment failed");
    assert_eq!(logs[0]["level"], "error");
    assert_eq!(logs[0]["application"], "checkout");
    assert_eq!(logs[0]["labels"]["service_name"], "checkout");
    assert_eq!(logs[0]["timestamp"], "2026-01-01T00:00:05.000000Z");
    assert_eq!(logs[1]["timestamp"], "2026-01-01T00:00:06.000001Z");
    assert_eq!(logs[1]["attributes"], json!({"trace_id": "abc", "attempt": "2"}));
    assert_eq!(logs[2]["hostname"], "db-1");
    assert_eq!(logs[2]["level"], "info");

    // Uncompressed JSON too.
    let plain = json!({"streams": [{"stream": {"job": "api"}, "values": [[T0_NS.to_string(), "plain"]]}]});
    let request =
        raw(&server, plain.to_string().into_bytes()).header("Content-Type", "application/json").bearer_auth(&key);
    assert_eq!(answer(request).await.0, 204);
    assert_eq!(stored_logs(&server, &token).await.len(), 4);
    server.stop().await.unwrap();
}

async fn loki_refuses_bad_pushes_in_plain_text_and_stores_nothing(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let (_, source, key) = setup(&server).await;
    let json_push = |body: &str| {
        raw(&server, body.as_bytes().to_vec()).header("Content-Type", "application/json").bearer_auth(&key)
    };
    let good = |line: &str| stream(r#"{job="x"}"#, vec![entry(T0_NS, line, &[])]);

    let mut framed = Vec::new();
    {
        let mut writer = snap::write::FrameEncoder::new(&mut framed);
        writer.write_all(&PushRequest { streams: vec![good("ok")] }.encode_to_vec()).unwrap();
    }
    let limit = server.state.config.max_body_bytes;
    let mut claim = Vec::new();
    let mut length = limit as u64 + 1;
    while length >= 0x80 {
        claim.push((length as u8) | 0x80);
        length >>= 7;
    }
    claim.push(length as u8);
    claim.extend_from_slice(b"\x00\x01");
    let bad_utf8 = PushRequest {
        streams: vec![
            good("ok"),
            StreamAdapter {
                labels: b"{}".to_vec(),
                entries: vec![EntryAdapter { timestamp: None, line: vec![0xc3, 0x28], structured_metadata: vec![] }],
            },
        ],
    };
    let bad_entry = PushRequest { streams: vec![good("ok"), stream("{}", vec![entry(T0_NS, "", &[])])] };
    let many_labels: Vec<String> = (0..17).map(|i| format!("l{i}=\"v\"")).collect();
    let many_labels = format!("{{{}}}", many_labels.join(","));
    let too_many = PushRequest { streams: vec![good("ok"), stream(&many_labels, vec![entry(T0_NS, "x", &[])])] };
    let over = PushRequest { streams: vec![stream("{}", (0..10_001).map(|i| entry(T0_NS + i, "x", &[])).collect())] };
    let cases: Vec<(RequestBuilder, u16, &str)> = vec![
        (raw(&server, framed).bearer_auth(&key), 400, ""),
        (raw(&server, b"\x05not snappy".to_vec()).bearer_auth(&key), 400, ""),
        (raw(&server, snappy(b"\x0a\x09\x0a\x03ab")).bearer_auth(&key), 400, "protobuf"),
        (raw(&server, claim).bearer_auth(&key), 413, ""),
        (protobuf(&server, &key, &bad_utf8), 400, "streams[1].entries[0].line"),
        (
            protobuf(&server, &key, &PushRequest { streams: vec![good("ok"), stream("{job=~\"x\"}", vec![])] }),
            400,
            "streams[1].labels",
        ),
        (protobuf(&server, &key, &bad_entry), 400, "streams[1].entries[0].message"),
        (protobuf(&server, &key, &over), 400, "batch size"),
        (protobuf(&server, &key, &too_many), 400, "streams[1].entries[0].labels"),
        (json_push("{"), 400, "malformed JSON"),
        (
            json_push(r#"{"streams":[{"stream":{"a":"b"},"values":[["1.5e18","x"]]}]}"#),
            400,
            "streams[0].values[0].timestamp",
        ),
        (json_push(r#"{"streams":[{"stream":{"a":"b"},"values":[[1.5,"x"]]}]}"#), 400, "nanoseconds"),
        (
            json_push(r#"{"streams":[{"stream":{"a":"b"},"values":[["1","ok"]]},{"values":[["1"]]}]}"#),
            400,
            "streams[1].values[0]",
        ),
        (
            json_push(r#"{"streams":[{"stream":{"a":"b"},"values":[["1","ok"]]}]}"#).header("Content-Encoding", "gzip"),
            400,
            "",
        ),
        (
            json_push(r#"{"streams":[{"stream":{"a":"b"},"values":[["1","ok"]]}]}"#).header("Content-Encoding", "br"),
            415,
            "",
        ),
    ];
    for (request, expected, wanted) in cases {
        let (status, text) = answer(request).await;
        assert_eq!(status, expected, "{wanted}: {text}");
        assert!(text.contains(wanted), "{wanted}: {text}");
    }
    assert_eq!(count_rows(&db, "logs").await, 0);
    let exposition = server.get("/metrics").await.text().await.unwrap();
    let refused = format!("killkrill_ingest_items_total{{source_id=\"{source}\",kind=\"logs\",outcome=\"refused\"}}");
    assert!(exposition.contains(&refused), "{exposition}");
    server.stop().await.unwrap();
}

async fn loki_accepts_each_credential_form(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let (token, source, key) = setup(&server).await;
    let (_, viewer) = user(&server, "vic", Role::Viewer).await;
    let request = |line: &str| {
        let push = PushRequest { streams: vec![stream("{}", vec![entry(T0_NS, line, &[])])] };
        raw(&server, snappy(&push.encode_to_vec())).header("Content-Type", "application/x-protobuf")
    };
    use base64::{Engine, engine::general_purpose::STANDARD};
    let basic = format!("Basic {}", STANDARD.encode(format!("promtail:{key}")));
    for (line, request) in [
        ("bearer", request("bearer").bearer_auth(&key)),
        ("x-api-key", request("x-api-key").header("X-API-Key", &key)),
        ("basic", request("basic").header("Authorization", &basic)),
        ("user", request("user").bearer_auth(&token).header("X-Source", &source)),
    ] {
        assert_eq!(answer(request).await, (204, String::new()), "{line}");
    }
    let (status, text) = answer(request("no source").bearer_auth(&token)).await;
    assert_eq!(status, 400, "{text}");
    assert_eq!(answer(request("none")).await.0, 401);
    assert_eq!(answer(request("wrong").bearer_auth("kki_wrong")).await.0, 401);
    assert_eq!(answer(request("viewer").bearer_auth(&viewer).header("X-Source", "web")).await.0, 403);
    let lines: Vec<String> =
        stored_logs(&server, &token).await.iter().map(|l| l["message"].as_str().unwrap().to_owned()).collect();
    assert_eq!(lines, ["bearer", "x-api-key", "basic", "user"]);
    server.stop().await.unwrap();
}
