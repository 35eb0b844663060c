//! Prometheus' query API under `/prometheus/api/v1`: envelope and errors, every endpoint,
//! time ranges and `match[]`, credentials, bad input, and Grafana's own requests
//! replayed. `conformance` runs a corpus of PromQL against a real Prometheus 2.42 fed the
//! same samples; `data` is those samples.

pub mod conformance;
pub mod data;

use base64::{Engine, engine::general_purpose::STANDARD};
use killkrill::{auth::Role, protocol::remote_write::WriteRequest};
use prost::Message;
use reqwest::Method;
use serde_json::{Value, json};

use crate::{
    common::{TestDb, TestServer, rest::*},
    remote_write::{answer, snappy},
};

cases! {
    on_all_databases:
        label_names_and_values_honour_the_time_range_and_match,
        series_select_label_sets_by_match_and_time_with_get_and_post,
        metadata_lists_what_senders_declared,
        buildinfo_and_exemplars_answer_as_prometheus_2,
        every_user_credential_form_reads_and_ingest_keys_are_refused,
        unknown_routes_and_methods_answer_in_prometheus_form,
        grafana_metric_browser_and_variable_requests_are_answered,
        grafana_health_check_and_queries_answer_in_prometheus_shape,
        bad_queries_are_refused_as_prometheus_refuses_them,
        queries_stop_at_the_samples_limit_and_the_timeout;
}

pub const API: &str = "/prometheus/api/v1";

/// How a request authenticates.
#[derive(Clone, Debug)]
pub enum Cred {
    None,
    Bearer(String),
    XApiKey(String),
    Basic(String, String),
}

/// A request to the query API: `params` in the URL for GET, as a form body for POST.
pub fn prom_request(
    server: &TestServer,
    method: Method,
    path: &str,
    params: &[(&str, &str)],
    cred: &Cred,
) -> reqwest::RequestBuilder {
    let url = server.url(&format!("{API}{path}"));
    let request = if method == Method::GET {
        server.client.get(server.url(&with_query(&format!("{API}{path}"), params)))
    } else {
        let body = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(params).finish();
        server.client.request(method, url).header("Content-Type", "application/x-www-form-urlencoded").body(body)
    };
    match cred {
        Cred::None => request,
        Cred::Bearer(secret) => request.bearer_auth(secret),
        Cred::XApiKey(key) => request.header("X-API-Key", key),
        Cred::Basic(user, password) => {
            request.header("Authorization", format!("Basic {}", STANDARD.encode(format!("{user}:{password}"))))
        }
    }
}

/// Sends a request; the status and the JSON body, asserting Prometheus' envelope: a
/// success has `data`, an error `errorType` and `error`, and both are JSON.
pub async fn prom(
    server: &TestServer,
    method: Method,
    path: &str,
    params: &[(&str, &str)],
    cred: &Cred,
) -> (u16, Value) {
    let response = prom_request(server, method, path, params, cred).send().await.unwrap();
    let status = response.status().as_u16();
    let content_type = response.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned());
    let text = response.text().await.unwrap();
    assert_eq!(content_type.as_deref(), Some("application/json"), "{status} {path}: {text}");
    let body: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{status} {path}: not JSON ({e}): {text}"));
    if status == 200 {
        assert_eq!(body["status"], "success", "{path}: {body}");
        assert!(body.get("data").is_some(), "{path}: {body}");
    } else {
        assert_eq!(body["status"], "error", "{status} {path}: {body}");
        assert!(body["errorType"].is_string() && body["error"].is_string(), "{status} {path}: {body}");
        assert_eq!(body.as_object().unwrap().len(), 3, "{status} {path}: {body}");
    }
    (status, body)
}

/// A refusal: its status and error type.
pub fn refusal(answer: &(u16, Value)) -> (u16, &str) {
    (answer.0, answer.1["errorType"].as_str().unwrap_or_default())
}

/// A server holding the dataset, with a viewer's token.
pub struct Loaded {
    pub server: TestServer,
    pub viewer: Cred,
}

/// Remote-writes `requests` with `key`, asserting each is accepted.
pub async fn write_all(server: &TestServer, key: &str, requests: &[WriteRequest]) {
    for request in requests {
        let sent = server
            .client
            .post(server.url("/prometheus/api/v1/write"))
            .header("Content-Type", "application/x-protobuf")
            .header("Content-Encoding", "snappy")
            .header("X-Prometheus-Remote-Write-Version", "0.1.0")
            .bearer_auth(key)
            .body(snappy(&request.encode_to_vec()));
        assert_eq!(answer(sent).await, (204, String::new()));
    }
}

pub async fn loaded(db: &TestDb, start_ms: i64) -> Loaded {
    let server = TestServer::start(db.config()).await;
    let (_, maintainer) = user(&server, "mia", Role::Maintainer).await;
    let source = new_source(&server, &maintainer, "node").await;
    let (_, key) = server.create_ingest_key(&maintainer, &source).await;
    write_all(&server, &key, &data::requests(start_ms, 10_000)).await;
    let (_, viewer) = user(&server, "vic", Role::Viewer).await;
    Loaded { server, viewer: Cred::Bearer(viewer) }
}

/// 2026-01-01T00:00:00Z, in milliseconds.
pub const START_MS: i64 = T0 * 1000;

/// Unix seconds of sample `i` of the dataset (without its jitter), as a parameter.
fn at(i: i64) -> String {
    ((START_MS + i * data::INTERVAL_MS) / 1000).to_string()
}

fn strings(value: &Value) -> Vec<&str> {
    value.as_array().unwrap_or_else(|| panic!("not an array: {value}")).iter().map(|v| v.as_str().unwrap()).collect()
}

async fn data_of(l: &Loaded, path: &str, params: &[(&str, &str)]) -> Value {
    let (status, body) = prom(&l.server, Method::GET, path, params, &l.viewer).await;
    assert_eq!(status, 200, "{path} {params:?}: {body}");
    body["data"].clone()
}

async fn label_names_and_values_honour_the_time_range_and_match(db: TestDb) {
    let l = loaded(&db, START_MS).await;
    let names = data_of(&l, "/labels", &[]).await;
    assert_eq!(
        strings(&names),
        ["__name__", "code", "instance", "job", "kind", "le", "method", "sensor", "type", "version"]
    );
    let names = data_of(&l, "/labels", &[("match[]", "up"), ("match[]", "build_info")]).await;
    assert_eq!(strings(&names), ["__name__", "instance", "job", "version"]);

    let metrics = data_of(&l, "/label/__name__/values", &[]).await;
    assert_eq!(strings(&metrics).len(), 13, "{metrics}");
    assert!(strings(&metrics).is_sorted());
    let node = data_of(&l, "/label/__name__/values", &[("match[]", r#"{job="node"}"#)]).await;
    assert_eq!(strings(&node), ["memory_bytes", "node_temperature_celsius", "signed_gauge", "tiny_values"]);

    // queue_depth{instance="w1"} ended with a stale marker at sample 100; the 404 counter
    // of web-1 started at sample 50.
    let workers = |start: String, end: String| {
        let l = &l;
        async move {
            let params = [("match[]", "queue_depth"), ("start", start.as_str()), ("end", end.as_str())];
            strings(&data_of(l, "/label/instance/values", &params).await).join(",")
        }
    };
    assert_eq!(workers(at(0), at(199)).await, "w1,w2");
    assert_eq!(workers(at(101), at(199)).await, "w2");
    assert_eq!(workers(at(100), at(100)).await, "w1,w2", "the stale marker is a sample");
    let codes = |params: Vec<(&'static str, String)>| {
        let l = &l;
        async move {
            let mut all = vec![("match[]", r#"http_requests_total{job="web"}"#.to_owned())];
            all.extend(params);
            let all: Vec<(&str, &str)> = all.iter().map(|(k, v)| (*k, v.as_str())).collect();
            strings(&data_of(l, "/label/code/values", &all).await).join(",")
        }
    };
    assert_eq!(codes(vec![]).await, "200,404");
    assert_eq!(codes(vec![("end", at(49))]).await, "200");
    assert_eq!(codes(vec![("start", at(50))]).await, "200,404");
    assert_eq!(
        codes(vec![("start", "2026-01-01T00:16:00Z".into()), ("end", "2026-01-01T00:20:00Z".into())]).await,
        "404"
    );
    // Before and after the data: nothing, as an empty list.
    assert_eq!(codes(vec![("end", at(-1))]).await, "");
    assert_eq!(data_of(&l, "/labels", &[("start", &at(300))]).await, json!([]));

    // A regex on the name, a negative matcher, a limit.
    let params = [("match[]", r#"{__name__=~"request_duration_seconds_.+", le!="+Inf"}"#)];
    assert_eq!(strings(&data_of(&l, "/label/le/values", &params).await), ["0.05", "0.1", "0.25", "0.5", "1", "2.5"]);
    let (status, body) = prom(&l.server, Method::GET, "/label/job/values", &[("limit", "2")], &l.viewer).await;
    assert_eq!(
        (status, body["data"].clone(), body["warnings"].clone()),
        (200, json!(["api", "node"]), json!(["results truncated due to limit"]))
    );
    let (status, body) =
        prom(&l.server, Method::POST, "/labels", &[("match[]", "up"), ("limit", "0")], &l.viewer).await;
    assert_eq!((status, body["data"].clone()), (200, json!(["__name__", "instance", "job"])));
    assert!(body.get("warnings").is_none(), "{body}");

    // Prometheus' refusals, in its words.
    let bad = [
        ("/label/1a/values", vec![], "invalid label name: \"1a\""),
        (
            "/label/job/values",
            vec![("start", "yesterday")],
            "invalid parameter \"start\": Invalid time value for 'start': cannot parse \"yesterday\" to a valid timestamp",
        ),
        (
            "/labels",
            vec![("end", "1e400")],
            "invalid parameter \"end\": Invalid time value for 'end': cannot parse \"1e400\" to a valid timestamp",
        ),
        ("/labels", vec![("match[]", r#"{job=""}"#)], "match[] must contain at least one non-empty matcher"),
        ("/label/job/values", vec![("limit", "-1")], "invalid parameter \"limit\": limit must be non-negative"),
    ];
    for (path, params, message) in bad {
        let answer = prom(&l.server, Method::GET, path, &params, &l.viewer).await;
        assert_eq!(refusal(&answer), (400, "bad_data"), "{path}: {}", answer.1);
        assert_eq!(answer.1["error"], message, "{path}");
    }
    for selector in [r#"up{job=~"("}"#, "rate(up[5m])", "up offset 5m", "up{"] {
        let answer = prom(&l.server, Method::GET, "/label/job/values", &[("match[]", selector)], &l.viewer).await;
        assert_eq!(refusal(&answer), (400, "bad_data"), "{selector}: {}", answer.1);
    }
    l.server.stop().await.unwrap();
}

async fn series_select_label_sets_by_match_and_time_with_get_and_post(db: TestDb) {
    let l = loaded(&db, START_MS).await;
    let both = [("match[]", r#"up{job="api"}"#), ("match[]", r#"build_info{version=~"1\\.2\\.[34]"}"#)];
    let expected = json!([
        {"__name__": "build_info", "instance": "api-1:80", "job": "api", "version": "1.2.3"},
        {"__name__": "build_info", "instance": "api-2:80", "job": "api", "version": "1.2.4"},
        {"__name__": "up", "instance": "api-1:80", "job": "api"},
        {"__name__": "up", "instance": "api-2:80", "job": "api"},
    ]);
    for method in [Method::GET, Method::POST] {
        let (status, body) = prom(&l.server, method.clone(), "/series", &both, &l.viewer).await;
        assert_eq!((status, &body["data"]), (200, &expected), "{method}");
    }
    // A POST's form values come before the URL's, as Go's FormValue reads them.
    let post = l
        .server
        .client
        .post(l.server.url(&format!("{API}/series?match[]=up&limit=1")))
        .bearer_auth(match &l.viewer {
            Cred::Bearer(t) => t,
            _ => unreachable!(),
        })
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("limit=3");
    let (status, body) = send(post).await;
    assert_eq!((status, body["data"].as_array().unwrap().len()), (200, 3), "{body}");

    let stale = [("match[]", "queue_depth"), ("start", "2026-01-01T00:30:00Z")];
    assert_eq!(
        data_of(&l, "/series", &stale).await,
        json!([{"__name__": "queue_depth", "instance": "w2", "job": "worker"}])
    );
    let nothing = [("match[]", "queue_depth"), ("end", "1700000000")];
    assert_eq!(data_of(&l, "/series", &nothing).await, json!([]));

    let answer = prom(&l.server, Method::GET, "/series", &[], &l.viewer).await;
    assert_eq!(
        (refusal(&answer), answer.1["error"].as_str()),
        ((400, "bad_data"), Some("no match[] parameter provided"))
    );
    let answer = prom(&l.server, Method::POST, "/series", &[("match[]", r#"{job=~".*"}"#)], &l.viewer).await;
    assert_eq!(
        (refusal(&answer), answer.1["error"].as_str()),
        ((400, "bad_data"), Some("invalid parameter \"match[]\": match[] must contain at least one non-empty matcher"))
    );
    l.server.stop().await.unwrap();
}

async fn metadata_lists_what_senders_declared(db: TestDb) {
    let l = loaded(&db, START_MS).await;
    let all = data_of(&l, "/metadata", &[]).await;
    assert_eq!(all["http_requests_total"], json!([{"type": "counter", "help": "Requests served.", "unit": ""}]));
    assert_eq!(all["request_duration_seconds"], json!([{"type": "histogram", "help": "Request latency.", "unit": ""}]));
    assert_eq!(all.as_object().unwrap().len(), 4, "{all}");
    let one = data_of(&l, "/metadata", &[("metric", "up")]).await;
    assert_eq!(one, json!({"up": [{"type": "gauge", "help": "Whether the target answered.", "unit": ""}]}));
    assert_eq!(data_of(&l, "/metadata", &[("metric", "nothing")]).await, json!({}));
    assert_eq!(data_of(&l, "/metadata", &[("limit", "2")]).await.as_object().unwrap().len(), 2);
    assert_eq!(data_of(&l, "/metadata", &[("limit", "-1")]).await.as_object().unwrap().len(), 4);
    let answer = prom(&l.server, Method::GET, "/metadata", &[("limit", "x")], &l.viewer).await;
    assert_eq!((refusal(&answer), answer.1["error"].as_str()), ((400, "bad_data"), Some("limit must be a number")));
    l.server.stop().await.unwrap();
}

async fn buildinfo_and_exemplars_answer_as_prometheus_2(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let (_, viewer) = user(&server, "vic", Role::Viewer).await;
    let viewer = Cred::Bearer(viewer);
    let (status, body) = prom(&server, Method::GET, "/status/buildinfo", &[], &viewer).await;
    assert_eq!(status, 200);
    let info = body["data"].as_object().unwrap();
    assert!(info["version"].as_str().unwrap().starts_with("2."), "{body}");
    let mut fields: Vec<&str> = info.keys().map(String::as_str).collect();
    fields.sort_unstable();
    assert_eq!(fields, ["branch", "buildDate", "buildUser", "goVersion", "revision", "version"], "no `features`");

    for method in [Method::GET, Method::POST] {
        let (status, body) =
            prom(&server, method, "/query_exemplars", &[("query", "up"), ("start", "0"), ("end", "10")], &viewer).await;
        assert_eq!((status, body["data"].clone()), (200, json!([])));
    }
    let answer =
        prom(&server, Method::GET, "/query_exemplars", &[("query", "up"), ("start", "10"), ("end", "0")], &viewer)
            .await;
    assert_eq!(refusal(&answer), (400, "bad_data"));
    let answer = prom(&server, Method::GET, "/query_exemplars", &[("query", "up{")], &viewer).await;
    assert_eq!(refusal(&answer), (400, "bad_data"));
    server.stop().await.unwrap();
}

async fn every_user_credential_form_reads_and_ingest_keys_are_refused(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let (user_row, token) = user(&server, "vic", Role::Viewer).await;
    let (_, maintainer) = user(&server, "mia", Role::Maintainer).await;
    let source = new_source(&server, &maintainer, "node").await;
    let (_, ingest_key) = server.create_ingest_key(&maintainer, &source).await;
    let created = call(&server, Method::POST, "/api/v1/auth/api-keys", &token).json(&json!({ "name": "grafana" }));
    let (status, created) = send(created).await;
    assert_eq!(status, 201, "{created}");
    let api_key = created["key"].as_str().unwrap().to_owned();
    let password = user_row.password.clone();

    let readers = [
        ("jwt bearer", Cred::Bearer(token.clone())),
        ("api key bearer", Cred::Bearer(api_key.clone())),
        ("api key header", Cred::XApiKey(api_key.clone())),
        ("api key as basic password", Cred::Basic("grafana".into(), api_key.clone())),
        ("jwt as basic password", Cred::Basic(String::new(), token.clone())),
        ("basic username and password", Cred::Basic("vic".into(), password.clone())),
        ("basic email and password", Cred::Basic("vic@example.test".into(), password.clone())),
    ];
    for (form, cred) in &readers {
        // Twice: the second answer of a password comes from the memory of the first.
        for _ in 0..2 {
            let (status, body) = prom(&server, Method::GET, "/labels", &[], cred).await;
            assert_eq!(status, 200, "{form}: {body}");
        }
    }
    let refused = [
        ("nothing", Cred::None, 401, "unauthorized"),
        ("wrong password", Cred::Basic("vic".into(), "not-it".into()), 401, "unauthorized"),
        ("unknown user", Cred::Basic("nobody".into(), password.clone()), 401, "unauthorized"),
        ("bad token", Cred::Bearer("eyJ.e30.x".into()), 401, "unauthorized"),
        ("bad api key", Cred::XApiKey("kk_nope".into()), 401, "unauthorized"),
        ("ingest key bearer", Cred::Bearer(ingest_key.clone()), 403, "forbidden"),
        ("ingest key header", Cred::XApiKey(ingest_key.clone()), 403, "forbidden"),
        ("ingest key basic", Cred::Basic("prometheus".into(), ingest_key.clone()), 403, "forbidden"),
    ];
    for (form, cred, status, kind) in &refused {
        for path in ["/labels", "/status/buildinfo", "/label/__name__/values"] {
            let answer = prom(&server, Method::GET, path, &[], cred).await;
            assert_eq!(refusal(&answer), (*status, *kind), "{form} {path}: {}", answer.1);
        }
    }

    // A password changed is refused at once, though the old one was remembered.
    let change = call(&server, Method::POST, "/api/v1/auth/change-password", &token)
        .json(&json!({ "current_password": password, "new_password": "An0ther-passw0rd!" }));
    let (status, body) = send(change).await;
    assert_eq!(status, 200, "{body}");
    let old = prom(&server, Method::GET, "/labels", &[], &Cred::Basic("vic".into(), password.clone())).await;
    assert_eq!(refusal(&old), (401, "unauthorized"), "{}", old.1);
    let new = prom(&server, Method::GET, "/labels", &[], &Cred::Basic("vic".into(), "An0ther-passw0rd!".into())).await;
    assert_eq!(new.0, 200, "{}", new.1);
    server.stop().await.unwrap();
}

async fn unknown_routes_and_methods_answer_in_prometheus_form(db: TestDb) {
    let server = TestServer::start(db.config()).await;
    let (_, viewer) = user(&server, "vic", Role::Viewer).await;
    let viewer = Cred::Bearer(viewer);
    for path in ["/nothing", "/status/config", "/rules", "/label/job"] {
        let answer = prom(&server, Method::GET, path, &[], &viewer).await;
        assert_eq!(refusal(&answer), (404, "not_found"), "{path}: {}", answer.1);
    }
    let answer = prom(&server, Method::POST, "/label/job/values", &[], &viewer).await;
    assert_eq!(refusal(&answer), (405, "method_not_allowed"), "{}", answer.1);
    let answer = prom(&server, Method::DELETE, "/series", &[("match[]", "up")], &viewer).await;
    assert_eq!(refusal(&answer), (405, "method_not_allowed"), "{}", answer.1);
    // Outside the API, the JSON API's error body as before.
    let (status, body) = send(server.client.get(server.url("/prometheus/api/v2/query"))).await;
    assert_eq!((status, body["status_code"].clone()), (404, json!(404)), "{body}");
    server.stop().await.unwrap();
}

async fn grafana_metric_browser_and_variable_requests_are_answered(db: TestDb) {
    let l = loaded(&db, START_MS).await;
    let (start, end) = (at(0), at(199));
    let range = [("start", start.as_str()), ("end", end.as_str())];
    // The metric browser: every metric name, then the names of a job's series.
    let names = data_of(&l, "/label/__name__/values", &range).await;
    assert!(strings(&names).contains(&"http_requests_total"), "{names}");
    let with_match = [range[0], range[1], ("match[]", r#"{job="worker"}"#)];
    assert_eq!(data_of(&l, "/label/__name__/values", &with_match).await, json!(["queue_depth"]));
    // A template variable `label_values(up, instance)`, and `label_values(instance)`.
    let variable = [range[0], range[1], ("match[]", "up")];
    assert_eq!(data_of(&l, "/label/instance/values", &variable).await, json!(["api-1:80", "api-2:80", "web-1:80"]));
    let all = data_of(&l, "/label/instance/values", &range).await;
    assert_eq!(strings(&all), ["api-1:80", "api-2:80", "n1", "n2", "w1", "w2", "web-1:80"]);
    // Its query editor's label names of a metric, as newer Grafanas ask.
    let labels = [range[0], range[1], ("match[]", "http_requests_total")];
    let (status, body) = prom(&l.server, Method::POST, "/labels", &labels, &l.viewer).await;
    assert_eq!((status, body["data"].clone()), (200, json!(["__name__", "code", "instance", "job", "method"])));
    l.server.stop().await.unwrap();
}

async fn grafana_health_check_and_queries_answer_in_prometheus_shape(db: TestDb) {
    let l = loaded(&db, START_MS).await;
    // Grafana's health check: `1+1` at time 4, as a POST form (and GET, its fallback).
    for method in [Method::POST, Method::GET] {
        let (status, body) = prom(&l.server, method, "/query", &[("query", "1+1"), ("time", "4")], &l.viewer).await;
        assert_eq!(
            (status, body),
            (200, json!({"status": "success", "data": {"resultType": "scalar", "result": [4, "2"]}}))
        );
    }
    let (_, body) = prom(&l.server, Method::GET, "/query", &[("query", "\"hi\""), ("time", "1.5")], &l.viewer).await;
    assert_eq!(body["data"], json!({"resultType": "string", "result": [1.5, "hi"]}));

    // An instant vector, with the time as RFC 3339.
    let params = [("query", "sum by (job) (up)"), ("time", "2026-01-01T00:25:00Z")];
    let (status, body) = prom(&l.server, Method::POST, "/query", &params, &l.viewer).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["resultType"], "vector");
    let mut result = body["data"]["result"].as_array().unwrap().clone();
    result.sort_by_key(|s| s["metric"]["job"].as_str().unwrap().to_owned());
    assert_eq!(
        Value::Array(result),
        json!([{"metric": {"job": "api"}, "value": [T0 + 1500, "2"]}, {"metric": {"job": "web"}, "value": [T0 + 1500, "1"]}])
    );
    // A range query: a matrix, every step, stale markers ending the series.
    let params =
        [("query", "queue_depth{instance=\"w1\"} >= 0"), ("start", &at(90)), ("end", &at(110)), ("step", "30s")];
    let (status, body) = prom(&l.server, Method::GET, "/query_range", &params, &l.viewer).await;
    assert_eq!((status, &body["data"]["resultType"]), (200, &json!("matrix")), "{body}");
    let series = &body["data"]["result"][0];
    assert_eq!(series["metric"], json!({"__name__": "queue_depth", "instance": "w1", "job": "worker"}));
    let times: Vec<i64> = series["values"].as_array().unwrap().iter().map(|p| p[0].as_i64().unwrap()).collect();
    assert_eq!(times, [at(90), at(92), at(94), at(96), at(98)].map(|t| t.parse::<i64>().unwrap()), "{body}");
    // A scalar over a range is one series without labels; values as Prometheus writes them.
    let params = [("query", "time() * 0 + 1e-7"), ("start", "0"), ("end", "60"), ("step", "1m")];
    let (_, body) = prom(&l.server, Method::POST, "/query_range", &params, &l.viewer).await;
    assert_eq!(body["data"]["result"], json!([{"metric": {}, "values": [[0, "1e-07"], [60, "1e-07"]]}]));
    let (_, body) = prom(&l.server, Method::GET, "/query", &[("query", "-1/0"), ("time", "0.001")], &l.viewer).await;
    assert_eq!(body["data"]["result"], json!([0.001, "-Inf"]));
    l.server.stop().await.unwrap();
}

async fn bad_queries_are_refused_as_prometheus_refuses_them(db: TestDb) {
    let l = loaded(&db, START_MS).await;
    let range = |query: &'static str, start: &'static str, end: &'static str, step: &'static str| {
        vec![("query", query), ("start", start), ("end", end), ("step", step)]
    };
    // (path, parameters, status, errorType, error; "" for the parser's own words)
    type Case = (&'static str, Vec<(&'static str, &'static str)>, u16, &'static str, &'static str);
    let cases: Vec<Case> = vec![
        (
            "/query_range",
            range("up", "0", "11001", "1"),
            400,
            "bad_data",
            "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)",
        ),
        (
            "/query_range",
            range("up", "0", "100", "0"),
            400,
            "bad_data",
            "invalid parameter \"step\": zero or negative query resolution step widths are not accepted. Try a positive integer",
        ),
        (
            "/query_range",
            range("up", "0", "100", "abc"),
            400,
            "bad_data",
            "invalid parameter \"step\": cannot parse \"abc\" to a valid duration",
        ),
        (
            "/query_range",
            range("up", "x", "100", "1"),
            400,
            "bad_data",
            "invalid parameter \"start\": cannot parse \"x\" to a valid timestamp",
        ),
        (
            "/query_range",
            range("up", "10", "1", "1"),
            400,
            "bad_data",
            "invalid parameter \"end\": end timestamp must not be before start time",
        ),
        (
            "/query_range",
            range("up[5m]", "0", "10", "1"),
            400,
            "bad_data",
            "invalid expression type \"range vector\" for range query, must be Scalar or instant Vector",
        ),
        (
            "/query",
            vec![("query", "up"), ("time", "abc")],
            400,
            "bad_data",
            "invalid parameter \"time\": Invalid time value for 'time': cannot parse \"abc\" to a valid timestamp",
        ),
        (
            "/query",
            vec![("query", "up"), ("timeout", "soon")],
            400,
            "bad_data",
            "invalid parameter \"timeout\": cannot parse \"soon\" to a valid duration",
        ),
        ("/query", vec![("query", "sum(")], 400, "bad_data", ""),
        ("/query", vec![], 400, "bad_data", ""),
        ("/query", vec![("query", "up{job=~\"(\"}")], 400, "bad_data", ""),
        ("/query", vec![("query", "nofunc(up)")], 400, "bad_data", ""),
        ("/query_range", range("rate(up)", "0", "10", "1"), 400, "bad_data", ""),
        ("/query", vec![("query", "histogram_count(up)")], 422, "execution", ""),
        (
            "/query",
            vec![("query", "http_requests_total / on(instance) up"), ("time", "1767226800")],
            422,
            "execution",
            "",
        ),
    ];
    for (path, params, status, kind, message) in cases {
        for method in [Method::GET, Method::POST] {
            let answer = prom(&l.server, method.clone(), path, &params, &l.viewer).await;
            assert_eq!(refusal(&answer), (status, kind), "{method} {path} {params:?}: {}", answer.1);
            if !message.is_empty() {
                assert_eq!(answer.1["error"], message, "{path} {params:?}");
            }
        }
    }
    l.server.stop().await.unwrap();
}

async fn queries_stop_at_the_samples_limit_and_the_timeout(db: TestDb) {
    let mut config = db.config();
    config.promql_max_samples = 1_000;
    let server = TestServer::start(config).await;
    let (_, maintainer) = user(&server, "mia", Role::Maintainer).await;
    let source = new_source(&server, &maintainer, "node").await;
    let (_, key) = server.create_ingest_key(&maintainer, &source).await;
    write_all(&server, &key, &data::requests(START_MS, 10_000)).await;
    let (_, viewer) = user(&server, "vic", Role::Viewer).await;
    let viewer = Cred::Bearer(viewer);
    let end = (START_MS / 1000 + 3000).to_string();
    // The 1,510 samples of 8 series are over 1,000: refused whole, not answered in part.
    let over = "count_over_time({__name__=~\"http_requests_total|up\"}[1h])";
    let answer = prom(&server, Method::GET, "/query", &[("query", over), ("time", &end)], &viewer).await;
    assert_eq!(refusal(&answer), (422, "execution"), "{}", answer.1);
    assert_eq!(answer.1["error"], "query processing would load too many samples into memory in query execution");
    let answer =
        prom(&server, Method::GET, "/query", &[("query", "count_over_time(up[1h])"), ("time", &end)], &viewer).await;
    assert_eq!(answer.0, 200, "600 samples pass: {}", answer.1);

    let slow = [("query", "count_over_time({job=~\".+\"}[1h])"), ("time", end.as_str()), ("timeout", "0.000000001")];
    let answer = prom(&server, Method::POST, "/query", &slow, &viewer).await;
    assert_eq!(refusal(&answer), (503, "timeout"), "{}", answer.1);
    assert_eq!(answer.1["error"], "query timed out in query execution");
    server.stop().await.unwrap();
}
