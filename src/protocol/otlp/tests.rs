use opentelemetry_proto::tonic::{
    common::v1::{AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList, any_value::Value as V},
    logs::v1::{LogRecord, ResourceLogs, ScopeLogs},
    metrics::v1::{
        ExponentialHistogram, ExponentialHistogramDataPoint, Gauge, Histogram, HistogramDataPoint, Metric,
        NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, Summary, SummaryDataPoint, metric::Data,
        number_data_point, summary_data_point::ValueAtQuantile,
    },
    resource::v1::Resource,
};
use serde_json::json;

use super::*;

fn s(text: &str) -> Option<AnyValue> {
    Some(AnyValue { value: Some(V::StringValue(text.to_owned())) })
}

fn kv(key: &str, value: Option<AnyValue>) -> KeyValue {
    KeyValue { key: key.to_owned(), value, ..Default::default() }
}

fn resource(attributes: Vec<KeyValue>) -> Option<Resource> {
    Some(Resource { attributes, ..Default::default() })
}

fn one_log(resource_attrs: Vec<KeyValue>, record: LogRecord) -> NewLog {
    let request = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: resource(resource_attrs),
            scope_logs: vec![ScopeLogs {
                scope: Some(InstrumentationScope {
                    name: "app.module".into(),
                    version: "1.2".into(),
                    attributes: vec![kv("shared", s("scope"))],
                    ..Default::default()
                }),
                log_records: vec![record],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let mut logs = logs(request);
    assert_eq!(logs.len(), 1);
    logs.remove(0)
}

#[test]
fn severity_numbers_map_by_range_and_text_otherwise() {
    for (number, level) in [
        (1, Level::Debug),
        (4, Level::Debug),
        (5, Level::Debug),
        (9, Level::Info),
        (12, Level::Info),
        (13, Level::Warning),
        (17, Level::Error),
        (20, Level::Error),
        (21, Level::Critical),
        (24, Level::Critical),
    ] {
        assert_eq!(level_of(number, "ignored"), Some(level), "{number}");
    }
    assert_eq!(level_of(0, "WARN"), Some(Level::Warning));
    assert_eq!(level_of(0, "fatal"), Some(Level::Critical));
    assert_eq!(level_of(99, "error"), Some(Level::Error));
    assert_eq!(level_of(0, "loud"), None);
    assert_eq!(level_of(0, ""), None);
}

#[test]
fn a_log_record_keeps_its_time_body_resource_labels_and_attributes() {
    let record = LogRecord {
        time_unix_nano: 1_767_225_600_123_456_789,
        observed_time_unix_nano: 1_767_225_601_000_000_000,
        severity_number: 13,
        severity_text: "WARN".into(),
        body: s("disk almost full"),
        attributes: vec![
            kv("http.method", s("GET")),
            kv("shared", s("record")),
            kv("count", Some(AnyValue { value: Some(V::IntValue(3)) })),
            kv(
                "nested",
                Some(AnyValue {
                    value: Some(V::KvlistValue(KeyValueList {
                        values: vec![kv("a", Some(AnyValue { value: Some(V::BoolValue(true)) }))],
                    })),
                }),
            ),
            kv(
                "list",
                Some(AnyValue {
                    value: Some(V::ArrayValue(ArrayValue {
                        values: vec![s("x").unwrap(), AnyValue { value: Some(V::DoubleValue(f64::NAN)) }],
                    })),
                }),
            ),
        ],
        trace_id: vec![0x5b, 0x8e, 0xff, 0xf7, 0x98, 0x03, 0x81, 0x03, 0xd2, 0x69, 0xb6, 0x33, 0x81, 0x3f, 0xc6, 0x0c],
        span_id: vec![0xee, 0xe1, 0x9b, 0x7e, 0xc3, 0xc1, 0xb1, 0x74],
        ..Default::default()
    };
    let log = one_log(
        vec![
            kv("service.name", s("checkout")),
            kv("service.namespace", s("shop")),
            kv("host.name", s("web-1")),
            kv("k8s.pod.name", s("checkout-7d9")),
            kv("deployment.environment.name", s("prod")),
            kv("cloud.region", s("eu-west-1")),
            kv("shared", s("resource")),
        ],
        record,
    );
    assert_eq!(log.timestamp, Ok(Some(1_767_225_600_123_456)));
    assert_eq!(log.level, Ok(Some(Level::Warning)));
    assert_eq!(log.message, "disk almost full");
    assert_eq!(log.hostname.as_deref(), Some("web-1"));
    assert_eq!(log.application.as_deref(), Some("checkout"));
    let labels: Vec<(&str, &str)> = log.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(
        labels,
        [
            ("deployment_environment", "prod"),
            ("k8s_pod_name", "checkout-7d9"),
            ("service_name", "checkout"),
            ("service_namespace", "shop"),
        ]
    );
    assert_eq!(
        log.attributes,
        Some(json!({
            "cloud.region": "eu-west-1",
            "otel.scope.name": "app.module",
            "otel.scope.version": "1.2",
            "shared": "record",
            "http.method": "GET",
            "count": 3,
            "nested.a": true,
            "list": ["x", "NaN"],
            "trace_id": "5b8efff798038103d269b633813fc60c",
            "span_id": "eee19b7ec3c1b174",
        }))
    );
}

#[test]
fn the_time_falls_back_to_the_observed_time_then_receipt() {
    let observed = LogRecord { observed_time_unix_nano: 2_000_000_000, body: s("x"), ..Default::default() };
    assert_eq!(one_log(vec![], observed).timestamp, Ok(Some(2_000_000)));
    let none = LogRecord { body: s("x"), ..Default::default() };
    assert_eq!(one_log(vec![], none).timestamp, Ok(None));
}

#[test]
fn bodies_other_than_strings_are_json_text_and_unknown_severity_text_is_kept() {
    let record = LogRecord {
        severity_text: "LOUD".into(),
        body: Some(AnyValue {
            value: Some(V::KvlistValue(KeyValueList { values: vec![kv("user", s("ann")), kv("ok", None)] })),
        }),
        ..Default::default()
    };
    let log = one_log(vec![], record);
    assert_eq!(log.message, r#"{"ok":null,"user":"ann"}"#);
    assert_eq!(log.level, Ok(None));
    assert_eq!(log.attributes.unwrap()["severity_text"], "LOUD");
    let bytes = LogRecord { body: Some(AnyValue { value: Some(V::BytesValue(b"hi".to_vec())) }), ..Default::default() };
    assert_eq!(one_log(vec![], bytes).message, "aGk=");
    let event = LogRecord { event_name: "user.login".into(), ..Default::default() };
    assert_eq!(one_log(vec![], event).message, "user.login");
}

fn point(value: f64, attributes: Vec<KeyValue>) -> NumberDataPoint {
    NumberDataPoint {
        attributes,
        time_unix_nano: 1_767_225_600_000_000_000,
        value: Some(number_data_point::Value::AsDouble(value)),
        ..Default::default()
    }
}

fn metrics_of(resource_attrs: Vec<KeyValue>, metrics: Vec<Metric>) -> Samples {
    super::metrics(ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: resource(resource_attrs),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(InstrumentationScope { name: "meter".into(), ..Default::default() }),
                metrics,
                ..Default::default()
            }],
            ..Default::default()
        }],
    })
}

fn metric(name: &str, data: Data) -> Metric {
    Metric { name: name.to_owned(), data: Some(data), ..Default::default() }
}

/// `name{k=v,...} value` of each sample, labels sorted.
fn shown(samples: &Samples) -> Vec<String> {
    samples
        .samples
        .iter()
        .map(|s| {
            let labels: Vec<String> =
                s.labels.iter().map(|(k, v)| format!("{k}={}", v.as_deref().unwrap_or("?"))).collect();
            format!("{}{{{}}} {} {}", s.name, labels.join(","), s.value.unwrap(), s.metric_type.as_deref().unwrap())
        })
        .collect()
}

const CUMULATIVE: i32 = AggregationTemporality::Cumulative as i32;
const DELTA_T: i32 = AggregationTemporality::Delta as i32;

#[test]
fn sums_become_counters_with_total_or_gauges_and_resource_gives_job_and_instance() {
    let out = metrics_of(
        vec![
            kv("service.name", s("api")),
            kv("service.namespace", s("shop")),
            kv("service.instance.id", s("i-1")),
            kv("host.name", s("dropped")),
        ],
        vec![
            metric(
                "http.server.requests",
                Data::Sum(Sum {
                    data_points: vec![point(7.0, vec![kv("http.method", s("GET"))])],
                    aggregation_temporality: CUMULATIVE,
                    is_monotonic: true,
                }),
            ),
            metric(
                "queue_total",
                Data::Sum(Sum {
                    data_points: vec![point(1.0, vec![])],
                    aggregation_temporality: CUMULATIVE,
                    is_monotonic: true,
                }),
            ),
            metric(
                "queue.depth",
                Data::Sum(Sum {
                    data_points: vec![point(-2.0, vec![])],
                    aggregation_temporality: CUMULATIVE,
                    is_monotonic: false,
                }),
            ),
            metric("temp", Data::Gauge(Gauge { data_points: vec![point(21.5, vec![])] })),
        ],
    );
    let base = "instance=i-1,job=shop/api,otel_scope_name=meter";
    assert_eq!(
        shown(&out),
        [
            format!("http_server_requests_total{{http_method=GET,{base}}} 7 counter"),
            format!("queue_total{{{base}}} 1 counter"),
            format!("queue_depth{{{base}}} -2 gauge"),
            format!("temp{{{base}}} 21.5 gauge"),
        ]
    );
    assert_eq!(out.samples[0].timestamp, Ok(Some(1_767_225_600_000_000)));
    assert_eq!((out.points, out.refused.len()), (4, 0));
    let families: Vec<(&str, &str)> = out.metadata.iter().map(|m| (m.name.as_str(), m.metric_type.as_str())).collect();
    assert_eq!(
        families,
        [
            ("http_server_requests_total", "counter"),
            ("queue_total", "counter"),
            ("queue_depth", "gauge"),
            ("temp", "gauge")
        ]
    );
}

#[test]
fn histograms_become_cumulative_buckets_with_sum_and_count() {
    let out = metrics_of(
        vec![],
        vec![metric(
            "latency",
            Data::Histogram(Histogram {
                data_points: vec![HistogramDataPoint {
                    count: 6,
                    sum: Some(0.042),
                    bucket_counts: vec![3, 2, 1],
                    explicit_bounds: vec![0.005, 1_000_000.0],
                    ..Default::default()
                }],
                aggregation_temporality: CUMULATIVE,
            }),
        )],
    );
    assert_eq!(
        shown(&out),
        [
            "latency_bucket{le=0.005,otel_scope_name=meter} 3 histogram",
            "latency_bucket{le=1e+06,otel_scope_name=meter} 5 histogram",
            "latency_bucket{le=+Inf,otel_scope_name=meter} 6 histogram",
            "latency_sum{otel_scope_name=meter} 0.042 histogram",
            "latency_count{otel_scope_name=meter} 6 histogram",
        ]
    );
    assert_eq!(out.point_of, [0, 0, 0, 0, 0]);
    assert_eq!(out.samples[0].timestamp, Ok(None));
}

#[test]
fn summaries_become_quantile_series_with_sum_and_count() {
    let out = metrics_of(
        vec![],
        vec![metric(
            "rpc",
            Data::Summary(Summary {
                data_points: vec![SummaryDataPoint {
                    count: 10,
                    sum: 2.5,
                    quantile_values: vec![
                        ValueAtQuantile { quantile: 0.5, value: 0.2 },
                        ValueAtQuantile { quantile: 0.99, value: 0.9 },
                    ],
                    ..Default::default()
                }],
            }),
        )],
    );
    assert_eq!(
        shown(&out),
        [
            "rpc{otel_scope_name=meter,quantile=0.5} 0.2 summary",
            "rpc{otel_scope_name=meter,quantile=0.99} 0.9 summary",
            "rpc_sum{otel_scope_name=meter} 2.5 summary",
            "rpc_count{otel_scope_name=meter} 10 summary",
        ]
    );
}

#[test]
fn delta_and_exponential_points_are_refused_with_a_reason() {
    let out = metrics_of(
        vec![],
        vec![
            metric(
                "hits",
                Data::Sum(Sum {
                    data_points: vec![point(1.0, vec![]), point(2.0, vec![])],
                    aggregation_temporality: DELTA_T,
                    is_monotonic: true,
                }),
            ),
            metric(
                "h",
                Data::Histogram(Histogram {
                    data_points: vec![HistogramDataPoint::default()],
                    aggregation_temporality: DELTA_T,
                }),
            ),
            metric(
                "e",
                Data::ExponentialHistogram(ExponentialHistogram {
                    data_points: vec![ExponentialHistogramDataPoint::default()],
                    aggregation_temporality: CUMULATIVE,
                }),
            ),
            metric("ok", Data::Gauge(Gauge { data_points: vec![point(1.0, vec![])] })),
        ],
    );
    assert_eq!(shown(&out), ["ok{otel_scope_name=meter} 1 gauge"]);
    assert_eq!(out.points, 5);
    assert_eq!(out.point_of, [4]);
    let (rejected, message) = out.rejected(&[Ok(())]);
    assert_eq!(rejected, 4);
    assert!(message.starts_with("sum `hits`: delta temporality is not supported"), "{message}");
    assert!(message.ends_with("; and 1 more"), "{message}");
    assert!(message.contains("histogram `h`: delta"), "{message}");
    // A point the service refuses counts once, however many of its samples it refused.
    assert_eq!(out.rejected(&[Err("bad".into())]).0, 5);
}

#[test]
fn a_histogram_with_mismatched_buckets_is_refused() {
    let out = metrics_of(
        vec![],
        vec![metric(
            "h",
            Data::Histogram(Histogram {
                data_points: vec![HistogramDataPoint {
                    bucket_counts: vec![1, 2],
                    explicit_bounds: vec![1.0, 2.0],
                    ..Default::default()
                }],
                aggregation_temporality: CUMULATIVE,
            }),
        )],
    );
    assert!(out.samples.is_empty());
    assert_eq!(out.refused.len(), 1);
    assert!(out.refused[0].1.contains("2 bucket counts for 2 bounds"), "{:?}", out.refused);
}

#[test]
fn no_recorded_value_is_the_stale_marker() {
    let mut stale = point(5.0, vec![]);
    stale.flags = 1;
    let mut empty = point(0.0, vec![]);
    (empty.flags, empty.value) = (1, None);
    let out = metrics_of(vec![], vec![metric("g", Data::Gauge(Gauge { data_points: vec![stale, empty] }))]);
    for sample in &out.samples {
        assert_eq!(sample.value.map(f64::to_bits), Some(STALE_NAN_BITS));
    }
    assert_eq!(out.samples.len(), 2);
}

#[test]
fn names_and_labels_are_sanitised_and_colliding_labels_joined() {
    assert_eq!(metric_name("http.server.duration"), "http_server_duration");
    assert_eq!(metric_name("a..b--c"), "a_b_c");
    assert_eq!(metric_name("2xx"), "_2xx");
    assert_eq!(metric_name("ns:metric/ü"), "ns:metric_");
    assert_eq!(label_name("http.method"), "http_method");
    assert_eq!(label_name("0day"), "key_0day");
    assert_eq!(label_name("__secret"), "key__secret");
    assert_eq!(label_name("_ok"), "_ok");
    let labels = point_labels(
        &[kv("a.b", s("1")), kv("a_b", s("2")), kv("n", Some(AnyValue { value: Some(V::IntValue(4)) }))],
        &Labels::new(),
    );
    assert_eq!(labels.get("a_b").map(String::as_str), Some("1;2"));
    assert_eq!(labels.get("n").map(String::as_str), Some("4"));
}

#[test]
fn le_and_quantile_are_spelled_as_prometheus_writes_floats() {
    for (x, text) in [
        (0.005, "0.005"),
        (0.0001, "0.0001"),
        (0.00001, "1e-05"),
        (1.0, "1"),
        (0.0, "0"),
        (-0.0, "0"),
        (2.5, "2.5"),
        (100_000.0, "100000"),
        (1_000_000.0, "1e+06"),
        (1_500_000.0, "1.5e+06"),
        (1.5e-7, "1.5e-07"),
        (1e300, "1e+300"),
        (-42.25, "-42.25"),
        (f64::INFINITY, "+Inf"),
        (f64::NEG_INFINITY, "-Inf"),
        (f64::NAN, "NaN"),
    ] {
        assert_eq!(go_float(x), text, "{x}");
    }
}

/// OTLP JSON as the specification writes it: camelCase keys, hex ids, 64-bit integers as
/// strings or numbers, enums as integers, unknown fields ignored.
#[test]
fn otlp_json_decodes_with_its_own_rules() {
    let body = r#"{"resourceLogs":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"my.service"}}]},
      "scopeLogs":[{"scope":{"name":"my.library","version":"1.0.0"},"logRecords":[
        {"timeUnixNano":"1544712660300000000","observedTimeUnixNano":1544712660300000000,"severityNumber":10,
         "severityText":"Information","traceId":"5B8EFFF798038103D269B633813FC60C","spanId":"EEE19B7EC3C1B174",
         "body":{"stringValue":"Example log record"},"unknownField":1,
         "attributes":[{"key":"int.attribute","value":{"intValue":"10"}},{"key":"n","value":{"intValue":11}},
           {"key":"map","value":{"kvlistValue":{"values":[{"key":"k","value":{"doubleValue":1.5}}]}}}]}]}]}]}"#;
    let request: ExportLogsServiceRequest = serde_json::from_str(body).unwrap();
    let log = logs(request).remove(0);
    assert_eq!(log.timestamp, Ok(Some(1_544_712_660_300_000)));
    assert_eq!(log.level, Ok(Some(Level::Info)));
    let attributes = log.attributes.unwrap();
    assert_eq!(attributes["trace_id"], "5b8efff798038103d269b633813fc60c");
    assert_eq!(attributes["int.attribute"], 10);
    assert_eq!(attributes["n"], 11);
    assert_eq!(attributes["map.k"], 1.5);

    let body = r#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[
      {"name":"c","sum":{"aggregationTemporality":2,"isMonotonic":true,"dataPoints":[{"asInt":"5","timeUnixNano":"1000000"}]}},
      {"name":"h","histogram":{"aggregationTemporality":2,"dataPoints":[{"count":"3","sum":2,"bucketCounts":["1",2],"explicitBounds":[1]}]}}]}]}]}"#;
    let request: ExportMetricsServiceRequest = serde_json::from_str(body).unwrap();
    let out = super::metrics(request);
    assert_eq!(
        shown(&out),
        [
            "c_total{} 5 counter",
            "h_bucket{le=1} 1 histogram",
            "h_bucket{le=+Inf} 3 histogram",
            "h_sum{} 2 histogram",
            "h_count{} 3 histogram"
        ]
    );
    assert_eq!(out.samples[0].timestamp, Ok(Some(1000)));
}

#[test]
fn empty_arrays_and_lists_written_without_their_values_decode() {
    // Protobuf JSON writers omit empty repeated fields: `{"arrayValue": {}}` is an empty array.
    let body = br#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"stringValue":"x"},
      "attributes":[{"key":"a","value":{"arrayValue":{}}},{"key":"b","value":{"kvlistValue":{}}},{"key":"c","value":{}}]}]}]}]}"#;
    let request: ExportLogsServiceRequest = from_json(body).unwrap();
    let log = logs(request).remove(0);
    assert_eq!(log.attributes, Some(json!({"a": [], "b": {}, "c": null})));
}

#[test]
fn refusals_name_the_record_or_series_as_the_sender_wrote_it() {
    let scope = |n: usize| ScopeLogs { log_records: vec![LogRecord::default(); n], ..Default::default() };
    let request = ExportLogsServiceRequest {
        resource_logs: vec![
            ResourceLogs { scope_logs: vec![scope(1)], ..Default::default() },
            ResourceLogs { scope_logs: vec![scope(0), scope(2)], ..Default::default() },
        ],
    };
    let paths = record_paths(&request);
    assert_eq!(paths.len(), logs(request).len());
    assert_eq!(paths[2], "resource_logs[1].scope_logs[1].log_records[1]");
    assert_eq!(
        renamed("logs[2].message: is required", "logs[2].", &paths[2], "."),
        format!("{}.message: is required", paths[2])
    );
    assert_eq!(renamed("metrics[0].labels: too many", "metrics[0].", "`up`", " "), "`up` labels: too many");
    assert_eq!(renamed("odd", "metrics[0].", "`up`", " "), "`up`: odd");
}
