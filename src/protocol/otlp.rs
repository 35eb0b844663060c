//! OTLP (OpenTelemetry's protocol) logs and metrics in KillKrill's terms: pure functions
//! from the export requests to the services' `NewLog`s and `NewSample`s, and the points
//! OTLP can carry that KillKrill does not store, each with its reason. The transports
//! (`http::otlp`, `grpc::otlp`) decode the wire and call these.
//!
//! Logs: the time is `time_unix_nano`, else `observed_time_unix_nano`, else the time of
//! receipt; the level comes from the severity number, else its text; the body is the
//! message (any body other than a string as JSON text). A few resource attributes become
//! the entry's hostname, application and stream labels; every other resource, scope and
//! record attribute is kept under its dotted key (the record's win, then the scope's),
//! with the trace and span ids in hex.
//!
//! Metrics follow OpenTelemetry's rules for Prometheus (`compatibility/prometheus_and_openmetrics.md`),
//! without unit suffixes: names and label names sanitised, cumulative monotonic sums as
//! `_total` counters, other sums and gauges as gauges, explicit-bucket histograms as
//! cumulative `_bucket{le}` series with `_sum` and `_count`, summaries as `{quantile}`
//! series with `_sum` and `_count`. Delta temporality and exponential histograms are
//! refused, point by point.

use std::collections::BTreeMap;

use base64::{Engine, engine::general_purpose::STANDARD};
use serde::de::DeserializeOwned;
use serde_json::{Map, Number, Value};

pub use opentelemetry_proto::tonic::collector::{
    logs::v1::{ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse},
    metrics::v1::{ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse},
};
use opentelemetry_proto::tonic::{
    common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value},
    logs::v1::LogRecord,
    metrics::v1::{
        AggregationTemporality, HistogramDataPoint, Metric, NumberDataPoint, SummaryDataPoint, metric::Data,
        number_data_point,
    },
    resource::v1::Resource,
};

use crate::{
    error::AppError,
    metrics::IngestKind,
    service::{
        self,
        logs::{Level, NewLog},
        retention::Kept,
        samples::{MetricMetadata, NewSample, STALE_NAN_BITS},
        sources::Source,
    },
    state::AppState,
};

/// Why a valid record or data point was not stored, in `partial_success`.
const DROPPED: &str = "older than the source's retention: dropped, not stored";

/// Resource attributes kept as stream labels of a log entry, and the label each becomes.
/// (`service.name` is one too, and also the entry's application.)
const RESOURCE_LABELS: [(&str, &str); 7] = [
    ("service.name", "service_name"),
    ("service.namespace", "service_namespace"),
    ("deployment.environment", "deployment_environment"),
    ("deployment.environment.name", "deployment_environment"),
    ("k8s.namespace.name", "k8s_namespace_name"),
    ("k8s.pod.name", "k8s_pod_name"),
    ("container.name", "container_name"),
];

const SERVICE_NAME: &str = "service.name";
const HOST_NAME: &str = "host.name";

/// Microseconds of an OTLP time in nanoseconds; `None` for 0, which OTLP uses for "unset".
fn micros(nanos: u64) -> Option<i64> {
    // u64::MAX ns is 1.8e16 µs: always within i64.
    (nanos != 0).then_some((nanos / 1000) as i64)
}

/// The level of a record: the severity number's range (1-4 trace … 21-24 fatal), else its
/// text as KillKrill reads level names; `None` (info) when neither says.
pub fn level_of(number: i32, text: &str) -> Option<Level> {
    match number {
        1..=8 => Some(Level::Debug),
        9..=12 => Some(Level::Info),
        13..=16 => Some(Level::Warning),
        17..=20 => Some(Level::Error),
        21..=24 => Some(Level::Critical),
        _ => Level::parse(text).ok(),
    }
}

/// An attribute value as plain JSON: scalars as themselves, bytes in base64, arrays and
/// key-value lists as arrays and objects; a non-finite double as its name (`"NaN"`,
/// `"+Inf"`, `"-Inf"`), which JSON has no number for.
pub fn plain(value: &AnyValue) -> Value {
    use any_value::Value as V;
    match &value.value {
        Some(V::StringValue(s)) => Value::String(s.clone()),
        Some(V::BoolValue(b)) => Value::Bool(*b),
        Some(V::IntValue(n)) => Value::Number((*n).into()),
        Some(V::DoubleValue(x)) => float(*x),
        Some(V::ArrayValue(array)) => Value::Array(array.values.iter().map(plain).collect()),
        Some(V::KvlistValue(list)) => Value::Object(
            list.values.iter().map(|kv| (kv.key.clone(), kv.value.as_ref().map_or(Value::Null, plain))).collect(),
        ),
        Some(V::BytesValue(bytes)) => Value::String(STANDARD.encode(bytes)),
        Some(V::StringValueStrindex(_)) | None => Value::Null,
    }
}

fn float(x: f64) -> Value {
    Number::from_f64(x).map_or_else(|| Value::String(go_float(x)), Value::Number)
}

/// An attribute value as text: a string as itself, anything else as its JSON.
fn text(value: Option<&AnyValue>) -> String {
    match value.map(plain) {
        Some(Value::String(s)) => s,
        Some(other) => other.to_string(),
        None => String::new(),
    }
}

/// Adds `key: value` to `out`, a key-value list flattened under `key.<its key>`.
fn flatten_into(out: &mut Map<String, Value>, key: String, value: Option<&AnyValue>) {
    match value.and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::KvlistValue(list)) if !list.values.is_empty() => {
            for kv in &list.values {
                flatten_into(out, format!("{key}.{}", kv.key), kv.value.as_ref());
            }
        }
        _ => {
            out.insert(key, value.map_or(Value::Null, plain));
        }
    }
}

fn flatten_all<'a>(out: &mut Map<String, Value>, attributes: impl IntoIterator<Item = &'a KeyValue>) {
    for kv in attributes {
        flatten_into(out, kv.key.clone(), kv.value.as_ref());
    }
}

fn scope_attributes(out: &mut Map<String, Value>, scope: Option<&InstrumentationScope>) {
    let Some(scope) = scope else { return };
    if !scope.name.is_empty() {
        out.insert("otel.scope.name".to_owned(), Value::String(scope.name.clone()));
    }
    if !scope.version.is_empty() {
        out.insert("otel.scope.version".to_owned(), Value::String(scope.version.clone()));
    }
    flatten_all(out, &scope.attributes);
}

/// What a resource gives each of its log entries.
struct LogResource {
    application: Option<String>,
    hostname: Option<String>,
    labels: BTreeMap<String, String>,
    attributes: Map<String, Value>,
}

impl LogResource {
    fn new(resource: Option<&Resource>) -> Self {
        let mut this =
            LogResource { application: None, hostname: None, labels: BTreeMap::new(), attributes: Map::new() };
        for kv in resource.map(|r| r.attributes.as_slice()).unwrap_or_default() {
            let label = RESOURCE_LABELS.iter().find(|(key, _)| *key == kv.key).map(|(_, label)| *label);
            if kv.key == SERVICE_NAME {
                this.application = Some(text(kv.value.as_ref()));
            }
            if kv.key == HOST_NAME {
                this.hostname = Some(text(kv.value.as_ref()));
            } else if let Some(label) = label {
                this.labels.insert(label.to_owned(), text(kv.value.as_ref()));
            } else {
                flatten_into(&mut this.attributes, kv.key.clone(), kv.value.as_ref());
            }
        }
        this
    }
}

fn new_log(record: LogRecord, resource: &LogResource, scope: &Map<String, Value>) -> NewLog {
    let mut attributes = resource.attributes.clone();
    attributes.extend(scope.iter().map(|(k, v)| (k.clone(), v.clone())));
    flatten_all(&mut attributes, &record.attributes);
    if !record.trace_id.is_empty() {
        attributes.insert("trace_id".to_owned(), Value::String(hex::encode(&record.trace_id)));
    }
    if !record.span_id.is_empty() {
        attributes.insert("span_id".to_owned(), Value::String(hex::encode(&record.span_id)));
    }
    let level = level_of(record.severity_number, &record.severity_text);
    if level.is_none() && !record.severity_text.is_empty() {
        attributes.insert("severity_text".to_owned(), Value::String(record.severity_text.clone()));
    }
    let message = match record.body.as_ref().map(|body| (body, plain(body))) {
        Some((_, Value::String(s))) => s,
        Some((_, Value::Null)) | None => record.event_name.clone(),
        Some((_, other)) => other.to_string(),
    };
    if !record.event_name.is_empty() && message != record.event_name {
        attributes.insert("event_name".to_owned(), Value::String(record.event_name));
    }
    NewLog {
        timestamp: Ok(micros(record.time_unix_nano).or_else(|| micros(record.observed_time_unix_nano))),
        level: Ok(level),
        message,
        hostname: resource.hostname.clone(),
        application: resource.application.clone(),
        labels: resource.labels.clone(),
        attributes: (!attributes.is_empty()).then_some(Value::Object(attributes)),
    }
}

/// The log entries of an export request, one per record, in order.
pub fn logs(request: ExportLogsServiceRequest) -> Vec<NewLog> {
    let mut out = Vec::new();
    for resource_logs in request.resource_logs {
        let resource = LogResource::new(resource_logs.resource.as_ref());
        for scope_logs in resource_logs.scope_logs {
            let mut scope = Map::new();
            scope_attributes(&mut scope, scope_logs.scope.as_ref());
            out.extend(scope_logs.log_records.into_iter().map(|record| new_log(record, &resource, &scope)));
        }
    }
    out
}

/// The samples of an export request, and what became of each of its data points.
#[derive(Debug, Default)]
pub struct Samples {
    pub samples: Vec<NewSample>,
    /// For each sample, the index of the data point it came from.
    pub point_of: Vec<usize>,
    /// Data points in the request.
    pub points: usize,
    /// The data points refused here, each with its reason (the first few matter).
    pub refused: Vec<(usize, String)>,
    /// The type, help and unit of each metric family, as the request described them.
    pub metadata: Vec<MetricMetadata>,
}

impl Samples {
    fn refuse(&mut self, points: usize, reason: &str) {
        for _ in 0..points {
            self.refused.push((self.points, reason.to_owned()));
            self.points += 1;
        }
    }

    fn push(&mut self, name: String, metric_type: &str, labels: &Labels, value: f64, ts: Option<i64>) {
        self.samples.push(NewSample {
            name,
            metric_type: Some(metric_type.to_owned()),
            labels: labels.iter().map(|(k, v)| (k.clone(), Some(v.clone()))).collect(),
            value: Some(value),
            timestamp: Ok(ts),
        });
        self.point_of.push(self.points);
    }

    /// How many data points were refused, here or (`outcomes`, one per sample) by the
    /// service, and the reasons of the first few.
    pub fn rejected(&self, outcomes: &[Result<(), String>]) -> (usize, String) {
        let mut refused: BTreeMap<usize, &str> = self.refused.iter().map(|(p, r)| (*p, r.as_str())).collect();
        for (sample, outcome) in outcomes.iter().enumerate() {
            if let (Err(reason), Some(point)) = (outcome, self.point_of.get(sample)) {
                refused.entry(*point).or_insert(reason);
            }
        }
        (refused.len(), summary(refused.values().copied()))
    }
}

/// The reasons of refused items, the first three and how many more, for `error_message`.
pub fn summary<'a>(reasons: impl Iterator<Item = &'a str>) -> String {
    let reasons: Vec<&str> = reasons.collect();
    let mut text = reasons.iter().take(3).copied().collect::<Vec<_>>().join("; ");
    if reasons.len() > 3 {
        text.push_str(&format!("; and {} more", reasons.len() - 3));
    }
    text
}

type Labels = BTreeMap<String, String>;

/// A metric name in Prometheus' characters: each other character becomes `_`, runs of `_`
/// become one, and a leading digit gets a `_` before it.
pub fn metric_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 1);
    for c in name.chars() {
        let c = if c.is_ascii_alphanumeric() || c == ':' { c } else { '_' };
        if !(c == '_' && out.ends_with('_')) {
            out.push(c);
        }
    }
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

/// A label name in Prometheus' characters: each other character becomes `_`; a leading
/// digit gets `key_` before it, and a leading `__` (reserved) `key` before it.
pub fn label_name(key: &str) -> String {
    let mut out: String = key.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert_str(0, "key_");
    } else if out.starts_with("__") {
        out.insert_str(0, "key");
    }
    out
}

/// The labels of a point's attributes; keys that sanitise to the same name have their
/// values joined with `;`, in the order of their original keys.
fn point_labels(attributes: &[KeyValue], base: &Labels) -> Labels {
    let mut by_name: BTreeMap<String, BTreeMap<&str, String>> = BTreeMap::new();
    for kv in attributes.iter().filter(|kv| !kv.key.is_empty()) {
        by_name.entry(label_name(&kv.key)).or_default().insert(&kv.key, text(kv.value.as_ref()));
    }
    let mut labels: Labels =
        by_name.into_iter().map(|(name, values)| (name, values.into_values().collect::<Vec<_>>().join(";"))).collect();
    labels.extend(base.iter().map(|(k, v)| (k.clone(), v.clone())));
    labels
}

/// `job` (`service.namespace/service.name`) and `instance` (`service.instance.id`) of a
/// resource.
fn resource_labels(resource: Option<&Resource>) -> Labels {
    let attribute = |key: &str| resource?.attributes.iter().find(|kv| kv.key == key).map(|kv| text(kv.value.as_ref()));
    let mut labels = Labels::new();
    if let Some(name) = attribute(SERVICE_NAME).filter(|n| !n.is_empty()) {
        let job = match attribute("service.namespace").filter(|n| !n.is_empty()) {
            Some(namespace) => format!("{namespace}/{name}"),
            None => name,
        };
        labels.insert("job".to_owned(), job);
    }
    if let Some(instance) = attribute("service.instance.id").filter(|n| !n.is_empty()) {
        labels.insert("instance".to_owned(), instance);
    }
    labels
}

const NO_RECORDED_VALUE: u32 = 1;

/// The value of each sample of a point: the stale marker when the point says it has no
/// recorded value.
fn value(flags: u32, x: f64) -> f64 {
    if flags & NO_RECORDED_VALUE != 0 { f64::from_bits(STALE_NAN_BITS) } else { x }
}

const DELTA: &str = "delta temporality is not supported; export cumulative temporality";

/// The samples of an export request; see [`Samples`].
pub fn metrics(request: ExportMetricsServiceRequest) -> Samples {
    let mut out = Samples::default();
    for resource_metrics in request.resource_metrics {
        let resource = resource_labels(resource_metrics.resource.as_ref());
        for scope_metrics in resource_metrics.scope_metrics {
            let mut base = resource.clone();
            if let Some(scope) = scope_metrics.scope.as_ref() {
                if !scope.name.is_empty() {
                    base.insert("otel_scope_name".to_owned(), scope.name.clone());
                }
                if !scope.version.is_empty() {
                    base.insert("otel_scope_version".to_owned(), scope.version.clone());
                }
            }
            for metric in scope_metrics.metrics {
                metric_samples(&mut out, metric, &base);
            }
        }
    }
    out
}

fn metric_samples(out: &mut Samples, metric: Metric, base: &Labels) {
    let name = metric_name(&metric.name);
    let Some(data) = metric.data else { return };
    let is = |temporality: i32, expected: AggregationTemporality| temporality == expected as i32;
    let (family, kind) = match data {
        Data::Gauge(gauge) => {
            for point in gauge.data_points {
                number_point(out, &name, "gauge", point, base);
            }
            (name, "gauge")
        }
        Data::Sum(sum) if !is(sum.aggregation_temporality, AggregationTemporality::Cumulative) => {
            return out.refuse(sum.data_points.len(), &format!("sum `{}`: {DELTA}", metric.name));
        }
        Data::Sum(sum) if sum.is_monotonic => {
            let total = if name.ends_with("_total") { name } else { format!("{name}_total") };
            for point in sum.data_points {
                number_point(out, &total, "counter", point, base);
            }
            (total, "counter")
        }
        Data::Sum(sum) => {
            for point in sum.data_points {
                number_point(out, &name, "gauge", point, base);
            }
            (name, "gauge")
        }
        Data::Histogram(h) if !is(h.aggregation_temporality, AggregationTemporality::Cumulative) => {
            return out.refuse(h.data_points.len(), &format!("histogram `{}`: {DELTA}", metric.name));
        }
        Data::Histogram(h) => {
            for point in h.data_points {
                histogram_point(out, &name, &metric.name, point, base);
            }
            (name, "histogram")
        }
        Data::ExponentialHistogram(h) => {
            let reason = format!(
                "exponential histogram `{}` is not supported; configure explicit-bucket histograms",
                metric.name
            );
            return out.refuse(h.data_points.len(), &reason);
        }
        Data::Summary(summary) => {
            for point in summary.data_points {
                summary_point(out, &name, point, base);
            }
            (name, "summary")
        }
    };
    out.metadata.push(MetricMetadata {
        name: family,
        metric_type: kind.to_owned(),
        help: metric.description,
        unit: metric.unit,
    });
}

fn number_point(out: &mut Samples, name: &str, kind: &str, point: NumberDataPoint, base: &Labels) {
    let x = match point.value {
        Some(number_data_point::Value::AsDouble(x)) => x,
        Some(number_data_point::Value::AsInt(n)) => n as f64,
        None if point.flags & NO_RECORDED_VALUE != 0 => f64::NAN,
        None => return out.refuse(1, &format!("`{name}`: a data point has no value")),
    };
    let labels = point_labels(&point.attributes, base);
    out.push(name.to_owned(), kind, &labels, value(point.flags, x), micros(point.time_unix_nano));
    out.points += 1;
}

fn histogram_point(out: &mut Samples, name: &str, original: &str, point: HistogramDataPoint, base: &Labels) {
    let buckets = point.bucket_counts.len();
    if buckets != 0 && buckets != point.explicit_bounds.len() + 1 {
        let reason = format!(
            "histogram `{original}`: {buckets} bucket counts for {} bounds (expected one more count than bounds)",
            point.explicit_bounds.len()
        );
        return out.refuse(1, &reason);
    }
    let ts = micros(point.time_unix_nano);
    let mut labels = point_labels(&point.attributes, base);
    let bucket = format!("{name}_bucket");
    let mut cumulative = 0u64;
    for (count, bound) in point.bucket_counts.iter().zip(&point.explicit_bounds) {
        cumulative = cumulative.saturating_add(*count);
        labels.insert("le".to_owned(), go_float(*bound));
        out.push(bucket.clone(), "histogram", &labels, value(point.flags, cumulative as f64), ts);
    }
    labels.insert("le".to_owned(), "+Inf".to_owned());
    out.push(bucket, "histogram", &labels, value(point.flags, point.count as f64), ts);
    labels.remove("le");
    if let Some(sum) = point.sum {
        out.push(format!("{name}_sum"), "histogram", &labels, value(point.flags, sum), ts);
    }
    out.push(format!("{name}_count"), "histogram", &labels, value(point.flags, point.count as f64), ts);
    out.points += 1;
}

fn summary_point(out: &mut Samples, name: &str, point: SummaryDataPoint, base: &Labels) {
    let ts = micros(point.time_unix_nano);
    let mut labels = point_labels(&point.attributes, base);
    for quantile in &point.quantile_values {
        labels.insert("quantile".to_owned(), go_float(quantile.quantile));
        out.push(name.to_owned(), "summary", &labels, value(point.flags, quantile.value), ts);
    }
    labels.remove("quantile");
    out.push(format!("{name}_sum"), "summary", &labels, value(point.flags, point.sum), ts);
    out.push(format!("{name}_count"), "summary", &labels, value(point.flags, point.count as f64), ts);
    out.points += 1;
}

/// A float as Prometheus' text format writes it (Go's `strconv.FormatFloat(x, 'g', -1, 64)`,
/// with `+Inf`, `-Inf` and `NaN`): the spelling of `le` and `quantile`, one per value, as
/// `histogram_quantile` groups buckets by the exact text.
pub fn go_float(x: f64) -> String {
    if x.is_nan() {
        return "NaN".to_owned();
    }
    if x.is_infinite() {
        return if x > 0.0 { "+Inf" } else { "-Inf" }.to_owned();
    }
    if x == 0.0 {
        return "0".to_owned();
    }
    // Rust's `{:e}` gives the shortest digits that round-trip, as Go's -1 precision does.
    let sci = format!("{x:e}");
    let (mantissa, exponent) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    // Go's shortest 'g' writes the exponent form below 1e-4 and from 1e6 up.
    if !(-4..6).contains(&exponent) {
        let (sign, digits) = mantissa.strip_prefix('-').map_or(("", mantissa), |d| ("-", d));
        let exp_sign = if exponent < 0 { '-' } else { '+' };
        return format!("{sign}{digits}e{exp_sign}{:02}", exponent.unsigned_abs());
    }
    format!("{x}")
}

/// An OTLP JSON body decoded. Protobuf's JSON writers (the Collector's among them) leave
/// out empty repeated fields, so an empty array or key-value list arrives as
/// `{"arrayValue": {}}`, which the generated types would refuse for its missing `values`.
pub fn from_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, serde_json::Error> {
    fn fill(value: &mut Value) {
        match value {
            Value::Object(map) => {
                for key in ["arrayValue", "kvlistValue"] {
                    if let Some(Value::Object(list)) = map.get_mut(key) {
                        list.entry("values").or_insert_with(|| Value::Array(Vec::new()));
                    }
                }
                map.values_mut().for_each(fill);
            }
            Value::Array(items) => items.iter_mut().for_each(fill),
            _ => {}
        }
    }
    let mut value: Value = serde_json::from_slice(body)?;
    fill(&mut value);
    serde_json::from_value(value)
}

/// Where each record of an export is, as its sender wrote it
/// (`resource_logs[0].scope_logs[1].log_records[2]`), in the order of [`logs`].
pub fn record_paths(request: &ExportLogsServiceRequest) -> Vec<String> {
    let mut paths = Vec::new();
    for (r, resource_logs) in request.resource_logs.iter().enumerate() {
        for (s, scope_logs) in resource_logs.scope_logs.iter().enumerate() {
            paths.extend(
                (0..scope_logs.log_records.len())
                    .map(|i| format!("resource_logs[{r}].scope_logs[{s}].log_records[{i}]")),
            );
        }
    }
    paths
}

/// The service's reason for an item (`logs[3].message: is required`, its index in the
/// service's batch) with the item named as the sender knows it.
fn renamed(reason: &str, service_prefix: &str, name: &str, separator: &str) -> String {
    match reason.strip_prefix(service_prefix) {
        Some(rest) => format!("{name}{separator}{rest}"),
        None => format!("{name}: {reason}"),
    }
}

/// Stores the records of a logs export in `source` (each one that is valid) and answers
/// how many were refused and why; both transports call it. An `Err` is for what fails
/// the whole request (the database, the source gone).
pub async fn export_logs(
    state: &AppState,
    source: &Source,
    request: ExportLogsServiceRequest,
) -> Result<ExportLogsServiceResponse, AppError> {
    let paths = record_paths(&request);
    let mut entries = logs(request).into_iter().peekable();
    let mut outcomes = Vec::new();
    // The service takes batches of at most MAX_BATCH; an export has no such bound.
    while entries.peek().is_some() {
        let batch: Vec<NewLog> = entries.by_ref().take(service::logs::MAX_BATCH).collect();
        let retention = state.config.retention;
        outcomes.extend(service::logs::ingest_each(&state.db, &state.metrics, retention, source, batch).await?);
    }
    // A record older than the source's retention is not stored: partial success says so.
    let refused: Vec<String> = outcomes
        .into_iter()
        .enumerate()
        .filter_map(|(i, outcome)| {
            let path = paths.get(i).map_or("a log record", String::as_str);
            match outcome {
                Ok(Kept::Stored) => None,
                Ok(Kept::Dropped) => Some(format!("{path}: {DROPPED}")),
                Err(reason) => Some(renamed(&reason, &format!("logs[{}].", i % service::logs::MAX_BATCH), path, ".")),
            }
        })
        .collect();
    let partial_success = (!refused.is_empty()).then(|| ExportLogsPartialSuccess {
        rejected_log_records: refused.len() as i64,
        error_message: summary(refused.iter().map(String::as_str)),
    });
    Ok(ExportLogsServiceResponse { partial_success })
}

/// As [`export_logs`], for a metrics export: the refused count is of data points.
pub async fn export_metrics(
    state: &AppState,
    source: &Source,
    request: ExportMetricsServiceRequest,
) -> Result<ExportMetricsServiceResponse, AppError> {
    let mut mapped = metrics(request);
    if !mapped.refused.is_empty() {
        state.metrics.observe_ingest(&source.id, IngestKind::Samples, mapped.refused.len(), false);
    }
    let names: Vec<String> = mapped.samples.iter().map(|sample| format!("`{}`", sample.name)).collect();
    let mut samples = std::mem::take(&mut mapped.samples).into_iter().peekable();
    let mut metadata = std::mem::take(&mut mapped.metadata);
    let mut outcomes = Vec::new();
    while samples.peek().is_some() {
        let batch: Vec<NewSample> = samples.by_ref().take(service::samples::MAX_BATCH).collect();
        let metadata = std::mem::take(&mut metadata);
        let retention = state.config.retention;
        let each = service::samples::ingest_each(&state.db, &state.metrics, retention, source, batch, metadata);
        outcomes.extend(each.await?);
    }
    let outcomes: Vec<Result<(), String>> = outcomes
        .into_iter()
        .enumerate()
        .map(|(i, outcome)| {
            let name = names.get(i).map_or("a sample", String::as_str);
            match outcome {
                Ok(Kept::Stored) => Ok(()),
                Ok(Kept::Dropped) => Err(format!("{name}: {DROPPED}")),
                Err(reason) => {
                    Err(renamed(&reason, &format!("metrics[{}].", i % service::samples::MAX_BATCH), name, " "))
                }
            }
        })
        .collect();
    let (rejected, error_message) = mapped.rejected(&outcomes);
    let partial_success =
        (rejected > 0).then_some(ExportMetricsPartialSuccess { rejected_data_points: rejected as i64, error_message });
    Ok(ExportMetricsServiceResponse { partial_success })
}

#[cfg(test)]
mod tests;
