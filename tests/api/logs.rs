//! `/api/v1/logs`: ingest (JSON batches and NDJSON, all-or-nothing, size limits) and queries
//! (filters, text search, cursor pages).
//! Each case runs on SQLite, PostgreSQL and MariaDB, through the real server on a real socket.

use std::collections::BTreeSet;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use killkrill::auth::Role;
use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{Kind, TestDb, TestServer, rest::*};

cases! {
    on_all_databases:
        a_log_batch_just_under_the_body_limit_is_stored,
        a_message_of_exactly_64_kib_is_stored,
        text_search_matches_non_ascii_text,
        logs_ingest_as_json_batches_and_ndjson,
        a_log_batch_with_one_bad_entry_stores_nothing,
        a_full_log_batch_is_stored_whole_and_one_more_entry_is_refused,
        log_queries_filter_by_source_level_time_and_text,
        log_pages_visit_every_entry_exactly_once,
        the_log_cursor_is_stable_while_logs_arrive,
        labels_are_set_by_the_server_over_those_a_client_sends,
        labels_beyond_their_bounds_refuse_the_entry;
}

fn message_of(entry: &Value) -> String {
    entry["message"].as_str().unwrap().to_owned()
}

/// Every log matching `params`, following `next_cursor` from the first page to the last.
async fn all_pages(server: &TestServer, token: &str, params: &[(&str, &str)], limit: u64) -> Vec<Value> {
    let mut entries = Vec::new();
    let mut cursor = None;
    for _ in 0..1000 {
        let (page, next) = log_page(server, token, params, limit, cursor.as_deref()).await;
        entries.extend(page);
        match next {
            Some(next) => cursor = Some(next),
            None => return entries,
        }
    }
    panic!("the cursor never reached the last page");
}

/// One page of logs: its entries and the cursor of the next page.
async fn log_page(
    server: &TestServer,
    token: &str,
    params: &[(&str, &str)],
    limit: u64,
    cursor: Option<&str>,
) -> (Vec<Value>, Option<String>) {
    let limit_text = limit.to_string();
    let mut params = params.to_vec();
    params.push(("limit", limit_text.as_str()));
    if let Some(cursor) = cursor {
        params.push(("cursor", cursor));
    }
    let body = get_logs(server, token, &params).await;
    assert_eq!(body["limit"], limit);
    let logs = body["logs"].as_array().unwrap().clone();
    assert!(logs.len() as u64 <= limit, "{} entries on a page of {limit}", logs.len());
    (logs, body["next_cursor"].as_str().map(str::to_owned))
}

/// Query parameters of a log read.
type Params<'a> = Vec<(&'a str, &'a str)>;

async fn logs_ingest_as_json_batches_and_ndjson(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let (_, mia) = user(&server, "mia", Role::Maintainer).await;
    let id = new_source(&server, &mia, "app").await;

    let before = Utc::now();
    let batch = json!([
        { "message": "warn word", "level": "warn", "timestamp": rfc3339(T0 + 1) },
        { "message": "syslog severity", "level": 3, "timestamp": T0 + 2 },
        { "message": "shouting", "level": "WARNING", "timestamp": "2026-01-01T02:00:03+02:00" },
        { "message": "no level", "timestamp": T0 + 4 },
        {
            "message": "no timestamp",
            "level": "debug",
            "hostname": "web-1",
            "application": "api",
            "attributes": { "user_id": 42, "path": "/orders", "tags": ["a", "b"] },
        },
    ]);
    ingest_logs(&server, &mia, &id, batch).await;
    let after = Utc::now();

    let logs = get_logs(&server, &mia, &[("source_id", id.as_str())]).await;
    let logs = logs["logs"].as_array().unwrap();
    let order: Vec<String> = logs.iter().map(message_of).collect();
    assert_eq!(order, ["no timestamp", "no level", "shouting", "syslog severity", "warn word"]);
    let expected = [
        ("no timestamp", "debug", None),
        ("no level", "info", Some(T0 + 4)),
        ("shouting", "warning", Some(T0 + 3)),
        ("syslog severity", "error", Some(T0 + 2)),
        ("warn word", "warning", Some(T0 + 1)),
    ];
    for (entry, (message, level, ts)) in logs.iter().zip(expected) {
        assert_eq!(entry["message"], message);
        assert_eq!(entry["level"], level, "{message}");
        assert_eq!(entry["source_id"], id.as_str());
        match ts {
            Some(ts) => assert_eq!(instant(&entry["timestamp"]), at(ts), "{message}"),
            None => assert_within(instant(&entry["timestamp"]), before, after, "a missing timestamp"),
        }
        assert_within(instant(&entry["received_at"]), before, after, "received_at");
    }
    // Ids are UUID strings (docs/API.md's conventions), one per entry.
    let ids: BTreeSet<&str> = logs.iter().map(|entry| entry["id"].as_str().expect("a string id")).collect();
    assert_eq!(ids.len(), logs.len());
    assert!(ids.iter().all(|id| uuid::Uuid::parse_str(id).is_ok()), "{ids:?}");
    assert_eq!(logs[0]["hostname"], "web-1");
    assert_eq!(logs[0]["application"], "api");
    assert_eq!(logs[0]["attributes"], json!({ "user_id": 42, "path": "/orders", "tags": ["a", "b"] }));

    // NDJSON: one entry a line (blank lines and CRLF tolerated), source_id in the query.
    let ndjson = format!(
        "{}\n\n{}\r\n{}\n",
        json!({ "message": "nd one", "level": "err", "timestamp": T0 + 10 }),
        json!({ "message": "nd two", "level": "6", "timestamp": T0 + 11 }),
        json!({ "message": "nd three", "level": "Info", "timestamp": T0 + 12 }),
    );
    let (status, body) = send(ndjson_request(&server, &mia, &id, &ndjson)).await;
    assert_eq!((status, body), (202, json!({ "accepted": 3, "dropped": 0 })));
    let nd = get_logs(
        &server,
        &mia,
        &[("source_id", id.as_str()), ("until", rfc3339(T0 + 20).as_str()), ("since", rfc3339(T0 + 10).as_str())],
    )
    .await;
    let nd: Vec<(String, String)> = nd["logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| (message_of(l), l["level"].as_str().unwrap().to_owned()))
        .collect();
    let want = [("nd three", "info"), ("nd two", "info"), ("nd one", "error")];
    assert_eq!(nd, want.map(|(m, l)| (m.to_owned(), l.to_owned())));
    let named = refused(
        call(&server, Method::POST, "/api/v1/logs", &mia)
            .header("Content-Type", "application/x-ndjson")
            .body("{\"message\": \"where to?\"}\n"),
        400,
    )
    .await;
    assert_eq!(named, fields(&["source_id"]));
    server.stop().await.unwrap();
}

async fn a_full_log_batch_is_stored_whole_and_one_more_entry_is_refused(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let (_, mia) = user(&server, "mia", Role::Maintainer).await;
    let id = new_source(&server, &mia, "bulk").await;
    // 10,000 entries (the most a batch holds): several INSERT chunks on SQLite and
    // MariaDB, one statement on PostgreSQL. Every third has no hostname, every fifth
    // attributes; the last message holds a quote, a backslash and non-ASCII text.
    let entry = |i: i64| {
        let level = ["info", "error"][(i % 2) as usize];
        let mut entry = json!({ "message": format!("bulk-{i:05}"), "level": level, "timestamp": T0 + i });
        if i % 3 != 0 {
            entry["hostname"] = json!(format!("host-{}", i % 7));
        }
        if i % 5 == 0 {
            entry["attributes"] = json!({ "i": i, "tag": "x" });
        }
        entry
    };
    let mut batch: Vec<Value> = (0..10_000).map(entry).collect();
    batch[9_999]["message"] = json!("last \"one\" \\ é ✓");
    ingest_logs(&server, &mia, &id, Value::Array(batch.clone())).await;
    assert_eq!(count_rows(&db, "logs").await, 10_000);

    let newest = get_logs(&server, &mia, &[("source_id", id.as_str()), ("limit", "3")]).await;
    let newest = newest["logs"].as_array().unwrap();
    assert_eq!(newest[0]["message"], "last \"one\" \\ é ✓");
    for (entry, i) in newest.iter().zip([9_999, 9_998, 9_997]) {
        assert_eq!(instant(&entry["timestamp"]), at(T0 + i));
        assert_eq!(entry["level"], ["info", "error"][(i % 2) as usize]);
        let hostname = if i % 3 == 0 { Value::Null } else { json!(format!("host-{}", i % 7)) };
        assert_eq!(entry["hostname"], hostname, "entry {i}");
        let attributes = if i % 5 == 0 { json!({ "i": i, "tag": "x" }) } else { Value::Null };
        assert_eq!(entry["attributes"], attributes, "entry {i}");
    }
    let infos = get_logs(&server, &mia, &[("source_id", id.as_str()), ("level", "info"), ("limit", "1")]).await;
    assert_eq!(message_of(&infos["logs"][0]), "bulk-09998", "the newest entry is an error");

    batch.push(entry(10_000));
    refused(logs_request(&server, &mia, &id, Value::Array(batch)), 413).await;
    assert_eq!(count_rows(&db, "logs").await, 10_000, "a refused batch stored nothing");
    server.stop().await.unwrap();
}

async fn a_log_batch_with_one_bad_entry_stores_nothing(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let (_, mia) = user(&server, "mia", Role::Maintainer).await;
    let id = new_source(&server, &mia, "strict").await;
    let ok = json!({ "message": "fine", "level": "info" });

    let cases: Vec<(Value, &[&str])> = vec![
        (json!([ok, { "message": "" }, ok]), &["logs[1].message"]),
        (json!([ok, ok, { "level": "info" }]), &["logs[2].message"]),
        (json!([{ "message": "x", "level": "loud" }]), &["logs[0].level"]),
        (json!([ok, { "message": "x", "level": 9 }]), &["logs[1].level"]),
        (json!([ok, { "message": "x", "timestamp": "yesterday" }]), &["logs[1].timestamp"]),
        (
            json!([{ "message": "" }, ok, { "message": "x", "level": "loud", "timestamp": "never" }]),
            &["logs[0].message", "logs[2].level", "logs[2].timestamp"],
        ),
        (json!([ok, { "message": "x".repeat(64 * 1024 + 1) }]), &["logs[1].message"]),
        (json!([]), &["logs"]),
    ];
    // A NUL in any text (PostgreSQL cannot store one) is refused before the entries are
    // read, in a JSON batch and in NDJSON alike.
    let nul = r#"{"message": "a\u0000b"}"#;
    let with_nul = format!(r#"{{"source_id": "{id}", "logs": [{ok}, {nul}]}}"#);
    let json_nul = call(&server, Method::POST, "/api/v1/logs", &mia).header("Content-Type", "application/json");
    refused(json_nul.body(with_nul), 400).await;
    refused(ndjson_request(&server, &mia, &id, &format!("{ok}\n{nul}\n")), 400).await;
    for (logs, bad) in cases {
        let named = refused(logs_request(&server, &mia, &id, logs.clone()), 400).await;
        assert_eq!(named, fields(bad), "{bad:?}");
    }
    let ndjson = format!("{ok}\n{}\n{ok}\n", json!({ "message": "" }));
    assert_eq!(refused(ndjson_request(&server, &mia, &id, &ndjson), 400).await, fields(&["logs[1].message"]));
    refused(ndjson_request(&server, &mia, &id, &format!("{ok}\n{{\"message\": \n{ok}\n")), 400).await;
    let as_text = call(&server, Method::POST, "/api/v1/logs", &mia)
        .header("Content-Type", "text/plain")
        .body(json!({ "source_id": id, "logs": [ok] }).to_string());
    refused(as_text, 415).await;
    let malformed = call(&server, Method::POST, "/api/v1/logs", &mia)
        .header("Content-Type", "application/json")
        .body(format!(r#"{{"source_id": "{id}", "logs": [{{"message": "cut"#));
    refused(malformed, 400).await;
    assert_eq!(
        messages(&server, &mia, &[("source_id", id.as_str())]).await,
        Vec::<String>::new(),
        "a refused batch was stored"
    );
    server.stop().await.unwrap();
}

async fn a_message_of_exactly_64_kib_is_stored(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let (_, mia) = user(&server, "mia", Role::Maintainer).await;
    let id = new_source(&server, &mia, "large").await;
    let largest = "y".repeat(64 * 1024);
    ingest_logs(&server, &mia, &id, json!([{ "message": largest }])).await;
    assert_eq!(messages(&server, &mia, &[("source_id", id.as_str())]).await, [largest]);
    server.stop().await.unwrap();
}

async fn text_search_matches_non_ascii_text(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let (_, mia) = user(&server, "mia", Role::Maintainer).await;
    let id = new_source(&server, &mia, "intl").await;
    let logs = json!([
        { "message": "Échec de connexion à la base", "timestamp": T0 },
        { "message": "ÜBERLAUF im Puffer", "timestamp": T0 + 1 },
        { "message": "日本語のログ 🚀", "timestamp": T0 + 2 },
    ]);
    ingest_logs(&server, &mia, &id, logs).await;
    // Stored and served unchanged.
    assert_eq!(
        messages(&server, &mia, &[("source_id", id.as_str())]).await,
        ["日本語のログ 🚀", "ÜBERLAUF im Puffer", "Échec de connexion à la base"]
    );
    assert_eq!(messages(&server, &mia, &[("q", "ログ 🚀")]).await, ["日本語のログ 🚀"]);
    assert_eq!(messages(&server, &mia, &[("q", "Échec")]).await, ["Échec de connexion à la base"]);
    assert_eq!(messages(&server, &mia, &[("q", "Échec de CONNEXION")]).await, ["Échec de connexion à la base"]);
    // SQLite's LOWER() folds ASCII letters only (documented); the others fold all of Unicode.
    if db.kind != Kind::Sqlite {
        assert_eq!(messages(&server, &mia, &[("q", "échec")]).await, ["Échec de connexion à la base"]);
        assert_eq!(messages(&server, &mia, &[("q", "überlauf")]).await, ["ÜBERLAUF im Puffer"]);
    }
    // Letters whose lower case Rust and the databases disagree on: the exact text is
    // always found (the needle was lowered by Rust, and these were missed).
    let odd = ["𐐀deseret", "STRASSE ẞ", "ΟΔΟΣ end", "İstanbul"];
    let logs: Vec<Value> = odd.iter().zip(10..).map(|(m, i)| json!({ "message": m, "timestamp": T0 + i })).collect();
    ingest_logs(&server, &mia, &id, json!(logs)).await;
    for message in odd {
        assert_eq!(messages(&server, &mia, &[("q", message)]).await, [message], "{message}");
    }
    server.stop().await.unwrap();
}

async fn log_queries_filter_by_source_level_time_and_text(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let (_, mia) = user(&server, "mia", Role::Maintainer).await;
    let alpha = new_source(&server, &mia, "alpha").await;
    let bravo = new_source(&server, &mia, "bravo").await;
    let entry = |message: &str, level: &str, offset: i64| json!({ "message": message, "level": level, "timestamp": T0 + offset });
    ingest_logs(
        &server,
        &mia,
        &alpha,
        json!([
            entry("Disk full on /var", "error", 0),
            entry("User LOGIN succeeded", "info", 10),
            entry("Backup 50% done", "info", 20),
            entry("Backup 5000 files", "notice", 30),
            entry("rotated file_name.txt", "warning", 40),
            entry("rotated fileXname.txt", "warning", 50),
            entry(r"saved C:\temp\out! ok", "info", 60),
        ]),
    )
    .await;
    ingest_logs(&server, &mia, &bravo, json!([entry("disk FULL on /data", "error", 5)])).await;

    let (since, until) = (rfc3339(T0 + 15), rfc3339(T0 + 45));
    let (since_unix, until_unix) = ((T0 + 15).to_string(), (T0 + 45).to_string());
    let early = rfc3339(T0 + 7);
    let cases: Vec<(Params, Vec<&str>)> = vec![
        (
            vec![],
            vec![
                r"saved C:\temp\out! ok",
                "rotated fileXname.txt",
                "rotated file_name.txt",
                "Backup 5000 files",
                "Backup 50% done",
                "User LOGIN succeeded",
                "disk FULL on /data",
                "Disk full on /var",
            ],
        ),
        (vec![("source_id", bravo.as_str())], vec!["disk FULL on /data"]),
        (vec![("source_id", "00000000-0000-0000-0000-000000000000")], vec![]),
        (vec![("level", "error")], vec!["disk FULL on /data", "Disk full on /var"]),
        (vec![("level", "error"), ("source_id", alpha.as_str())], vec!["Disk full on /var"]),
        (vec![("level", "WARN")], vec!["rotated fileXname.txt", "rotated file_name.txt"]),
        (vec![("level", "5")], vec!["Backup 5000 files"]),
        (
            vec![("since", since.as_str()), ("until", until.as_str())],
            vec!["rotated file_name.txt", "Backup 5000 files", "Backup 50% done"],
        ),
        (
            vec![("since", since_unix.as_str()), ("until", until_unix.as_str())],
            vec!["rotated file_name.txt", "Backup 5000 files", "Backup 50% done"],
        ),
        (vec![("since", since_unix.as_str()), ("source_id", bravo.as_str())], vec![]),
        (vec![("until", early.as_str())], vec!["disk FULL on /data", "Disk full on /var"]),
        (vec![("q", "login")], vec!["User LOGIN succeeded"]),
        (vec![("q", "DISK full")], vec!["disk FULL on /data", "Disk full on /var"]),
        (vec![("q", "50%")], vec!["Backup 50% done"]),
        (vec![("q", "file_name")], vec!["rotated file_name.txt"]),
        (vec![("q", "backup"), ("level", "notice")], vec!["Backup 5000 files"]),
        (vec![("q", "nothing like this")], vec![]),
        (vec![("q", r"c:\temp\OUT!")], vec![r"saved C:\temp\out! ok"]),
        (vec![("q", "!")], vec![r"saved C:\temp\out! ok"]),
    ];
    for (params, expected) in cases {
        assert_eq!(messages(&server, &mia, &params).await, expected, "{params:?}");
    }
    for (param, value) in
        [("level", "loud"), ("since", "yesterday"), ("until", "soon"), ("limit", "0"), ("limit", "1001")]
    {
        let named =
            refused(call(&server, Method::GET, &with_query("/api/v1/logs", &[(param, value)]), &mia), 400).await;
        assert_eq!(named, fields(&[param]), "{param}={value}");
    }
    server.stop().await.unwrap();
}

async fn log_pages_visit_every_entry_exactly_once(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let (_, mia) = user(&server, "mia", Role::Maintainer).await;
    let id = new_source(&server, &mia, "paged").await;
    let other = new_source(&server, &mia, "noise").await;
    // Five entries share each timestamp, so pages must break ties consistently.
    let logs: Vec<Value> =
        (0..25).map(|i| json!({ "message": format!("entry-{i:02}"), "timestamp": T0 + (i / 5) * 60 })).collect();
    ingest_logs(&server, &mia, &id, Value::Array(logs)).await;
    ingest_logs(&server, &mia, &other, json!([{ "message": "noise", "timestamp": T0 + 30 }])).await;

    let entries = all_pages(&server, &mia, &[("source_id", id.as_str())], 7).await;
    let names: Vec<String> = entries.iter().map(message_of).collect();
    assert_eq!(names.len(), 25, "{names:?}");
    let unique: BTreeSet<&String> = names.iter().collect();
    assert_eq!(unique.len(), 25, "an entry was repeated: {names:?}");
    let expected: BTreeSet<String> = (0..25).map(|i| format!("entry-{i:02}")).collect();
    assert_eq!(names.iter().cloned().collect::<BTreeSet<_>>(), expected);
    let stamps: Vec<DateTime<Utc>> = entries.iter().map(|e| instant(&e["timestamp"])).collect();
    assert!(stamps.windows(2).all(|w| w[0] >= w[1]), "not newest first: {stamps:?}");
    // The newest group comes first, the oldest last.
    let group = |range: std::ops::Range<usize>| names[range].iter().cloned().collect::<BTreeSet<_>>();
    assert_eq!(group(0..5), (20..25).map(|i| format!("entry-{i:02}")).collect());
    assert_eq!(group(20..25), (0..5).map(|i| format!("entry-{i:02}")).collect());

    // Page sizes: 7, 7, 7, 4, and the last page has no cursor.
    let (first, cursor) = log_page(&server, &mia, &[("source_id", id.as_str())], 7, None).await;
    assert_eq!(first.len(), 7);
    let cursor = cursor.unwrap();
    let (second, _) = log_page(&server, &mia, &[("source_id", id.as_str())], 7, Some(&cursor)).await;
    assert_eq!(second.len(), 7);
    let whole = all_pages(&server, &mia, &[], 1000).await;
    assert_eq!(whole.len(), 26);
    let (exact, none) = log_page(&server, &mia, &[("source_id", id.as_str())], 25, None).await;
    assert_eq!((exact.len(), none), (25, None));
    server.stop().await.unwrap();
}

async fn the_log_cursor_is_stable_while_logs_arrive(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let (_, mia) = user(&server, "mia", Role::Maintainer).await;
    let id = new_source(&server, &mia, "busy").await;
    let original: Vec<Value> =
        (0..30).map(|i| json!({ "message": format!("orig-{i:02}"), "timestamp": T0 + i * 10 })).collect();
    ingest_logs(&server, &mia, &id, Value::Array(original)).await;
    let filter = [("source_id", id.as_str())];

    let mut seen = Vec::new();
    let (page, mut cursor) = log_page(&server, &mia, &filter, 10, None).await;
    seen.extend(page.iter().map(message_of));
    let mut round = 0;
    while let Some(current) = cursor {
        // Between pages, newer logs and logs interleaved with the unread (and the read)
        // part arrive.
        let arrivals: Vec<Value> = (0..10)
            .map(|i| {
                let ts = if i % 2 == 0 { T0 + 10_000 + round * 100 + i } else { T0 + i * 30 + 5 };
                json!({ "message": format!("new-{round}-{i}"), "timestamp": ts })
            })
            .collect();
        ingest_logs(&server, &mia, &id, Value::Array(arrivals)).await;
        round += 1;
        let (page, next) = log_page(&server, &mia, &filter, 10, Some(&current)).await;
        seen.extend(page.iter().map(message_of));
        cursor = next;
        assert!(round < 10, "the cursor never reached the last page");
    }
    let expected: Vec<String> = (0..30).rev().map(|i| format!("orig-{i:02}")).collect();
    assert_eq!(seen, expected, "pages skipped, repeated or mixed in entries");
    assert!(round >= 2, "logs arrived between only {round} pages");

    // A fresh read sees everything, and garbage cursors are refused.
    assert_eq!(all_pages(&server, &mia, &filter, 1000).await.len(), 30 + 10 * round as usize);
    for garbage in ["garbage".to_owned(), URL_SAFE_NO_PAD.encode("v1:1:2"), URL_SAFE_NO_PAD.encode("v9:1:2:3")] {
        let request = call(&server, Method::GET, &with_query("/api/v1/logs", &[("cursor", garbage.as_str())]), &mia);
        assert_eq!(refused(request, 400).await, fields(&["cursor"]), "{garbage}");
    }
    server.stop().await.unwrap();
}

/// 1,000 entries filling 16 MiB less 2 KiB of JSON are one valid batch; on MariaDB one
/// INSERT of them outgrew `max_allowed_packet` (500).
async fn a_log_batch_just_under_the_body_limit_is_stored(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let (_, mia) = user(&server, "mia", Role::Maintainer).await;
    let id = new_source(&server, &mia, "bulky").await;
    let message = "x".repeat(16_737);
    let logs: Vec<Value> = (0..1000).map(|i| json!({ "message": message, "timestamp": T0 + i })).collect();
    let body = json!({ "source_id": id, "logs": logs }).to_string();
    assert!(body.len() < 16 * 1024 * 1024 && body.len() > 16 * 1024 * 1024 - 4096, "{}", body.len());
    let request = call(&server, Method::POST, "/api/v1/logs", &mia).header("content-type", "application/json");
    assert_eq!(send(request.body(body)).await, (202, json!({ "accepted": 1000, "dropped": 0 })));
    assert_eq!(count_rows(&db, "logs").await, 1000);
    server.stop().await.unwrap();
}

async fn labels_are_set_by_the_server_over_those_a_client_sends(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let (_, mia) = user(&server, "mia", Role::Maintainer).await;
    let source_id = new_source(&server, &mia, "edge-proxies").await;
    ingest_logs(
        &server,
        &mia,
        &source_id,
        json!([
            {"message": "up", "level": "WARN", "hostname": "web-1",
             "labels": {"team": "infra", "level": "bogus", "source": "forged", "application": "forged"}},
            {"message": "plain"}
        ]),
    )
    .await;
    let logs = get_logs(&server, &mia, &[]).await["logs"].as_array().unwrap().clone();
    let labels_of = |message: &str| logs.iter().find(|l| l["message"] == message).unwrap()["labels"].clone();
    assert_eq!(
        labels_of("up"),
        json!({"source": "edge-proxies", "level": "warning", "hostname": "web-1", "team": "infra"}),
        "the server's own labels win, a missing application drops the forged one"
    );
    assert_eq!(labels_of("plain"), json!({"source": "edge-proxies", "level": "info"}));

    // Only the supplied labels are stored; the own ones are the row's columns and its
    // source's name, so a rename shows on the lines already stored.
    assert_eq!(
        stored_labels(&db).await,
        vec![("plain".to_owned(), None), ("up".to_owned(), Some(r#"{"team":"infra"}"#.to_owned()))]
    );
    let request = call(&server, Method::PUT, &format!("/api/v1/sources/{source_id}"), &mia);
    assert_eq!(status(request.json(&json!({ "name": "edge-gateways" }))).await, 200);
    let logs = get_logs(&server, &mia, &[]).await["logs"].as_array().unwrap().clone();
    assert!(logs.iter().all(|l| l["labels"]["source"] == "edge-gateways"), "{logs:?}");

    // A line stored with its own labels in the column (as before they were left out)
    // shows the columns' and the source's.
    let legacy = r#"{"application":"old","level":"debug","source":"edge-proxies","team":"ops"}"#;
    {
        use sea_orm::{ConnectionTrait, Statement};
        let conn = db.connect().await;
        let sql = format!("UPDATE logs SET labels = '{legacy}' WHERE message = 'plain'");
        conn.execute_raw(Statement::from_string(conn.get_database_backend(), sql)).await.unwrap();
        conn.close().await.unwrap();
    }
    let logs = get_logs(&server, &mia, &[]).await["logs"].as_array().unwrap().clone();
    let plain = logs.iter().find(|l| l["message"] == "plain").unwrap();
    assert_eq!(plain["labels"], json!({"source": "edge-gateways", "level": "info", "team": "ops"}));
    server.stop().await.unwrap();
}

/// `(message, labels)` of every stored line, by message, read directly in the database.
async fn stored_labels(db: &TestDb) -> Vec<(String, Option<String>)> {
    use sea_orm::{ConnectionTrait, Statement};
    let conn = db.connect().await;
    let sql = "SELECT message, labels FROM logs ORDER BY message";
    let rows = conn.query_all_raw(Statement::from_string(conn.get_database_backend(), sql)).await.unwrap();
    let labels =
        rows.iter().map(|row| (row.try_get("", "message").unwrap(), row.try_get("", "labels").unwrap())).collect();
    conn.close().await.unwrap();
    labels
}

async fn labels_beyond_their_bounds_refuse_the_entry(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let (_, mia) = user(&server, "mia", Role::Maintainer).await;
    let source_id = new_source(&server, &mia, "app").await;
    let many: serde_json::Map<String, Value> = (0..17).map(|i| (format!("l{i}"), json!("v"))).collect();
    let sixteen: serde_json::Map<String, Value> = (0..16).map(|i| (format!("l{i}"), json!("v"))).collect();
    for (labels, why) in [
        (Value::Object(many), "17 labels besides the server's four"),
        (json!({"a-b": "x"}), "a name outside [a-zA-Z_][a-zA-Z0-9_]*"),
        (json!({"k": "x".repeat(1025)}), "a value over 1,024 characters"),
    ] {
        let request = logs_request(&server, &mia, &source_id, json!([{"message": "m", "labels": labels}]));
        assert_eq!(refused(request, 400).await, fields(&["logs[0].labels"]), "{why}");
    }
    ingest_logs(&server, &mia, &source_id, json!([{"message": "m", "labels": sixteen}])).await;
    let logs = get_logs(&server, &mia, &[]).await["logs"].clone();
    assert_eq!(logs.as_array().unwrap().len(), 1, "only the entry within bounds is stored: {logs}");
    assert_eq!(logs[0]["labels"].as_object().unwrap().len(), 18);
    server.stop().await.unwrap();
}
