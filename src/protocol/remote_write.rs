//! Prometheus remote_write 1.0: the `WriteRequest` message, and its reading into samples
//! and metric metadata for `service::samples`.
//!
//! The messages are written from the remote_write specification and `prompb` (field
//! numbers and types). Exemplars (field 3 of `TimeSeries`) are not stored and not decoded.
//! Native histograms (field 4) are kept as undecoded bytes only to refuse them: KillKrill
//! stores float samples, and answering 204 would tell the sender they were delivered.
//! Label text is read as bytes so that invalid UTF-8 is refused naming its series.
//!
//! How a series becomes samples: `__name__` is the name, every other label a label (names
//! sorted, each once, `[a-zA-Z_][a-zA-Z0-9_]*`; an empty value is no label, as in
//! Prometheus); timestamps in milliseconds become microseconds; a value is any `f64`,
//! NaN (the stale marker included) and ±Inf kept bit for bit. Samples name no type: the
//! service gives each series the type its family was declared with, by this request's
//! metadata or an earlier one (Prometheus sends metadata apart from samples).

use std::collections::BTreeMap;

use prost::Message as _;

use crate::service::samples::{self, NewSample};

/// `prometheus.WriteRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WriteRequest {
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
    #[prost(message, repeated, tag = "3")]
    pub metadata: Vec<MetricMetadata>,
}

/// `prometheus.TimeSeries`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TimeSeries {
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
    /// Native histograms, undecoded: a series carrying one is refused.
    #[prost(bytes = "vec", repeated, tag = "4")]
    pub histograms: Vec<Vec<u8>>,
}

/// `prometheus.Label`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Label {
    #[prost(bytes = "vec", tag = "1")]
    pub name: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
}

/// `prometheus.Sample`: a value at a time in milliseconds since the epoch.
#[derive(Clone, Copy, PartialEq, prost::Message)]
pub struct Sample {
    #[prost(double, tag = "1")]
    pub value: f64,
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

/// `prometheus.MetricMetadata`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct MetricMetadata {
    #[prost(enumeration = "MetricType", tag = "1")]
    pub r#type: i32,
    #[prost(string, tag = "2")]
    pub metric_family_name: String,
    #[prost(string, tag = "4")]
    pub help: String,
    #[prost(string, tag = "5")]
    pub unit: String,
}

/// `prometheus.MetricMetadata.MetricType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum MetricType {
    Unknown = 0,
    Counter = 1,
    Gauge = 2,
    Histogram = 3,
    Gaugehistogram = 4,
    Summary = 5,
    Info = 6,
    Stateset = 7,
}

impl MetricType {
    /// The type's name as Prometheus' metadata API writes it.
    pub fn prometheus_name(self) -> &'static str {
        match self {
            MetricType::Unknown => "unknown",
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
            MetricType::Gaugehistogram => "gaugehistogram",
            MetricType::Summary => "summary",
            MetricType::Info => "info",
            MetricType::Stateset => "stateset",
        }
    }
}

/// A write request read into the service's inputs.
#[derive(Debug)]
pub struct Batch {
    pub samples: Vec<NewSample>,
    pub metadata: Vec<samples::MetricMetadata>,
    /// The index of each series' first sample in `samples`, and the series as text.
    series: Vec<(usize, String)>,
}

impl Batch {
    /// The series of the sample at `index` of `samples`: `timeseries[i] (name{…})`.
    pub fn locate(&self, index: usize) -> String {
        let at = self.series.partition_point(|(start, _)| *start <= index).saturating_sub(1);
        match self.series.get(at) {
            Some((start, text)) => format!("timeseries[{at}] {text} sample {}", index - start),
            None => format!("sample {index}"),
        }
    }

    /// The field a service error names (`metrics[12].value`) as the client wrote it.
    pub fn rename_field(&self, field: &str) -> String {
        let Some((index, rest)) = field.strip_prefix("metrics[").and_then(|rest| rest.split_once(']')) else {
            return field.to_owned();
        };
        match index.parse::<usize>() {
            Ok(index) => format!("{}{rest}", self.locate(index)),
            Err(_) => field.to_owned(),
        }
    }
}

/// Decodes a decompressed `WriteRequest`.
pub fn decode(body: &[u8]) -> Result<WriteRequest, String> {
    WriteRequest::decode(body).map_err(|e| format!("malformed protobuf WriteRequest: {e}"))
}

/// Reads a write request's series and metadata; the first invalid series is the reason
/// the whole request is refused.
pub fn read(request: WriteRequest) -> Result<Batch, String> {
    let total = request.timeseries.iter().map(|s| s.samples.len()).sum();
    let mut batch = Batch { samples: Vec::with_capacity(total), metadata: Vec::new(), series: Vec::new() };
    for (i, series) in request.timeseries.into_iter().enumerate() {
        let (name, labels) = series_labels(series.labels).map_err(|e| format!("timeseries[{i}]: {e}"))?;
        let text = series_text(&name, &labels);
        if !series.histograms.is_empty() {
            return Err(format!(
                "timeseries[{i}] {text}: native histograms are not supported; send classic histograms \
                 (turn native histograms off for this remote_write)"
            ));
        }
        batch.series.push((batch.samples.len(), text));
        for sample in series.samples {
            batch.samples.push(NewSample {
                name: name.clone(),
                metric_type: None,
                labels: labels.iter().map(|(k, v)| (k.clone(), Some(v.clone()))).collect(),
                value: Some(sample.value),
                timestamp: micros_of_millis(sample.timestamp).map(Some),
            });
        }
    }
    batch.metadata = request
        .metadata
        .into_iter()
        .map(|m| samples::MetricMetadata {
            metric_type: MetricType::try_from(m.r#type).unwrap_or(MetricType::Unknown).prometheus_name().to_owned(),
            name: m.metric_family_name,
            help: m.help,
            unit: m.unit,
        })
        .collect();
    Ok(batch)
}

/// Splits a series' labels into its name (`__name__`) and the others; refuses invalid
/// UTF-8, unsorted or repeated names, and names outside `[a-zA-Z_][a-zA-Z0-9_]*`.
fn series_labels(labels: Vec<Label>) -> Result<(String, BTreeMap<String, String>), String> {
    let mut name = None;
    let mut others = BTreeMap::new();
    let mut previous: Option<String> = None;
    for (l, label) in labels.into_iter().enumerate() {
        let key = String::from_utf8(label.name).map_err(|_| format!("label {l}: the name is not valid UTF-8"))?;
        let value =
            String::from_utf8(label.value).map_err(|_| format!("label `{key}`: the value is not valid UTF-8"))?;
        if let Some(previous) = &previous {
            if *previous == key {
                return Err(format!("label `{key}` is given twice"));
            }
            if *previous > key {
                return Err(format!("label `{key}` comes after `{previous}`: labels must be sorted by name"));
            }
        }
        previous = Some(key.clone());
        if key == "__name__" {
            name = Some(value);
            continue;
        }
        if !valid_label_name(&key) {
            return Err(format!("label name `{key}` is not valid ([a-zA-Z_][a-zA-Z0-9_]*, not starting with __)"));
        }
        if !value.is_empty() {
            others.insert(key, value);
        }
    }
    match name {
        Some(name) if !name.is_empty() => Ok((name, others)),
        _ => Err(format!("{} has no metric name (label __name__)", series_text("", &others))),
    }
}

fn valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with("__")
}

/// A series as PromQL writes it, `name{a="b"}`, cut short past 200 characters.
fn series_text(name: &str, labels: &BTreeMap<String, String>) -> String {
    let pairs: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    let text = format!("{name}{{{}}}", pairs.join(","));
    match text.char_indices().nth(200) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

/// The largest time RFC 3339 can write (9999-12-31T23:59:59.999Z), in milliseconds.
const MAX_MILLIS: i64 = 253_402_300_799_999;

fn micros_of_millis(millis: i64) -> Result<i64, String> {
    if (0..=MAX_MILLIS).contains(&millis) {
        Ok(millis * 1_000)
    } else {
        Err(format!("{millis} ms is out of range (1970 to 9999)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn label(name: &str, value: &str) -> Label {
        Label { name: name.as_bytes().to_vec(), value: value.as_bytes().to_vec() }
    }

    fn series(labels: &[(&str, &str)], samples: &[(f64, i64)]) -> TimeSeries {
        TimeSeries {
            labels: labels.iter().map(|(n, v)| label(n, v)).collect(),
            samples: samples.iter().map(|&(value, timestamp)| Sample { value, timestamp }).collect(),
            histograms: vec![],
        }
    }

    fn metadata(family: &str, t: MetricType) -> MetricMetadata {
        MetricMetadata {
            r#type: t as i32,
            metric_family_name: family.to_owned(),
            help: format!("{family} help"),
            unit: String::new(),
        }
    }

    const STALE: u64 = 0x7ff0_0000_0000_0002;

    #[test]
    fn remote_write_series_become_samples_in_microseconds_with_exact_values() {
        let request = WriteRequest {
            timeseries: vec![
                series(
                    &[("__name__", "up"), ("instance", "a:9100"), ("job", "node")],
                    &[(1.0, 1_767_225_600_123), (f64::from_bits(STALE), 1_767_225_601_000)],
                ),
                series(&[("__name__", "temp"), ("zone", "")], &[(f64::NEG_INFINITY, 5), (f64::NAN, 6)]),
            ],
            metadata: vec![],
        };
        let batch = read(decode(&request.encode_to_vec()).unwrap()).unwrap();
        assert_eq!(batch.samples.len(), 4);
        let first = &batch.samples[0];
        assert_eq!(first.name, "up");
        assert_eq!(first.metric_type, None);
        assert_eq!(first.timestamp, Ok(Some(1_767_225_600_123_000)));
        assert_eq!(first.labels.get("job"), Some(&Some("node".to_owned())));
        assert!(!first.labels.contains_key("__name__"));
        assert_eq!(batch.samples[1].value.map(f64::to_bits), Some(STALE));
        assert_eq!(batch.samples[2].value, Some(f64::NEG_INFINITY));
        assert!(batch.samples[2].labels.is_empty(), "an empty value is no label");
        assert!(batch.samples[3].value.is_some_and(f64::is_nan));
        assert_eq!(batch.locate(3), "timeseries[1] temp{} sample 1");
        assert_eq!(
            batch.rename_field("metrics[1].value"),
            r#"timeseries[0] up{instance="a:9100",job="node"} sample 1.value"#
        );
    }

    #[test]
    fn remote_write_metadata_keeps_prometheus_type_names() {
        let request = WriteRequest {
            timeseries: vec![series(&[("__name__", "http_requests_total")], &[(1.0, 1)])],
            metadata: vec![metadata("http_requests", MetricType::Counter), metadata("build", MetricType::Info)],
        };
        let batch = read(request).unwrap();
        assert_eq!(batch.samples[0].metric_type, None, "the service types a series by its family");
        assert_eq!(batch.metadata.len(), 2);
        assert_eq!(batch.metadata[0].name, "http_requests");
        assert_eq!(batch.metadata[0].metric_type, "counter");
        assert_eq!(batch.metadata[0].help, "http_requests help");
        assert_eq!(batch.metadata[1].metric_type, "info");
    }

    #[test]
    fn remote_write_metadata_alone_is_a_valid_request() {
        let request = WriteRequest { timeseries: vec![], metadata: vec![metadata("up", MetricType::Gauge)] };
        let batch = read(decode(&request.encode_to_vec()).unwrap()).unwrap();
        assert!(batch.samples.is_empty());
        assert_eq!(batch.metadata.len(), 1);
    }

    #[test]
    fn remote_write_refusals_name_the_series() {
        let refuse = |s: TimeSeries| {
            read(WriteRequest { timeseries: vec![series(&[("__name__", "ok")], &[]), s], metadata: vec![] })
                .unwrap_err()
        };
        assert_eq!(
            refuse(series(&[("job", "x")], &[(1.0, 1)])),
            r#"timeseries[1]: {job="x"} has no metric name (label __name__)"#
        );
        assert!(
            refuse(series(&[("__name__", "m"), ("bad-name", "x")], &[])).contains("label name `bad-name` is not valid")
        );
        assert!(refuse(series(&[("__name__", "m"), ("__tmp", "x")], &[])).contains("`__tmp` is not valid"));
        assert!(refuse(series(&[("__name__", "m"), ("b", "x"), ("a", "y")], &[])).contains("must be sorted"));
        assert!(refuse(series(&[("__name__", "m"), ("a", "x"), ("a", "y")], &[])).contains("`a` is given twice"));
        let mut bad = series(&[("__name__", "m")], &[]);
        bad.labels.push(Label { name: b"job".to_vec(), value: vec![0xc3, 0x28] });
        assert_eq!(refuse(bad), "timeseries[1]: label `job`: the value is not valid UTF-8");
        let mut histogram = series(&[("__name__", "h")], &[]);
        histogram.histograms.push(vec![8, 1]);
        assert!(refuse(histogram).starts_with("timeseries[1] h{}: native histograms are not supported"));
        assert!(decode(b"\x0a\x03abc").unwrap_err().starts_with("malformed protobuf WriteRequest"));
    }

    #[test]
    fn remote_write_times_out_of_range_are_reasons_for_the_service() {
        let batch = read(WriteRequest {
            timeseries: vec![series(&[("__name__", "m")], &[(1.0, -1), (1.0, i64::MAX)])],
            metadata: vec![],
        })
        .unwrap();
        assert!(batch.samples[0].timestamp.is_err());
        assert!(batch.samples[1].timestamp.is_err());
    }
}
