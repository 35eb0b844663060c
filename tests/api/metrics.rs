//! `/api/v1/metrics` (ingest and the series list) and `/api/v1/metrics/query` (range
//! queries and their step buckets).
//! Each case runs on SQLite, PostgreSQL and MariaDB, through the real server on a real socket.

use std::collections::{BTreeMap, BTreeSet};

use killkrill::auth::Role;
use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{TestDb, TestServer, TestUser, rest::*};

cases! {
    on_all_databases:
        the_series_list_shows_each_series_latest_value,
        range_queries_reduce_each_step_bucket,
        range_queries_accept_rfc3339_unix_seconds_and_durations,
        range_queries_answer_as_the_samples_say,
        a_metrics_batch_with_one_bad_sample_stores_nothing,
        concurrent_batches_into_the_same_series_all_succeed,
        concurrent_batches_creating_series_all_succeed,
        labels_at_their_limits_are_stored_whole,
        metric_names_are_case_sensitive,
        invalid_range_queries_are_refused,
        a_later_sample_at_the_same_time_replaces_the_earlier;
}

/// What a range query must answer for one series' samples `(unix seconds, value)`:
/// step-wide buckets from `start`, samples in `[start, end]`, empty buckets omitted.
fn expected_points(samples: &[(f64, f64)], start: i64, end: i64, step: i64, aggregation: &str) -> Vec<(f64, f64)> {
    let micros = |s: f64| (s * 1e6).round() as i64;
    let (start_us, end_us, step_us) = (start * 1_000_000, end * 1_000_000, step * 1_000_000);
    let mut buckets: BTreeMap<i64, Vec<f64>> = BTreeMap::new();
    for &(ts, value) in samples {
        let ts = micros(ts);
        if (start_us..=end_us).contains(&ts) {
            buckets.entry((ts - start_us) / step_us).or_default().push(value);
        }
    }
    buckets
        .into_iter()
        .map(|(k, values)| {
            let sum: f64 = values.iter().sum();
            let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let min = values.iter().copied().fold(f64::INFINITY, f64::min);
            let value = match aggregation {
                "avg" => sum / values.len() as f64,
                "sum" => sum,
                "min" => min,
                "max" => max,
                "count" => values.len() as f64,
                "rate" => (max - min) / step as f64,
                other => panic!("no such aggregation {other}"),
            };
            ((start + k * step) as f64, value)
        })
        .collect()
}

async fn the_series_list_shows_each_series_latest_value(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let (_, mia) = user(&server, "mia", Role::Maintainer).await;
    let node = new_source(&server, &mia, "node").await;
    let other = new_source(&server, &mia, "other").await;
    let get = json!({ "method": "GET", "code": "200" });
    let post = json!({ "method": "POST", "code": "200" });
    let lab = json!({ "room": "lab" });
    let requests = "http_requests_total";
    let temperature = "room_temperature_celsius";
    ingest_metrics(
        &server,
        &mia,
        &node,
        json!([
            sample(requests, "counter", get.clone(), 5.0, json!(T0 + 10)),
            sample(requests, "counter", get.clone(), 12.0, json!(T0 + 70)),
            sample(requests, "counter", post.clone(), 1.0, json!(T0 + 10)),
            sample(temperature, "gauge", lab.clone(), 21.5, json!(rfc3339(T0 + 100))),
        ]),
    )
    .await;
    // Out of order: within a batch, and older than what is already stored. Label order
    // does not make another series.
    ingest_metrics(
        &server,
        &mia,
        &node,
        json!([
            sample(temperature, "gauge", lab.clone(), 22.25, json!(T0 + 200)),
            sample(temperature, "gauge", lab.clone(), 30.0, json!(T0 + 150)),
            sample(requests, "counter", json!({ "code": "200", "method": "GET" }), 9.0, json!(T0 + 40)),
        ]),
    )
    .await;
    ingest_metrics(&server, &mia, &other, json!([{ "name": "up", "value": 1, "timestamp": T0 }])).await;

    let listing = list_series(&server, &mia, &format!("?source_id={node}")).await;
    assert_eq!(listing["total"], 3, "{listing}");
    let series = listing["metrics"].as_array().unwrap();
    let find = |name: &str, labels: &Value| {
        series
            .iter()
            .find(|s| s["name"] == name && &s["labels"] == labels)
            .unwrap_or_else(|| panic!("no series {name} {labels} in {listing}"))
    };
    for (name, labels, kind, value, ts) in [
        (requests, &get, "counter", 12.0, T0 + 70),
        (requests, &post, "counter", 1.0, T0 + 10),
        (temperature, &lab, "gauge", 22.25, T0 + 200),
    ] {
        let s = find(name, labels);
        assert_eq!(s["type"], kind, "{s}");
        assert_eq!(s["last_value"].as_f64(), Some(value), "{s}");
        assert_eq!(instant(&s["last_timestamp"]), at(ts), "{s}");
        assert_eq!(s["source_id"], node.as_str());
        assert!(uuid::Uuid::parse_str(s["id"].as_str().expect("a string id")).is_ok(), "{s}");
    }
    assert_eq!(list_series(&server, &mia, &format!("?name={requests}")).await["total"], 2);
    assert_eq!(list_series(&server, &mia, "").await["total"], 4);
    let theirs = list_series(&server, &mia, &format!("?source_id={other}")).await;
    assert_eq!(theirs["total"], 1);
    assert_eq!(theirs["metrics"][0]["name"], "up");
    assert_eq!(theirs["metrics"][0]["type"], "gauge");
    assert_eq!(theirs["metrics"][0]["labels"], json!({}));
    let paged = list_series(&server, &mia, "?limit=3&offset=3").await;
    assert_eq!((paged["total"].as_u64(), paged["metrics"].as_array().unwrap().len()), (Some(4), 1));
    refused(call(&server, Method::GET, "/api/v1/metrics?limit=0", &mia), 400).await;
    server.stop().await.unwrap();
}

async fn concurrent_batches_into_the_same_series_all_succeed(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let (_, mia) = user(&server, "mia", Role::Maintainer).await;
    let id = new_source(&server, &mia, "fleet").await;
    // Two collectors report the same 30 series at once, round after round (the first
    // round creates the series, the later ones only update them).
    let batch = |round: i64, collector: i64| {
        let samples: Vec<Value> = (0..30)
            .map(|n| {
                let labels = json!({ "instance": format!("node-{n:02}") });
                sample(
                    "node_load1",
                    "gauge",
                    labels,
                    (round * 10 + collector) as f64,
                    json!(T0 + round * 60 + collector),
                )
            })
            .collect();
        Value::Array(samples)
    };
    for round in 0..4 {
        let first = send(metrics_request(&server, &mia, &id, batch(round, 0)));
        let second = send(metrics_request(&server, &mia, &id, batch(round, 1)));
        let (first, second) = tokio::join!(first, second);
        assert_eq!(first, (202, json!({ "accepted": 30, "dropped": 0 })), "round {round}, first collector");
        assert_eq!(second, (202, json!({ "accepted": 30, "dropped": 0 })), "round {round}, second collector");
    }
    let listing = list_series(&server, &mia, "?limit=1000").await;
    assert_eq!(listing["total"], 30);
    for series in listing["metrics"].as_array().unwrap() {
        assert_eq!(series["last_value"].as_f64(), Some(31.0), "{series}");
        assert_eq!(instant(&series["last_timestamp"]), at(T0 + 3 * 60 + 1), "{series}");
    }
    let query = json!({ "metric": "node_load1", "start": T0, "end": T0 + 239, "step": 60, "aggregation": "count" });
    let result = range_query(&server, &mia, query).await;
    assert_eq!(result.len(), 30);
    for series in &result {
        let t = T0 as f64;
        assert_points(&points(series), &[(t, 2.0), (t + 60.0, 2.0), (t + 120.0, 2.0), (t + 180.0, 2.0)], "count");
    }
    server.stop().await.unwrap();
}

/// Batches that each create a series, all at once, 16 at a time: concurrent series
/// creation must neither deadlock past the retries nor answer 500 (MariaDB's gap locks
/// once did).
async fn concurrent_batches_creating_series_all_succeed(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let (_, mia) = user(&server, "mia", Role::Maintainer).await;
    let a = new_source(&server, &mia, "collector-a").await;
    let b = new_source(&server, &mia, "collector-b").await;
    for round in 0..10 {
        let requests = (0..16).map(|n| {
            let source = if n % 2 == 0 { &a } else { &b };
            let labels = json!({ "trial": format!("{round}-{n}") });
            send(metrics_request(&server, &mia, source, json!([sample("pair_new", "gauge", labels, 1.0, json!(T0))])))
        });
        for (n, answer) in futures_util::future::join_all(requests).await.into_iter().enumerate() {
            assert_eq!(answer, (202, json!({ "accepted": 1, "dropped": 0 })), "round {round}, request {n}");
        }
    }
    assert_eq!(list_series(&server, &mia, "?name=pair_new").await["total"], 160);
    server.stop().await.unwrap();
}

/// Label sets at the documented limits (32 labels, 128-character names, 1,024-character
/// values) read back unchanged: on MariaDB they overflowed a `TEXT` column (500).
async fn labels_at_their_limits_are_stored_whole(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let (_, mia) = user(&server, "mia", Role::Maintainer).await;
    let id = new_source(&server, &mia, "wide").await;
    // JSON escapes each '"' and '\u{1}' into 2 and 6 bytes; emoji are 4 bytes each.
    let values = ["\"".repeat(1024), "\u{1}".repeat(1024), "😀".repeat(1024)];
    let labels: serde_json::Map<String, Value> =
        (0..32).map(|n| (format!("l{n:02}_{}", "x".repeat(124)), json!(values[n % 3]))).collect();
    let labels = Value::Object(labels);
    ingest_metrics(&server, &mia, &id, json!([sample("wide_labels", "gauge", labels.clone(), 1.0, json!(T0))])).await;
    let listing = list_series(&server, &mia, "?name=wide_labels").await;
    assert_eq!(listing["metrics"][0]["labels"], labels);
    let name = "n".repeat(129);
    let too_long = json!([sample("wide_labels", "gauge", json!({ name: "v" }), 1.0, json!(T0))]);
    assert_eq!(refused(metrics_request(&server, &mia, &id, too_long), 400).await, fields(&["metrics[0].labels"]));
    server.stop().await.unwrap();
}

async fn metric_names_are_case_sensitive(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let (_, mia) = user(&server, "mia", Role::Maintainer).await;
    let id = new_source(&server, &mia, "node").await;
    let batch = json!([
        { "name": "up", "value": 1, "timestamp": T0 },
        { "name": "UP", "value": 0, "timestamp": T0 },
    ]);
    ingest_metrics(&server, &mia, &id, batch).await;
    assert_eq!(list_series(&server, &mia, "").await["total"], 2);
    let listing = list_series(&server, &mia, "?name=up").await;
    assert_eq!(listing["total"], 1, "{listing}");
    let query = json!({ "metric": "up", "start": T0, "end": T0, "step": 60, "aggregation": "max" });
    let result = range_query(&server, &mia, query).await;
    assert_eq!(result.len(), 1, "{result:?}");
    assert_eq!(result[0]["metric"]["__name__"], "up");
    assert_points(&points(&result[0]), &[(T0 as f64, 1.0)], "up");
    server.stop().await.unwrap();
}

/// The counter samples of the range-query tests: (host, Unix seconds, value). Two lie
/// outside `[T0, T0 + 179]`.
fn cpu_samples() -> Vec<(&'static str, f64, f64)> {
    let t = T0 as f64;
    vec![
        ("a", t - 1.0, 999.0),
        ("a", t, 10.0),
        ("a", t + 15.0, 14.0),
        ("a", t + 45.0, 22.0),
        ("a", t + 120.0, 30.0),
        ("a", t + 150.0, 45.5),
        ("a", t + 179.0, 48.0),
        ("a", t + 180.0, 999.0),
        ("b", t + 60.0, 3.0),
        ("b", t + 61.0, 5.0),
        ("b", t + 119.5, 6.5),
        ("b", t + 170.0, 7.0),
    ]
}

/// Ingests `cpu_samples` as `cpu_seconds_total{host, env="prod"}`, plus distractors:
/// another host in another env, and another metric name.
async fn ingest_cpu_samples(server: &TestServer, token: &str, source_id: &str) {
    let mut batch: Vec<Value> = cpu_samples()
        .into_iter()
        .map(|(host, ts, value)| {
            sample("cpu_seconds_total", "counter", json!({ "host": host, "env": "prod" }), value, json!(ts))
        })
        .collect();
    batch.push(sample("cpu_seconds_total", "counter", json!({ "host": "c", "env": "dev" }), 77.0, json!(T0 + 10)));
    batch.push(sample("cpu_seconds", "gauge", json!({ "host": "a", "env": "prod" }), 1000.0, json!(T0 + 10)));
    ingest_metrics(server, token, source_id, Value::Array(batch)).await;
}

fn samples_of(host: &str) -> Vec<(f64, f64)> {
    cpu_samples().into_iter().filter(|(h, _, _)| *h == host).map(|(_, ts, v)| (ts, v)).collect()
}

async fn range_queries_reduce_each_step_bucket(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let (_, mia) = user(&server, "mia", Role::Maintainer).await;
    let id = new_source(&server, &mia, "hosts").await;
    ingest_cpu_samples(&server, &mia, &id).await;
    let (start, end) = (T0, T0 + 179);

    for step in [60, 45, 180] {
        for aggregation in ["avg", "sum", "min", "max", "count", "rate"] {
            let query = json!({
                "metric": "cpu_seconds_total",
                "labels": { "env": "prod" },
                "start": start,
                "end": end,
                "step": step,
                "aggregation": aggregation,
            });
            let result = range_query(&server, &mia, query).await;
            assert_eq!(result.len(), 2, "step {step} {aggregation}: {result:?}");
            for host in ["a", "b"] {
                let series = result
                    .iter()
                    .find(|s| s["metric"]["host"] == host)
                    .unwrap_or_else(|| panic!("no host {host} in {result:?}"));
                assert_eq!(series["metric"], json!({ "__name__": "cpu_seconds_total", "env": "prod", "host": host }));
                let expected = expected_points(&samples_of(host), start, end, step, aggregation);
                assert_points(&points(series), &expected, &format!("host {host}, step {step}, {aggregation}"));
            }
        }
    }
    // Spot-check the arithmetic the expectations rest on: host a, 60 s buckets.
    let t = T0 as f64;
    let rate = expected_points(&samples_of("a"), start, end, 60, "rate");
    assert_eq!(rate, [(t, (22.0 - 10.0) / 60.0), (t + 120.0, (48.0 - 30.0) / 60.0)]);

    // Label matchers select series; the metric name is matched too.
    let query = |labels: Value, metric: &str| json!({ "metric": metric, "labels": labels, "start": start, "end": end, "step": 60, "aggregation": "count" });
    fn hosts(result: &[Value]) -> BTreeSet<String> {
        result.iter().map(|s| s["metric"]["host"].as_str().unwrap().to_owned()).collect()
    }
    assert_eq!(
        hosts(&range_query(&server, &mia, query(json!({}), "cpu_seconds_total")).await),
        fields(&["a", "b", "c"])
    );
    assert_eq!(
        hosts(&range_query(&server, &mia, query(json!({ "host": "a" }), "cpu_seconds_total")).await),
        fields(&["a"])
    );
    assert_eq!(
        hosts(&range_query(&server, &mia, query(json!({ "env": "dev" }), "cpu_seconds_total")).await),
        fields(&["c"])
    );
    let none = range_query(&server, &mia, query(json!({ "host": "a", "env": "dev" }), "cpu_seconds_total")).await;
    assert_eq!(none, Vec::<Value>::new());
    let gauge = range_query(&server, &mia, query(json!({}), "cpu_seconds")).await;
    assert_eq!(gauge.len(), 1);
    assert_eq!(gauge[0]["metric"]["__name__"], "cpu_seconds");
    assert_points(&points(&gauge[0]), &[(t, 1.0)], "cpu_seconds count");
    assert_eq!(range_query(&server, &mia, query(json!({}), "no_such_metric")).await, Vec::<Value>::new());
    server.stop().await.unwrap();
}

/// `(Unix seconds, value)` of one gauge, sent in the batches below: minutes filled over
/// several batches, late samples for minutes already stored, negative values, a fraction
/// of a second, and a last minute that a query ending at `T0 + 150` cuts in two.
fn range_batches() -> Vec<Vec<(f64, f64)>> {
    let t = T0 as f64;
    vec![
        vec![(t, 4.0), (t + 30.0, -2.5), (t + 59.999, 8.0), (t + 61.0, 1.0), (t + 150.5, 3.0)],
        vec![(t + 20.0, 16.0), (t + 90.0, -7.0), (t + 125.0, 2.0), (t + 179.0, 5.0), (t + 240.0, 0.5)],
        vec![(t + 10.0, -1.0), (t + 30.0, 0.25), (t + 130.0, 11.0), (t + 185.0, 6.0), (t + 3605.0, 9.0)],
    ]
}

/// Samples `(time, value)` as a series holds them once sent in this order: a later
/// sample at the time of an earlier one replaces it.
fn last_written(samples: Vec<(f64, f64)>) -> Vec<(f64, f64)> {
    let by_time: BTreeMap<u64, (f64, f64)> = samples.into_iter().map(|(ts, v)| (ts.to_bits(), (ts, v))).collect();
    by_time.into_values().collect()
}

/// A server where mia, a maintainer, has sent the range batches to a new source.
async fn server_with_range_batches(db: &TestDb) -> (TestServer, TestUser, String) {
    let server = TestServer::start(db.config()).await;
    let (user_mia, mia) = user(&server, "mia", Role::Maintainer).await;
    let id = new_source(&server, &mia, "queues").await;
    ingest_range_batches(&server, &mia, &id).await;
    (server, user_mia, mia)
}

async fn ingest_range_batches(server: &TestServer, token: &str, source_id: &str) {
    for batch in range_batches() {
        let batch = batch.into_iter().map(|(ts, v)| sample("queue_depth", "gauge", json!({ "q": "a" }), v, json!(ts)));
        ingest_metrics(server, token, source_id, Value::Array(batch.collect())).await;
    }
}

/// `(start, end, step)` in Unix seconds of queries on multiples of 5 s (not both of a
/// minute), whose last bucket `end` cuts short.
const SLOT_QUERIES: [(i64, i64, i64); 5] = [
    (T0, T0 + 299, 45),
    (T0 + 30, T0 + 299, 60),
    (T0 + 5, T0 + 3899, 15),
    (T0 - 20, T0 + 3700, 100),
    (T0, T0 + 184, 10),
];

/// Queries the range batches with every aggregation over ranges and steps of whole
/// minutes, of multiples of five seconds, with or without a partial last bucket, and of
/// neither; each answer is checked against the samples.
async fn assert_bucket_queries(server: &TestServer, token: &str) {
    let all = last_written(range_batches().concat());
    let queries = [
        (T0, T0 + 299, 60),
        (T0, T0 + 150, 60),
        (T0, T0 + 299, 120),
        (T0, T0 + 185, 180),
        (T0, T0 + 59, 60),
        (T0 - 600, T0 + 600, 3600),
        (T0, T0 + 3899, 300),
        (T0 - 3600, T0 + 7199, 3600),
        (T0 + 20, T0 + 150, 100),
        (T0 + 3, T0 + 299, 45),
        (T0, T0 + 299, 7),
    ];
    for (start, end, step) in queries.into_iter().chain(SLOT_QUERIES) {
        assert_range_queries(server, token, &all, start, end, step).await;
    }
}

/// The query of `[start, end]` by `step` with every aggregation, checked against `samples`.
async fn assert_range_queries(
    server: &TestServer,
    token: &str,
    samples: &[(f64, f64)],
    start: i64,
    end: i64,
    step: i64,
) {
    for aggregation in ["avg", "sum", "min", "max", "count", "rate"] {
        let query =
            json!({ "metric": "queue_depth", "start": start, "end": end, "step": step, "aggregation": aggregation });
        let result = range_query(server, token, query).await;
        assert_eq!(result.len(), 1, "{start}..{end} step {step} {aggregation}: {result:?}");
        let expected = expected_points(samples, start, end, step, aggregation);
        let what = format!("T0{:+}..T0{:+} step {step} {aggregation}", start - T0, end - T0);
        assert_points(&points(&result[0]), &expected, &what);
    }
}

async fn range_queries_answer_as_the_samples_say(db: TestDb) {
    let (server, _, mia) = server_with_range_batches(&db).await;
    assert_bucket_queries(&server, &mia).await;
    server.stop().await.unwrap();
}

async fn range_queries_accept_rfc3339_unix_seconds_and_durations(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let (_, mia) = user(&server, "mia", Role::Maintainer).await;
    let id = new_source(&server, &mia, "hosts").await;
    ingest_cpu_samples(&server, &mia, &id).await;
    let query = |start: Value, end: Value, step: Value| {
        json!({
            "metric": "cpu_seconds_total",
            "labels": { "host": "a" },
            "start": start,
            "end": end,
            "step": step,
            "aggregation": "sum",
        })
    };
    let baseline = range_query(&server, &mia, query(json!(T0), json!(T0 + 179), json!(60))).await;
    assert_eq!(baseline.len(), 1);
    assert_points(&points(&baseline[0]), &expected_points(&samples_of("a"), T0, T0 + 179, 60, "sum"), "baseline");

    let variants = [
        (json!(rfc3339(T0)), json!(rfc3339(T0 + 179)), json!("60s")),
        (json!("2026-01-01T01:00:00+01:00"), json!(T0 + 179), json!("1m")),
        (json!(T0), json!(rfc3339(T0 + 179)), json!("60")),
        (json!(T0 as f64), json!((T0 + 179) as f64), json!(60.0)),
    ];
    for (start, end, step) in variants {
        let result = range_query(&server, &mia, query(start.clone(), end.clone(), step.clone())).await;
        assert_eq!(result, baseline, "start {start}, end {end}, step {step}");
    }
    // One bucket an hour wide holds every sample in range.
    let hourly = range_query(&server, &mia, query(json!(T0), json!(T0 + 179), json!("1h"))).await;
    let in_range: f64 =
        samples_of("a").iter().filter(|(ts, _)| (T0 as f64..=(T0 + 179) as f64).contains(ts)).map(|s| s.1).sum();
    assert_points(&points(&hourly[0]), &[(T0 as f64, in_range)], "1h");
    server.stop().await.unwrap();
}

async fn invalid_range_queries_are_refused(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let (_, mia) = user(&server, "mia", Role::Maintainer).await;
    let base = json!({ "metric": "cpu_seconds_total", "start": T0, "end": T0 + 600, "step": 60, "aggregation": "avg" });
    let with = |changes: Value| {
        let mut query = base.clone();
        for (k, v) in changes.as_object().unwrap() {
            query[k] = v.clone();
        }
        query
    };
    let post = |query: &Value| call(&server, Method::POST, "/api/v1/metrics/query", &mia).json(query);
    assert_eq!(range_query(&server, &mia, base.clone()).await, Vec::<Value>::new());

    let cases = [
        (json!({ "end": T0 - 1 }), "end"),
        (json!({ "step": 0 }), "step"),
        (json!({ "step": "0s" }), "step"),
        (json!({ "step": -60 }), "step"),
        (json!({ "step": "soon" }), "step"),
        (json!({ "start": "yesterday" }), "start"),
        (json!({ "end": "later" }), "end"),
        (json!({ "aggregation": "median" }), "aggregation"),
        (json!({ "metric": "cpu seconds" }), "metric"),
        (json!({ "metric": "" }), "metric"),
        (json!({ "start": T0, "end": T0 + 11_000, "step": 1 }), "step"),
        (json!({ "start": T0, "end": T0 + 110_000, "step": "10s" }), "step"),
    ];
    for (change, field) in cases {
        let query = with(change);
        assert_eq!(refused(post(&query), 400).await, fields(&[field]), "{query}");
    }
    // 11,000 points is the most a query may ask for.
    let widest = with(json!({ "start": T0, "end": T0 + 10_999, "step": 1, "aggregation": "count" }));
    assert_eq!(range_query(&server, &mia, widest).await, Vec::<Value>::new());

    let mut without_metric = base.clone();
    without_metric.as_object_mut().unwrap().remove("metric");
    refused(post(&without_metric), 400).await;
    refused(post(&with(json!({ "query": "up" }))), 400).await;
    server.stop().await.unwrap();
}

async fn a_metrics_batch_with_one_bad_sample_stores_nothing(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let (_, mia) = user(&server, "mia", Role::Maintainer).await;
    let id = new_source(&server, &mia, "strict").await;
    let good = json!({ "name": "good_metric", "value": 1.5, "timestamp": T0 });

    let cases: Vec<(Value, &[&str])> = vec![
        (json!([good, { "name": "good_metric", "timestamp": T0 }]), &["metrics[1].value"]),
        (json!([good, { "name": "good_metric", "value": null }]), &["metrics[1].value"]),
        (json!([good, { "name": "9lives", "value": 1 }]), &["metrics[1].name"]),
        (json!([good, { "name": "has-dash", "value": 1 }]), &["metrics[1].name"]),
        (json!([{ "value": 1 }, good]), &["metrics[0].name"]),
        (json!([good, { "name": "ok", "value": 1, "type": "rate" }]), &["metrics[1].type"]),
        (json!([good, { "name": "ok", "value": 1, "labels": { "__name__": "x" } }]), &["metrics[1].labels"]),
        (json!([good, { "name": "ok", "value": 1, "labels": { "bad-label": "x" } }]), &["metrics[1].labels"]),
        (json!([good, { "name": "ok", "value": 1, "timestamp": "yesterday" }]), &["metrics[1].timestamp"]),
        // The same series as the sample before it: its value and time are checked alone.
        (json!([good, { "name": "good_metric", "value": 2, "timestamp": "yesterday" }]), &["metrics[1].timestamp"]),
        (json!([good, { "name": "good_metric", "timestamp": "x" }]), &["metrics[1].value", "metrics[1].timestamp"]),
        (
            json!([good, { "name": "9", "type": "rate" }, good]),
            &["metrics[1].name", "metrics[1].type", "metrics[1].value"],
        ),
        (json!([]), &["metrics"]),
    ];
    for (metrics, bad) in cases {
        let named = refused(metrics_request(&server, &mia, &id, metrics.clone()), 400).await;
        assert_eq!(named, fields(bad), "{metrics}");
    }
    // A non-finite value cannot even be written in JSON: the whole body is refused.
    for value in ["1e999", "-1e999", "\"NaN\"", "\"Infinity\""] {
        let body = format!(
            r#"{{"source_id": "{id}", "metrics": [{{"name": "good_metric", "value": 1}}, {{"name": "good_metric", "value": {value}}}]}}"#
        );
        let request =
            call(&server, Method::POST, "/api/v1/metrics", &mia).header("Content-Type", "application/json").body(body);
        refused(request, 400).await;
    }
    assert_eq!(list_series(&server, &mia, "").await["total"], 0, "a refused batch created a series");
    let query =
        json!({ "metric": "good_metric", "start": T0 - 60, "end": T0 + 60, "step": 60, "aggregation": "count" });
    assert_eq!(range_query(&server, &mia, query.clone()).await, Vec::<Value>::new());

    // The good sample alone is accepted.
    ingest_metrics(&server, &mia, &id, json!([good])).await;
    let result = range_query(&server, &mia, query).await;
    assert_eq!(result.len(), 1);
    assert_points(&points(&result[0]), &[(T0 as f64, 1.0)], "good_metric count");
    server.stop().await.unwrap();
}

/// The stored samples of the one series named `name`, oldest first.
async fn stored_points(db: &TestDb, name: &str) -> Vec<(i64, f64)> {
    let conn = db.connect().await;
    let series = killkrill::storage::samples::series_named(&conn, name).await.unwrap();
    assert_eq!(series.len(), 1, "one series {name}");
    killkrill::storage::samples::points(&conn, series[0].id, i64::MIN..=i64::MAX).await.unwrap()
}

async fn a_later_sample_at_the_same_time_replaces_the_earlier(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let (_, mia) = user(&server, "mia", Role::Maintainer).await;
    let node = new_source(&server, &mia, "node").await;
    let labels = json!({ "host": "a" });
    let point = |value: f64, ts: i64| sample("queue_depth", "gauge", labels.clone(), value, json!(ts));
    ingest_metrics(&server, &mia, &node, json!([point(1.0, T0), point(2.0, T0 + 10), point(3.0, T0)])).await;
    ingest_metrics(&server, &mia, &node, json!([point(4.0, T0 + 10), point(5.0, T0 - 10)])).await;
    let micros = |s: i64| s * 1_000_000;
    assert_eq!(
        stored_points(&db, "queue_depth").await,
        vec![(micros(T0 - 10), 5.0), (micros(T0), 3.0), (micros(T0 + 10), 4.0)],
        "one sample per time, the last written; an older one accepted"
    );
    let listing = list_series(&server, &mia, "?name=queue_depth").await;
    assert_eq!(listing["metrics"][0]["last_value"], 4.0, "{listing}");
    server.stop().await.unwrap();
}
