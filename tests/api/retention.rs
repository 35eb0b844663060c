//! Retention: `LOG_RETENTION_DAYS`, `METRIC_RETENTION_DAYS` and a source's
//! `retention_days`; the sweep that removes what expired (called here through
//! `service::retention::sweep`, as the background sweeper calls it), its lock across
//! replicas, its `/metrics`; and ingest of data already expired (accepted, dropped).
//! Each case runs on SQLite, PostgreSQL and MariaDB. Times are whole days away from
//! every retention boundary, so the few seconds a case takes never move a row across one.

use std::time::Duration;

use killkrill::{
    auth::Role,
    config::{Config, Retention},
    service::retention::{self, Sweep},
    storage::retention::SweepLock,
};
use reqwest::Method;
use sea_orm::{ConnectionTrait, Statement};
use serde_json::{Value, json};

use crate::common::{Kind, TestDb, TestServer, eventually, rest::*};

cases! {
    on_all_databases:
        expired_lines_and_samples_are_swept_under_global_and_source_settings,
        data_already_expired_at_ingest_is_accepted_and_dropped,
        retention_days_is_validated_shown_set_and_reset,
        grpc_sources_carry_retention_days_and_ingest_answers_dropped,
        one_replica_sweeps_at_a_time_and_a_dead_holder_frees_the_lock;
}

const DAY: i64 = 86_400;
const GLOBAL: Retention = Retention { log_days: 30, metric_days: 90 };

/// The testing configuration with the global settings above, and a sweep interval long
/// enough that only the start-up sweep runs on its own.
fn config(db: &TestDb) -> Config {
    let mut config = db.config();
    config.retention = GLOBAL;
    config.retention_interval = Duration::from_secs(3600);
    config
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// `/metrics` as text.
async fn exposition(server: &TestServer) -> String {
    server.get("/metrics").await.text().await.unwrap()
}

/// The value of the sample `series` (name and labels as exposed), if exposed.
fn metric(exposition: &str, series: &str) -> Option<f64> {
    exposition.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Waits until the server's start-up sweep has ended, so that it holds no lock and
/// removes nothing a case has not arranged for.
async fn after_startup_sweep(server: &TestServer) {
    let done = eventually(Duration::from_secs(20), || async {
        metric(&exposition(server).await, "killkrill_retention_last_run_timestamp_seconds").is_some_and(|t| t > 0.0)
    })
    .await;
    assert!(done, "the start-up sweep never ended");
}

/// Sweeps through `server`'s state until a sweep is done (another sweeper may hold the
/// lock for a moment); returns what it removed.
async fn sweep(server: &TestServer) -> retention::Swept {
    for _ in 0..200 {
        let state = &server.state;
        match retention::sweep(&state.db, &state.metrics, state.config.retention).await.unwrap() {
            Sweep::Done(swept) => return swept,
            Sweep::Busy => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    panic!("the sweep lock stayed taken for 10 s");
}

async fn count(db: &TestDb, sql: &str) -> i64 {
    let conn = db.connect().await;
    let statement = Statement::from_string(conn.get_database_backend(), sql.to_owned());
    let row = conn.query_one_raw(statement).await.unwrap().unwrap();
    let n: i64 = row.try_get("", "n").unwrap();
    conn.close().await.unwrap();
    n
}

async fn samples_of(db: &TestDb, source_id: &str) -> i64 {
    let sql = "SELECT COUNT(*) AS n FROM metric_samples m JOIN metric_series s ON s.id = m.series_id \
               WHERE s.source_id = '{id}'";
    count(db, &sql.replace("{id}", source_id)).await
}

/// Log lines named by their age in days (`"45d"`), at that age.
fn lines(ages: &[i64]) -> Value {
    let now = now();
    ages.iter().map(|age| json!({ "message": format!("{age}d"), "timestamp": rfc3339(now - age * DAY) })).collect()
}

/// Samples of one gauge, one at each age in days.
fn samples(ages: &[i64]) -> Value {
    let now = now();
    ages.iter().map(|age| sample("temperature", "gauge", json!({}), *age as f64, json!(now - age * DAY))).collect()
}

async fn put_retention(server: &TestServer, token: &str, id: &str, days: Value) {
    let path = format!("/api/v1/sources/{id}");
    let (status, body) = send(call(server, Method::PUT, &path, token).json(&json!({ "retention_days": days }))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["retention_days"], days, "{body}");
}

const LINE_AGES: [i64; 5] = [100, 45, 20, 5, 1];
const SAMPLE_AGES: [i64; 6] = [200, 95, 60, 20, 5, 1];

/// Three sources with the same lines and samples, stored while each kept data forever:
/// then one follows the global settings (30 and 90 days), one keeps 10 days, one keeps
/// everything. A sweep removes exactly what is older than each one's retention, with the
/// rollup rows of the hours removed, and leaves the audit log alone, however old.
async fn expired_lines_and_samples_are_swept_under_global_and_source_settings(db: TestDb) {
    let server = TestServer::start(config(&db)).await;
    after_startup_sweep(&server).await;
    let (_, mia) = user(&server, "mia", Role::Maintainer).await;
    let mut ids = Vec::new();
    for name in ["global", "ten-days", "forever"] {
        let source = create_source(&server, &mia, json!({ "name": name, "type": "http", "retention_days": 0 })).await;
        let id = source["id"].as_str().unwrap().to_owned();
        ingest_logs(&server, &mia, &id, lines(&LINE_AGES)).await;
        ingest_metrics(&server, &mia, &id, samples(&SAMPLE_AGES)).await;
        ids.push(id);
    }
    let [global, ten, forever] = [&ids[0], &ids[1], &ids[2]];
    put_retention(&server, &mia, global, Value::Null).await;
    put_retention(&server, &mia, ten, json!(10)).await;
    // Audit rows older than any retention stay: the audit log is never swept.
    let audit_rows = count(&db, "SELECT COUNT(*) AS n FROM audit_log").await;
    assert!(audit_rows >= 5, "{audit_rows} audit rows");
    let conn = db.connect().await;
    let long_ago = (now() - 400 * DAY) * 1_000_000;
    conn.execute_unprepared(&format!("UPDATE audit_log SET created_at = {long_ago}")).await.unwrap();
    conn.close().await.unwrap();

    let swept = sweep(&server).await;
    assert_eq!((swept.logs, swept.samples), (5, 6), "{swept:?}");
    // Newest first, as `GET /api/v1/logs` serves them.
    let kept = |ages: &[i64]| {
        let mut ages = ages.to_vec();
        ages.sort();
        ages.iter().map(|age| format!("{age}d")).collect::<Vec<_>>()
    };
    for (id, lines, samples) in
        [(global, kept(&[20, 5, 1]), 4), (ten, kept(&[5, 1]), 2), (forever, kept(&LINE_AGES), 6)]
    {
        assert_eq!(messages(&server, &mia, &[("source_id", id)]).await, lines, "source {id}");
        assert_eq!(samples_of(&db, id).await, samples, "samples of {id}");
    }
    assert_eq!(count(&db, "SELECT COUNT(*) AS n FROM audit_log").await, audit_rows);

    // What remains is not expired: a second sweep removes nothing.
    let again = sweep(&server).await;
    assert_eq!((again.logs, again.samples), (0, 0), "{again:?}");
    let text = exposition(&server).await;
    assert_eq!(metric(&text, "killkrill_retention_removed_rows_total{kind=\"logs\"}"), Some(5.0), "{text}");
    assert_eq!(metric(&text, "killkrill_retention_removed_rows_total{kind=\"samples\"}"), Some(6.0), "{text}");
    assert_eq!(metric(&text, "killkrill_retention_errors_total"), Some(0.0), "{text}");
    let last = metric(&text, "killkrill_retention_last_run_timestamp_seconds").unwrap();
    assert!((last - now() as f64).abs() < 60.0, "last run at {last}");
    server.stop().await.unwrap();
}

/// Lines and samples older than their source's retention when they arrive are accepted
/// and not stored: the JSON API counts them in `dropped`, OTLP in `partial_success`,
/// `/metrics` as `outcome="dropped"`. A source that keeps data forever stores them.
async fn data_already_expired_at_ingest_is_accepted_and_dropped(db: TestDb) {
    let server = TestServer::start(config(&db)).await;
    let (_, mia) = user(&server, "mia", Role::Maintainer).await;
    let global = new_source(&server, &mia, "global").await;
    let forever = create_source(&server, &mia, json!({ "name": "forever", "type": "http", "retention_days": 0 })).await;
    let forever = forever["id"].as_str().unwrap();

    let answer = send(logs_request(&server, &mia, &global, lines(&[45, 31, 29, 1]))).await;
    assert_eq!(answer, (202, json!({ "accepted": 2, "dropped": 2 })));
    assert_eq!(messages(&server, &mia, &[("source_id", &global)]).await, ["1d", "29d"]);
    let answer = send(metrics_request(&server, &mia, &global, samples(&[95, 91, 89, 1]))).await;
    assert_eq!(answer, (202, json!({ "accepted": 2, "dropped": 2 })));
    assert_eq!(samples_of(&db, &global).await, 2);
    ingest_logs(&server, &mia, forever, lines(&[45, 1])).await;
    ingest_metrics(&server, &mia, forever, samples(&[95, 1])).await;

    // Validation comes first: an invalid entry refuses the batch, expired ones with it.
    let mut invalid = lines(&[45]);
    invalid.as_array_mut().unwrap().push(json!({ "message": "" }));
    assert_eq!(refused(logs_request(&server, &mia, &global, invalid), 400).await, fields(&["logs[1].message"]));

    // OTLP says so in partial_success; the fresh record is stored.
    let (_, key) = server.create_ingest_key(&mia, &global).await;
    let nanos = |age: i64| ((now() - age * DAY) as i128 * 1_000_000_000).to_string();
    let export = json!({"resourceLogs": [{"resource": {}, "scopeLogs": [{"logRecords": [
        {"timeUnixNano": nanos(40), "body": {"stringValue": "otlp-40d"}},
        {"timeUnixNano": nanos(2), "body": {"stringValue": "otlp-2d"}}
    ]}]}]});
    let request = server.client.post(server.url("/v1/logs")).header("X-API-Key", &key).json(&export);
    let (status, body) = send(request).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["partialSuccess"]["rejectedLogRecords"], "1", "{body}");
    let message = body["partialSuccess"]["errorMessage"].as_str().unwrap();
    assert!(message.contains("log_records[0]") && message.contains("retention"), "{message}");
    assert_eq!(messages(&server, &mia, &[("source_id", &global), ("q", "otlp")]).await, ["otlp-2d"]);

    let text = exposition(&server).await;
    let items = |source: &str, kind: &str, outcome: &str| {
        metric(
            &text,
            &format!("killkrill_ingest_items_total{{source_id=\"{source}\",kind=\"{kind}\",outcome=\"{outcome}\"}}"),
        )
    };
    assert_eq!(items(&global, "logs", "dropped"), Some(3.0), "{text}");
    assert_eq!(items(&global, "logs", "accepted"), Some(3.0), "{text}");
    assert_eq!(items(&global, "samples", "dropped"), Some(2.0), "{text}");
    assert_eq!(items(forever, "logs", "accepted"), Some(2.0), "{text}");
    assert_eq!(items(forever, "logs", "dropped"), None, "{text}");
    server.stop().await.unwrap();
}

/// `retention_days`: `null` (the global settings) unless set; 0 or a whole number of days
/// up to 36,500 at creation and with PUT, which `null` resets; anything else is a 400
/// naming the field, and leaves the source as it was.
async fn retention_days_is_validated_shown_set_and_reset(db: TestDb) {
    let server = TestServer::start(config(&db)).await;
    let (_, mia) = user(&server, "mia", Role::Maintainer).await;
    let plain = create_source(&server, &mia, json!({ "name": "plain", "type": "http" })).await;
    assert_eq!(plain["retention_days"], Value::Null, "{plain}");
    let seven = create_source(&server, &mia, json!({ "name": "seven", "type": "http", "retention_days": 7 })).await;
    assert_eq!(seven["retention_days"], 7);
    let id = seven["id"].as_str().unwrap();
    let path = format!("/api/v1/sources/{id}");
    assert_eq!(send(call(&server, Method::GET, &path, &mia)).await.1["retention_days"], 7);
    // Another field changed: the retention stays.
    let (status, body) = send(call(&server, Method::PUT, &path, &mia).json(&json!({ "description": "d" }))).await;
    assert_eq!((status, &body["retention_days"]), (200, &json!(7)), "{body}");
    put_retention(&server, &mia, id, json!(0)).await;
    put_retention(&server, &mia, id, json!(36_500)).await;
    put_retention(&server, &mia, id, Value::Null).await;
    put_retention(&server, &mia, id, json!(30)).await;
    let (status, body) = send(call(&server, Method::PUT, &path, &mia).json(&json!({ "retention_days": 30.0 }))).await;
    assert_eq!((status, &body["retention_days"]), (200, &json!(30)), "a whole number written as a float: {body}");

    for bad in [json!(-1), json!(1.5), json!("30"), json!(true), json!(36_501), json!(1e12), json!([7]), json!({})] {
        let update = call(&server, Method::PUT, &path, &mia).json(&json!({ "retention_days": bad }));
        assert_eq!(refused(update, 400).await, fields(&["retention_days"]), "{bad}");
        let create = json!({ "name": "bad", "type": "http", "retention_days": bad });
        let create = call(&server, Method::POST, "/api/v1/sources", &mia).json(&create);
        assert_eq!(refused(create, 400).await, fields(&["retention_days"]), "{bad}");
    }
    assert_eq!(send(call(&server, Method::GET, &path, &mia)).await.1["retention_days"], 30);
    let listed = send(call(&server, Method::GET, "/api/v1/sources", &mia)).await.1;
    let names: Vec<(&str, &Value)> = listed["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["name"].as_str().unwrap(), &s["retention_days"]))
        .collect();
    assert_eq!(names, [("plain", &Value::Null), ("seven", &json!(30))]);
    server.stop().await.unwrap();
}

fn bearer<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

/// Over gRPC as over REST: `Source.retention_days`, set at creation, reset with
/// `reset_retention_days`, validated; `IngestLogs` and `IngestMetrics` answer `dropped`.
async fn grpc_sources_carry_retention_days_and_ingest_answers_dropped(db: TestDb) {
    use killkrill::grpc::proto::{
        CreateSourceRequest, IngestLogsRequest, IngestMetricsRequest, LogEntry, Sample, UpdateSourceRequest,
        log_service_client::LogServiceClient, metric_service_client::MetricServiceClient,
        source_service_client::SourceServiceClient,
    };
    let server = TestServer::start(config(&db)).await;
    let (_, mia) = user(&server, "mia", Role::Maintainer).await;
    let channel = server.grpc().await;
    let mut sources = SourceServiceClient::new(channel.clone());
    let create = CreateSourceRequest {
        name: "grpc".into(),
        r#type: "http".into(),
        retention_days: Some(10),
        ..Default::default()
    };
    let source = sources.create_source(bearer(create, &mia)).await.unwrap().into_inner();
    assert_eq!(source.retention_days, Some(10));
    let rest = send(call(&server, Method::GET, &format!("/api/v1/sources/{}", source.id), &mia)).await.1;
    assert_eq!(rest["retention_days"], 10);

    let at = |age: i64| (now() - age * DAY) as f64;
    let lines = [20, 1].map(|age| LogEntry { timestamp: at(age), message: format!("{age}d"), ..Default::default() });
    let batch = IngestLogsRequest { source_id: source.id.clone(), logs: lines.to_vec() };
    let mut logs = LogServiceClient::new(channel.clone());
    let answer = logs.ingest_logs(bearer(futures_util::stream::iter(vec![batch]), &mia)).await.unwrap().into_inner();
    assert_eq!((answer.accepted, answer.dropped, answer.batches), (1, 1, 1));
    let samples = [20, 1].map(|age| Sample { name: "up".into(), value: 1.0, timestamp: at(age), ..Default::default() });
    let batch = IngestMetricsRequest { source_id: source.id.clone(), metrics: samples.to_vec() };
    let answer = MetricServiceClient::new(channel.clone()).ingest_metrics(bearer(batch, &mia)).await.unwrap();
    assert_eq!((answer.get_ref().accepted, answer.get_ref().dropped), (1, 1));

    let too_long = UpdateSourceRequest { id: source.id.clone(), retention_days: Some(36_501), ..Default::default() };
    let refused = sources.update_source(bearer(too_long, &mia)).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert!(refused.message().contains("retention_days"), "{}", refused.message());
    let forever = UpdateSourceRequest { id: source.id.clone(), retention_days: Some(0), ..Default::default() };
    assert_eq!(sources.update_source(bearer(forever, &mia)).await.unwrap().into_inner().retention_days, Some(0));
    let untouched = UpdateSourceRequest { id: source.id.clone(), description: Some("d".into()), ..Default::default() };
    assert_eq!(sources.update_source(bearer(untouched, &mia)).await.unwrap().into_inner().retention_days, Some(0));
    let reset = UpdateSourceRequest { id: source.id.clone(), reset_retention_days: true, ..Default::default() };
    assert_eq!(sources.update_source(bearer(reset, &mia)).await.unwrap().into_inner().retention_days, None);
    server.stop().await.unwrap();
}

/// Two replicas on one database: on PostgreSQL and MariaDB the sweep lock is held by one
/// at a time (the other's sweep is `Busy`), a holder that goes away without releasing it
/// frees it at once, and two sweeps started together remove every expired row once. On
/// SQLite (one process per file) both sweep, and still remove each row once.
async fn one_replica_sweeps_at_a_time_and_a_dead_holder_frees_the_lock(db: TestDb) {
    // One after the other, so that neither start-up sweep finds the lock taken (a replica
    // that finds it taken records no run).
    let one = TestServer::start(config(&db)).await;
    after_startup_sweep(&one).await;
    let two = TestServer::start(config(&db)).await;
    after_startup_sweep(&two).await;
    if db.kind != Kind::Sqlite {
        let held = SweepLock::try_acquire(&one.state.db).await.unwrap().expect("a free lock");
        assert!(SweepLock::try_acquire(&two.state.db).await.unwrap().is_none(), "taken twice");
        let state = &two.state;
        assert_eq!(retention::sweep(&state.db, &state.metrics, GLOBAL).await.unwrap(), Sweep::Busy);
        // Dropped unreleased, as by a replica that died: its connection closes.
        drop(held);
        let freed = eventually(Duration::from_secs(5), || async {
            match SweepLock::try_acquire(&two.state.db).await.unwrap() {
                Some(lock) => {
                    lock.release().await;
                    true
                }
                None => false,
            }
        })
        .await;
        assert!(freed, "the lock of a connection that closed stayed taken");
    }

    let (_, mia) = user(&one, "mia", Role::Maintainer).await;
    let source = create_source(&one, &mia, json!({ "name": "shared", "type": "http", "retention_days": 0 })).await;
    let id = source["id"].as_str().unwrap();
    let many: Vec<Value> =
        (0..300).map(|n| json!({ "message": format!("old {n}"), "timestamp": rfc3339(now() - 50 * DAY) })).collect();
    ingest_logs(&one, &mia, id, Value::Array(many)).await;
    ingest_logs(&one, &mia, id, lines(&[1])).await;
    ingest_metrics(&one, &mia, id, samples(&[200, 100, 1])).await;
    put_retention(&one, &mia, id, Value::Null).await;

    let (a, b) = tokio::join!(sweep(&one), sweep(&two));
    assert_eq!((a.logs + b.logs, a.samples + b.samples), (300, 2), "{a:?} {b:?}");
    assert_eq!(messages(&one, &mia, &[("source_id", id)]).await, ["1d"]);
    assert_eq!(samples_of(&db, id).await, 1);
    for server in [&one, &two] {
        let text = exposition(server).await;
        assert_eq!(metric(&text, "killkrill_retention_errors_total"), Some(0.0), "{text}");
    }
    one.stop().await.unwrap();
    two.stop().await.unwrap();
}
