//! The metric chunks: compaction (`service::compaction::compact`, as the background
//! sweeper calls it, at a time of the case's choosing) moves closed windows of samples from
//! the head into chunks; every read answers the same before and after, bit for bit; late
//! samples and overwrites of compacted samples win; retention drops whole windows; a
//! compaction running beside ingest loses nothing.
//! Each case runs on SQLite, PostgreSQL and MariaDB, through the real server on a real socket.

use std::{collections::BTreeMap, time::Duration};

use killkrill::{
    auth::Role,
    config::Retention,
    protocol::remote_write::{Label, Sample, TimeSeries, WriteRequest},
    service::{
        compaction::{self, Compacted, Compaction},
        retention::{self, Sweep},
    },
    storage::compaction::WINDOW,
};
use reqwest::Method;
use serde_json::{Value, json};

use crate::{
    common::{TestDb, TestServer, rest::*},
    promql::{Cred, START_MS, conformance::corpus, loaded, prom, write_all},
};

/// 2026-01-01T00:00:00Z in microseconds.
const T0_US: i64 = T0 * 1_000_000;

cases! {
    on_all_databases:
        every_query_answers_the_same_after_compaction,
        special_values_late_samples_and_overwrites_survive_compaction,
        chunks_expire_with_their_whole_window,
        compaction_beside_ingest_loses_nothing;
}

const STALE_NAN: u64 = 0x7ff0_0000_0000_0002;

/// Compacts through `server`'s state until this replica holds the lock (the start-up
/// sweeper may hold it for a moment); what it moved.
async fn compact(server: &TestServer, now: i64) -> Compacted {
    for _ in 0..200 {
        match compaction::compact(&server.state.db, &server.state.metrics, now).await.unwrap() {
            Compaction::Done(done) => return done,
            Compaction::Busy => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    panic!("the sweep lock stayed taken for 10 s");
}

fn now_us() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

fn series(name: &str, samples: &[(f64, i64)]) -> TimeSeries {
    TimeSeries {
        labels: vec![Label { name: b"__name__".to_vec(), value: name.as_bytes().to_vec() }],
        samples: samples.iter().map(|&(value, timestamp)| Sample { value, timestamp }).collect(),
        histograms: vec![],
    }
}

/// Every stored sample of the series named `name`, as the storage layer reads them
/// (chunks and head), as `(µs, bits)`.
async fn stored(db: &TestDb, name: &str) -> Vec<(i64, u64)> {
    let conn = db.connect().await;
    let series = killkrill::storage::samples::series_named(&conn, name).await.unwrap();
    assert_eq!(series.len(), 1, "one series {name}");
    let points = killkrill::storage::samples::points(&conn, series[0].id, i64::MIN..=i64::MAX).await.unwrap();
    conn.close().await.unwrap();
    points.into_iter().map(|(ts, value)| (ts, value.to_bits())).collect()
}

/// The answers of the PromQL corpus, as instant and range queries over the dataset.
async fn corpus_answers(server: &TestServer, viewer: &Cred) -> Vec<(u16, Value)> {
    let (exprs, known) = corpus();
    let minute = 60_000;
    let asks: [&[(&str, String)]; 4] = [
        &[("time", ((START_MS + 20 * minute + 7_500) as f64 / 1000.0).to_string())],
        &[("time", ((START_MS + 33 * minute) / 1000).to_string())],
        &[("time", ((START_MS + 52 * minute) / 1000).to_string())],
        &[
            ("start", ((START_MS + 90_000) / 1000).to_string()),
            ("end", ((START_MS + 53 * minute) / 1000).to_string()),
            ("step", "45".to_owned()),
        ],
    ];
    let mut answers = Vec::new();
    for expr in exprs.iter().chain(known.iter().map(|(expr, _)| expr)) {
        for ask in asks {
            let path = if ask.len() == 1 { "/prometheus/api/v1/query" } else { "/prometheus/api/v1/query_range" };
            let mut params: Vec<(&str, &str)> = vec![("query", expr)];
            params.extend(ask.iter().map(|(k, v)| (*k, v.as_str())));
            answers.push(prom(server, Method::GET, path, &params, viewer).await);
        }
    }
    for (start, end) in [(0, 10), (14, 16), (29, 31), (44, 50)] {
        let range = [("start", (T0 + start * 60).to_string()), ("end", (T0 + end * 60).to_string())];
        let params: Vec<(&str, &str)> = [("match[]", "{__name__=~\".+\"}")]
            .into_iter()
            .chain(range.iter().map(|(k, v)| (*k, v.as_str())))
            .collect();
        answers.push(prom(server, Method::GET, "/prometheus/api/v1/series", &params, viewer).await);
        answers.push(prom(server, Method::GET, "/prometheus/api/v1/label/__name__/values", &params, viewer).await);
    }
    answers
}

/// The seed's range query of `metric` over the dataset's hour, every aggregation.
async fn seed_answers(server: &TestServer, token: &str, metric: &str) -> Vec<Vec<Value>> {
    let mut answers = Vec::new();
    for aggregation in ["avg", "sum", "min", "max", "count", "rate"] {
        for (start, step) in [(T0, 60), (T0 + 7, 45), (T0, 5), (T0 - 3, 600)] {
            let query = json!({
                "metric": metric, "start": start, "end": T0 + 3_600, "step": step, "aggregation": aggregation
            });
            answers.push(range_query(server, token, query).await);
        }
    }
    answers
}

async fn every_query_answers_the_same_after_compaction(db: TestDb) {
    let l = loaded(&db, START_MS).await;
    let (_, token) = user(&l.server, "ana", Role::Viewer).await;
    let before = corpus_answers(&l.server, &l.viewer).await;
    let seed_before = seed_answers(&l.server, &token, "http_requests_total").await;
    let head = count_rows(&db, "metric_samples").await;
    assert!(head > 1_000, "the dataset is in the head: {head}");

    let done = compact(&l.server, now_us()).await;
    assert_eq!(done.samples, head as u64, "{done:?}");
    assert_eq!(count_rows(&db, "metric_samples").await, 0);
    let chunks = count_rows(&db, "metric_chunks").await;
    assert_eq!(done.chunks, chunks as u64);
    assert!(chunks > 0);
    let after = corpus_answers(&l.server, &l.viewer).await;
    assert_eq!(before.len(), after.len());
    for (i, (b, a)) in before.iter().zip(&after).enumerate() {
        assert_eq!(b, a, "answer {i} changed with compaction");
    }
    assert_eq!(seed_before, seed_answers(&l.server, &token, "http_requests_total").await);
    // Nothing left to move: a second run writes nothing.
    assert_eq!(compact(&l.server, now_us()).await.samples, 0);
    let exposition = l.server.get("/metrics").await.text().await.unwrap();
    assert!(exposition.contains(&format!("killkrill_compaction_samples_total {head}")), "{exposition}");
    assert!(exposition.contains(&format!("killkrill_compaction_chunks_written_total {chunks}")), "{exposition}");
    l.server.stop().await.unwrap();
}

async fn special_values_late_samples_and_overwrites_survive_compaction(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let (_, token) = user(&server, "mia", Role::Maintainer).await;
    let source = new_source(&server, &token, "node").await;
    let (_, key) = server.create_ingest_key(&token, &source).await;
    let ms = |s: i64| (T0 + s) * 1000;
    let specials = [
        1.5,
        f64::from_bits(STALE_NAN),
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        0.0,
        -2.5e-300,
        f64::MAX,
        f64::from_bits(0xfff8_0000_dead_beef),
    ];
    // -0.0 through the JSON API: remote_write cannot carry it (protobuf leaves out a
    // double equal to 0, as -0.0 is).
    let signed: Vec<Value> = [-0.0, 0.0, -0.0]
        .iter()
        .enumerate()
        .map(|(i, v)| sample("signed", "gauge", json!({}), *v, json!(T0 + i as i64)))
        .collect();
    ingest_metrics(&server, &token, &source, json!(signed)).await;
    let signed_bits =
        vec![(T0_US, (-0.0f64).to_bits()), (T0_US + 1_000_000, 0), (T0_US + 2_000_000, (-0.0f64).to_bits())];
    assert_eq!(stored(&db, "signed").await, signed_bits);
    // Three windows' worth every 15 s, a value of each kind in turn; sent newest first,
    // with a first value at each of the first ten times sent again (the second wins).
    let value = |i: i64| match specials[i as usize % specials.len()] {
        v if v.is_finite() => v * (1 + i % 3) as f64,
        v => v,
    };
    let mut samples: Vec<(f64, i64)> = (0..360).map(|i| (value(i), ms(i * 15))).collect();
    samples.reverse();
    let first = series("odd", &(0..10).map(|i| (-7.0, ms(i * 15))).collect::<Vec<_>>());
    let gauge = series("gauge", &(0..240).map(|i| ((i % 13) as f64 * 0.25, ms(i * 15))).collect::<Vec<_>>());
    write_all(&server, &key, &[WriteRequest { timeseries: vec![first, gauge], metadata: vec![] }]).await;
    write_all(&server, &key, &[WriteRequest { timeseries: vec![series("odd", &samples)], metadata: vec![] }]).await;
    let expected: BTreeMap<i64, u64> = samples.iter().map(|(v, t)| (t * 1000, v.to_bits())).collect();
    let before = stored(&db, "odd").await;
    assert_eq!(before, expected.clone().into_iter().collect::<Vec<_>>(), "the head, last write won");
    let viewer = Cred::Bearer(token.clone());
    let range = |name: &str| {
        vec![("query".to_owned(), format!("{name}[2h]")), ("time".to_owned(), (T0 + 2 * 3600).to_string())]
    };
    let read = |name: &'static str| {
        let (server, viewer, params) = (&server, &viewer, range(name));
        async move {
            let params: Vec<(&str, &str)> = params.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            prom(server, Method::GET, "/prometheus/api/v1/query", &params, viewer).await
        }
    };
    let promql_before = (read("odd").await, read("gauge").await);
    let seed_before = seed_answers(&server, &token, "gauge").await;

    let done = compact(&server, now_us()).await;
    assert_eq!(done.samples, 603, "{done:?}");
    assert_eq!((count_rows(&db, "metric_samples").await, count_rows(&db, "metric_chunks").await), (0, 6));
    assert_eq!(stored(&db, "signed").await, signed_bits);
    assert_eq!(stored(&db, "odd").await, before, "bit for bit after compaction");
    assert_eq!((read("odd").await, read("gauge").await), promql_before);
    assert_eq!(seed_answers(&server, &token, "gauge").await, seed_before);

    // Late: a new time in a compacted window, and compacted times written again (a gauge
    // value, and a NaN over a number): the last write wins, before and after compacting.
    let late = [(42.0, ms(7)), (f64::NAN, ms(15)), (-1.0, ms(1785))];
    let gauge_late = [(100.0, ms(0)), (3.0, ms(2))];
    write_all(
        &server,
        &key,
        &[WriteRequest { timeseries: vec![series("odd", &late), series("gauge", &gauge_late)], metadata: vec![] }],
    )
    .await;
    let mut expected = expected;
    expected.extend(late.iter().map(|(v, t)| (t * 1000, v.to_bits())));
    let expected: Vec<(i64, u64)> = expected.into_iter().collect();
    assert_eq!(stored(&db, "odd").await, expected, "chunks and head merged, the head winning");
    // The seed query's sums count the overwritten gauge value once, the new one.
    let sums = |answer: &Vec<Value>| points(&answer[0]);
    let query = json!({ "metric": "gauge", "start": T0, "end": T0 + 59, "step": 60, "aggregation": "sum" });
    // 0.25, 0.5 and 0.75 at 15, 30 and 45 s, 100 over the 0 at 0 s, 3 at 2 s.
    let want = 0.25 + 0.5 + 0.75 + 100.0 + 3.0;
    assert_points(&sums(&range_query(&server, &token, query.clone()).await), &[(T0 as f64, want)], "late sum");
    let query5 = json!({ "metric": "gauge", "start": T0, "end": T0 + 3599, "step": 3600, "aggregation": "count" });
    let count_late = sums(&range_query(&server, &token, query5.clone()).await);
    assert_points(&count_late, &[(T0 as f64, 241.0)], "late count");

    let again = compact(&server, now_us()).await;
    assert_eq!((again.samples, again.chunks), (5, 2), "{again:?}");
    assert_eq!(count_rows(&db, "metric_chunks").await, 6, "merged into the windows' chunks");
    assert_eq!(stored(&db, "odd").await, expected, "after the second compaction");
    assert_points(&sums(&range_query(&server, &token, query).await), &[(T0 as f64, want)], "late sum, compacted");
    assert_points(&sums(&range_query(&server, &token, query5).await), &[(T0 as f64, 241.0)], "count, compacted");
    server.stop().await.unwrap();
}

async fn chunks_expire_with_their_whole_window(db: TestDb) {
    // Stored while kept forever; then swept under 2 days (ingest would drop what is
    // already expired).
    let server = TestServer::start(db.config()).await;
    let (_, token) = user(&server, "mia", Role::Maintainer).await;
    let source = new_source(&server, &token, "node").await;
    let (_, key) = server.create_ingest_key(&token, &source).await;
    let (day_ms, window_ms) = (86_400_000, WINDOW / 1000);
    // The cut-off 2 days back, at least 10 s inside its window.
    let mut cut = now_us() / 1000 - 2 * day_ms;
    while !(10_000..window_ms - 10_000).contains(&cut.rem_euclid(window_ms)) {
        tokio::time::sleep(Duration::from_secs(5)).await;
        cut = now_us() / 1000 - 2 * day_ms;
    }
    // A window wholly 3 days old, one a day old, and one straddling the cut-off: its
    // samples older than 2 days stay until the whole window has expired.
    let straddling = cut - cut.rem_euclid(window_ms) + 1_000;
    let (old, newer, recent) = (straddling - day_ms, cut + 5_000, straddling + day_ms);
    let samples: Vec<(f64, i64)> = [old, straddling, newer, recent].iter().map(|t| (*t as f64, *t)).collect();
    write_all(&server, &key, &[WriteRequest { timeseries: vec![series("kept", &samples)], metadata: vec![] }]).await;
    assert_eq!(compact(&server, now_us()).await.chunks, 3);
    let two_days = Retention { log_days: 0, metric_days: 2 };
    let swept = loop {
        match retention::sweep(&server.state.db, &server.state.metrics, two_days).await.unwrap() {
            Sweep::Done(swept) => break swept,
            Sweep::Busy => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    assert_eq!((swept.samples, swept.chunks), (0, 1), "{swept:?}");
    let text = server.get("/metrics").await.text().await.unwrap();
    let removed = "killkrill_retention_removed_rows_total{kind=\"metric_chunks\"} 1";
    assert!(text.lines().any(|line| line == removed), "{text}");
    let times: Vec<i64> = stored(&db, "kept").await.into_iter().map(|(ts, _)| ts / 1000).collect();
    assert_eq!(times, vec![straddling, newer, recent]);
    server.stop().await.unwrap();
}

async fn compaction_beside_ingest_loses_nothing(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let (_, token) = user(&server, "mia", Role::Maintainer).await;
    let source = new_source(&server, &token, "node").await;
    let (_, key) = server.create_ingest_key(&token, &source).await;
    // Twenty series, each written by forty batches of 30 samples, interleaved in time,
    // so each batch lands in windows a compaction may be moving.
    const BATCHES: i64 = 40;
    let batch = |n: i64| {
        let timeseries = (0..20)
            .map(|s| {
                let samples: Vec<(f64, i64)> = (0..30)
                    .map(|i| ((s * 1_000_000 + n * 100 + i) as f64, (T0 + (i * BATCHES + n) * 5) * 1000))
                    .collect();
                series(&format!("busy_{s}"), &samples)
            })
            .collect();
        WriteRequest { timeseries, metadata: vec![] }
    };
    let writer = async {
        for n in 0..BATCHES {
            write_all(&server, &key, &[batch(n)]).await;
        }
    };
    let compactor = async {
        let mut moved = 0;
        for _ in 0..30 {
            moved += compact(&server, now_us()).await.samples;
        }
        moved
    };
    let ((), _) = tokio::join!(writer, compactor);
    compact(&server, now_us()).await;
    assert_eq!(count_rows(&db, "metric_samples").await, 0);
    for s in 0..20 {
        let stored = stored(&db, &format!("busy_{s}")).await;
        let want: Vec<(i64, u64)> = (0..BATCHES * 30)
            .map(|k| {
                let (i, n) = (k / BATCHES, k % BATCHES);
                ((T0 + k * 5) * 1_000_000, ((s * 1_000_000 + n * 100 + i) as f64).to_bits())
            })
            .collect();
        assert_eq!(stored.len(), want.len(), "busy_{s}");
        assert_eq!(stored, want, "busy_{s}");
    }
    server.stop().await.unwrap();
}
