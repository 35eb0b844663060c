//! The gRPC API over a real socket (h2c here; TLS in `tls.rs`), with a tonic client:
//! every RPC family, the status codes of errors, metadata, health and reflection.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;

use crate::common::{TestDb, TestServer};
use killkrill::{
    auth::Role,
    grpc::proto::{
        self, CreateSourceRequest, GetSourceRequest, IngestLogsRequest, IngestMetricsRequest, ListSeriesRequest,
        ListSourcesRequest, LogEntry, QueryLogsRequest, QueryMetricsRequest, Sample, UpdateSourceRequest,
        auth_service_client::AuthServiceClient, log_service_client::LogServiceClient,
        metric_service_client::MetricServiceClient, source_service_client::SourceServiceClient,
        status_service_client::StatusServiceClient,
    },
};
use serde_json::{Value, json};
use tonic::{Code, Request, transport::Channel};

/// `message` with `authorization: Bearer <token>` in its metadata.
fn bearer<T>(message: T, token: &str) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

fn with_key<T>(message: T, key: &str) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert("x-api-key", key.parse().unwrap());
    request
}

fn entry(ts: f64, level: &str, message: &str) -> LogEntry {
    LogEntry { timestamp: ts, level: level.into(), message: message.into(), ..Default::default() }
}

async fn create_source(channel: &Channel, token: &str, name: &str) -> proto::Source {
    let request = CreateSourceRequest { name: name.into(), r#type: "http".into(), ..Default::default() };
    SourceServiceClient::new(channel.clone()).create_source(bearer(request, token)).await.unwrap().into_inner()
}

async fn sources_over_grpc(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let admin = server.create_user("root", &[Role::Admin]).await;
    let token = server.token(&admin).await;
    let channel = server.grpc().await;
    let mut sources = SourceServiceClient::new(channel.clone());

    let config = json!({"port": 514, "tags": ["edge"], "tls": false});
    let mut create = CreateSourceRequest {
        name: "edge-syslog".into(),
        r#type: "syslog".into(),
        description: Some("edge routers".into()),
        config: Some(killkrill::grpc::convert::json_to_struct(config.clone())),
        allowed_cidrs: vec!["10.0.0.0/8".into()],
        ..Default::default()
    };
    let created = sources.create_source(bearer(create.clone(), &token)).await.unwrap().into_inner();
    assert_eq!((created.name.as_str(), created.r#type.as_str(), created.enabled), ("edge-syslog", "syslog", true));
    assert_eq!(killkrill::grpc::convert::struct_to_json(created.config.clone().unwrap()), config);
    assert_eq!(created.allowed_cidrs, vec!["10.0.0.0/8"]);
    assert_eq!(created.created_by.as_deref(), Some(admin.id.as_str()));

    // The same source over REST: one service layer.
    let rest: Value = server
        .authed(reqwest::Method::GET, &format!("/api/v1/sources/{}", created.id), &token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(rest["name"], "edge-syslog");
    assert_eq!(rest["config"], config);

    let duplicate = sources.create_source(bearer(create.clone(), &token)).await.unwrap_err();
    assert_eq!(duplicate.code(), Code::AlreadyExists, "{duplicate:?}");
    let mut nul = create.clone();
    nul.name = "a\0b".into();
    let refused = sources.create_source(bearer(nul, &token)).await.unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    create.name = "  ".into();
    create.r#type = "carrier-pigeon".into();
    let invalid = sources.create_source(bearer(create, &token)).await.unwrap_err();
    assert_eq!(invalid.code(), Code::InvalidArgument);
    assert!(invalid.message().contains("name") && invalid.message().contains("type"), "{}", invalid.message());

    let update = UpdateSourceRequest { id: created.id.clone(), enabled: Some(false), ..Default::default() };
    let updated = sources.update_source(bearer(update, &token)).await.unwrap().into_inner();
    assert!(!updated.enabled);
    assert_eq!(updated.name, "edge-syslog", "fields not given stay as they are");
    assert_eq!(updated.allowed_cidrs, vec!["10.0.0.0/8"]);
    let clear = UpdateSourceRequest { id: created.id.clone(), set_allowed_cidrs: true, ..Default::default() };
    assert!(sources.update_source(bearer(clear, &token)).await.unwrap().into_inner().allowed_cidrs.is_empty());

    let listed = sources
        .list_sources(bearer(ListSourcesRequest { enabled: Some(false), ..Default::default() }, &token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((listed.total, listed.limit, listed.offset), (1, 50, 0));
    assert_eq!(listed.sources[0].id, created.id);
    let too_many = ListSourcesRequest { limit: 5000, ..Default::default() };
    assert_eq!(sources.list_sources(bearer(too_many, &token)).await.unwrap_err().code(), Code::InvalidArgument);
    // An unknown id is NOT_FOUND even when it is huge: the message quoting it is cut short
    // enough for the client's metadata limit.
    let huge = GetSourceRequest { id: "a".repeat(100_000) };
    let missing = sources.get_source(bearer(huge, &token)).await.unwrap_err();
    assert_eq!(missing.code(), Code::NotFound, "{:?}", missing.code());
    assert!(missing.message().len() <= 1100, "{} bytes", missing.message().len());
    // An offset past what the databases take is refused (it panicked in the driver).
    let too_far = ListSourcesRequest { offset: 1 << 63, ..Default::default() };
    assert_eq!(sources.list_sources(bearer(too_far, &token)).await.unwrap_err().code(), Code::InvalidArgument);

    sources.delete_source(bearer(proto::DeleteSourceRequest { id: created.id.clone() }, &token)).await.unwrap();
    for id in [created.id.clone(), "not-a-uuid".to_owned()] {
        let gone = sources.get_source(bearer(GetSourceRequest { id }, &token)).await.unwrap_err();
        assert_eq!(gone.code(), Code::NotFound);
    }
    server.stop().await.unwrap();
}

async fn logs_stream_then_query(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let admin = server.create_user("root", &[Role::Admin]).await;
    let token = server.token(&admin).await;
    let channel = server.grpc().await;
    let source = create_source(&channel, &token, "app").await;
    let mut logs = LogServiceClient::new(channel.clone());

    // Three batches on one stream: 250 entries, timestamps 1..=250 s after a base.
    let base = 1_790_000_000.0;
    let batches: Vec<IngestLogsRequest> = (0..3)
        .map(|b| IngestLogsRequest {
            source_id: source.id.clone(),
            logs: (0..[100, 100, 50][b])
                .map(|i| {
                    let n = b * 100 + i + 1;
                    let level = if n % 10 == 0 { "warn" } else { "6" };
                    let mut e = entry(base + n as f64, level, &format!("request {n} served"));
                    e.hostname = Some(format!("web-{}", n % 3));
                    e.attributes = Some(killkrill::grpc::convert::json_to_struct(json!({"n": n})));
                    e
                })
                .collect(),
        })
        .collect();
    let response = logs.ingest_logs(bearer(stream_of(batches), &token)).await.unwrap().into_inner();
    assert_eq!((response.accepted, response.batches), (250, 3));

    // Page through the warnings newest first, 10 a page: exactly 25, each once.
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let query = QueryLogsRequest {
            source_id: Some(source.id.clone()),
            level: Some("warning".into()),
            limit: 10,
            cursor: cursor.take(),
            ..Default::default()
        };
        let page = logs.query_logs(bearer(query, &token)).await.unwrap().into_inner();
        seen.extend(page.logs.iter().map(|l| l.message.clone()));
        assert!(page.logs.iter().all(|l| l.level == "warning" && l.source_id == source.id));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    let expected: Vec<String> = (1..=25).rev().map(|k| format!("request {} served", k * 10)).collect();
    assert_eq!(seen, expected);

    // The severity 6 became info; attributes and times come back as stored.
    let query = QueryLogsRequest { q: Some("REQUEST 7 ".into()), ..Default::default() };
    let found = logs.query_logs(bearer(query, &token)).await.unwrap().into_inner().logs;
    assert_eq!(found.len(), 1);
    assert_eq!((found[0].level.as_str(), found[0].hostname.as_deref()), ("info", Some("web-1")));
    assert_eq!(killkrill::grpc::convert::struct_to_json(found[0].attributes.clone().unwrap()), json!({"n": 7}));
    // Ids are UUID strings, the same on both transports.
    let rest = server.get_json("/api/v1/logs?q=request%207%20", &token).await;
    assert!(uuid::Uuid::parse_str(&found[0].id).is_ok(), "{}", found[0].id);
    assert_eq!(rest["logs"][0]["id"], found[0].id.as_str(), "{rest}");
    assert_eq!(found[0].timestamp, "2026-09-21T14:13:27.000000Z");

    // A NUL (which protobuf strings may hold) is refused as invalid on every database,
    // in an entry and in a search, never an internal error; nothing of its batch is kept.
    let nul = IngestLogsRequest {
        source_id: source.id.clone(),
        logs: vec![entry(base + 1.0, "info", "kept?"), entry(base + 2.0, "info", "a\0b")],
    };
    let refused = logs.ingest_logs(bearer(stream_of(vec![nul]), &token)).await.unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    let search = QueryLogsRequest { q: Some("\0zzz".into()), ..Default::default() };
    assert_eq!(logs.query_logs(bearer(search, &token)).await.unwrap_err().code(), Code::InvalidArgument);
    let kept = QueryLogsRequest { q: Some("kept?".into()), ..Default::default() };
    assert!(logs.query_logs(bearer(kept, &token)).await.unwrap().into_inner().logs.is_empty());

    // So is a NUL anywhere else REST refuses it while parsing: in attributes (a key, a
    // nested string), a source's description and config, a label value, a label matcher.
    let to_struct = killkrill::grpc::convert::json_to_struct;
    for attributes in [json!({"k\u{0}": "v"}), json!({"a": {"b": ["\u{0}"]}})] {
        let mut e = entry(base + 3.0, "info", "attributes");
        e.attributes = Some(to_struct(attributes.clone()));
        let batch = IngestLogsRequest { source_id: source.id.clone(), logs: vec![e] };
        let refused = logs.ingest_logs(bearer(stream_of(vec![batch]), &token)).await.unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument, "{attributes}: {refused:?}");
    }
    let mut sources = SourceServiceClient::new(channel.clone());
    let described = CreateSourceRequest { description: Some("a\0b".into()), ..new_source("nul") };
    let configured = CreateSourceRequest { config: Some(to_struct(json!({"k": {"v": "\u{0}"}}))), ..new_source("nul") };
    for request in [described, configured] {
        let refused = sources.create_source(bearer(request, &token)).await.unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    }
    let mut metrics = MetricServiceClient::new(channel.clone());
    let labels = HashMap::from([("k".to_owned(), "a\0".to_owned())]);
    let sample = Sample { name: "up".into(), labels: labels.clone(), value: 1.0, ..Default::default() };
    let ingest = IngestMetricsRequest { source_id: source.id.clone(), metrics: vec![sample] };
    assert_eq!(metrics.ingest_metrics(bearer(ingest, &token)).await.unwrap_err().code(), Code::InvalidArgument);
    let query = QueryMetricsRequest {
        metric: "up".into(),
        labels,
        start: "0".into(),
        end: "60".into(),
        step: "60".into(),
        ..Default::default()
    };
    assert_eq!(metrics.query_metrics(bearer(query, &token)).await.unwrap_err().code(), Code::InvalidArgument);
    let listed = sources.list_sources(bearer(ListSourcesRequest::default(), &token)).await.unwrap().into_inner();
    assert_eq!(listed.sources.len(), 1, "a refused source was stored");
    server.stop().await.unwrap();
}

fn new_source(name: &str) -> CreateSourceRequest {
    CreateSourceRequest { name: name.into(), r#type: "http".into(), ..Default::default() }
}

/// `levels` objects nested in one another.
fn nested(levels: usize) -> Value {
    (1..levels).fold(json!({"leaf": 1}), |inner, _| json!({ "n": inner }))
}

/// What REST stores, a gRPC client can read: a document nested as deep as may be stored
/// decodes in a protobuf client (they stop at 100 levels); one level deeper is refused
/// over REST (which would parse 128) as it is over gRPC.
async fn stored_documents_stay_readable_over_grpc() {
    let (_db, server) = sqlite_server().await;
    let admin = server.create_user("root", &[Role::Admin]).await;
    let token = server.token(&admin).await;
    let deepest = killkrill::service::MAX_JSON_DEPTH;
    let create = |name: &str, config: Value| {
        server
            .authed(reqwest::Method::POST, "/api/v1/sources", &token)
            .json(&json!({"name": name, "type": "http", "config": config}))
            .send()
    };
    let refused = create("too-deep", nested(deepest + 1)).await.unwrap();
    assert_eq!(refused.status(), 400);
    let body: Value = refused.json().await.unwrap();
    assert!(body.to_string().contains("nest deeper"), "{body}");
    assert_eq!(create("deep", nested(deepest)).await.unwrap().status(), 201);
    let source: Value =
        server.authed(reqwest::Method::GET, "/api/v1/sources", &token).send().await.unwrap().json().await.unwrap();
    let id = source["sources"][0]["id"].as_str().unwrap().to_owned();
    let logged = json!({"source_id": id, "logs": [{"message": "deep", "attributes": nested(deepest)}]});
    let ingested = server.authed(reqwest::Method::POST, "/api/v1/logs", &token).json(&logged).send().await.unwrap();
    assert_eq!(ingested.status(), 202);
    let logged = json!({"source_id": id, "logs": [{"message": "deeper", "attributes": nested(deepest + 1)}]});
    let refused = server.authed(reqwest::Method::POST, "/api/v1/logs", &token).json(&logged).send().await.unwrap();
    assert_eq!(refused.status(), 400);

    let channel = server.grpc().await;
    let listed = SourceServiceClient::new(channel.clone())
        .list_sources(bearer(ListSourcesRequest::default(), &token))
        .await
        .unwrap()
        .into_inner();
    let config = killkrill::grpc::convert::struct_to_json(listed.sources[0].config.clone().unwrap());
    assert_eq!(config, nested(deepest));
    let found = LogServiceClient::new(channel).query_logs(bearer(QueryLogsRequest::default(), &token)).await.unwrap();
    let attributes = found.into_inner().logs[0].attributes.clone().unwrap();
    assert_eq!(killkrill::grpc::convert::struct_to_json(attributes), nested(deepest));
    server.stop().await.unwrap();
}

/// A client stream that yields `items` and ends.
fn stream_of<T: Send + 'static>(items: Vec<T>) -> futures_util::stream::Iter<std::vec::IntoIter<T>> {
    futures_util::stream::iter(items)
}

async fn metrics_and_status(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let admin = server.create_user("root", &[Role::Admin]).await;
    let token = server.token(&admin).await;
    let channel = server.grpc().await;
    let source = create_source(&channel, &token, "node").await;
    let mut metrics = MetricServiceClient::new(channel.clone());

    // cpu{core=0} = 1..=10 and cpu{core=1} = 10×, one sample every 10 s.
    let start = 1_790_000_000.0;
    let samples: Vec<Sample> = (0..10)
        .flat_map(|i| {
            (0..2).map(move |core| Sample {
                name: "cpu_seconds".into(),
                r#type: "counter".into(),
                labels: HashMap::from([("core".to_owned(), core.to_string())]),
                value: f64::from(i + 1) * if core == 0 { 1.0 } else { 10.0 },
                timestamp: start + f64::from(i) * 10.0,
            })
        })
        .collect();
    let request = IngestMetricsRequest { source_id: source.id.clone(), metrics: samples };
    assert_eq!(metrics.ingest_metrics(bearer(request, &token)).await.unwrap().into_inner().accepted, 20);

    let series = metrics
        .list_series(bearer(ListSeriesRequest { name: Some("cpu_seconds".into()), ..Default::default() }, &token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(series.total, 2);
    let core1 = series.metrics.iter().find(|s| s.labels.get("core").map(String::as_str) == Some("1")).unwrap();
    assert_eq!((core1.last_value, core1.r#type.as_str()), (100.0, "counter"));
    let listed = server.get_json("/api/v1/metrics?name=cpu_seconds", &token).await;
    let ids = |mut ids: Vec<String>| {
        ids.sort();
        ids
    };
    let rest_ids =
        ids(listed["metrics"].as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap().to_owned()).collect());
    assert_eq!(rest_ids, ids(series.metrics.iter().map(|s| s.id.clone()).collect()));
    assert!(rest_ids.iter().all(|id| uuid::Uuid::parse_str(id).is_ok()) && rest_ids[0] != rest_ids[1], "{rest_ids:?}");

    // Sum over 50 s buckets of core 1: 10+20+30+40+50 and 60+...+100.
    let query = QueryMetricsRequest {
        metric: "cpu_seconds".into(),
        labels: HashMap::from([("core".to_owned(), "1".to_owned())]),
        start: start.to_string(),
        end: (start + 99.0).to_string(),
        step: "50s".into(),
        aggregation: "sum".into(),
    };
    let result = metrics.query_metrics(bearer(query.clone(), &token)).await.unwrap().into_inner().result;
    assert_eq!(result.len(), 1);
    assert_eq!(result[0].metric.get("__name__").map(String::as_str), Some("cpu_seconds"));
    let points: Vec<(f64, f64)> = result[0].values.iter().map(|p| (p.timestamp, p.value)).collect();
    assert_eq!(points, vec![(start, 150.0), (start + 50.0, 400.0)]);
    let bad = QueryMetricsRequest { aggregation: "median".into(), ..query.clone() };
    assert_eq!(metrics.query_metrics(bearer(bad, &token)).await.unwrap_err().code(), Code::InvalidArgument);
    let too_fine = QueryMetricsRequest { step: "1ms".into(), ..query };
    assert_eq!(metrics.query_metrics(bearer(too_fine, &token)).await.unwrap_err().code(), Code::InvalidArgument);

    let status =
        StatusServiceClient::new(channel).get_status(bearer(proto::GetStatusRequest {}, &token)).await.unwrap();
    let status = status.into_inner();
    assert_eq!(status.status, "operational");
    assert!(status.grpc_enabled);
    assert_eq!(status.database_status, "ok");
    let expected_backend = match db.kind {
        crate::common::Kind::Sqlite => "sqlite",
        crate::common::Kind::Postgres => "postgresql",
        crate::common::Kind::MySql => "mysql",
    };
    assert_eq!(status.database_backend, expected_backend);
    assert_eq!(status.identity.unwrap().auth_method, "jwt");
    // The same report as REST's, license section included.
    let rest = server.get_json("/api/v1/status", &token).await;
    let license = killkrill::grpc::convert::struct_to_json(status.license.expect("a license section"));
    assert_eq!((license["tier"].as_str(), &license), (Some("community"), &rest["license"]));
    server.stop().await.unwrap();
}

cases! {
    on_all_databases: sources_over_grpc, logs_stream_then_query, metrics_and_status, values_that_are_not_numbers_round_trip;
    tokio_multi_thread:
        auth_service_validates_refreshes_and_names_the_caller,
        roles_and_ingest_keys_hold_over_grpc,
        calls_are_correlated_logged_counted_and_healthy;
    tokio:
        request_timeout_bounds_a_grpc_call,
        stored_documents_stay_readable_over_grpc,
        an_open_stream_loses_the_rights_taken_away,
        unreadable_requests_and_unknown_methods_are_the_callers_errors;
}

/// `REQUEST_TIMEOUT_SECONDS` bounds a gRPC call as it bounds an HTTP request: a client
/// stream that sends a batch and then nothing is cut off with DEADLINE_EXCEEDED.
async fn request_timeout_bounds_a_grpc_call() {
    let db = TestDb::create(crate::common::Kind::Sqlite).await;
    // The login (a password hash) may itself take longer than the short limit: it is made
    // on a replica with the default one.
    let setup = TestServer::start(db.config()).await;
    let admin = setup.create_user("root", &[Role::Admin]).await;
    let token = setup.token(&admin).await;
    let mut config = db.config();
    config.request_timeout = std::time::Duration::from_millis(700);
    let server = TestServer::start(config).await;
    let channel = server.grpc().await;
    let source = create_source(&channel, &token, "slow").await;
    let first = IngestLogsRequest { source_id: source.id.clone(), logs: vec![entry(0.0, "", "then nothing")] };
    let stalled = futures_util::StreamExt::chain(stream_of(vec![first]), futures_util::stream::pending());
    let started = std::time::Instant::now();
    let mut client = LogServiceClient::new(channel.clone());
    let call = client.ingest_logs(bearer(stalled, &token));
    let refused =
        tokio::time::timeout(std::time::Duration::from_secs(10), call).await.expect("the call was not cut off");
    let status = refused.unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "{:?}", started.elapsed());
    // A call within the limit is unaffected.
    let whole = IngestLogsRequest { source_id: source.id, logs: vec![entry(0.0, "", "quick")] };
    let accepted = LogServiceClient::new(channel).ingest_logs(bearer(stream_of(vec![whole]), &token)).await.unwrap();
    assert_eq!(accepted.into_inner().accepted, 1);
    server.stop().await.unwrap();
    setup.stop().await.unwrap();
}

async fn sqlite_server() -> (TestDb, TestServer) {
    let db = TestDb::create(crate::common::Kind::Sqlite).await;
    let server = TestServer::start(db.config()).await;
    (db, server)
}

async fn auth_service_validates_refreshes_and_names_the_caller() {
    let (db, server) = sqlite_server().await;
    let user = server.create_user("vera", &[Role::Viewer]).await;
    let login: Value = server.login_response(&user.username, &user.password).await.json().await.unwrap();
    let access = login["access_token"].as_str().unwrap();
    let refresh = login["refresh_token"].as_str().unwrap();
    let mut auth = AuthServiceClient::new(server.grpc().await);

    let valid = auth.validate_token(proto::ValidateTokenRequest { token: access.into() }).await.unwrap().into_inner();
    assert!(valid.valid);
    let identity = valid.identity.unwrap();
    assert_eq!((identity.username.as_str(), identity.roles.as_slice()), ("vera", ["viewer".to_owned()].as_slice()));
    assert_eq!(identity.permissions, vec!["read"]);
    assert!(valid.expires_at.starts_with("20"), "{}", valid.expires_at);
    for token in [refresh, "not.a.token", ""] {
        let checked = auth.validate_token(proto::ValidateTokenRequest { token: token.into() }).await.unwrap();
        assert!(!checked.into_inner().valid, "{token}");
    }

    let me = auth.who_am_i(bearer(proto::WhoAmIRequest {}, access)).await.unwrap().into_inner();
    assert_eq!((me.user_id.as_str(), me.auth_method.as_str()), (user.id.as_str(), "jwt"));
    let anonymous = auth.who_am_i(proto::WhoAmIRequest {}).await.unwrap_err();
    assert_eq!(anonymous.code(), Code::Unauthenticated);
    let forged = auth.who_am_i(bearer(proto::WhoAmIRequest {}, &format!("{access}x"))).await.unwrap_err();
    assert_eq!(forged.code(), Code::Unauthenticated);

    // An API key works as metadata too, with its own auth method.
    let created: Value = server
        .authed(reqwest::Method::POST, "/api/v1/auth/api-keys", access)
        .json(&json!({"name": "ci"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = created["key"].as_str().unwrap();
    let me = auth.who_am_i(with_key(proto::WhoAmIRequest {}, key)).await.unwrap().into_inner();
    assert_eq!(me.auth_method, "api_key");

    let pair =
        auth.refresh_token(proto::RefreshTokenRequest { refresh_token: refresh.into() }).await.unwrap().into_inner();
    assert_eq!(pair.token_type, "Bearer");
    assert_ne!(pair.refresh_token, refresh);
    let me = auth.who_am_i(bearer(proto::WhoAmIRequest {}, &pair.access_token)).await.unwrap().into_inner();
    assert_eq!(me.username, "vera");
    // The old refresh token was rotated away; replaying it revokes the whole session.
    let replay = auth.refresh_token(proto::RefreshTokenRequest { refresh_token: refresh.into() }).await.unwrap_err();
    assert_eq!(replay.code(), Code::Unauthenticated);
    // Both are audited by the session service, in their own transactions, as the user.
    use sea_orm::{ConnectionTrait, Statement};
    let conn = db.connect().await;
    let sql = "SELECT status, user_id FROM audit_log WHERE action = 'REFRESH_TOKEN' ORDER BY id";
    let rows = conn.query_all_raw(Statement::from_string(conn.get_database_backend(), sql)).await.unwrap();
    let rows: Vec<(String, String)> =
        rows.iter().map(|r| (r.try_get("", "status").unwrap(), r.try_get("", "user_id").unwrap())).collect();
    assert_eq!(rows, [("success".to_owned(), user.id.clone()), ("denied".to_owned(), user.id.clone())]);

    server.stop().await.unwrap();
}

async fn roles_and_ingest_keys_hold_over_grpc() {
    let (db, server) = sqlite_server().await;
    let admin = server.create_user("root", &[Role::Admin]).await;
    let viewer = server.create_user("vic", &[Role::Viewer]).await;
    let (admin_token, viewer_token) = (server.token(&admin).await, server.token(&viewer).await);
    let channel = server.grpc().await;
    let mine = create_source(&channel, &admin_token, "mine").await;
    let other = create_source(&channel, &admin_token, "other").await;

    let mut sources = SourceServiceClient::new(channel.clone());
    let denied = CreateSourceRequest { name: "nope".into(), r#type: "http".into(), ..Default::default() };
    let denied = sources.create_source(bearer(denied, &viewer_token)).await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    assert!(sources.list_sources(bearer(ListSourcesRequest::default(), &viewer_token)).await.is_ok());

    let (_, key) = server.create_ingest_key(&admin_token, &mine.id).await;
    let key = key.as_str();
    let mut logs = LogServiceClient::new(channel.clone());
    let batch = |source: &str, entries: Vec<LogEntry>| IngestLogsRequest { source_id: source.into(), logs: entries };

    let ok =
        logs.ingest_logs(with_key(stream_of(vec![batch(&mine.id, vec![entry(0.0, "", "hello")])]), key)).await.unwrap();
    assert_eq!(ok.into_inner().accepted, 1);
    let foreign = logs
        .ingest_logs(with_key(stream_of(vec![batch(&other.id, vec![entry(0.0, "", "x")])]), key))
        .await
        .unwrap_err();
    assert_eq!(foreign.code(), Code::PermissionDenied);
    let read = logs.query_logs(with_key(QueryLogsRequest::default(), key)).await.unwrap_err();
    assert_eq!(read.code(), Code::PermissionDenied, "an ingest key never reads: known, but not allowed");
    let unknown = logs.query_logs(with_key(QueryLogsRequest::default(), "kki_not-a-key")).await.unwrap_err();
    assert_eq!(unknown.code(), Code::Unauthenticated, "an unknown ingest key is no credential");
    let viewer_ingest = logs
        .ingest_logs(bearer(stream_of(vec![batch(&mine.id, vec![entry(0.0, "", "x")])]), &viewer_token))
        .await
        .unwrap_err();
    assert_eq!(viewer_ingest.code(), Code::PermissionDenied);

    // A stream: one good batch, then one with an invalid entry. The first stays, the
    // second stores nothing, and the error says so.
    let stream = vec![
        batch(&mine.id, vec![entry(0.0, "info", "one"), entry(0.0, "info", "two")]),
        batch(&mine.id, vec![entry(0.0, "info", "three"), entry(0.0, "loud", "four")]),
    ];
    let failed = logs.ingest_logs(bearer(stream_of(stream), &admin_token)).await.unwrap_err();
    assert_eq!(failed.code(), Code::InvalidArgument);
    assert!(failed.message().contains("logs[1].level"), "{}", failed.message());
    assert!(failed.message().contains("1 batches before it, 2 entries, are stored"), "{}", failed.message());
    let stored = logs
        .query_logs(bearer(QueryLogsRequest { source_id: Some(mine.id.clone()), ..Default::default() }, &admin_token))
        .await
        .unwrap()
        .into_inner()
        .logs;
    let messages: Vec<&str> = stored.iter().map(|l| l.message.as_str()).collect();
    assert_eq!(messages.len(), 3, "{messages:?}");
    assert!(!messages.contains(&"three"));

    // A batch over 10,000 entries is too large, as over REST.
    let huge = batch(&mine.id, (0..10_001).map(|_| entry(0.0, "", "x")).collect());
    let huge = logs.ingest_logs(bearer(stream_of(vec![huge]), &admin_token)).await.unwrap_err();
    assert_eq!(huge.code(), Code::ResourceExhausted);

    // Ingest calls, accepted or refused, are not audited (the audit policy), as over REST.
    // (A row would be written as its call's response ends: give them the time to.)
    use sea_orm::{ConnectionTrait, Statement};
    let conn = db.connect().await;
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let sql = "SELECT COUNT(*) AS n FROM audit_log WHERE action LIKE 'GRPC %IngestLogs'";
    let row = conn.query_one_raw(Statement::from_string(conn.get_database_backend(), sql)).await.unwrap().unwrap();
    assert_eq!(row.try_get::<i64>("", "n").unwrap(), 0);
    server.stop().await.unwrap();
}

/// An open ingest stream is held to rights taken away while it runs, as a new request
/// would be: within the 2 s a replica caches them.
async fn an_open_stream_loses_the_rights_taken_away() {
    let (_db, server) = sqlite_server().await;
    let admin = server.create_user("root", &[Role::Admin]).await;
    let token = server.token(&admin).await;
    let channel = server.grpc().await;
    for change in ["disable the source", "delete the key"] {
        let source = create_source(&channel, &token, change).await;
        let keys = format!("/api/v1/sources/{}/keys", source.id);
        let (key_id, secret) = server.create_ingest_key(&token, &source.id).await;
        let (batches, receiver) = tokio::sync::mpsc::channel(1);
        let stream = futures_util::stream::unfold(receiver, |mut receiver| async move {
            receiver.recv().await.map(|batch| (batch, receiver))
        });
        let mut logs = LogServiceClient::new(channel.clone());
        let call = tokio::spawn(async move { logs.ingest_logs(with_key(stream, &secret)).await });
        let batch = || IngestLogsRequest { source_id: source.id.clone(), logs: vec![entry(0.0, "info", "x")] };
        batches.send(batch()).await.unwrap();
        let stored = || async {
            let path = format!("/api/v1/logs?source_id={}", source.id);
            let page: Value =
                server.authed(reqwest::Method::GET, &path, &token).send().await.unwrap().json().await.unwrap();
            page["logs"].as_array().map_or(0, Vec::len)
        };
        assert!(crate::common::eventually(std::time::Duration::from_secs(5), || async { stored().await == 1 }).await);
        let taken = match change {
            "disable the source" => server
                .authed(reqwest::Method::PUT, &format!("/api/v1/sources/{}", source.id), &token)
                .json(&json!({"enabled": false})),
            _ => server.authed(reqwest::Method::DELETE, &format!("{keys}/{key_id}"), &token),
        };
        assert!(taken.send().await.unwrap().status().is_success());
        tokio::time::sleep(std::time::Duration::from_millis(2_100)).await;
        batches.send(batch()).await.unwrap();
        drop(batches);
        let refused = call.await.unwrap().unwrap_err();
        assert!(matches!(refused.code(), Code::PermissionDenied | Code::Unauthenticated), "{change}: {refused:?}");
        assert!(refused.message().contains("the 1 batches before it, 1 entries, are stored"), "{refused:?}");
        assert_eq!(stored().await, 1, "{change}: the batch after it was stored");
    }
    // A batch the server cannot take in (over 16 MiB) ends the stream the same way: what
    // was stored before it is said.
    let source = create_source(&channel, &token, "big").await;
    let batch =
        |message: String| IngestLogsRequest { source_id: source.id.clone(), logs: vec![entry(0.0, "", &message)] };
    let stream = stream_of(vec![batch("small".into()), batch("x".repeat(17 << 20))]);
    let refused = LogServiceClient::new(channel).ingest_logs(bearer(stream, &token)).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(refused.message().contains("the 1 batches before it, 1 entries, are stored"), "{refused:?}");
    server.stop().await.unwrap();
}

async fn calls_are_correlated_logged_counted_and_healthy() {
    let (_db, server) = sqlite_server().await;
    let channel = server.grpc().await;

    let mut request = Request::new(proto::WhoAmIRequest {});
    request.metadata_mut().insert("x-correlation-id", "trace-grpc-42".parse().unwrap());
    let refused = AuthServiceClient::new(channel.clone()).who_am_i(request).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
    assert_eq!(refused.metadata().get("x-correlation-id").unwrap(), "trace-grpc-42");
    let ok =
        AuthServiceClient::new(channel.clone()).validate_token(proto::ValidateTokenRequest::default()).await.unwrap();
    let generated = ok.metadata().get("x-correlation-id").unwrap().to_str().unwrap();
    assert_eq!(uuid::Uuid::parse_str(generated).unwrap().get_version_num(), 4);

    let metrics = server.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains(
            r#"killkrill_grpc_requests_total{method="/killkrill.v1.AuthService/WhoAmI",code="UNAUTHENTICATED"} 1"#
        ),
        "{metrics}"
    );
    assert!(metrics.contains(r#"method="/killkrill.v1.AuthService/ValidateToken",code="OK"} 1"#));

    // Health follows the database, for the server and for each service.
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    for service in ["", "killkrill.v1.LogService"] {
        let check = tonic_health::pb::HealthCheckRequest { service: service.into() };
        let answer = health.check(check).await.unwrap().into_inner();
        assert_eq!(answer.status, tonic_health::pb::health_check_response::ServingStatus::Serving as i32);
    }
    let unknown = health.check(tonic_health::pb::HealthCheckRequest { service: "nope.Service".into() }).await;
    assert_eq!(unknown.unwrap_err().code(), Code::NotFound);

    // Reflection lists every service, so grpcurl needs no .proto files.
    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let mut reflection = ServerReflectionClient::new(channel.clone());
    let ask = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut answers = reflection.server_reflection_info(stream_of(vec![ask])).await.unwrap().into_inner();
    let Some(MessageResponse::ListServicesResponse(list)) = answers.message().await.unwrap().unwrap().message_response
    else {
        panic!("not a service list")
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for expected in [
        "killkrill.v1.AuthService",
        "killkrill.v1.SourceService",
        "killkrill.v1.LogService",
        "killkrill.v1.MetricService",
        "killkrill.v1.StatusService",
        "grpc.health.v1.Health",
    ] {
        assert!(names.iter().any(|n| n == expected), "{expected} missing from {names:?}");
    }
    let describe = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::FileContainingSymbol("killkrill.v1.LogService".into())),
    };
    let mut answers = reflection.server_reflection_info(stream_of(vec![describe])).await.unwrap().into_inner();
    let answer = answers.message().await.unwrap().unwrap().message_response;
    assert!(
        matches!(answer, Some(MessageResponse::FileDescriptorResponse(ref f)) if !f.file_descriptor_proto.is_empty())
    );
    // The v1alpha service answers too, for clients that ask only that one.
    {
        use tonic_reflection::pb::v1alpha::{
            ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
            server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
        };
        let ask = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut client = ServerReflectionClient::new(channel.clone());
        let mut answers = client.server_reflection_info(stream_of(vec![ask])).await.unwrap().into_inner();
        let answer = answers.message().await.unwrap().unwrap().message_response;
        let Some(MessageResponse::ListServicesResponse(list)) = answer else { panic!("not a service list") };
        assert!(list.service.iter().any(|s| s.name == "killkrill.v1.LogService"), "{list:?}");
    }
    server.stop().await.unwrap();
}

/// Sends its bytes as the message, unchanged; decodes nothing (calls are expected to fail).
#[derive(Clone, Copy)]
struct RawBytes;

impl tonic::codec::Codec for RawBytes {
    type Encode = Vec<u8>;
    type Decode = ();
    type Encoder = RawBytes;
    type Decoder = RawBytes;

    fn encoder(&mut self) -> RawBytes {
        RawBytes
    }

    fn decoder(&mut self) -> RawBytes {
        RawBytes
    }
}

impl tonic::codec::Encoder for RawBytes {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn encode(&mut self, item: Vec<u8>, dst: &mut tonic::codec::EncodeBuf<'_>) -> Result<(), tonic::Status> {
        prost::bytes::BufMut::put_slice(dst, &item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawBytes {
    type Item = ();
    type Error = tonic::Status;

    fn decode(&mut self, _: &mut tonic::codec::DecodeBuf<'_>) -> Result<Option<()>, tonic::Status> {
        Ok(Some(()))
    }
}

async fn unreadable_requests_and_unknown_methods_are_the_callers_errors() {
    let (_db, server) = sqlite_server().await;
    let channel = server.grpc().await;
    let admin = server.create_user("root", &[Role::Admin]).await;
    let token = server.token(&admin).await;
    let call = |path: &'static str, bytes: Vec<u8>| {
        let mut grpc = tonic::client::Grpc::new(channel.clone()).max_encoding_message_size(64 << 20);
        let request = bearer(bytes, &token);
        async move {
            grpc.ready().await.unwrap();
            let path = tonic::codegen::http::uri::PathAndQuery::from_static(path);
            grpc.unary(request, path, RawBytes).await.unwrap_err()
        }
    };
    // Malformed protobuf (a truncated string; a wrong wire type; a string that is not
    // UTF-8) is an invalid argument, not an internal error.
    for bytes in [b"\x0a\x10abc".to_vec(), b"\x08\x01".to_vec(), b"\x0a\x02\xff\xfe".to_vec()] {
        let refused = call("/killkrill.v1.SourceService/GetSource", bytes.clone()).await;
        assert_eq!(refused.code(), Code::InvalidArgument, "{bytes:?}: {refused:?}");
    }
    // Over the 16 MiB limit: a resource exhausted, as gRPC's status table has it.
    let refused = call("/killkrill.v1.SourceService/GetSource", vec![0; 17 << 20]).await;
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    // Frames tonic cannot read (cut short, flagged compressed with no encoding, absent)
    // are the caller's errors too.
    let h2c = reqwest::Client::builder().http2_prior_knowledge().build().unwrap();
    let raw = |path: &str, body: &'static [u8]| {
        h2c.post(format!("http://{}{path}", server.grpc_addr))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .header("authorization", format!("Bearer {token}"))
            .body(body)
    };
    for body in [&b"\x00\x00\x00\x00\x64\x0a\x01"[..], b"\x01\x00\x00\x00\x02\x0a\x00", b""] {
        let response = raw("/killkrill.v1.SourceService/GetSource", body).send().await.unwrap();
        let code = response.headers().get("grpc-status").map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(code.as_deref(), Some("3"), "{body:?}: {:?}", response.headers());
    }
    // A method served, refused for its compression, keeps its own label.
    let gzip = raw("/killkrill.v1.AuthService/WhoAmI", b"\x01\x00\x00\x00\x00").header("grpc-encoding", "gzip");
    let gzip = gzip.send().await.unwrap();
    assert_eq!(gzip.headers().get("grpc-status").map(|v| v.as_bytes()), Some(&b"12"[..]), "{:?}", gzip.headers());
    // Methods nobody serves share one label, whatever path the caller chose, and the
    // answer names the method.
    for path in ["/x.Nope/One", "/x.Nope/Two", "/killkrill.v1.SourceService/Nope"] {
        let refused = call(path, Vec::new()).await;
        assert_eq!(refused.code(), Code::Unimplemented);
        assert_eq!(refused.message(), format!("Unknown method {path}"));
    }
    let metrics = server.get("/metrics").await.text().await.unwrap();
    assert!(
        !metrics.contains("x.Nope") && !metrics.contains("/Nope\""),
        "a caller's path became a label value:\n{metrics}"
    );
    for counted in [
        r#"killkrill_grpc_requests_total{method="unmatched",code="UNIMPLEMENTED"} 3"#,
        r#"killkrill_grpc_requests_total{method="/killkrill.v1.SourceService/GetSource",code="INVALID_ARGUMENT"} 6"#,
        r#"killkrill_grpc_requests_total{method="/killkrill.v1.AuthService/WhoAmI",code="UNIMPLEMENTED"} 1"#,
    ] {
        assert!(metrics.contains(counted), "{counted} not in\n{metrics}");
    }
    server.stop().await.unwrap();
}

/// NaN (with its payload: Prometheus' stale marker is one), ±Inf are data. SQLite would
/// turn a bound NaN into NULL and MariaDB refuses it: each is stored bit for bit all the
/// same; range queries skip them and the series list shows a last value of null.
async fn values_that_are_not_numbers_round_trip(db: TestDb) {
    const STALE: u64 = 0x7ff0_0000_0000_0002;
    let server = TestServer::start(db.config()).await;
    let user = server.create_user("mia", &[Role::Maintainer]).await;
    let token = server.token(&user).await;
    let channel = server.grpc().await;
    let source = create_source(&channel, &token, "node").await;
    // (-0.0 is stored with its sign too, but protobuf does not send a double equal to 0.)
    let values = [1.5, f64::from_bits(STALE), f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 2.5];
    let samples = values
        .iter()
        .enumerate()
        .map(|(i, v)| Sample { name: "odd".into(), value: *v, timestamp: (1_000 + i) as f64, ..Default::default() })
        .collect();
    let mut metrics = MetricServiceClient::new(channel.clone());
    let ingest = IngestMetricsRequest { source_id: source.id.clone(), metrics: samples };
    metrics.ingest_metrics(bearer(ingest, &token)).await.unwrap();

    let conn = db.connect().await;
    let series = killkrill::storage::samples::series_named(&conn, "odd").await.unwrap();
    let points = killkrill::storage::samples::points(&conn, series[0].id, i64::MIN..=i64::MAX).await.unwrap();
    let bits: Vec<u64> = points.iter().map(|(_, v)| v.to_bits()).collect();
    assert_eq!(bits, values.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), "{points:?}");

    let rest = server.get_json("/api/v1/metrics?name=odd", &token).await;
    assert_eq!(rest["metrics"][0]["last_value"], 2.5, "{rest}");
    let query = serde_json::json!({"metric": "odd", "start": 1000, "end": 1010, "step": "20s", "aggregation": "count"});
    let answer: serde_json::Value = server
        .authed(reqwest::Method::POST, "/api/v1/metrics/query", &token)
        .json(&query)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["data"]["result"][0]["values"][0][1], "2", "only the numbers count: {answer}");
    server.stop().await.unwrap();
}
