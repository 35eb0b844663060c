//! `/api/v1/sources` and `/api/v1/sources/{id}` (a source's fields, validation, listing,
//! update and deletion with all it holds) and `/api/v1/sources/{id}/keys[/{key_id}]` (ingest
//! keys: shown once, bound to their source and its `allowed_cidrs`, refused once deleted).
//! Each case runs on SQLite, PostgreSQL and MariaDB, through the real server on a real socket.

use std::collections::BTreeSet;

use chrono::Utc;
use killkrill::auth::Role;
use reqwest::{Method, RequestBuilder};
use sea_orm::{ConnectionTrait, Statement};
use serde_json::{Value, json};

use crate::common::{TestDb, TestServer, rest::*};

cases! {
    on_all_databases:
        deleting_a_source_deletes_its_metric_series_and_samples,
        deleting_a_source_while_replicas_ingest_into_it,
        an_ingest_key_ingests_metrics_for_its_own_source_only,
        source_names_and_types_match_exactly,
        a_config_of_exactly_64_kib_is_stored,
        a_deleted_sources_ingest_key_is_refused_at_once,
        creating_a_source_returns_every_field_and_its_location,
        invalid_sources_are_refused_naming_each_bad_field,
        source_names_are_unique_even_when_created_concurrently,
        unknown_and_malformed_source_ids_are_404,
        put_changes_only_the_fields_it_is_given,
        a_deleted_source_is_gone,
        sources_list_with_filters_and_pagination,
        viewers_read_but_only_maintainers_change_or_ingest,
        deleting_a_source_deletes_its_keys_and_logs,
        ingest_keys_are_shown_once_and_listed_by_prefix,
        an_ingest_key_only_ingests_for_its_own_source,
        allowed_cidrs_bound_where_an_ingest_key_may_ingest_from,
        a_deleted_ingest_key_is_refused_at_once,
        a_disabled_source_refuses_ingest;
}

fn source_names(listing: &Value) -> BTreeSet<String> {
    listing["sources"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap().to_owned()).collect()
}

/// Lists sources with `query` (asserting 200).
async fn list_sources(server: &TestServer, token: &str, query: &str) -> Value {
    let (status, body) = send(call(server, Method::GET, &format!("/api/v1/sources{query}"), token)).await;
    assert_eq!(status, 200, "{body}");
    body
}

fn put_source(server: &TestServer, token: &str, id: &str, body: Value) -> RequestBuilder {
    call(server, Method::PUT, &format!("/api/v1/sources/{id}"), token).json(&body)
}

async fn get_source(server: &TestServer, token: &str, id: &str) -> Value {
    let (status, source) = send(call(server, Method::GET, &format!("/api/v1/sources/{id}"), token)).await;
    assert_eq!(status, 200, "{source}");
    source
}

async fn creating_a_source_returns_every_field_and_its_location(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let (mia, token) = user(&server, "mia", Role::Maintainer).await;
    let body = json!({
        "name": "edge-routers",
        "type": "syslog",
        "description": "Syslog of the edge routers",
        "enabled": true,
        "config": { "port": 514, "protocol": "udp", "tags": ["edge", "net"] },
        "allowed_cidrs": ["10.0.0.0/8", "192.168.1.0/24"],
    });
    let before = Utc::now();
    let response = call(&server, Method::POST, "/api/v1/sources", &token).json(&body).send().await.unwrap();
    let after = Utc::now();
    assert_eq!(response.status(), 201);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let source: Value = response.json().await.unwrap();

    let id = source["id"].as_str().unwrap();
    assert!(uuid::Uuid::parse_str(id).is_ok(), "id is not a UUID: {id}");
    assert_eq!(location, format!("/api/v1/sources/{id}"));
    assert_eq!(source["name"], "edge-routers");
    assert_eq!(source["type"], "syslog");
    assert_eq!(source["description"], "Syslog of the edge routers");
    assert_eq!(source["enabled"], true);
    assert_eq!(source["config"], body["config"]);
    assert_eq!(source["allowed_cidrs"], body["allowed_cidrs"]);
    assert_eq!(source["created_by"], mia.id.as_str());
    assert_within(instant(&source["created_at"]), before, after, "created_at");
    assert_eq!(source["updated_at"], source["created_at"]);

    // The Location serves the same source.
    let (status, fetched) = send(call(&server, Method::GET, &location, &token)).await;
    assert_eq!(status, 200);
    assert_eq!(fetched, source);

    // Only name and type are required; the rest have defaults.
    let minimal = create_source(&server, &token, json!({ "name": "minimal", "type": "otlp" })).await;
    assert_eq!(minimal["description"], "");
    assert_eq!(minimal["enabled"], true);
    assert_eq!(minimal["config"], json!({}));
    assert_eq!(minimal["allowed_cidrs"], json!([]));
    assert_ne!(minimal["id"], source["id"]);
    server.stop().await.unwrap();
}

async fn invalid_sources_are_refused_naming_each_bad_field(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let (_, token) = user(&server, "mia", Role::Maintainer).await;
    let long_name = "n".repeat(129);
    let cases: Vec<(Value, &[&str])> = vec![
        (json!({ "name": "", "type": "http" }), &["name"]),
        (json!({ "name": long_name, "type": "http" }), &["name"]),
        (json!({ "type": "http" }), &["name"]),
        (json!({ "name": "ok", "type": "carrier-pigeon" }), &["type"]),
        (json!({ "name": "bell\u{7}", "type": "http" }), &["name"]),
        (json!({ "name": "ok" }), &["type"]),
        (json!({ "name": "ok", "type": "http", "config": [1, 2] }), &["config"]),
        (json!({ "name": "ok", "type": "http", "config": "port=514" }), &["config"]),
        (json!({ "name": "ok", "type": "http", "allowed_cidrs": ["10.0.0.0/33"] }), &["allowed_cidrs"]),
        (
            json!({ "name": "ok", "type": "http", "allowed_cidrs": ["10.0.0.0/8", "not-an-address"] }),
            &["allowed_cidrs"],
        ),
        (
            json!({ "name": "", "type": "nope", "config": 7, "allowed_cidrs": ["1.2.3.4/99"] }),
            &["name", "type", "config", "allowed_cidrs"],
        ),
    ];
    for (body, bad) in cases {
        let named = refused(call(&server, Method::POST, "/api/v1/sources", &token).json(&body), 400).await;
        assert_eq!(named, fields(bad), "{body}");
    }
    // Not JSON at all, or an unknown field.
    let text = call(&server, Method::POST, "/api/v1/sources", &token)
        .header("Content-Type", "text/plain")
        .body(r#"{"name": "ok", "type": "http"}"#);
    refused(text, 415).await;
    let extra = json!({ "name": "ok", "type": "http", "owner": "someone-else" });
    refused(call(&server, Method::POST, "/api/v1/sources", &token).json(&extra), 400).await;
    let malformed = call(&server, Method::POST, "/api/v1/sources", &token)
        .header("Content-Type", "application/json")
        .body(r#"{"name": "ok", "#);
    refused(malformed, 400).await;
    let nul = call(&server, Method::POST, "/api/v1/sources", &token)
        .header("Content-Type", "application/json")
        .body(r#"{"name": "a\u0000b", "type": "http"}"#);
    refused(nul, 400).await;
    assert_eq!(list_sources(&server, &token, "").await["total"], 0, "a refused source was stored");

    // 128 characters is still a valid name.
    let longest = create_source(&server, &token, json!({ "name": "n".repeat(128), "type": "http" })).await;
    assert_eq!(longest["name"].as_str().unwrap().chars().count(), 128);
    // At most 256 CIDRs (a longer list overflowed MariaDB's column, and outside strict
    // mode was cut to nothing: no restriction at all).
    let cidrs: Vec<String> = (1..=257).map(|n| format!("2001:db8:{n:x}::/48")).collect();
    let body = json!({ "name": "many-cidrs", "type": "http", "allowed_cidrs": cidrs });
    let named = refused(call(&server, Method::POST, "/api/v1/sources", &token).json(&body), 400).await;
    assert_eq!(named, fields(&["allowed_cidrs"]));
    let body = json!({ "name": "many-cidrs", "type": "http", "allowed_cidrs": cidrs[..256] });
    let created = create_source(&server, &token, body).await;
    assert_eq!(created["allowed_cidrs"], json!(cidrs[..256]));
    let id = created["id"].as_str().unwrap();
    assert_eq!(get_source(&server, &token, id).await["allowed_cidrs"], json!(cidrs[..256]));
    server.stop().await.unwrap();
}

async fn source_names_are_unique_even_when_created_concurrently(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let (_, token) = user(&server, "mia", Role::Maintainer).await;
    create_source(&server, &token, json!({ "name": "web", "type": "http" })).await;
    let again = json!({ "name": "web", "type": "syslog" });
    refused(call(&server, Method::POST, "/api/v1/sources", &token).json(&again), 409).await;

    for round in 0..5 {
        let body = json!({ "name": format!("race-{round}"), "type": "http" });
        let first = call(&server, Method::POST, "/api/v1/sources", &token).json(&body).send();
        let second = call(&server, Method::POST, "/api/v1/sources", &token).json(&body).send();
        let (first, second) = tokio::join!(first, second);
        let mut statuses = [first.unwrap().status().as_u16(), second.unwrap().status().as_u16()];
        statuses.sort_unstable();
        assert_eq!(statuses, [201, 409], "round {round}");
    }
    let listing = list_sources(&server, &token, "").await;
    assert_eq!(listing["total"], 6);
    let expected: BTreeSet<String> =
        ["web", "race-0", "race-1", "race-2", "race-3", "race-4"].iter().map(|n| (*n).to_owned()).collect();
    assert_eq!(source_names(&listing), expected);
    server.stop().await.unwrap();
}

async fn unknown_and_malformed_source_ids_are_404(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let (_, token) = user(&server, "mia", Role::Maintainer).await;
    let exists = new_source(&server, &token, "exists").await;
    // A trailing space named the source on MariaDB (its collations ignore one).
    let padded = format!("{exists}%20");
    for id in [uuid::Uuid::new_v4().to_string(), "not-a-uuid".to_owned(), "42".to_owned(), padded] {
        let path = format!("/api/v1/sources/{id}");
        let response = call(&server, Method::GET, &path, &token).send().await.unwrap();
        assert_eq!(response.status(), 404, "GET {path}");
        let body: Value = response.json().await.unwrap();
        assert!(body["message"].as_str().unwrap().contains(id.trim_end_matches("%20")), "{body}");
        refused(call(&server, Method::GET, &path, &token), 404).await;
        refused(put_source(&server, &token, &id, json!({ "description": "x" })), 404).await;
        refused(call(&server, Method::DELETE, &path, &token), 404).await;
        refused(call(&server, Method::GET, &format!("{path}/keys"), &token), 404).await;
        let key = call(&server, Method::POST, &format!("{path}/keys"), &token).json(&json!({ "name": "k" }));
        refused(key, 404).await;
    }
    assert_eq!(list_sources(&server, &token, "").await["total"], 1);
    // Ids are UUIDs in any case: an upper-case id names the same source, everywhere.
    let upper = exists.to_uppercase();
    assert_eq!(get_source(&server, &token, &upper).await["id"], exists.as_str());
    let (key_id, key) = server.create_ingest_key(&token, &upper).await;
    ingest_logs(&server, &key, &upper, json!([{ "message": "upper" }])).await;
    assert_eq!(messages(&server, &token, &[("source_id", upper.as_str())]).await, ["upper"]);
    let path = format!("/api/v1/sources/{upper}/keys/{}", key_id.to_uppercase());
    assert_eq!(send(call(&server, Method::DELETE, &path, &token)).await.0, 204);
    // A filter that is not a UUID is refused rather than matched loosely.
    for filter in ["/api/v1/logs?source_id=nope", &format!("/api/v1/logs?source_id={exists}%20")] {
        assert_eq!(refused(call(&server, Method::GET, filter, &token), 400).await, fields(&["source_id"]), "{filter}");
    }
    let series = call(&server, Method::GET, &format!("/api/v1/metrics?source_id={exists}%20"), &token);
    assert_eq!(refused(series, 400).await, fields(&["source_id"]));
    server.stop().await.unwrap();
}

async fn put_changes_only_the_fields_it_is_given(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let (_, token) = user(&server, "mia", Role::Maintainer).await;
    let original = create_source(
        &server,
        &token,
        json!({
            "name": "app-logs",
            "type": "http",
            "description": "App",
            "config": { "format": "json" },
            "allowed_cidrs": ["10.0.0.0/8"],
        }),
    )
    .await;
    let id = original["id"].as_str().unwrap().to_owned();
    new_source(&server, &token, "taken").await;

    // Each PUT changes its fields and updated_at, nothing else.
    let changes = [
        json!({ "description": "Application logs" }),
        json!({ "enabled": false, "config": { "format": "logfmt", "port": 8080 } }),
        json!({ "type": "file", "allowed_cidrs": [] }),
        json!({ "name": "app-logs-v2" }),
    ];
    let mut current = original.clone();
    for change in changes {
        let (status, updated) = send(put_source(&server, &token, &id, change.clone())).await;
        assert_eq!(status, 200, "{change}: {updated}");
        let mut expected = current.clone();
        for (field, value) in change.as_object().unwrap() {
            expected[field] = value.clone();
        }
        expected["updated_at"] = updated["updated_at"].clone();
        assert_eq!(updated, expected, "{change}");
        assert!(instant(&updated["updated_at"]) > instant(&current["updated_at"]), "{change}: updated_at did not move");
        assert_eq!(get_source(&server, &token, &id).await, updated);
        current = updated;
    }
    assert_eq!(current["created_at"], original["created_at"]);
    assert_eq!(current["created_by"], original["created_by"]);

    // A rename onto another source's name, or an invalid value, changes nothing.
    refused(put_source(&server, &token, &id, json!({ "name": "taken" })), 409).await;
    let named = refused(put_source(&server, &token, &id, json!({ "type": "bogus", "config": [] })), 400).await;
    assert_eq!(named, fields(&["type", "config"]));
    assert_eq!(refused(put_source(&server, &token, &id, json!({ "name": "" })), 400).await, fields(&["name"]));
    assert_eq!(get_source(&server, &token, &id).await, current);
    server.stop().await.unwrap();
}

async fn a_deleted_source_is_gone(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let (_, token) = user(&server, "mia", Role::Maintainer).await;
    let id = new_source(&server, &token, "short-lived").await;
    let survivor = new_source(&server, &token, "survivor").await;
    let path = format!("/api/v1/sources/{id}");
    let response = call(&server, Method::DELETE, &path, &token).send().await.unwrap();
    assert_eq!(response.status(), 204);
    assert_eq!(response.text().await.unwrap(), "");
    refused(call(&server, Method::GET, &path, &token), 404).await;
    refused(call(&server, Method::DELETE, &path, &token), 404).await;
    let listing = list_sources(&server, &token, "").await;
    assert_eq!(listing["total"], 1);
    assert_eq!(listing["sources"][0]["id"], survivor.as_str());
    server.stop().await.unwrap();
}

async fn sources_list_with_filters_and_pagination(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let (_, token) = user(&server, "mia", Role::Maintainer).await;
    let specs = [
        ("alpha", "syslog", true),
        ("bravo", "http", false),
        ("charlie", "syslog", false),
        ("delta", "prometheus", true),
        ("echo", "syslog", true),
    ];
    for (name, kind, enabled) in specs {
        create_source(&server, &token, json!({ "name": name, "type": kind, "enabled": enabled })).await;
    }
    let expect = |filter: &dyn Fn(&(&str, &str, bool)) -> bool| -> BTreeSet<String> {
        specs.iter().filter(|s| filter(s)).map(|s| s.0.to_owned()).collect()
    };
    let cases: Vec<(&str, BTreeSet<String>)> = vec![
        ("", expect(&|_| true)),
        ("?type=syslog", expect(&|s| s.1 == "syslog")),
        ("?enabled=false", expect(&|s| !s.2)),
        ("?enabled=true", expect(&|s| s.2)),
        ("?type=syslog&enabled=true", expect(&|s| s.1 == "syslog" && s.2)),
        ("?type=otlp", BTreeSet::new()),
    ];
    for (query, names) in cases {
        let listing = list_sources(&server, &token, query).await;
        assert_eq!(source_names(&listing), names, "{query}");
        assert_eq!(listing["total"], names.len(), "{query}");
        assert_eq!(listing["limit"], 50, "{query}");
        assert_eq!(listing["offset"], 0, "{query}");
    }

    // Pages of two visit every source once.
    let mut seen = Vec::new();
    for (offset, size) in [(0, 2), (2, 2), (4, 1), (6, 0)] {
        let listing = list_sources(&server, &token, &format!("?limit=2&offset={offset}")).await;
        assert_eq!(listing["total"], 5);
        assert_eq!(listing["limit"], 2);
        assert_eq!(listing["offset"], offset);
        let page = listing["sources"].as_array().unwrap();
        assert_eq!(page.len(), size, "offset {offset}");
        seen.extend(page.iter().map(|s| s["name"].as_str().unwrap().to_owned()));
    }
    assert_eq!(seen.len(), 5, "{seen:?}");
    assert_eq!(seen.into_iter().collect::<BTreeSet<_>>(), expect(&|_| true));
    let filtered_page = list_sources(&server, &token, "?type=syslog&limit=2&offset=2").await;
    assert_eq!(filtered_page["total"], 3);
    assert_eq!(filtered_page["sources"].as_array().unwrap().len(), 1);

    // The largest offset the databases take is an empty page; one more is refused, not a panic.
    let far = list_sources(&server, &token, &format!("?offset={}", i64::MAX)).await;
    assert_eq!((far["total"].as_u64(), far["sources"].as_array().map(Vec::len)), (Some(5), Some(0)), "{far}");
    for (query, field) in [
        ("?limit=0", Some("limit")),
        ("?limit=1001", Some("limit")),
        ("?enabled=maybe", Some("enabled")),
        ("?type=carrier-pigeon", Some("type")),
        ("?type=SYSLOG", Some("type")),
        ("?offset=9223372036854775808", Some("offset")),
        ("?offset=18446744073709551615", Some("offset")),
    ] {
        let named = refused(call(&server, Method::GET, &format!("/api/v1/sources{query}"), &token), 400).await;
        assert_eq!(named, fields(&[field.unwrap()]), "{query}");
    }
    for query in ["?limit=abc", "?offset=-1", "?limit=-5"] {
        refused(call(&server, Method::GET, &format!("/api/v1/sources{query}"), &token), 400).await;
    }
    server.stop().await.unwrap();
}

async fn viewers_read_but_only_maintainers_change_or_ingest(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let (_, mia) = user(&server, "mia", Role::Maintainer).await;
    let (_, vic) = user(&server, "vic", Role::Viewer).await;
    let source = create_source(&server, &mia, json!({ "name": "shared", "type": "http" })).await;
    let id = source["id"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/sources/{id}");
    ingest_logs(&server, &mia, &id, json!([{ "message": "written by a maintainer" }])).await;

    // A viewer reads sources, logs and metrics ...
    assert_eq!(list_sources(&server, &vic, "").await["total"], 1);
    assert_eq!(get_source(&server, &vic, &id).await, source);
    assert_eq!(messages(&server, &vic, &[("source_id", id.as_str())]).await, ["written by a maintainer"]);
    assert_eq!(list_series(&server, &vic, "").await["total"], 0);
    let query = json!({ "metric": "up", "start": T0, "end": T0 + 60, "step": 60, "aggregation": "max" });
    assert_eq!(range_query(&server, &vic, query).await, Vec::<Value>::new());

    // ... and changes nothing.
    let create = call(&server, Method::POST, "/api/v1/sources", &vic).json(&json!({ "name": "mine", "type": "http" }));
    refused(create, 403).await;
    refused(put_source(&server, &vic, &id, json!({ "name": "hijacked" })), 403).await;
    refused(call(&server, Method::DELETE, &path, &vic), 403).await;
    refused(call(&server, Method::GET, &format!("{path}/keys"), &vic), 403).await;
    refused(call(&server, Method::POST, &format!("{path}/keys"), &vic).json(&json!({ "name": "k" })), 403).await;
    refused(logs_request(&server, &vic, &id, json!([{ "message": "sneaky" }])), 403).await;
    refused(metrics_request(&server, &vic, &id, json!([{ "name": "up", "value": 0 }])), 403).await;
    // Refused for the role before the body is read: a malformed or invalid body gets the
    // same 403, never a 400 describing what the body should be.
    for (method, path) in [
        (Method::POST, "/api/v1/sources".to_owned()),
        (Method::PUT, path.clone()),
        (Method::POST, format!("{path}/keys")),
        (Method::POST, "/api/v1/logs".to_owned()),
        (Method::POST, "/api/v1/metrics".to_owned()),
        (Method::PUT, "/api/v1/admin/config".to_owned()),
        (Method::POST, "/api/v1/users".to_owned()),
    ] {
        for body in [r#"{"name": "#, r#"{"unknown": 1}"#] {
            let request =
                call(&server, method.clone(), &path, &vic).header("Content-Type", "application/json").body(body);
            let (status, answer) = send(request).await;
            assert_eq!(status, 403, "{method} {path} {body}: {answer}");
        }
    }
    assert_eq!(get_source(&server, &mia, &id).await, source);
    assert_eq!(list_sources(&server, &mia, "").await["total"], 1);
    assert_eq!(messages(&server, &mia, &[("source_id", id.as_str())]).await, ["written by a maintainer"]);

    // Without credentials nothing at all.
    for (method, path) in [
        (Method::GET, "/api/v1/sources".to_owned()),
        (Method::GET, path.clone()),
        (Method::POST, "/api/v1/sources".to_owned()),
        (Method::GET, "/api/v1/logs".to_owned()),
        (Method::GET, "/api/v1/metrics".to_owned()),
    ] {
        let response = call(&server, method.clone(), &path, "").send().await.unwrap();
        assert_eq!(response.status(), 401, "{method} {path}");
        assert_eq!(response.headers()["www-authenticate"], "Bearer", "{method} {path}");
    }
    server.stop().await.unwrap();
}

async fn deleting_a_source_deletes_its_keys_and_logs(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let (_, mia) = user(&server, "mia", Role::Maintainer).await;
    let doomed = new_source(&server, &mia, "doomed").await;
    let kept = new_source(&server, &mia, "kept").await;
    let (_, key) = server.create_ingest_key(&mia, &doomed).await;
    let (_, kept_key) = server.create_ingest_key(&mia, &kept).await;
    let logs = json!([{ "message": "one" }, { "message": "two" }, { "message": "three" }]);
    ingest_logs(&server, &key, &doomed, logs).await;
    ingest_logs(&server, &kept_key, &kept, json!([{ "message": "kept" }])).await;
    assert_eq!(messages(&server, &mia, &[("source_id", doomed.as_str())]).await.len(), 3);

    let response = call(&server, Method::DELETE, &format!("/api/v1/sources/{doomed}"), &mia).send().await.unwrap();
    assert_eq!(response.status(), 204);

    assert_eq!(messages(&server, &mia, &[("source_id", doomed.as_str())]).await, Vec::<String>::new());
    refused(call(&server, Method::GET, &format!("/api/v1/sources/{doomed}/keys"), &mia), 404).await;
    // Its key is refused like any unknown key (once the 2 s ingest-key cache has
    // passed: `a_deleted_sources_ingest_key_is_refused_at_once` asks for it at once).
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    refused(logs_request(&server, &key, &doomed, json!([{ "message": "zombie" }])), 401).await;
    refused(metrics_request(&server, &key, &doomed, json!([{ "name": "up", "value": 1 }])), 401).await;

    // The other source keeps its logs and its key.
    assert_eq!(messages(&server, &mia, &[("source_id", kept.as_str())]).await, ["kept"]);
    ingest_logs(&server, &kept_key, &kept, json!([{ "message": "still here" }])).await;
    // Nothing is left behind in the tables either.
    assert_eq!(count_rows(&db, "logs").await, 2);
    assert_eq!(count_rows(&db, "ingest_keys").await, 1);
    server.stop().await.unwrap();
}

async fn deleting_a_source_deletes_its_metric_series_and_samples(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let (_, mia) = user(&server, "mia", Role::Maintainer).await;
    let doomed = new_source(&server, &mia, "doomed").await;
    let kept = new_source(&server, &mia, "kept").await;
    let depth = |queue: &str, value: f64| json!({ "name": "queue_depth", "labels": { "queue": queue }, "value": value, "timestamp": T0 });
    ingest_metrics(&server, &mia, &doomed, json!([depth("a", 1.0), depth("b", 2.0), depth("b", 3.0)])).await;
    ingest_metrics(&server, &mia, &kept, json!([depth("a", 7.0)])).await;
    assert_eq!(list_series(&server, &mia, &format!("?source_id={doomed}")).await["total"], 2);

    let response = call(&server, Method::DELETE, &format!("/api/v1/sources/{doomed}"), &mia).send().await.unwrap();
    assert_eq!(response.status(), 204);

    let series = list_series(&server, &mia, &format!("?source_id={doomed}")).await;
    assert_eq!(series["total"], 0, "{series}");
    // The other source keeps its series: the same name and labels answer only its value.
    assert_eq!(list_series(&server, &mia, "").await["total"], 1);
    let query = json!({ "metric": "queue_depth", "start": T0, "end": T0, "step": 60, "aggregation": "sum" });
    let result = range_query(&server, &mia, query).await;
    assert_eq!(result.len(), 1, "{result:?}");
    assert_points(&points(&result[0]), &[(T0 as f64, 7.0)], "kept's queue_depth");
    // The samples went with their series.
    assert_eq!(count_rows(&db, "metric_series").await, 1);
    assert_eq!(count_rows(&db, "metric_samples").await, 1);
    server.stop().await.unwrap();
}

/// Two replicas ingest logs and metrics into a source while a third request deletes it:
/// the deletion succeeds (PostgreSQL deadlocked it: 500 in 6 of 10 trials) and every
/// ingest is stored (202) or finds the source gone (404), never a 500 from the rows'
/// foreign key; nothing is left behind.
/// A deletion waits for the batches holding the source, or they for it: never a deadlock
/// (the deletion is not retried, so one would answer 500), whatever the interleaving; run
/// a few times to meet several.
async fn deleting_a_source_while_replicas_ingest_into_it(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let replica = TestServer::start(db.config()).await;
    let (_, mia) = user(&server, "mia", Role::Maintainer).await;
    for attempt in 0..3 {
        delete_while_ingesting(&db, &server, &replica, &mia, &format!("doomed-{attempt}")).await;
    }
    replica.stop().await.unwrap();
    server.stop().await.unwrap();
}

async fn delete_while_ingesting(db: &TestDb, server: &TestServer, replica: &TestServer, mia: &str, name: &str) {
    let (server, replica, mia) = (server, replica, &mia.to_owned());
    let id = new_source(server, mia, name).await;
    let done = std::sync::atomic::AtomicBool::new(false);
    let worker = |to: &'static str, n: usize| {
        let (server, done, id, mia) = (if to == "a" { server } else { replica }, &done, &id, mia);
        async move {
            let mut answers = Vec::new();
            let mut round = 0;
            while !done.load(std::sync::atomic::Ordering::SeqCst) || round < 3 {
                round += 1;
                let request = if n.is_multiple_of(2) {
                    let logs: Vec<Value> = (0..50).map(|i| json!({ "message": format!("{n}-{round}-{i}") })).collect();
                    logs_request(server, mia, id, json!(logs))
                } else {
                    let samples: Vec<Value> = (0..50)
                        .map(|i| {
                            sample(
                                "doomed_total",
                                "counter",
                                json!({ "i": format!("{n}-{i}") }),
                                1.0,
                                json!(T0 + round),
                            )
                        })
                        .collect();
                    metrics_request(server, mia, id, json!(samples))
                };
                answers.push(send(request).await.0);
            }
            answers
        }
    };
    let deletion = async {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let answer = send(call(server, Method::DELETE, &format!("/api/v1/sources/{id}"), mia)).await.0;
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        answer
    };
    let (deleted, a0, a1, b0, b1) =
        tokio::join!(deletion, worker("a", 0), worker("a", 1), worker("b", 2), worker("b", 3));
    assert_eq!(deleted, 204);
    let answers: Vec<u16> = [a0, a1, b0, b1].concat();
    assert!(answers.iter().all(|s| *s == 202 || *s == 404), "{answers:?}");
    assert!(answers.contains(&202) && answers.contains(&404), "{answers:?}");
    for table in ["logs", "metric_series", "metric_samples", "sources"] {
        assert_eq!(count_rows(db, table).await, 0, "{table}");
    }
}

async fn a_deleted_sources_ingest_key_is_refused_at_once(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let (_, mia) = user(&server, "mia", Role::Maintainer).await;
    let id = new_source(&server, &mia, "doomed").await;
    let (_, key) = server.create_ingest_key(&mia, &id).await;
    ingest_logs(&server, &key, &id, json!([{ "message": "last words" }])).await;
    let response = call(&server, Method::DELETE, &format!("/api/v1/sources/{id}"), &mia).send().await.unwrap();
    assert_eq!(response.status(), 204);
    // The key went with its source, as a deleted key does: 401, like any unknown key.
    refused(logs_request(&server, &key, &id, json!([{ "message": "zombie" }])), 401).await;
    server.stop().await.unwrap();
}

async fn ingest_keys_are_shown_once_and_listed_by_prefix(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let (mia, token) = user(&server, "mia", Role::Maintainer).await;
    let id = new_source(&server, &token, "collectors").await;
    let path = format!("/api/v1/sources/{id}/keys");

    let before = Utc::now();
    let response =
        call(&server, Method::POST, &path, &token).json(&json!({ "name": "collector-1" })).send().await.unwrap();
    let after = Utc::now();
    assert_eq!(response.status(), 201);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let first: Value = response.json().await.unwrap();
    let key = first["key"].as_str().unwrap().to_owned();
    let prefix = first["prefix"].as_str().unwrap().to_owned();
    assert!(key.starts_with("kki_") && key.len() >= 36, "{key}");
    assert!(prefix.len() > 4 && prefix.len() < key.len() && key.starts_with(&prefix), "{prefix} / {key}");
    assert!(uuid::Uuid::parse_str(first["id"].as_str().unwrap()).is_ok());
    assert_eq!(first["source_id"], id.as_str());
    assert_eq!(first["name"], "collector-1");
    assert_eq!(first["created_by"], mia.id.as_str());
    assert_within(instant(&first["created_at"]), before, after, "created_at");

    let (second_id, second_key) = server.create_ingest_key(&token, &id).await;
    assert_ne!(second_key, key);

    let listed = call(&server, Method::GET, &path, &token).send().await.unwrap();
    assert_eq!(listed.status(), 200);
    let text = listed.text().await.unwrap();
    assert!(!text.contains(&key) && !text.contains(&second_key), "a listing shows a key: {text}");
    let listed: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(listed["total"], 2);
    let keys = listed["keys"].as_array().unwrap();
    let ids: BTreeSet<&str> = keys.iter().map(|k| k["id"].as_str().unwrap()).collect();
    assert_eq!(ids, BTreeSet::from([first["id"].as_str().unwrap(), second_id.as_str()]));
    for listed_key in keys {
        assert!(listed_key.get("key").is_none(), "{listed_key}");
        let listed_prefix = listed_key["prefix"].as_str().unwrap();
        let plaintext = if listed_key["id"] == first["id"] { &key } else { &second_key };
        assert!(plaintext.starts_with(listed_prefix), "{listed_prefix}");
        assert_eq!(listed_key["source_id"], id.as_str());
    }
    // Only the digest is stored.
    let conn = db.connect().await;
    let sql = "SELECT key_hash FROM ingest_keys";
    let rows = conn.query_all_raw(Statement::from_string(conn.get_database_backend(), sql)).await.unwrap();
    let digests: BTreeSet<String> = rows.iter().map(|r| r.try_get("", "key_hash").unwrap()).collect();
    assert_eq!(
        digests,
        BTreeSet::from([killkrill::auth::keys::digest(&key), killkrill::auth::keys::digest(&second_key)])
    );
    conn.close().await.unwrap();

    let named = refused(call(&server, Method::POST, &path, &token).json(&json!({ "name": "" })), 400).await;
    assert_eq!(named, fields(&["name"]));
    let unknown_key = format!("{path}/{}", uuid::Uuid::new_v4());
    refused(call(&server, Method::DELETE, &unknown_key, &token), 404).await;
    server.stop().await.unwrap();
}

async fn an_ingest_key_only_ingests_for_its_own_source(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let (_, mia) = user(&server, "mia", Role::Maintainer).await;
    let mine = new_source(&server, &mia, "mine").await;
    let theirs = new_source(&server, &mia, "theirs").await;
    let (_, key) = server.create_ingest_key(&mia, &mine).await;

    let logs = json!([{ "message": "first from the key" }, { "message": "second from the key", "timestamp": T0 }]);
    ingest_logs(&server, &key, &mine, logs).await;
    let (status, body) = send(ndjson_request(&server, &key, &mine, "{\"message\": \"ndjson from the key\"}\n")).await;
    assert_eq!((status, body), (202, json!({ "accepted": 1, "dropped": 0 })));
    let stored = messages(&server, &mia, &[("source_id", mine.as_str())]).await;
    let stored: BTreeSet<String> = stored.into_iter().collect();
    assert_eq!(stored, fields(&["first from the key", "second from the key", "ndjson from the key"]));

    // Another source is off limits.
    refused(logs_request(&server, &key, &theirs, json!([{ "message": "intruder" }])), 403).await;
    refused(metrics_request(&server, &key, &theirs, json!([{ "name": "up", "value": 0 }])), 403).await;
    refused(ndjson_request(&server, &key, &theirs, "{\"message\": \"intruder\"}\n"), 403).await;
    assert_eq!(messages(&server, &mia, &[("source_id", theirs.as_str())]).await, Vec::<String>::new());
    assert_eq!(list_series(&server, &mia, &format!("?source_id={theirs}")).await["total"], 0);

    // It reads nothing and changes nothing else.
    let query = json!({ "metric": "up", "start": T0, "end": T0 + 60, "step": 60 });
    let forbidden: Vec<RequestBuilder> = vec![
        call(&server, Method::GET, "/api/v1/logs", &key),
        call(&server, Method::GET, &format!("/api/v1/logs?source_id={mine}"), &key),
        call(&server, Method::GET, "/api/v1/sources", &key),
        call(&server, Method::GET, &format!("/api/v1/sources/{mine}"), &key),
        call(&server, Method::GET, &format!("/api/v1/sources/{mine}/keys"), &key),
        call(&server, Method::GET, "/api/v1/metrics", &key),
        call(&server, Method::POST, "/api/v1/metrics/query", &key).json(&query),
        call(&server, Method::GET, "/api/v1/status", &key),
        call(&server, Method::GET, "/api/v1/auth/me", &key),
        call(&server, Method::POST, "/api/v1/sources", &key).json(&json!({ "name": "k", "type": "http" })),
        put_source(&server, &key, &mine, json!({ "enabled": false })),
        call(&server, Method::DELETE, &format!("/api/v1/sources/{mine}"), &key),
        call(&server, Method::POST, &format!("/api/v1/sources/{mine}/keys"), &key).json(&json!({ "name": "k" })),
    ];
    // 403, not 401: the key is known and valid, it is just not allowed there.
    for request in forbidden {
        refused(request, 403).await;
    }
    // An unknown ingest key is no credential at all.
    refused(call(&server, Method::GET, "/api/v1/logs", "kki_not-a-real-key"), 401).await;
    assert_eq!(get_source(&server, &mia, &mine).await["enabled"], true);
    assert_eq!(list_sources(&server, &mia, "").await["total"], 2);

    // A made-up ingest key ingests nothing.
    refused(logs_request(&server, "kki_not-a-real-key", &mine, json!([{ "message": "forged" }])), 401).await;
    assert_eq!(messages(&server, &mia, &[("source_id", mine.as_str())]).await.len(), 3);
    server.stop().await.unwrap();
}

async fn an_ingest_key_ingests_metrics_for_its_own_source_only(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let (_, mia) = user(&server, "mia", Role::Maintainer).await;
    let mine = create_source(&server, &mia, json!({ "name": "mine", "type": "prometheus" })).await;
    let mine = mine["id"].as_str().unwrap().to_owned();
    let theirs = new_source(&server, &mia, "theirs").await;
    let (_, key) = server.create_ingest_key(&mia, &mine).await;
    let up = json!([{ "name": "up", "type": "gauge", "labels": { "job": "node" }, "value": 1, "timestamp": T0 }]);

    ingest_metrics(&server, &key, &mine, up.clone()).await;
    refused(metrics_request(&server, &key, &theirs, up.clone()), 403).await;
    // Fenced away from the client's address, then let in.
    send(put_source(&server, &mia, &mine, json!({ "allowed_cidrs": ["10.0.0.0/8"] }))).await;
    refused(metrics_request(&server, &key, &mine, up.clone()), 403).await;
    send(put_source(&server, &mia, &mine, json!({ "allowed_cidrs": ["127.0.0.0/8"] }))).await;
    let later =
        json!([{ "name": "up", "type": "gauge", "labels": { "job": "node" }, "value": 0, "timestamp": T0 + 60 }]);
    ingest_metrics(&server, &key, &mine, later).await;

    let listing = list_series(&server, &mia, "").await;
    assert_eq!(listing["total"], 1, "{listing}");
    assert_eq!(listing["metrics"][0]["source_id"], mine.as_str());
    assert_eq!(listing["metrics"][0]["last_value"].as_f64(), Some(0.0));
    let query = json!({ "metric": "up", "start": T0, "end": T0 + 119, "step": 60, "aggregation": "count" });
    let result = range_query(&server, &mia, query).await;
    assert_eq!(result.len(), 1);
    assert_points(&points(&result[0]), &[(T0 as f64, 1.0), ((T0 + 60) as f64, 1.0)], "up count");
    server.stop().await.unwrap();
}

async fn allowed_cidrs_bound_where_an_ingest_key_may_ingest_from(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let (_, mia) = user(&server, "mia", Role::Maintainer).await;
    let fenced =
        create_source(&server, &mia, json!({ "name": "fenced", "type": "syslog", "allowed_cidrs": ["10.0.0.0/8"] }))
            .await;
    let id = fenced["id"].as_str().unwrap().to_owned();
    let (_, key) = server.create_ingest_key(&mia, &id).await;

    // The test client connects from 127.0.0.1, outside 10.0.0.0/8.
    refused(logs_request(&server, &key, &id, json!([{ "message": "from loopback" }])), 403).await;
    refused(metrics_request(&server, &key, &id, json!([{ "name": "up", "value": 1 }])), 403).await;
    assert_eq!(messages(&server, &mia, &[("source_id", id.as_str())]).await, Vec::<String>::new());
    assert_eq!(list_series(&server, &mia, "").await["total"], 0);

    let mut accepted = 0;
    for cidrs in [json!(["127.0.0.0/8"]), json!(["192.168.0.0/16", "127.0.0.1/32"]), json!([])] {
        let (status, body) = send(put_source(&server, &mia, &id, json!({ "allowed_cidrs": cidrs }))).await;
        assert_eq!(status, 200, "{body}");
        ingest_logs(&server, &key, &id, json!([{ "message": format!("allowed by {cidrs}") }])).await;
        accepted += 1;
    }
    assert_eq!(messages(&server, &mia, &[("source_id", id.as_str())]).await.len(), accepted);

    // Fencing it again takes effect on the next batch (the test client is 127.0.0.1).
    let (status, _) = send(put_source(&server, &mia, &id, json!({ "allowed_cidrs": ["10.0.0.0/8", "::1/128"] }))).await;
    assert_eq!(status, 200);
    refused(logs_request(&server, &key, &id, json!([{ "message": "fenced again" }])), 403).await;
    assert_eq!(messages(&server, &mia, &[("source_id", id.as_str())]).await.len(), accepted);
    server.stop().await.unwrap();
}

async fn a_deleted_ingest_key_is_refused_at_once(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let (_, mia) = user(&server, "mia", Role::Maintainer).await;
    let id = new_source(&server, &mia, "rotating").await;
    let other = new_source(&server, &mia, "other").await;
    let (key_id, key) = server.create_ingest_key(&mia, &id).await;
    let (sibling_id, sibling) = server.create_ingest_key(&mia, &id).await;
    ingest_logs(&server, &key, &id, json!([{ "message": "before the rotation" }])).await;

    let path = format!("/api/v1/sources/{id}/keys/{key_id}");
    let response = call(&server, Method::DELETE, &path, &mia).send().await.unwrap();
    assert_eq!(response.status(), 204);
    // At once: the key was used (and cached) a moment ago.
    refused(logs_request(&server, &key, &id, json!([{ "message": "after the rotation" }])), 401).await;
    refused(metrics_request(&server, &key, &id, json!([{ "name": "up", "value": 1 }])), 401).await;
    refused(call(&server, Method::DELETE, &path, &mia), 404).await;

    // Its sibling still works, and cannot be deleted through another source's path.
    ingest_logs(&server, &sibling, &id, json!([{ "message": "from the sibling" }])).await;
    refused(call(&server, Method::DELETE, &format!("/api/v1/sources/{other}/keys/{sibling_id}"), &mia), 404).await;
    ingest_logs(&server, &sibling, &id, json!([{ "message": "still the sibling" }])).await;
    let listed: Value = send(call(&server, Method::GET, &format!("/api/v1/sources/{id}/keys"), &mia)).await.1;
    assert_eq!(listed["total"], 1);
    assert_eq!(listed["keys"][0]["id"], sibling_id.as_str());
    assert_eq!(
        messages(&server, &mia, &[("source_id", id.as_str())]).await.into_iter().collect::<BTreeSet<_>>(),
        fields(&["before the rotation", "from the sibling", "still the sibling"])
    );
    server.stop().await.unwrap();
}

async fn a_disabled_source_refuses_ingest(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let (_, mia) = user(&server, "mia", Role::Maintainer).await;
    let id = new_source(&server, &mia, "switchable").await;
    let (_, key) = server.create_ingest_key(&mia, &id).await;
    let (status, body) = send(put_source(&server, &mia, &id, json!({ "enabled": false }))).await;
    assert_eq!((status, &body["enabled"]), (200, &json!(false)));

    for cred in [key.as_str(), mia.as_str()] {
        refused(logs_request(&server, cred, &id, json!([{ "message": "while disabled" }])), 403).await;
        refused(ndjson_request(&server, cred, &id, "{\"message\": \"while disabled\"}\n"), 403).await;
        refused(metrics_request(&server, cred, &id, json!([{ "name": "up", "value": 1 }])), 403).await;
    }
    assert_eq!(messages(&server, &mia, &[("source_id", id.as_str())]).await, Vec::<String>::new());
    assert_eq!(list_series(&server, &mia, "").await["total"], 0);

    send(put_source(&server, &mia, &id, json!({ "enabled": true }))).await;
    ingest_logs(&server, &key, &id, json!([{ "message": "enabled again" }])).await;
    assert_eq!(messages(&server, &mia, &[("source_id", id.as_str())]).await, ["enabled again"]);
    server.stop().await.unwrap();
}

async fn a_config_of_exactly_64_kib_is_stored(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let (_, mia) = user(&server, "mia", Role::Maintainer).await;
    // {"blob":"zzz…"}: 11 bytes of syntax around the string.
    let config = json!({ "blob": "z".repeat(64 * 1024 - 11) });
    assert_eq!(config.to_string().len(), 64 * 1024);
    let source = create_source(&server, &mia, json!({ "name": "big-config", "type": "file", "config": config })).await;
    assert_eq!(get_source(&server, &mia, source["id"].as_str().unwrap()).await["config"], config);
    let too_big = json!({ "name": "bigger", "type": "file", "config": { "blob": "z".repeat(64 * 1024 - 10) } });
    let named = refused(call(&server, Method::POST, "/api/v1/sources", &mia).json(&too_big), 400).await;
    assert_eq!(named, fields(&["config"]));
    server.stop().await.unwrap();
}

async fn source_names_and_types_match_exactly(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let (_, mia) = user(&server, "mia", Role::Maintainer).await;
    // Names differing only in case or accents are different names, as on every backend.
    for name in ["cafe", "Cafe", "CAFE", "café"] {
        create_source(&server, &mia, json!({ "name": name, "type": "http" })).await;
    }
    refused(call(&server, Method::POST, "/api/v1/sources", &mia).json(&json!({ "name": "café", "type": "file" })), 409)
        .await;
    assert_eq!(list_sources(&server, &mia, "?type=http").await["total"], 4);
    // Types match exactly, also where the collation ignores case (MariaDB): "HTTP" is no
    // type at all, and is refused rather than read as "http".
    refused(call(&server, Method::GET, "/api/v1/sources?type=HTTP", &mia), 400).await;
    server.stop().await.unwrap();
}
