//! The database layer: migrations under concurrent replicas, start-up retry, and probes
//! that follow a database outage and its recovery without a restart.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use crate::common::{Kind, TestDb, TestServer, eventually};
use killkrill::storage::{Database, migrate};
use sea_orm::{ConnectionTrait, Statement};
use serde_json::Value;
use tokio::{net::TcpListener, sync::watch};

cases! {
    on_all_databases:
        concurrent_replicas_apply_each_migration_once,
        migrations_are_idempotent,
        keying_the_head_keeps_the_latest_sample_of_each_series_and_time;
    tokio_multi_thread[MySql]: mariadb_outage_turns_probes_503_then_back_to_200;
    tokio_multi_thread[Postgres]: startup_retries_until_the_database_answers;
    tokio_multi_thread[Postgres]: postgres_outage_turns_probes_503_then_back_to_200;
    tokio_multi_thread[Postgres]: postgres_outage_answers_ingest_503_then_stores_again;
    tokio_multi_thread[MySql]: mariadb_outage_answers_ingest_503_then_stores_again;
    tokio:
        sqlite_runs_in_wal_mode_with_a_busy_timeout,
        sqlite_admits_two_ingest_batches_at_once,
        a_write_transaction_that_reads_first_survives_a_concurrent_writer,
        a_sqlite_writer_held_past_the_busy_timeout_makes_ingest_503,
        startup_gives_up_after_the_retry_window;
    tokio[Postgres, MySql]: postgres_and_mariadb_do_not_gate_ingest;
}

async fn count_applied(db: &TestDb) -> i64 {
    count(db, "SELECT COUNT(*) AS n FROM kk_schema_migrations").await
}

/// The `n` a counting query answers, read directly in the database.
async fn count(db: &TestDb, sql: &str) -> i64 {
    let conn = db.connect().await;
    let row = conn.query_one_raw(Statement::from_string(conn.get_database_backend(), sql)).await.unwrap().unwrap();
    row.try_get("", "n").unwrap()
}

async fn concurrent_replicas_apply_each_migration_once(db: TestDb) {
    // Four "replicas" start together against one empty database.
    let mut conns = Vec::new();
    for _ in 0..4 {
        conns.push(db.connect().await);
    }
    let runs = futures_util::future::join_all(conns.iter().map(migrate::run)).await;
    let applied: Vec<usize> = runs.into_iter().map(|r| r.expect("no replica fails")).collect();
    assert_eq!(applied.iter().sum::<usize>(), migrate::MIGRATIONS.len(), "{applied:?}");
    assert_eq!(count_applied(&db).await, migrate::MIGRATIONS.len() as i64);
}

/// Migration 14 rebuilds the head with the key `(series_id, ts)`: of the rows an earlier
/// release stored at one series and time, the latest (highest id) is the one kept.
async fn keying_the_head_keeps_the_latest_sample_of_each_series_and_time(db: TestDb) {
    let conn = db.connect().await;
    let backend = conn.get_database_backend();
    let (before, keyed) = migrate::MIGRATIONS.split_at(13);
    assert_eq!(keyed[0].name, "metric_samples_keyed");
    let run = |sql: &str| Statement::from_string(backend, sql.to_owned());
    for migration in before {
        for statement in (migration.up)(backend) {
            conn.execute_raw(statement).await.unwrap();
        }
    }
    for sql in [
        "INSERT INTO sources (id, name, source_type, description, enabled, config, allowed_cidrs, created_at, \
         updated_at) VALUES ('s1', 'one', 'app', '', TRUE, '{}', '[]', 0, 0)",
        "INSERT INTO metric_series (id, source_id, series_key, name, labels, metric_type, last_value, last_timestamp) \
         VALUES (7, 's1', 'k7', 'up', '{}', 'gauge', 0, 3000000)",
        // Written in id order: 1.0 then 2.0 at the same time, and two other times.
        "INSERT INTO metric_samples (series_id, ts, value, bits) VALUES (7, 1000000, 1.0, NULL)",
        "INSERT INTO metric_samples (series_id, ts, value, bits) VALUES (7, 2000000, 5.0, NULL)",
        "INSERT INTO metric_samples (series_id, ts, value, bits) VALUES (7, 1000000, 2.0, NULL)",
        "INSERT INTO metric_samples (series_id, ts, value, bits) VALUES (7, 3000000, 0, 9218868437227405314)",
    ] {
        conn.execute_raw(run(sql)).await.unwrap();
    }
    for statement in (keyed[0].up)(backend) {
        conn.execute_raw(statement).await.unwrap();
    }
    let rows = conn
        .query_all_raw(run("SELECT ts, value, bits FROM metric_samples WHERE series_id = 7 ORDER BY ts"))
        .await
        .unwrap();
    let rows: Vec<(i64, f64, Option<i64>)> = rows
        .iter()
        .map(|r| (r.try_get("", "ts").unwrap(), r.try_get("", "value").unwrap(), r.try_get("", "bits").unwrap()))
        .collect();
    assert_eq!(rows, [(1_000_000, 2.0, None), (2_000_000, 5.0, None), (3_000_000, 0.0, Some(0x7ff0_0000_0000_0002))]);
    // The key refuses a second row at one series and time.
    let again =
        conn.execute_raw(run("INSERT INTO metric_samples (series_id, ts, value) VALUES (7, 1000000, 3.0)")).await;
    assert!(again.is_err(), "{again:?}");
}

async fn migrations_are_idempotent(db: TestDb) {
    let conn = db.connect().await;
    assert_eq!(migrate::run(&conn).await.unwrap(), migrate::MIGRATIONS.len());
    assert_eq!(migrate::run(&conn).await.unwrap(), 0);
    // The service starts on an already-migrated database.
    let server = TestServer::start(db.config()).await;
    assert_eq!(server.get("/healthz").await.status(), 200);
    server.stop().await.unwrap();
    assert_eq!(count_applied(&db).await, migrate::MIGRATIONS.len() as i64);
}

async fn sqlite_runs_in_wal_mode_with_a_busy_timeout() {
    let db = TestDb::create(Kind::Sqlite).await;
    let opened = Database::open(&db.config()).await.unwrap();
    let conn = opened.conn();
    let mode = conn
        .query_one_raw(Statement::from_string(conn.get_database_backend(), "PRAGMA journal_mode"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(mode.try_get_by_index::<String>(0).unwrap().to_lowercase(), "wal");
    let busy = conn
        .query_one_raw(Statement::from_string(conn.get_database_backend(), "PRAGMA busy_timeout"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(busy.try_get_by_index::<i64>(0).unwrap(), 5000);
    opened.close().await;
}

/// SQLite takes one writer at a time: ingest batches queue for two turns in arrival order
/// instead of all holding their rows while they retry the lock; other backends admit all.
async fn sqlite_admits_two_ingest_batches_at_once() {
    let db = TestDb::create(Kind::Sqlite).await;
    let opened = Database::open(&db.config()).await.unwrap();
    let first = opened.ingest_turn().await.expect("SQLite gates ingest");
    let second = opened.ingest_turn().await.expect("SQLite gates ingest");
    let third = tokio::time::timeout(Duration::from_millis(200), opened.ingest_turn()).await;
    assert!(third.is_err(), "a third batch waits while two are written");
    drop(first);
    let third = tokio::time::timeout(Duration::from_secs(5), opened.ingest_turn()).await;
    assert!(third.is_ok_and(|turn| turn.is_some()), "a finished batch lets the next one in");
    drop(second);
    opened.close().await;
}

async fn postgres_and_mariadb_do_not_gate_ingest() {
    for kind in [Kind::Postgres, Kind::MySql] {
        let db = TestDb::create(kind).await;
        let opened = Database::open(&db.config()).await.unwrap();
        let turns: Vec<_> = futures_util::future::join_all((0..8).map(|_| opened.ingest_turn())).await;
        assert!(turns.iter().all(Option::is_none), "{kind:?} admits every batch at once");
        opened.close().await;
    }
}

/// A write transaction that reads first must not fail when another connection writes in
/// between: on SQLite a deferred transaction cannot move its read snapshot forward and
/// answers "database is locked" at once; `begin_write` takes the lock at `BEGIN` instead.
async fn a_write_transaction_that_reads_first_survives_a_concurrent_writer() {
    let db = TestDb::create(Kind::Sqlite).await;
    let opened = migrate::open(&db.config()).await.unwrap();
    let conn = opened.conn().clone();
    let backend = conn.get_database_backend();
    let insert = |key: &str| {
        Statement::from_string(
            backend,
            format!("INSERT INTO app_settings (\"key\", value, updated_at) VALUES ('{key}', 'v', 0)"),
        )
    };
    let txn = killkrill::storage::begin_write(&conn).await.unwrap();
    txn.query_one_raw(Statement::from_string(backend, "SELECT COUNT(*) FROM app_settings")).await.unwrap();
    let other = {
        let (conn, statement) = (conn.clone(), insert("other"));
        tokio::spawn(async move { conn.execute_raw(statement).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    txn.execute_raw(insert("first")).await.expect("the transaction that read first can still write");
    txn.commit().await.unwrap();
    other.await.unwrap().expect("the other writer waited its turn");
    let row = conn
        .query_one_raw(Statement::from_string(backend, "SELECT COUNT(*) AS n FROM app_settings"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.try_get::<i64>("", "n").unwrap(), 2);
    opened.close().await;
}

/// Another writer holding SQLite's lock past the busy timeout (a long batch on a slow
/// disk, an operator's open transaction) is back-pressure, not a fault of the server: the
/// batch is answered 503 in our error body, stores nothing, and goes in once the lock is
/// free.
async fn a_sqlite_writer_held_past_the_busy_timeout_makes_ingest_503() {
    use crate::common::rest::{call, new_source, send, user};
    use killkrill::auth::Role;
    use reqwest::Method;
    use sea_orm::TransactionTrait;
    let db = TestDb::create(Kind::Sqlite).await;
    let server = TestServer::start(db.config()).await;
    let (_, mia) = user(&server, "mia", Role::Maintainer).await;
    let source_id = new_source(&server, &mia, "held").await;
    let batch = serde_json::json!({ "source_id": source_id, "logs": [{ "message": "waits" }] });

    let conn = db.connect().await;
    let holder = conn.begin().await.unwrap();
    let take_lock = "INSERT INTO app_settings (\"key\", value, updated_at) VALUES ('held', 'v', 0)";
    holder.execute_raw(Statement::from_string(conn.get_database_backend(), take_lock)).await.unwrap();
    let (status, body) = send(call(&server, Method::POST, "/api/v1/logs", &mia).json(&batch)).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status_code"], 503, "our error body: {body}");
    holder.rollback().await.unwrap();
    conn.close().await.unwrap();
    assert_eq!(count(&db, "SELECT COUNT(*) AS n FROM logs").await, 0);

    let (status, body) = send(call(&server, Method::POST, "/api/v1/logs", &mia).json(&batch)).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(count(&db, "SELECT COUNT(*) AS n FROM logs").await, 1);
    server.stop().await.unwrap();
}

/// A TCP proxy in front of the database server that can cut every connection and refuse
/// new ones, standing in for a network or database outage.
pub(crate) struct Proxy {
    addr: SocketAddr,
    cut: watch::Sender<bool>,
}

impl Proxy {
    async fn start(upstream: SocketAddr) -> Proxy {
        Self::serve(TcpListener::bind("127.0.0.1:0").await.unwrap(), upstream)
    }

    /// Forwards every connection `listener` accepts to `upstream`.
    pub(crate) fn serve(listener: TcpListener, upstream: SocketAddr) -> Proxy {
        let addr = listener.local_addr().unwrap();
        let (cut, _) = watch::channel(false);
        let cut_rx = cut.subscribe();
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                let mut cut = cut_rx.clone();
                if *cut.borrow() {
                    continue; // dropped: the client sees a closed connection
                }
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut.wait_for(|c| *c) => {}
                    }
                });
            }
        });
        Proxy { addr, cut }
    }

    fn set_cut(&self, cut: bool) {
        self.cut.send_replace(cut);
    }
}

/// `db.url` with its host and port replaced by the proxy's.
fn through(db: &TestDb, proxy: &Proxy) -> (String, SocketAddr) {
    let mut url = url::Url::parse(&db.url).unwrap();
    let upstream: SocketAddr =
        format!("{}:{}", url.host_str().unwrap(), url.port_or_known_default().unwrap()).parse().unwrap();
    url.set_port(Some(proxy.addr.port())).unwrap();
    (url.to_string(), upstream)
}

fn upstream_of(db: &TestDb) -> SocketAddr {
    let url = url::Url::parse(&db.url).unwrap();
    let port = url.port().unwrap_or(if db.kind == Kind::Postgres { 5432 } else { 3306 });
    format!("{}:{port}", url.host_str().unwrap()).parse().unwrap()
}

async fn status_of(server: &TestServer, path: &str) -> (u16, Value) {
    match server.client.get(server.url(path)).send().await {
        Ok(response) => (response.status().as_u16(), response.json().await.unwrap_or(Value::Null)),
        Err(_) => (0, Value::Null),
    }
}

/// A server on `db` whose connections go through `proxy`.
async fn server_through(db: &TestDb, proxy: &Proxy) -> TestServer {
    let (url, _) = through(db, proxy);
    let mut config = db.config();
    config.database_url = killkrill::storage::DbUrl::parse(&url).unwrap();
    TestServer::start(config).await
}

async fn probes_follow_an_outage_and_recover(kind: Kind) {
    let db = TestDb::create(kind).await;
    let proxy = Proxy::start(upstream_of(&db)).await;
    let server = server_through(&db, &proxy).await;
    assert_eq!(status_of(&server, "/healthz").await.0, 200);

    proxy.set_cut(true);
    let down = Arc::new(tokio::sync::Mutex::new(Value::Null));
    let seen = eventually(Duration::from_secs(15), || {
        let down = down.clone();
        let server = &server;
        async move {
            let (status, body) = status_of(server, "/healthz").await;
            *down.lock().await = body;
            status == 503
        }
    })
    .await;
    assert!(seen, "/healthz never reported the outage");
    let body = down.lock().await.clone();
    assert_eq!(body["status"], "unhealthy");
    assert_eq!(body["checks"]["database"], "unavailable");
    assert_eq!(status_of(&server, "/readyz").await.0, 503);
    assert_eq!(status_of(&server, "/livez").await.0, 200, "liveness must not depend on the database");

    proxy.set_cut(false);
    let back = eventually(Duration::from_secs(15), || async { status_of(&server, "/healthz").await.0 == 200 }).await;
    assert!(back, "/healthz did not recover after the database came back");
    assert_eq!(status_of(&server, "/readyz").await.0, 200);
    server.stop().await.unwrap();
}

async fn postgres_outage_turns_probes_503_then_back_to_200() {
    probes_follow_an_outage_and_recover(Kind::Postgres).await;
}

async fn mariadb_outage_turns_probes_503_then_back_to_200() {
    probes_follow_an_outage_and_recover(Kind::MySql).await;
}

/// Ingest cut off from the database, before or in the middle of a batch, is refused
/// with 503 and the error body (a client sends it again, where a 500 it would drop), and
/// the refused batch leaves nothing stored; once the database is back, batches are stored
/// again without a restart. The cut lands at a different moment of a 10,000-line batch
/// each round: the driver then reports a closed socket, a pool that timed out or the
/// server's goodbye, which were once 500s.
async fn ingest_during_an_outage_is_503_then_stored_again(kind: Kind) {
    use crate::common::rest;
    use serde_json::json;

    let db = TestDb::create(kind).await;
    let proxy = Proxy::start(upstream_of(&db)).await;
    let server = server_through(&db, &proxy).await;
    let (_, token) = rest::user(&server, "outage-admin", killkrill::auth::Role::Admin).await;
    let source = rest::new_source(&server, &token, "outage").await;
    let (_, key) = server.create_ingest_key(&token, &source).await;
    let big = |round: usize| {
        let line = |i: usize| json!({ "message": format!("round {round} line {i} {}", "x".repeat(200)) });
        Value::Array((0..10_000).map(line).collect())
    };
    let samples = |round: usize| {
        let now = chrono::Utc::now().timestamp();
        let samples: Vec<Value> = (0..10_000)
            .map(|i| rest::sample("outage_gauge", "gauge", json!({ "round": round.to_string() }), 1.0, json!(now - i)))
            .collect();
        Value::Array(samples)
    };
    rest::ingest_logs(&server, &key, &source, json!([{ "message": "before" }])).await;

    let mut answers = Vec::new();
    for (round, cut_after_ms) in [0u64, 20, 60, 150, 300, 600].into_iter().enumerate() {
        let request = if round % 2 == 1 {
            rest::metrics_request(&server, &key, &source, samples(round))
        } else {
            rest::logs_request(&server, &key, &source, big(round))
        };
        let sending = tokio::spawn(rest::send(request));
        tokio::time::sleep(Duration::from_millis(cut_after_ms)).await;
        proxy.set_cut(true);
        let (status, body) = sending.await.unwrap();
        answers.push(status);
        assert!(status == 202 || status == 503, "round {round} (cut after {cut_after_ms} ms): {status} {body}");
        if status == 503 {
            assert_eq!(body["status_code"], 503, "{body}");
            assert_eq!(body["error"], "Service Unavailable", "{body}");
        }
        proxy.set_cut(false);
        let back = eventually(Duration::from_secs(15), || async {
            rest::status(rest::logs_request(&server, &key, &source, json!([{ "message": "probe" }]))).await == 202
        })
        .await;
        assert!(back, "ingest did not recover after the database came back (round {round})");
    }
    let logs = rest::count_rows(&db, "logs").await;
    let probes = count_probes(&db).await;
    let rounds_stored = (logs - probes - 1) / 10_000;
    assert_eq!((logs - probes - 1) % 10_000, 0, "a log batch was stored in part: {logs} lines ({answers:?})");
    let acknowledged = answers.iter().enumerate().filter(|(r, s)| r % 2 == 0 && **s == 202).count() as i64;
    assert_eq!(rounds_stored, acknowledged, "log batches stored vs answered 202: {answers:?}");
    server.stop().await.unwrap();
}

async fn count_probes(db: &TestDb) -> i64 {
    count(db, "SELECT COUNT(*) AS n FROM logs WHERE message = 'probe'").await
}

async fn postgres_outage_answers_ingest_503_then_stores_again() {
    ingest_during_an_outage_is_503_then_stored_again(Kind::Postgres).await;
}

async fn mariadb_outage_answers_ingest_503_then_stores_again() {
    ingest_during_an_outage_is_503_then_stored_again(Kind::MySql).await;
}

async fn startup_retries_until_the_database_answers() {
    let db = TestDb::create(Kind::Postgres).await;
    let proxy = Proxy::start(upstream_of(&db)).await;
    proxy.set_cut(true);
    let (url, _) = through(&db, &proxy);
    let mut config = db.config();
    config.database_url = killkrill::storage::DbUrl::parse(&url).unwrap();
    config.db_connect_retry = Duration::from_secs(20);
    let opening = tokio::spawn(async move { Database::open(&config).await });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!opening.is_finished(), "start-up gave up or succeeded while the database was down");
    proxy.set_cut(false);
    let opened = tokio::time::timeout(Duration::from_secs(15), opening).await.unwrap().unwrap();
    opened.expect("start-up succeeds once the database answers").close().await;
}

async fn startup_gives_up_after_the_retry_window() {
    let mut config = killkrill::config::Config::for_database("postgresql://kk:pw@127.0.0.1:1/none").unwrap();
    config.db_connect_retry = Duration::from_secs(1);
    let started = std::time::Instant::now();
    let err = Database::open(&config).await.unwrap_err();
    // The window, plus at most one connection attempt (5 s) already under way.
    assert!(started.elapsed() < Duration::from_secs(8), "{:?}", started.elapsed());
    let message = err.to_string();
    assert!(message.starts_with("DATABASE_URL: database unreachable"), "{message}");
    assert!(!message.contains("pw@"), "{message}");
}
