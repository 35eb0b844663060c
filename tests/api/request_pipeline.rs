//! What every request passes through, tested over a real socket with probe routes placed
//! behind exactly the production layer stack (`router::with_layers`).

use std::time::Duration;

use crate::common::{Kind, TestDb};
use axum::{
    Router,
    routing::{get, post},
};
use killkrill::{
    config::{Config, CorsOrigins, LogLevel},
    http::extract::{Json, Query},
    router::with_layers,
    state::AppState,
    telemetry::LogLevelHandle,
};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::{net::TcpListener, sync::oneshot};

cases! {
    tokio:
        correlation_id_is_echoed_when_sane_and_replaced_otherwise,
        error_bodies_carry_the_callers_correlation_id,
        wrong_method_is_405_with_allow_header,
        malformed_json_is_400,
        non_json_content_type_is_415,
        body_over_the_limit_is_413_with_or_without_content_length,
        bad_query_string_is_400,
        a_panicking_handler_is_a_500_that_leaks_nothing,
        a_request_over_the_timeout_is_408,
        every_response_has_nosniff_and_no_server_banner,
        cors_wildcard_never_allows_credentials,
        cors_origin_list_allows_only_listed_origins,
        h2c_prior_knowledge_is_served,
        shutdown_lets_in_flight_requests_finish_then_stops_accepting,
        shutdown_drain_is_bounded_by_the_grace_period,
        a_body_that_stops_arriving_is_408,
        requests_hyper_cannot_parse_get_the_error_body,
        request_headers_that_stop_arriving_are_408_and_a_silent_connection_is_closed,
        a_declared_body_over_the_limit_is_413_before_it_is_sent,
        text_holding_a_nul_is_400_in_a_body_a_path_or_a_query;
}

struct Probe {
    base: String,
    client: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    _db: TestDb,
}

#[derive(Deserialize)]
struct Echo {
    name: String,
}

#[derive(Deserialize)]
struct Page {
    limit: u32,
}

async fn start(tweak: impl FnOnce(&mut Config)) -> Probe {
    start_with(tweak, killkrill::server::Transport::plain(killkrill::tls::Port::Http)).await
}

async fn start_with(tweak: impl FnOnce(&mut Config), transport: killkrill::server::Transport) -> Probe {
    let db = TestDb::create(Kind::Sqlite).await;
    let mut config = db.config();
    tweak(&mut config);
    let grace = config.shutdown_grace;
    let app = killkrill::build(config, LogLevelHandle::detached(LogLevel::Info)).await.unwrap();
    let probes: Router<AppState> = Router::new()
        .route("/echo", post(|Json(echo): Json<Echo>| async move { axum::Json(json!({ "name": echo.name })) }))
        .route("/page", get(|Query(page): Query<Page>| async move { page.limit.to_string() }))
        .route("/panic", get(panics))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(1500)).await;
                "done"
            }),
        );
    let router = with_layers(probes, app.state().clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(killkrill::server::serve(
        listener,
        router,
        transport,
        async {
            let _ = stopped.await;
        },
        grace,
    ));
    Probe { base, client: reqwest::Client::new(), stop: Some(stop), task, _db: db }
}

async fn panics() -> &'static str {
    panic!("secret internal detail")
}

impl Probe {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

/// Checks the one error body of docs/API.md and returns it.
async fn error_body(response: reqwest::Response, status: u16) -> Value {
    assert_eq!(response.status(), status);
    assert_eq!(response.headers()["content-type"], "application/json");
    let header_id = response.headers()["x-correlation-id"].to_str().unwrap().to_owned();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status_code"], status);
    assert_eq!(body["error"], reqwest::StatusCode::from_u16(status).unwrap().canonical_reason().unwrap());
    assert_eq!(body["correlation_id"], header_id.as_str());
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
    body
}

async fn correlation_id_is_echoed_when_sane_and_replaced_otherwise() {
    let probe = start(|_| {}).await;
    let echoed =
        probe.client.get(probe.url("/page?limit=1")).header("X-Correlation-ID", "req-12345").send().await.unwrap();
    assert_eq!(echoed.headers()["x-correlation-id"], "req-12345");
    // Printable ASCII includes the space.
    let spaced = probe.client.get(probe.url("/page?limit=1")).header("X-Correlation-ID", "job 7").send().await.unwrap();
    assert_eq!(spaced.headers()["x-correlation-id"], "job 7");

    for bad in ["x".repeat(129), "tab\there".to_owned(), "caf\u{e9}".to_owned(), String::new()] {
        let response =
            probe.client.get(probe.url("/page?limit=1")).header("X-Correlation-ID", &bad).send().await.unwrap();
        let id = response.headers()["x-correlation-id"].to_str().unwrap();
        assert_ne!(id, bad);
        assert!(uuid::Uuid::parse_str(id).is_ok_and(|u| u.get_version_num() == 4), "{id}");
    }
    let fresh = probe.client.get(probe.url("/page?limit=1")).send().await.unwrap();
    assert!(uuid::Uuid::parse_str(fresh.headers()["x-correlation-id"].to_str().unwrap()).is_ok());
}

async fn error_bodies_carry_the_callers_correlation_id() {
    let probe = start(|_| {}).await;
    let response = probe.client.get(probe.url("/nope")).header("X-Correlation-ID", "trace-42").send().await.unwrap();
    let body = error_body(response, 404).await;
    assert_eq!(body["correlation_id"], "trace-42");
    assert_eq!(body["message"], "Resource not found: /nope");
}

async fn wrong_method_is_405_with_allow_header() {
    let probe = start(|_| {}).await;
    let response = probe.client.delete(probe.url("/echo")).send().await.unwrap();
    assert_eq!(response.headers()["allow"], "POST");
    error_body(response, 405).await;
}

async fn malformed_json_is_400() {
    let probe = start(|_| {}).await;
    let response = probe
        .client
        .post(probe.url("/echo"))
        .header("content-type", "application/json")
        .body("{\"name\": ")
        .send()
        .await
        .unwrap();
    let body = error_body(response, 400).await;
    assert!(body["message"].as_str().unwrap().contains("JSON"), "{body}");

    let wrong_shape = probe.client.post(probe.url("/echo")).json(&json!({"name": 7})).send().await.unwrap();
    error_body(wrong_shape, 400).await;

    let ok = probe.client.post(probe.url("/echo")).json(&json!({"name": "kk"})).send().await.unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.json::<Value>().await.unwrap()["name"], "kk");
}

async fn non_json_content_type_is_415() {
    let probe = start(|_| {}).await;
    let response = probe
        .client
        .post(probe.url("/echo"))
        .header("content-type", "text/plain")
        .body("{\"name\": \"kk\"}")
        .send()
        .await
        .unwrap();
    error_body(response, 415).await;
}

async fn body_over_the_limit_is_413_with_or_without_content_length() {
    let probe = start(|c| c.max_body_bytes = 1024).await;
    let big = format!("{{\"name\": \"{}\"}}", "a".repeat(4096));
    let sized = probe
        .client
        .post(probe.url("/echo"))
        .header("content-type", "application/json")
        .body(big.clone())
        .send()
        .await
        .unwrap();
    error_body(sized, 413).await;

    let chunks = futures_util::stream::iter(
        big.into_bytes().chunks(512).map(|c| Ok::<_, std::io::Error>(c.to_vec())).collect::<Vec<_>>(),
    );
    let streamed = probe
        .client
        .post(probe.url("/echo"))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    error_body(streamed, 413).await;
}

async fn bad_query_string_is_400() {
    let probe = start(|_| {}).await;
    let response = probe.client.get(probe.url("/page?limit=abc")).send().await.unwrap();
    let body = error_body(response, 400).await;
    assert!(body["message"].as_str().unwrap().contains("query"), "{body}");
    let ok = probe.client.get(probe.url("/page?limit=5")).send().await.unwrap();
    assert_eq!(ok.text().await.unwrap(), "5");
}

async fn a_panicking_handler_is_a_500_that_leaks_nothing() {
    let probe = start(|_| {}).await;
    let response = probe.client.get(probe.url("/panic")).send().await.unwrap();
    let body = error_body(response, 500).await;
    assert!(!body.to_string().contains("secret internal detail"), "{body}");
    // The server survives the panic.
    assert_eq!(probe.client.get(probe.url("/page?limit=1")).send().await.unwrap().status(), 200);
}

async fn a_request_over_the_timeout_is_408() {
    let probe = start(|c| c.request_timeout = Duration::from_millis(300)).await;
    let response = probe.client.get(probe.url("/slow")).send().await.unwrap();
    error_body(response, 408).await;
}

async fn every_response_has_nosniff_and_no_server_banner() {
    let probe = start(|_| {}).await;
    for path in ["/page?limit=1", "/nope"] {
        let response = probe.client.get(probe.url(path)).send().await.unwrap();
        assert_eq!(response.headers()["x-content-type-options"], "nosniff");
        assert!(!response.headers().contains_key("server"));
    }
}

async fn cors_wildcard_never_allows_credentials() {
    let probe = start(|c| c.cors_origins = CorsOrigins::Any).await;
    let preflight = probe
        .client
        .request(reqwest::Method::OPTIONS, probe.url("/echo"))
        .header("Origin", "https://anywhere.example")
        .header("Access-Control-Request-Method", "POST")
        .header("Access-Control-Request-Headers", "content-type")
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success());
    assert_eq!(preflight.headers()["access-control-allow-origin"], "*");
    assert!(!preflight.headers().contains_key("access-control-allow-credentials"));
}

async fn cors_origin_list_allows_only_listed_origins() {
    let probe = start(|c| c.cors_origins = CorsOrigins::List(vec!["https://app.example".into()])).await;
    let allowed =
        probe.client.get(probe.url("/page?limit=1")).header("Origin", "https://app.example").send().await.unwrap();
    assert_eq!(allowed.headers()["access-control-allow-origin"], "https://app.example");
    assert_eq!(allowed.headers()["access-control-allow-credentials"], "true");
    let refused =
        probe.client.get(probe.url("/page?limit=1")).header("Origin", "https://evil.example").send().await.unwrap();
    assert!(!refused.headers().contains_key("access-control-allow-origin"));
}

async fn h2c_prior_knowledge_is_served() {
    let probe = start(|_| {}).await;
    let client = reqwest::Client::builder().http2_prior_knowledge().build().unwrap();
    let response = client.get(probe.url("/page?limit=3")).send().await.unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    assert_eq!(response.text().await.unwrap(), "3");
}

async fn shutdown_lets_in_flight_requests_finish_then_stops_accepting() {
    let mut probe = start(|_| {}).await;
    let client = probe.client.clone();
    let url = probe.url("/slow");
    let in_flight = tokio::spawn(async move { client.get(url).send().await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    probe.stop.take().unwrap().send(()).unwrap();
    let response = in_flight.await.unwrap().expect("in-flight request completes");
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "done");
    let after = probe.url("/page?limit=1");
    probe.task.await.unwrap().unwrap();
    let fresh = reqwest::Client::new().get(after).send().await;
    assert!(fresh.is_err(), "accepted a connection after shutdown");
}

async fn shutdown_drain_is_bounded_by_the_grace_period() {
    let mut probe = start(|c| c.shutdown_grace = Duration::from_millis(200)).await;
    let client = probe.client.clone();
    let url = probe.url("/slow");
    let in_flight = tokio::spawn(async move { client.get(url).send().await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = std::time::Instant::now();
    probe.stop.take().unwrap().send(()).unwrap();
    probe.task.await.unwrap().unwrap();
    assert!(started.elapsed() < Duration::from_millis(1200), "drain took {:?}", started.elapsed());
    in_flight.abort();
}

/// Sends `request` as raw bytes (and nothing more) and reads one response: status, header
/// block (lowercased) and body, within `within`.
async fn raw(probe: &Probe, request: &[u8], within: Duration) -> (u16, String, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = probe.base.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream.write_all(request).await.unwrap();
    let read = async {
        let mut received = Vec::new();
        let mut buffer = [0u8; 4096];
        loop {
            let n = stream.read(&mut buffer).await.unwrap();
            assert!(n > 0, "connection closed after {:?}", String::from_utf8_lossy(&received));
            received.extend_from_slice(&buffer[..n]);
            let text = String::from_utf8_lossy(&received).into_owned();
            let Some(end) = text.find("\r\n\r\n") else { continue };
            let head = text[..end].to_ascii_lowercase();
            let length: usize =
                head.lines().find_map(|l| l.strip_prefix("content-length:")).map_or(0, |v| v.trim().parse().unwrap());
            if received.len() >= end + 4 + length {
                let status = head[9..12].parse().unwrap();
                let body = serde_json::from_slice(&received[end + 4..end + 4 + length]).unwrap();
                return (status, head, body);
            }
        }
    };
    tokio::time::timeout(within, read).await.expect("no response in time")
}

async fn a_body_that_stops_arriving_is_408() {
    // The body idle timeout is half the request timeout when that is shorter than 30 s, so
    // the 408 here is the stalled body's (named in the message), not the request timer's.
    let probe = start(|c| c.request_timeout = Duration::from_millis(1000)).await;
    let request =
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"na";
    let (status, head, body) = raw(&probe, request, Duration::from_secs(5)).await;
    assert_eq!(status, 408, "{head}\n{body}");
    assert_eq!(body["status_code"], 408);
    assert_eq!(body["message"], "The request body stopped arriving", "{body}");
    assert!(head.contains("x-correlation-id:"), "{head}");
}

async fn a_declared_body_over_the_limit_is_413_before_it_is_sent() {
    let probe = start(|_| {}).await;
    // 99,999,999 bytes announced (the limit is 16 MiB), the client waiting for 100 Continue:
    // the answer comes at once, and no body is asked for.
    let request = b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
        Content-Length: 99999999\r\nExpect: 100-continue\r\n\r\n";
    let (status, head, body) = raw(&probe, request, Duration::from_secs(3)).await;
    assert_eq!(status, 413, "{head}\n{body}");
    assert_eq!(body["error"], "Payload Too Large");
}

async fn text_holding_a_nul_is_400_in_a_body_a_path_or_a_query() {
    let probe = start(|_| {}).await;
    let nul =
        probe.client.post(probe.url("/echo")).header("content-type", "application/json").body(r#"{"name":"a\u0000b"}"#);
    let body = error_body(nul.send().await.unwrap(), 400).await;
    assert!(body["message"].as_str().unwrap().contains("NUL"), "{body}");
    // An escaped backslash followed by "u0000" is text, not a NUL.
    let text = probe
        .client
        .post(probe.url("/echo"))
        .header("content-type", "application/json")
        .body(r#"{"name":"a\\u0000b"}"#);
    let echoed: Value = text.send().await.unwrap().json().await.unwrap();
    assert_eq!(echoed["name"], r"a\u0000b");
    let odd = probe
        .client
        .post(probe.url("/echo"))
        .header("content-type", "application/json")
        .body(r#"{"name":"a\\\u0000b"}"#);
    error_body(odd.send().await.unwrap(), 400).await;
    for path in ["/page?limit=1&x=%00", "/nope/%00"] {
        error_body(probe.client.get(probe.url(path)).send().await.unwrap(), 400).await;
    }
}

/// What hyper refuses before any route sees the request (too many or too large headers,
/// characters a header cannot hold, a request line that is none) is answered with the
/// error body too, and the connection closed.
async fn requests_hyper_cannot_parse_get_the_error_body() {
    let probe = start(|_| {}).await;
    let many_headers: String = (0..150).map(|i| format!("X-Header-{i}: v\r\n")).collect();
    let cases: [(String, u16); 3] = [
        (format!("GET /echo HTTP/1.1\r\nHost: x\r\n{many_headers}\r\n"), 431),
        ("GET /echo HTTP/1.1\r\nHost: x\r\nBad Header: v\r\n\r\n".to_owned(), 400),
        ("NOT AN HTTP REQUEST\r\n\r\n".to_owned(), 400),
    ];
    for (request, expected) in cases {
        let (status, head, body) = raw(&probe, request.as_bytes(), Duration::from_secs(5)).await;
        assert_eq!(status, expected, "{head}");
        assert_eq!(body["status_code"], expected, "{body}");
        assert_eq!(body["error"], reqwest::StatusCode::from_u16(expected).unwrap().canonical_reason().unwrap());
        assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
        let id = body["correlation_id"].as_str().unwrap();
        assert!(head.contains(&format!("x-correlation-id: {id}")), "{head}");
        assert!(head.contains("content-type: application/json") && head.contains("connection: close"), "{head}");
    }
    // A good request on the same server is untouched.
    assert_eq!(probe.client.get(probe.url("/page?limit=3")).send().await.unwrap().status(), 200);
}

/// A request head that begins and then stops arriving is answered 408 once the header-read
/// timeout has passed (hyper alone would close without a word); a connection that sends
/// nothing at all is closed without an answer; keep-alive requests sent in time are served.
async fn request_headers_that_stop_arriving_are_408_and_a_silent_connection_is_closed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let transport = killkrill::server::Transport {
        header_read_timeout: Duration::from_millis(800),
        ..killkrill::server::Transport::plain(killkrill::tls::Port::Http)
    };
    let probe = start_with(|_| {}, transport).await;
    let started = std::time::Instant::now();
    let (status, head, body) =
        raw(&probe, b"GET /page?limit=1 HTTP/1.1\r\nHost: x\r\nX-Slow: ", Duration::from_secs(5)).await;
    assert_eq!(status, 408, "{head}");
    assert_eq!(body["message"], "The request headers did not arrive in time", "{body}");
    assert!(head.contains("x-correlation-id:") && head.contains("connection: close"), "{head}");
    assert!(started.elapsed() >= Duration::from_millis(700), "{:?}", started.elapsed());

    let address = probe.base.trim_start_matches("http://").to_owned();
    let mut silent = tokio::net::TcpStream::connect(&address).await.unwrap();
    let mut received = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), silent.read_to_end(&mut received)).await;
    assert!(read.is_ok(), "a silent connection was never closed");
    assert!(received.is_empty(), "{:?}", String::from_utf8_lossy(&received));

    // Two requests on one connection, each in time, the second after a pause shorter than
    // the timeout: both served.
    let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
    for _ in 0..2 {
        stream.write_all(b"GET /page?limit=2 HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let mut buffer = [0u8; 1024];
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buffer)).await.unwrap().unwrap();
        assert!(String::from_utf8_lossy(&buffer[..n]).starts_with("HTTP/1.1 200"));
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
}
