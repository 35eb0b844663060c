//! `/elastic`: the Elasticsearch-compatible ingest. `_bulk` (actions answered per item, in
//! order; refused ones store nothing), the calls agents make before it, the credential
//! forms agents send, gzip and the body limit, errors in Elasticsearch's form with
//! `X-Elastic-Product` on every answer; and the official Python client's bulk helper end
//! to end. Each case runs on SQLite, PostgreSQL and MariaDB, over a real socket; what was
//! stored is read back through `GET /api/v1/logs`.

use std::io::Write;

use base64::{Engine, engine::general_purpose::STANDARD};
use killkrill::auth::Role;
use reqwest::{Method, RequestBuilder};
use serde_json::{Value, json};

use crate::common::{TestDb, TestServer, rest::*};

cases! {
    on_all_databases:
        the_handshake_calls_answer_as_elasticsearch_8,
        the_handshake_calls_check_credentials,
        bulk_answers_every_action_in_order_and_stores_nothing_of_a_refused_one,
        bulk_documents_become_logs_with_labels_and_flat_attributes,
        bulk_takes_every_credential_form_agents_send,
        bulk_reads_gzip_and_refuses_what_is_over_the_body_limit_with_413,
        errors_under_elastic_take_the_elasticsearch_form,
        each_agent_s_requests_are_answered_as_it_expects,
        single_documents_are_stored_as_elasticsearch_indexes_them,
        the_python_client_bulk_helper_ships_documents_end_to_end;
}

/// A server, a maintainer's token, a source named `agents` and an ingest key of it.
async fn setup(db: &TestDb) -> (TestServer, String, String, String) {
    setup_with(db, |_| {}).await
}

async fn setup_with(
    db: &TestDb,
    configure: impl FnOnce(&mut killkrill::config::Config),
) -> (TestServer, String, String, String) {
    let mut config = db.config();
    configure(&mut config);
    let server = TestServer::start(config).await;
    let (_, token) = user(&server, "mia", Role::Maintainer).await;
    let source_id = new_source(&server, &token, "agents").await;
    let (_, key) = server.create_ingest_key(&token, &source_id).await;
    (server, token, source_id, key)
}

/// A request with `Authorization: ApiKey <key>`, as agents configured with an API key send.
fn es(server: &TestServer, method: Method, path: &str, key: &str) -> RequestBuilder {
    server.client.request(method, server.url(path)).header("Authorization", format!("ApiKey {key}"))
}

/// `POST path` of an NDJSON body with the key.
fn bulk(server: &TestServer, path: &str, key: &str, body: impl Into<String>) -> RequestBuilder {
    es(server, Method::POST, path, key).header("Content-Type", "application/x-ndjson").body(body.into())
}

/// Each value on a line of its own, every line ending with `\n`.
fn ndjson(lines: &[Value]) -> String {
    lines.iter().map(|line| format!("{line}\n")).collect()
}

/// Sends `request`; asserts the status and the product header, returns the JSON body and
/// its text.
async fn answered(request: RequestBuilder, expected: u16) -> (Value, String) {
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let product = response.headers().get("x-elastic-product").map(|v| v.to_str().unwrap().to_owned());
    let text = response.text().await.unwrap();
    assert_eq!(status, expected, "{text}");
    assert_eq!(product.as_deref(), Some("Elasticsearch"), "no X-Elastic-Product on a {status}: {text}");
    let body = if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::Null) };
    (body, text)
}

/// Sends `request`; asserts it is refused with `expected` in Elasticsearch's error form;
/// returns the body.
async fn es_refused(request: RequestBuilder, expected: u16) -> Value {
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap();
    assert_eq!(status, expected, "{text}");
    assert_eq!(headers["x-elastic-product"], "Elasticsearch", "{text}");
    assert!(headers["content-type"].to_str().unwrap().starts_with("application/json"), "{headers:?}");
    let body: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    assert_eq!(body["status"], expected, "{body}");
    let kind = body["error"]["type"].as_str().unwrap_or_else(|| panic!("no error.type: {body}"));
    assert!(body["error"]["reason"].as_str().is_some_and(|r| !r.is_empty()), "{body}");
    assert_eq!(body["error"]["root_cause"][0]["type"], kind, "{body}");
    assert!(body.get("correlation_id").is_none() && body.get("message").is_none(), "the API's error body: {body}");
    if expected == 401 {
        let challenge = headers["www-authenticate"].to_str().unwrap();
        assert!(challenge.contains("Basic") && challenge.contains("ApiKey"), "{challenge}");
    }
    body
}

/// The logs of `source_id`, newest first.
async fn logs_of(server: &TestServer, token: &str, source_id: &str) -> Vec<Value> {
    let body = get_logs(server, token, &[("source_id", source_id), ("limit", "1000")]).await;
    body["logs"].as_array().unwrap().clone()
}

/// The actions' names and statuses of a bulk answer.
fn statuses(answer: &Value) -> Vec<(String, u64)> {
    answer["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| {
            let (name, body) = item.as_object().unwrap().iter().next().unwrap();
            (name.clone(), body["status"].as_u64().unwrap())
        })
        .collect()
}

fn pairs(expected: &[(&str, u64)]) -> Vec<(String, u64)> {
    expected.iter().map(|(name, status)| ((*name).to_owned(), *status)).collect()
}

async fn the_handshake_calls_answer_as_elasticsearch_8(db: TestDb) {
    let (server, _, _, key) = setup(&db).await;

    for path in ["/elastic", "/elastic/"] {
        let (body, _) = answered(es(&server, Method::GET, path, &key), 200).await;
        assert!(body["version"]["number"].as_str().unwrap().starts_with("8."), "{body}");
        assert_eq!(body["version"]["build_flavor"], "default");
        assert_eq!(body["tagline"], "You Know, for Search");
        for field in ["name", "cluster_name", "cluster_uuid"] {
            assert!(body[field].is_string(), "{field}: {body}");
        }
        for field in ["lucene_version", "minimum_wire_compatibility_version", "minimum_index_compatibility_version"] {
            assert!(body["version"][field].is_string(), "{field}: {body}");
        }
    }
    let (body, text) = answered(es(&server, Method::HEAD, "/elastic/", &key), 200).await;
    assert_eq!((body, text.as_str()), (Value::Null, ""));

    let (license, _) = answered(es(&server, Method::GET, "/elastic/_license", &key), 200).await;
    assert_eq!((&license["license"]["type"], &license["license"]["status"]), (&json!("basic"), &json!("active")));
    let (health, _) = answered(es(&server, Method::GET, "/elastic/_cluster/health", &key), 200).await;
    assert_eq!(health["status"], "green");
    answered(es(&server, Method::HEAD, "/elastic/_cat/health", &key), 200).await;
    let (xpack, _) = answered(es(&server, Method::GET, "/elastic/_xpack", &key), 200).await;
    assert_eq!(xpack["features"]["ilm"]["available"], true);
    answered(es(&server, Method::GET, "/elastic/_nodes", &key), 200).await;
    answered(es(&server, Method::GET, "/elastic/_nodes/_all/http", &key), 200).await;

    // What agents set up before shipping: acknowledged, and found afterwards.
    for path in [
        "/elastic/_index_template/logs-app",
        "/elastic/_component_template/logs-app@custom",
        "/elastic/_template/filebeat-8",
        "/elastic/_ilm/policy/filebeat",
        "/elastic/_ingest/pipeline/filebeat-8-system",
        "/elastic/_data_stream/logs-app-default",
    ] {
        let put = es(&server, Method::PUT, path, &key).json(&json!({ "index_patterns": ["logs-*"], "priority": 1 }));
        let (body, _) = answered(put, 200).await;
        assert_eq!(body, json!({ "acknowledged": true }), "{path}");
        answered(es(&server, Method::GET, path, &key), 200).await;
        answered(es(&server, Method::HEAD, path, &key), 200).await;
    }
    answered(es(&server, Method::HEAD, "/elastic/app-logs", &key), 200).await;
    let (created, _) = answered(es(&server, Method::PUT, "/elastic/app-logs", &key), 200).await;
    assert_eq!(created["index"], "app-logs");
    assert_eq!(created["acknowledged"], true);

    assert_eq!(count_rows(&db, "logs").await, 0, "a handshake stored something");
}

async fn the_handshake_calls_check_credentials(db: TestDb) {
    let (server, token, _, key) = setup(&db).await;
    let (_, viewer) = user(&server, "vic", Role::Viewer).await;
    let audited = count_rows(&db, "audit_log").await;
    let paths = [
        (Method::GET, "/elastic/"),
        (Method::HEAD, "/elastic/"),
        (Method::GET, "/elastic/_license"),
        (Method::GET, "/elastic/_cluster/health"),
        (Method::PUT, "/elastic/_index_template/logs-app"),
        (Method::POST, "/elastic/_bulk"),
    ];
    for (method, path) in paths {
        let plain = || server.client.request(method.clone(), server.url(path));
        if method == Method::HEAD {
            // A HEAD answer has no body: the status and headers are all there is.
            for request in [plain(), plain().header("Authorization", "ApiKey kki_wrong")] {
                let response = request.send().await.unwrap();
                assert_eq!(response.status(), 401, "{path}");
                assert_eq!(response.headers()["x-elastic-product"], "Elasticsearch");
            }
            continue;
        }
        es_refused(plain(), 401).await;
        es_refused(plain().header("Authorization", "ApiKey kki_not_a_key"), 401).await;
        es_refused(plain().basic_auth("elastic", Some("changeme")), 401).await;
        let body = es_refused(plain().bearer_auth(&viewer).header("X-Source", "agents"), 403).await;
        assert_eq!(body["error"]["type"], "security_exception");
        let body = es_refused(plain().bearer_auth(&token), 400).await;
        assert!(body["error"]["reason"].as_str().unwrap().contains("source"), "{body}");
        // With the key the credential passes (`_bulk` then refuses its empty body).
        let status = es(&server, method.clone(), path, &key).send().await.unwrap().status().as_u16();
        assert!(![401, 403].contains(&status), "{path} with the key: {status}");
    }
    // The data plane: a refused agent call is no control-plane change to audit.
    assert_eq!(count_rows(&db, "audit_log").await, audited);
}

async fn bulk_answers_every_action_in_order_and_stores_nothing_of_a_refused_one(db: TestDb) {
    let (server, token, source_id, key) = setup(&db).await;
    let body = ndjson(&[
        json!({ "index": { "_index": "app", "_id": "a1" } }),
        json!({ "message": "first", "@timestamp": rfc3339(T0 + 1) }),
        json!({ "create": { "_index": "app" } }),
        json!({ "message": "second", "@timestamp": (T0 + 2) * 1000 }),
        json!({ "delete": { "_index": "app", "_id": "a1" } }),
        json!({ "update": { "_index": "app", "_id": "a1" } }),
        json!({ "doc": { "message": "changed" } }),
        json!({ "index": { "_index": "app" } }),
        json!({ "no_message": true }),
        json!({ "index": { "_index": "app" } }),
        json!({ "message": "bad time", "@timestamp": "the day after tomorrow" }),
        json!({ "create": { "_index": "app", "_type": "_doc", "_id": 7 } }),
        json!({ "message": "third", "@timestamp": rfc3339(T0 + 3) }),
        json!({ "index": { "_index": "app" } }),
        json!({ "message": "a NUL \u{0} inside" }),
    ]) + "{\"index\": {\"_index\": \"app\"\n{\"message\": \"document of a broken action line\"}\n"
        + "{\"index\":{\"_index\":\"app\"}}\n{\"message\":\"fourth\",\"@timestamp\":\""
        + &rfc3339(T0 + 4)
        + "\"}";
    let (answer, text) = answered(bulk(&server, "/elastic/_bulk", &key, body), 200).await;
    assert!(text.contains("\"errors\":true"), "{text}");
    assert!(answer["took"].is_u64(), "{answer}");
    assert_eq!(
        statuses(&answer),
        pairs(&[
            ("index", 201),
            ("create", 201),
            ("delete", 400),
            ("update", 400),
            ("index", 400),
            ("index", 400),
            ("create", 201),
            ("index", 400),
            ("index", 400),
            ("index", 201),
        ])
    );
    let items: Vec<&Value> =
        answer["items"].as_array().unwrap().iter().map(|i| i.as_object().unwrap().values().next().unwrap()).collect();
    assert_eq!(items[0]["_id"], "a1");
    assert_eq!(items[0]["result"], "created");
    assert_eq!(items[0]["_index"], "app");
    assert_eq!(items[6]["_id"], "7");
    assert!(items[1]["_id"].as_str().is_some_and(|id| !id.is_empty()), "{}", items[1]);
    for refused in [items[2], items[3]] {
        assert_eq!(refused["error"]["type"], "action_request_validation_exception", "{refused}");
        assert!(refused["error"]["reason"].as_str().unwrap().contains("does not change stored logs"), "{refused}");
    }
    assert_eq!(items[4]["error"]["type"], "mapper_parsing_exception");
    assert!(items[4]["error"]["reason"].as_str().unwrap().contains("[message]"), "{}", items[4]);
    assert!(items[5]["error"]["reason"].as_str().unwrap().contains("[@timestamp]"), "{}", items[5]);
    assert!(items[7]["error"]["reason"].as_str().unwrap().contains("NUL"), "{}", items[7]);
    assert_eq!(items[8]["error"]["type"], "illegal_argument_exception", "{}", items[8]);

    let logs = logs_of(&server, &token, &source_id).await;
    let messages: Vec<&str> = logs.iter().map(|l| l["message"].as_str().unwrap()).collect();
    assert_eq!(messages, ["fourth", "third", "second", "first"]);
    assert_eq!(instant(&logs[2]["timestamp"]), at(T0 + 2), "epoch milliseconds");
    assert_eq!(count_rows(&db, "logs").await, 4);

    // All stored: `errors` is false, written so that agents' text searches find it.
    let body = ndjson(&[json!({ "create": {} }), json!({ "message": "clean" })]);
    let (answer, text) = answered(bulk(&server, "/elastic/app/_bulk", &key, body), 200).await;
    assert!(text.contains("\"errors\":false,\"items\":["), "{text}");
    assert_eq!(statuses(&answer), pairs(&[("create", 201)]));

    // `filter_path`, as Logstash and Beats send it.
    let body =
        ndjson(&[json!({ "create": {} }), json!({ "message": "filtered" }), json!({ "delete": { "_id": "x" } })]);
    let path = "/elastic/app/_bulk?filter_path=errors,items.*.error,items.*.status";
    let (answer, _) = answered(bulk(&server, path, &key, body), 200).await;
    assert_eq!(
        answer,
        json!({ "errors": true, "items": [
            { "create": { "status": 201 } },
            { "delete": { "status": 400, "error": answer["items"][1]["delete"]["error"].clone() } },
        ] })
    );
    assert!(answer["items"][1]["delete"]["error"]["type"].is_string(), "{answer}");

    // Counted per source, the actions refused before the service included.
    let exposition = server.get("/metrics").await.text().await.unwrap();
    let count = |outcome: &str| {
        let series =
            format!("killkrill_ingest_items_total{{source_id=\"{source_id}\",kind=\"logs\",outcome=\"{outcome}\"}} ");
        exposition.lines().find_map(|line| line.strip_prefix(&series)?.parse::<u64>().ok())
    };
    assert_eq!((count("accepted"), count("refused")), (Some(6), Some(7)), "{exposition}");
}

async fn bulk_documents_become_logs_with_labels_and_flat_attributes(db: TestDb) {
    let (server, token, source_id, key) = setup(&db).await;
    let body = ndjson(&[
        json!({ "create": {} }),
        json!({
            "@timestamp": "2026-01-01T00:00:05.250000Z",
            "message": "GET /orders 200",
            "log": { "level": "WARN", "logger": "http" },
            "host": { "name": "web-1", "ip": ["10.0.0.1", "10.0.0.2"] },
            "service": { "name": "shop", "version": "1.2.3" },
            "http.request.method": "GET",
            "http": { "response": { "status_code": 200 } },
            "user": { "id": 42, "roles": ["admin"] },
        }),
        json!({ "index": { "_index": "audit-trail" } }),
        json!({ "@timestamp": (T0 + 6) * 1000, "log": "from docker", "level": "err", "stream": "stderr" }),
        json!({ "index": {} }),
        json!({ "@timestamp": rfc3339(T0 + 7), "msg": "from a logfmt line", "log.level": "verbose" }),
    ]);
    let (answer, _) = answered(bulk(&server, "/elastic/web-logs/_bulk", &key, body), 200).await;
    assert_eq!(answer["errors"], false, "{answer}");
    assert_eq!(answer["items"][0]["create"]["_index"], "web-logs");
    assert_eq!(answer["items"][1]["index"]["_index"], "audit-trail");

    let logs = logs_of(&server, &token, &source_id).await;
    assert_eq!(logs.len(), 3);
    let (ecs, docker, logfmt) = (&logs[2], &logs[1], &logs[0]);

    assert_eq!(ecs["message"], "GET /orders 200");
    assert_eq!(ecs["level"], "warning");
    assert_eq!(ecs["hostname"], "web-1");
    assert_eq!(ecs["application"], "shop");
    assert_eq!(ecs["timestamp"], "2026-01-01T00:00:05.250000Z");
    assert_eq!(ecs["source_id"], source_id.as_str());
    assert_eq!(
        ecs["labels"],
        json!({
            "index": "web-logs",
            "service_name": "shop",
            "source": "agents",
            "level": "warning",
            "hostname": "web-1",
            "application": "shop",
        })
    );
    assert_eq!(
        ecs["attributes"],
        json!({
            "log.logger": "http",
            "host.ip": ["10.0.0.1", "10.0.0.2"],
            "service.version": "1.2.3",
            "http.request.method": "GET",
            "http.response.status_code": 200,
            "user.id": 42,
            "user.roles": ["admin"],
        })
    );

    assert_eq!(docker["message"], "from docker");
    assert_eq!(docker["level"], "error");
    assert_eq!(instant(&docker["timestamp"]), at(T0 + 6));
    assert_eq!(docker["labels"], json!({ "index": "audit-trail", "source": "agents", "level": "error" }));
    assert_eq!(docker["attributes"], json!({ "stream": "stderr" }));
    assert!(docker["hostname"].is_null() && docker["application"].is_null(), "{docker}");

    // A level word KillKrill does not know is kept as an attribute; the line is `info`.
    assert_eq!(logfmt["message"], "from a logfmt line");
    assert_eq!(logfmt["level"], "info");
    assert_eq!(logfmt["labels"]["index"], "web-logs");
    assert_eq!(logfmt["attributes"], json!({ "log.level": "verbose" }));
}

async fn bulk_takes_every_credential_form_agents_send(db: TestDb) {
    let (server, token, source_id, key) = setup(&db).await;
    let other = new_source(&server, &token, "elsewhere").await;
    let one = |message: &str| ndjson(&[json!({ "create": { "_index": "creds" } }), json!({ "message": message })]);
    let post = |path: &str| server.client.post(server.url(path)).header("Content-Type", "application/json");
    let pair = STANDARD.encode(format!("some-id:{key}"));
    let forms = [
        ("ApiKey <key>", post("/elastic/_bulk").header("Authorization", format!("ApiKey {key}"))),
        ("ApiKey base64(id:key)", post("/elastic/_bulk").header("Authorization", format!("ApiKey {pair}"))),
        ("Basic with the key as password", post("/elastic/_bulk").basic_auth("filebeat", Some(&key))),
        ("Bearer", post("/elastic/_bulk").bearer_auth(&key)),
        ("X-API-Key", post("/elastic/_bulk").header("X-API-Key", &key)),
        ("a user's token with X-Source", post("/elastic/_bulk").bearer_auth(&token).header("X-Source", "agents")),
        ("a user's token with ?source=", post(&format!("/elastic/_bulk?source={source_id}")).bearer_auth(&token)),
    ];
    for (form, request) in forms {
        let (answer, _) = answered(request.body(one(form)), 200).await;
        assert_eq!(statuses(&answer), pairs(&[("create", 201)]), "{form}");
    }
    let mut stored: Vec<String> =
        logs_of(&server, &token, &source_id).await.iter().map(|l| l["message"].as_str().unwrap().to_owned()).collect();
    stored.sort();
    assert_eq!(stored.len(), 7, "{stored:?}");
    assert!(logs_of(&server, &token, &other).await.is_empty());

    let (_, viewer) = user(&server, "vic", Role::Viewer).await;
    es_refused(post("/elastic/_bulk").body(one("none")), 401).await;
    es_refused(post("/elastic/_bulk").header("Authorization", "ApiKey kki_wrong").body(one("wrong")), 401).await;
    es_refused(post("/elastic/_bulk").bearer_auth(&viewer).header("X-Source", "agents").body(one("viewer")), 403).await;
    let body = es_refused(post("/elastic/_bulk").bearer_auth(&token).body(one("no source")), 400).await;
    assert!(body["error"]["reason"].as_str().unwrap().contains("source"), "{body}");
    assert_eq!(count_rows(&db, "logs").await, 7);
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

async fn bulk_reads_gzip_and_refuses_what_is_over_the_body_limit_with_413(db: TestDb) {
    const LIMIT: usize = 64 * 1024;
    let (server, token, source_id, key) = setup_with(&db, |c| c.max_body_bytes = LIMIT).await;
    let zipped = |body: Vec<u8>| {
        es(&server, Method::PUT, "/elastic/zip/_bulk", &key)
            .header("Content-Type", "application/vnd.elasticsearch+x-ndjson; compatible-with=8")
            .header("Content-Encoding", "gzip")
            .body(body)
    };
    let body = ndjson(&[json!({ "create": {} }), json!({ "message": "zipped" })]);
    let (answer, _) = answered(zipped(gzip(body.as_bytes())), 200).await;
    assert_eq!(statuses(&answer), pairs(&[("create", 201)]));

    // Small on the wire, over the limit once decompressed.
    let line = ndjson(&[json!({ "create": {} }), json!({ "message": "x".repeat(1000) })]);
    let big = line.repeat(LIMIT / line.len() + 2);
    let compressed = gzip(big.as_bytes());
    assert!(compressed.len() < LIMIT / 4);
    let body = es_refused(zipped(compressed), 413).await;
    assert_eq!(body["error"]["type"], "content_too_long_exception");
    // Over the limit as sent.
    es_refused(bulk(&server, "/elastic/zip/_bulk", &key, big), 413).await;
    // Not gzip at all.
    es_refused(zipped(b"not gzip".to_vec()), 400).await;

    let logs = logs_of(&server, &token, &source_id).await;
    assert_eq!(logs.iter().map(|l| l["message"].as_str().unwrap()).collect::<Vec<_>>(), ["zipped"]);
}

async fn errors_under_elastic_take_the_elasticsearch_form(db: TestDb) {
    let (server, _, _, key) = setup(&db).await;
    // Nothing to do: refused as a whole.
    let body = es_refused(bulk(&server, "/elastic/_bulk", &key, "\n\n"), 400).await;
    assert_eq!(body["error"]["type"], "action_request_validation_exception");
    // More documents than a batch holds: invalid, and nothing of it is stored.
    let line = ndjson(&[json!({ "create": {} }), json!({ "message": "m" })]);
    let body = es_refused(bulk(&server, "/elastic/many/_bulk", &key, line.repeat(10_001)), 400).await;
    assert!(body["error"]["reason"].as_str().unwrap().contains("10000"), "{body}");
    assert_eq!(count_rows(&db, "logs").await, 0);
    // Not a route of this API, a method a route does not take, a NUL in the path.
    es_refused(es(&server, Method::GET, "/elastic/app/_search/deeper/still", &key), 404).await;
    es_refused(es(&server, Method::GET, "/elastic/_bulk", &key), 405).await;
    es_refused(es(&server, Method::GET, "/elastic/_search", &key), 404).await;
    es_refused(es(&server, Method::GET, "/elastic/a%00b", &key), 400).await;
    // The API's own routes keep the API's error body.
    let response = server.get("/api/v1/nothing-here").await;
    assert!(response.headers().get("x-elastic-product").is_none());
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status_code"], 404, "{body}");
}

/// The Python interpreter of the venv `tests/clients/setup.sh` installs the clients into.
fn clients_python() -> std::path::PathBuf {
    let venv = std::env::var_os("KK_CLIENTS_VENV")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/clients-venv"));
    let python = venv.join("bin/python");
    assert!(
        python.exists(),
        "no Python venv with the protocol clients at {}: run bash tests/clients/setup.sh (or set KK_CLIENTS_VENV)",
        venv.display()
    );
    python
}

/// Runs `tests/clients/elastic_bulk.py` against the server; its JSON report.
async fn ship_with_python(server: &TestServer, mode: &str, credential: &str, index: &str, count: usize) -> Value {
    let python = clients_python();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/elastic_bulk.py");
    let args = [server.url("/elastic"), mode.to_owned(), credential.to_owned(), index.to_owned(), count.to_string()];
    let output =
        tokio::task::spawn_blocking(move || std::process::Command::new(python).arg(script).args(args).output())
            .await
            .unwrap()
            .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "elastic_bulk.py failed:\n{stdout}\n{stderr}");
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}\n{stderr}"))
}

async fn the_python_client_bulk_helper_ships_documents_end_to_end(db: TestDb) {
    let (server, token, source_id, key) = setup(&db).await;

    let report = ship_with_python(&server, "api_key", &key, "shop-logs", 500).await;
    assert!(report["version"].as_str().unwrap().starts_with("8."), "{report}");
    assert_eq!(report["tagline"], "You Know, for Search");
    assert_eq!(report["health"], "green");
    assert_eq!(report["index_exists"], true);
    assert_eq!((&report["ok"], &report["errors"]), (&json!(500), &json!([])), "{report}");
    // The refused actions reach the client as its own per-item errors.
    assert_eq!(report["refused_ok"], 0, "{report}");
    assert_eq!(
        report["refused"],
        json!([
            { "delete": { "status": 400, "type": "action_request_validation_exception" } },
            { "update": { "status": 400, "type": "action_request_validation_exception" } },
            { "create": { "status": 400, "type": "mapper_parsing_exception" } },
        ])
    );

    let logs = logs_of(&server, &token, &source_id).await;
    assert_eq!(logs.len(), 500);
    let by_message =
        |message: &str| logs.iter().find(|l| l["message"] == message).unwrap_or_else(|| panic!("{message} missing"));
    let seventh = by_message("request 7");
    assert_eq!(seventh["timestamp"], "2026-01-01T00:00:07.007000Z");
    assert_eq!(seventh["level"], "debug");
    assert_eq!(seventh["hostname"], "web-1");
    assert_eq!(seventh["application"], "shop");
    assert_eq!(
        seventh["labels"],
        json!({
            "index": "shop-logs",
            "service_name": "shop",
            "source": "agents",
            "level": "debug",
            "hostname": "web-1",
            "application": "shop",
        })
    );
    assert_eq!(
        seventh["attributes"],
        json!({
            "log.logger": "http",
            "service.version": "1.2.3",
            "http.request.method": "GET",
            "http.response.status_code": 202,
            "tags": ["checkout", "eu"],
        })
    );
    let levels: std::collections::BTreeMap<&str, usize> = logs.iter().fold(Default::default(), |mut counts, l| {
        *counts.entry(l["level"].as_str().unwrap()).or_default() += 1;
        counts
    });
    assert_eq!(levels, [("debug", 125), ("error", 125), ("info", 125), ("warning", 125)].into());
    assert_eq!(by_message("request 61")["timestamp"], "2026-01-01T00:01:01.061000Z");

    // Basic authentication with the key as the password, as many agents are configured.
    let report = ship_with_python(&server, "basic", &key, "basic-logs", 20).await;
    assert_eq!((&report["ok"], &report["errors"]), (&json!(20), &json!([])), "{report}");
    let body = get_logs(&server, &token, &[("source_id", source_id.as_str()), ("limit", "1000")]).await;
    let basic = body["logs"].as_array().unwrap().iter().filter(|l| l["labels"]["index"] == "basic-logs").count();
    assert_eq!(basic, 20);
}

/// The requests Fluent Bit, Vector, Filebeat and rsyslog send (INTEROP.md §5.2: their
/// headers, query parameters, action lines and document shapes), and what each reads of
/// the answer.
async fn each_agent_s_requests_are_answered_as_it_expects(db: TestDb) {
    let (server, token, source_id, key) = setup(&db).await;
    let ndjson_post = |path: &str| server.client.post(server.url(path)).header("Content-Type", "application/x-ndjson");

    // Fluent Bit: no handshake; Basic auth, the legacy `_type`, Docker's `log`; only a 200
    // or 201 whose body says `"errors":false` counts as delivered.
    let body = ndjson(&[
        json!({ "create": { "_index": "logstash-2026.01.01", "_type": "_doc" } }),
        json!({ "@timestamp": "2026-01-01T00:00:01.123Z", "log": "fluent line", "stream": "stdout",
                "kubernetes": { "pod_name": "web-0", "namespace_name": "shop" } }),
    ]);
    let fluent = ndjson_post("/elastic/_bulk").basic_auth("fluent", Some(&key)).body(body);
    let (_, text) = answered(fluent, 200).await;
    assert!(text.contains("\"errors\":false,\"items\":["), "{text}");

    // Vector: reads the major version on `/`, checks `/_cluster/health`, bulks with
    // `?timeout=60s`, and looks for `"errors":true` in the text.
    let pair = STANDARD.encode(format!("vector:{key}"));
    let vector = |method: Method, path: &str| es(&server, method, path, &pair);
    let (root, _) = answered(vector(Method::GET, "/elastic/"), 200).await;
    assert_eq!(root["version"]["number"].as_str().unwrap().split('.').next(), Some("8"));
    answered(vector(Method::GET, "/elastic/_cluster/health"), 200).await;
    let body = ndjson(&[
        json!({ "index": { "_index": "vector-2026.01.01" } }),
        json!({ "message": "vector line", "timestamp": "2026-01-01T00:00:02.000000001Z", "host": "web-2",
                "source_type": "file" }),
    ]);
    let request = vector(Method::POST, "/elastic/_bulk?timeout=60s").header("Content-Type", "application/x-ndjson");
    let (_, text) = answered(request.body(body), 200).await;
    assert!(!text.contains("\"errors\":true"), "{text}");

    // Filebeat 8: version and license first, then templates and ILM, then `create`
    // actions with `filter_path`.
    let filebeat = |method: Method, path: &str| es(&server, method, path, &key);
    answered(filebeat(Method::GET, "/elastic/"), 200).await;
    let (license, _) = answered(filebeat(Method::GET, "/elastic/_license?human=false"), 200).await;
    assert_eq!(license["license"]["type"], "basic");
    answered(filebeat(Method::GET, "/elastic/_xpack"), 200).await;
    answered(filebeat(Method::HEAD, "/elastic/_index_template/filebeat-8.19.0"), 200).await;
    answered(filebeat(Method::GET, "/elastic/_ilm/policy/filebeat"), 200).await;
    answered(filebeat(Method::PUT, "/elastic/_ilm/policy/filebeat").json(&json!({ "policy": {} })), 200).await;
    let body = ndjson(&[
        json!({ "create": { "_index": "filebeat-8.19.0" } }),
        json!({ "@timestamp": "2026-01-01T00:00:03.000Z", "message": "filebeat line",
                "log": { "file": { "path": "/var/log/syslog" }, "offset": 42 },
                "host": { "name": "web-3" }, "agent": { "type": "filebeat", "version": "8.19.0" },
                "ecs": { "version": "8.0.0" }, "input": { "type": "filestream" } }),
    ]);
    let path = "/elastic/_bulk?filter_path=errors,items.*.error,items.*.status";
    let request = filebeat(Method::POST, path).header("Content-Type", "application/json; charset=UTF-8");
    let (answer, _) = answered(request.body(body), 200).await;
    assert_eq!(answer, json!({ "errors": false, "items": [{ "create": { "status": 201 } }] }));

    // rsyslog's omelasticsearch: `HEAD /_cat/health` must be a 200, then bulk mode with its
    // default template's fields.
    let rsyslog =
        |method: Method, path: &str| server.client.request(method, server.url(path)).basic_auth("rsyslog", Some(&key));
    answered(rsyslog(Method::HEAD, "/elastic/_cat/health"), 200).await;
    let body = ndjson(&[
        json!({ "index": { "_index": "system", "_type": "events" } }),
        json!({ "timestamp": "2026-01-01T00:00:04.000000+00:00", "host": "web-4", "severity": "warning",
                "facility": "daemon", "tag": "app[12]:", "message": "rsyslog line" }),
    ]);
    let request = rsyslog(Method::POST, "/elastic/_bulk").header("Content-Type", "application/json");
    let (answer, _) = answered(request.body(body), 200).await;
    assert_eq!(statuses(&answer), pairs(&[("index", 201)]));

    let logs = logs_of(&server, &token, &source_id).await;
    let seen: Vec<(&str, &str, Option<&str>, &str)> = logs
        .iter()
        .map(|l| {
            (
                l["message"].as_str().unwrap(),
                l["timestamp"].as_str().unwrap(),
                l["hostname"].as_str(),
                l["labels"]["index"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("rsyslog line", "2026-01-01T00:00:04.000000Z", Some("web-4"), "system"),
            ("filebeat line", "2026-01-01T00:00:03.000000Z", Some("web-3"), "filebeat-8.19.0"),
            ("vector line", "2026-01-01T00:00:02.000000Z", Some("web-2"), "vector-2026.01.01"),
            ("fluent line", "2026-01-01T00:00:01.123000Z", None, "logstash-2026.01.01"),
        ]
    );
    assert_eq!(logs[3]["attributes"]["kubernetes.pod_name"], "web-0");
    assert_eq!(logs[1]["attributes"]["log.offset"], 42);
    assert_eq!(logs[0]["attributes"]["severity"], "warning");
}

async fn single_documents_are_stored_as_elasticsearch_indexes_them(db: TestDb) {
    let (server, token, source_id, key) = setup(&db).await;
    let doc = |method: Method, path: &str| es(&server, method, path, &key).header("Content-Type", "application/json");

    let response =
        doc(Method::POST, "/elastic/app/_doc").body(r#"{"message":"posted","level":"error"}"#).send().await.unwrap();
    assert_eq!(response.status(), 201);
    assert_eq!(response.headers()["x-elastic-product"], "Elasticsearch");
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let body: Value = response.json().await.unwrap();
    assert_eq!((&body["_index"], &body["result"]), (&json!("app"), &json!("created")), "{body}");
    assert_eq!(location, format!("/elastic/app/_doc/{}", body["_id"].as_str().unwrap()));

    let (body, _) =
        answered(doc(Method::PUT, "/elastic/app/_doc/abc").body(r#"{"message":"put with an id"}"#), 201).await;
    assert_eq!(body["_id"], "abc");
    let pretty = "{\n  \"message\": \"created, pretty\",\n  \"@timestamp\": \"2026-01-01T00:00:09Z\"\n}\n";
    let (body, _) = answered(doc(Method::PUT, "/elastic/app/_create/xyz").body(pretty), 201).await;
    assert_eq!(body["_id"], "xyz");

    let refused = es_refused(doc(Method::POST, "/elastic/app/_doc").body(r#"{"no":"message"}"#), 400).await;
    assert_eq!(refused["error"]["type"], "mapper_parsing_exception");
    es_refused(doc(Method::POST, "/elastic/_search/_doc").body(r#"{"message":"m"}"#), 404).await;
    es_refused(server.client.post(server.url("/elastic/app/_doc")).body(r#"{"message":"m"}"#), 401).await;

    let logs = logs_of(&server, &token, &source_id).await;
    let mut messages: Vec<&str> = logs.iter().map(|l| l["message"].as_str().unwrap()).collect();
    messages.sort_unstable();
    assert_eq!(messages, ["created, pretty", "posted", "put with an id"]);
    assert!(logs.iter().all(|l| l["labels"]["index"] == "app"), "{logs:?}");
    let posted = logs.iter().find(|l| l["message"] == "posted").unwrap();
    assert_eq!(posted["level"], "error");
}
