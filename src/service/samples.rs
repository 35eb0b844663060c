//! Metrics: samples grouped in series (source, name, labels), the list of known series,
//! and range queries reduced per step bucket.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use sea_orm::DatabaseConnection;
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::retention::{self, Ingested, Kept};
use crate::{
    config::Retention,
    error::{AppError, FieldError},
    metrics::{IngestKind, Metrics},
    storage::entity::{series, source},
    storage::{
        self, Database,
        samples::{MetadataRow, Partial, SampleRow},
    },
    time::{micros_to_rfc3339, now_micros},
};

pub const MAX_BATCH: usize = 10_000;
pub const MAX_POINTS_PER_SERIES: i64 = 11_000;
const MAX_LABELS: usize = 32;
const MAX_LABEL_NAME_CHARS: usize = 128;
const MAX_LABEL_VALUE_CHARS: usize = 1024;
const METRIC_TYPES: [&str; 5] = ["counter", "gauge", "histogram", "summary", "unknown"];
/// Prometheus' stale marker: the NaN whose bits say "this series ended here".
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;
const MAX_HELP_CHARS: usize = 4096;
const MAX_UNIT_CHARS: usize = 64;

/// One sample as a transport read it. The time is parsed by the transport (whose wire
/// forms differ); what it could not parse comes as the reason, which [`ingest`] reports
/// with the sample's other problems, every sample's at once.
#[derive(Debug)]
pub struct NewSample {
    pub name: String,
    /// `None` for the type declared for the metric's family (see [`MetricMetadata`]),
    /// else `gauge`.
    pub metric_type: Option<String>,
    /// Each label's value as text; `None` for a value that was not text (a transport may
    /// write other scalars as text).
    pub labels: BTreeMap<String, Option<String>>,
    /// Any number: NaN (with its payload, such as [`STALE_NAN_BITS`]) and ±Inf are
    /// stored exactly.
    pub value: Option<f64>,
    /// Microseconds since the Unix epoch; `None` for the time of receipt.
    pub timestamp: Result<Option<i64>, String>,
}

/// What a sender declared about a metric family: its type (one of the sample types, or
/// Prometheus' `gaugehistogram`, `info`, `stateset`, stored as `unknown`), help and unit.
#[derive(Debug, Clone)]
pub struct MetricMetadata {
    pub name: String,
    pub metric_type: String,
    pub help: String,
    pub unit: String,
}

fn valid_name(name: &str, allow_colon: bool) -> bool {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || (allow_colon && c == ':'));
    first_ok && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || (allow_colon && c == ':'))
}

fn series_key(source_id: &str, name: &str, labels: &str) -> String {
    let mut hasher = Sha256::new();
    for part in [source_id, name, labels] {
        hasher.update(part.as_bytes());
        hasher.update([0]);
    }
    hex::encode(hasher.finalize())
}

fn validate(
    index: usize,
    input: &NewSample,
    source_id: &str,
    declared: Option<&str>,
    now: i64,
    problems: &mut Vec<FieldError>,
) -> Option<SampleRow> {
    let field = |name: &str| format!("metrics[{index}].{name}");
    let before = problems.len();
    let name = &input.name;
    if name.len() > 255 || !valid_name(name, true) {
        problems.push(FieldError::new(field("name"), "must match [a-zA-Z_:][a-zA-Z0-9_:]* (at most 255 characters)"));
    }
    let requested = input.metric_type.as_deref().or(declared).unwrap_or("gauge");
    let metric_type = METRIC_TYPES.iter().copied().find(|known| *known == requested);
    if metric_type.is_none() {
        problems.push(FieldError::new(field("type"), "must be counter, gauge or histogram"));
    }
    if input.labels.len() > MAX_LABELS {
        problems.push(FieldError::new(field("labels"), format!("at most {MAX_LABELS} labels")));
    }
    for (key, value) in &input.labels {
        let Some(text) = value else {
            problems.push(FieldError::new(field("labels"), format!("label `{key}` must be a string")));
            continue;
        };
        let too_long = key.len() > MAX_LABEL_NAME_CHARS || text.chars().count() > MAX_LABEL_VALUE_CHARS;
        if !valid_name(key, false) || key.starts_with("__") || too_long || text.contains('\0') {
            problems.push(FieldError::new(field("labels"), format!("label `{key}` is not a valid label or value")));
        }
    }
    let value = value_and_time(index, input, now, problems);
    if problems.len() > before {
        return None;
    }
    let (value, ts) = value?;
    // Every label is text here: `Some(text)` is written as the text, as a map of strings.
    let labels = serde_json::to_string(&input.labels).ok()?;
    Some(SampleRow {
        key: series_key(source_id, name, &labels),
        name: name.clone(),
        labels,
        metric_type: metric_type?,
        ts,
        value,
    })
}

/// A sample's value and time (microseconds; the receipt time when it names none), or
/// their problems added to `problems`.
fn value_and_time(index: usize, input: &NewSample, now: i64, problems: &mut Vec<FieldError>) -> Option<(f64, i64)> {
    if input.value.is_none() {
        problems.push(FieldError::new(format!("metrics[{index}].value"), "must be a number"));
    }
    let ts = match &input.timestamp {
        Ok(ts) => Some(ts.unwrap_or(now)),
        Err(m) => {
            problems.push(FieldError::new(format!("metrics[{index}].timestamp"), m.clone()));
            None
        }
    };
    Some((input.value?, ts?))
}

/// Validates every sample and the metadata, then stores all of them in one transaction,
/// or none; counts the batch's samples for its source in `/metrics`, accepted or refused.
/// A batch may hold metadata only. Valid samples already older than the source's
/// retention (`retention` where the source sets none) are accepted but not stored, and
/// counted as dropped.
pub async fn ingest(
    db: &Database,
    metrics: &Metrics,
    retention: Retention,
    source: &source::Model,
    inputs: Vec<NewSample>,
    metadata: Vec<MetricMetadata>,
) -> Result<Ingested, AppError> {
    let items = inputs.len();
    let stored = async {
        let metadata = metadata_rows(metadata)?;
        let (mut rows, outcomes) = validated(db, &source.id, inputs, &metadata).await?;
        if let Some(problems) = all_problems(&outcomes) {
            return Err(AppError::Validation(problems));
        }
        let oldest = retention::ingest_cutoff(source, retention, IngestKind::Samples);
        let expired = |ts: i64| oldest.is_some_and(|oldest| ts < oldest);
        let dropped = outcomes.iter().filter(|o| o.as_ref().is_ok_and(|ts| expired(*ts))).count();
        rows.retain(|row| !expired(row.ts));
        store(db, &source.id, rows, &metadata).await?;
        // Every other sample was stored, a later one at the same series and time in
        // place of an earlier.
        Ok(Ingested { accepted: outcomes.len() - dropped, dropped })
    };
    super::counted(metrics, &source.id, IngestKind::Samples, items, stored).await
}

/// Validates each sample on its own and stores the valid ones (and the metadata) in one
/// transaction, for the protocols whose answer is per item (OTLP's partial success).
/// Returns one outcome per sample, in order: stored, dropped (valid, but older than the
/// source's retention) or refused with its reasons; fails whole only for what fails the
/// request (an empty or oversized batch, invalid metadata, the database, the source gone).
pub async fn ingest_each(
    db: &Database,
    metrics: &Metrics,
    retention: Retention,
    source: &source::Model,
    inputs: Vec<NewSample>,
    metadata: Vec<MetricMetadata>,
) -> Result<Vec<Result<Kept, String>>, AppError> {
    let items = inputs.len();
    let outcomes = async {
        let metadata = metadata_rows(metadata)?;
        let (mut rows, outcomes) = validated(db, &source.id, inputs, &metadata).await?;
        let oldest = retention::ingest_cutoff(source, retention, IngestKind::Samples);
        let expired = |ts: i64| oldest.is_some_and(|oldest| ts < oldest);
        let outcomes: Vec<Result<Kept, String>> = outcomes
            .into_iter()
            .map(|o| match o {
                Ok(ts) if expired(ts) => Ok(Kept::Dropped),
                Ok(_) => Ok(Kept::Stored),
                Err(problems) => Err(super::reasons(&problems)),
            })
            .collect();
        rows.retain(|row| !expired(row.ts));
        if !rows.is_empty() || !metadata.is_empty() {
            store(db, &source.id, rows, &metadata).await?;
        }
        Ok(outcomes)
    }
    .await;
    super::counted_each(metrics, &source.id, IngestKind::Samples, items, &outcomes);
    outcomes
}

/// Every refused sample's problems (the first 50), if any was refused.
fn all_problems(outcomes: &[Result<i64, Vec<FieldError>>]) -> Option<Vec<FieldError>> {
    let mut problems: Vec<FieldError> = outcomes.iter().filter_map(|o| o.as_ref().err()).flatten().cloned().collect();
    problems.truncate(50);
    (!problems.is_empty()).then_some(problems)
}

/// The metadata as stored, or the first problem of it.
fn metadata_rows(metadata: Vec<MetricMetadata>) -> Result<Vec<MetadataRow>, AppError> {
    let mut rows = Vec::with_capacity(metadata.len());
    for (index, m) in metadata.into_iter().enumerate() {
        let field = |name: &str| format!("metadata[{index}].{name}");
        let problem = if m.name.len() > 255 || !valid_name(&m.name, true) {
            Some(FieldError::new(field("name"), "must match [a-zA-Z_:][a-zA-Z0-9_:]* (at most 255 characters)"))
        } else if m.help.chars().count() > MAX_HELP_CHARS || m.help.contains('\0') {
            Some(FieldError::new(field("help"), format!("must be at most {MAX_HELP_CHARS} characters, without NUL")))
        } else if m.unit.chars().count() > MAX_UNIT_CHARS || m.unit.contains('\0') {
            Some(FieldError::new(field("unit"), format!("must be at most {MAX_UNIT_CHARS} characters, without NUL")))
        } else {
            None
        };
        if let Some(problem) = problem {
            return Err(AppError::Validation(vec![problem]));
        }
        let metric_type = METRIC_TYPES.iter().copied().find(|known| *known == m.metric_type).unwrap_or("unknown");
        rows.push(MetadataRow { name: m.name, metric_type, help: m.help, unit: m.unit });
    }
    Ok(rows)
}

/// The family a series name may belong to (`x` of `x_total`, `x_bucket`, `x_sum`, `x_count`).
fn families_of(name: &str) -> impl Iterator<Item = &str> {
    std::iter::once(name)
        .chain(["_total", "_bucket", "_sum", "_count"].into_iter().filter_map(|s| name.strip_suffix(s)))
}

/// Each sample validated (with the type its family was declared with, when it names
/// none): its time, or its problems; and the valid ones with the last of each series and
/// time only: a later sample at the same time replaces an earlier one.
async fn validated(
    db: &Database,
    source_id: &str,
    inputs: Vec<NewSample>,
    metadata: &[MetadataRow],
) -> Result<(Vec<SampleRow>, Vec<Result<i64, Vec<FieldError>>>), AppError> {
    if inputs.len() + metadata.len() == 0 || !inputs.is_empty() {
        super::check_batch(inputs.len(), MAX_BATCH, "metrics", ("sample", "samples"))?;
    }
    let mut declared: HashMap<String, String> =
        metadata.iter().map(|m| (m.name.clone(), m.metric_type.to_owned())).collect();
    let unknown: BTreeSet<String> = inputs
        .iter()
        .filter(|s| s.metric_type.is_none())
        .flat_map(|s| families_of(&s.name))
        .filter(|family| !declared.contains_key(*family))
        .map(str::to_owned)
        .collect();
    if !unknown.is_empty() {
        declared.extend(storage::samples::declared_types(db.conn(), source_id, unknown.into_iter().collect()).await?);
    }
    let now = now_micros();
    let mut outcomes = Vec::with_capacity(inputs.len());
    let mut rows: Vec<SampleRow> = Vec::with_capacity(inputs.len());
    // Each stored sample's place in `rows` by series and time.
    let mut position: HashMap<(u128, i64), usize> = HashMap::with_capacity(inputs.len());
    // The previous valid sample, as sent, and the row it was stored as: a transport gives a
    // series' samples one after the other, and a series needs validating and keying once.
    let mut previous: Option<(NewSample, usize)> = None;
    for (index, input) in inputs.into_iter().enumerate() {
        let mut problems = Vec::new();
        let series_row = previous.as_ref().and_then(|(sent, at)| {
            let same = sent.name == input.name && sent.metric_type == input.metric_type && sent.labels == input.labels;
            same.then_some(*at)
        });
        let row = match series_row {
            Some(at) => value_and_time(index, &input, now, &mut problems).map(|(value, ts)| SampleRow {
                key: rows[at].key.clone(),
                name: rows[at].name.clone(),
                labels: rows[at].labels.clone(),
                metric_type: rows[at].metric_type,
                ts,
                value,
            }),
            None => {
                let family_type = families_of(&input.name).find_map(|family| declared.get(family)).map(String::as_str);
                validate(index, &input, source_id, family_type, now, &mut problems)
            }
        };
        let Some(row) = row else {
            outcomes.push(Err(problems));
            continue;
        };
        outcomes.push(Ok(row.ts));
        let place = (storage::samples::short_key(&row.key), row.ts);
        let at = match position.get(&place) {
            Some(&stored) => {
                rows[stored] = row;
                stored
            }
            None => {
                position.insert(place, rows.len());
                rows.push(row);
                rows.len() - 1
            }
        };
        if series_row.is_none() {
            previous = Some((input, at));
        }
    }
    Ok((rows, outcomes))
}

async fn store_metadata(db: &Database, source_id: &str, metadata: &[MetadataRow]) -> Result<(), AppError> {
    storage::samples::upsert_metadata(db, source_id, metadata, now_micros())
        .await
        .map_err(|err| super::source_gone_or(err, source_id))
}

async fn store(
    db: &Database,
    source_id: &str,
    rows: Vec<SampleRow>,
    metadata: &[MetadataRow],
) -> Result<usize, AppError> {
    let _turn = db.ingest_turn().await;
    let stored = if rows.is_empty() {
        0
    } else {
        storage::samples::insert(db, source_id, &rows).await.map_err(|err| super::source_gone_or(err, source_id))?
    };
    if !metadata.is_empty() {
        store_metadata(db, source_id, metadata).await?;
    }
    Ok(stored)
}

/// A known series as `GET /api/v1/metrics` shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SeriesView {
    /// The row's number as a UUID ([`crate::ids::of_row`]).
    pub id: String,
    pub source_id: String,
    pub name: String,
    #[schema(value_type = Option<BTreeMap<String, String>>, required = true)]
    pub labels: Value,
    #[serde(rename = "type")]
    pub metric_type: String,
    /// `null` when the last value is not a finite number (NaN, a stale marker, ±Inf).
    pub last_value: Option<f64>,
    pub last_timestamp: String,
}

impl From<series::Model> for SeriesView {
    fn from(s: series::Model) -> Self {
        Self {
            id: crate::ids::of_row(s.id),
            source_id: s.source_id,
            name: s.name,
            labels: serde_json::from_str(&s.labels).unwrap_or(Value::Null),
            metric_type: s.metric_type,
            last_value: Some(storage::samples::loaded_value(s.last_value, s.last_bits)).filter(|v| v.is_finite()),
            last_timestamp: micros_to_rfc3339(s.last_timestamp),
        }
    }
}

pub async fn list_series(
    db: &DatabaseConnection,
    name: Option<&str>,
    source_id: Option<&str>,
    limit: u64,
    offset: u64,
) -> Result<(Vec<SeriesView>, u64), AppError> {
    if name.is_some_and(|name| !valid_name(name, true)) {
        return Err(AppError::Validation(vec![FieldError::new("name", "must be a valid metric name")]));
    }
    let source_id = source_id.map(|id| crate::ids::filter(id, "source_id")).transpose()?;
    let (rows, total) = storage::samples::list_series(db, name, source_id.as_deref(), limit, offset).await?;
    Ok((rows.into_iter().map(SeriesView::from).collect(), total))
}

/// How a range query reduces a bucket's samples.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Aggregation {
    Avg,
    Sum,
    Min,
    Max,
    Count,
    Rate,
}

/// A range query as a transport read it. Its times and step, and its aggregation, are
/// parsed by the transport (whose wire forms differ); what it could not parse comes as the
/// reason, which [`query`] reports in its turn among the query's problems.
#[derive(Debug)]
pub struct RangeQuery {
    pub metric: String,
    /// The labels a series must have, with these values (it may have others).
    pub labels: BTreeMap<String, String>,
    /// Microseconds since the Unix epoch.
    pub start_micros: Result<i64, String>,
    /// As `start_micros`; not before it.
    pub end_micros: Result<i64, String>,
    /// The buckets' width, in microseconds.
    pub step_micros: Result<i64, String>,
    pub aggregation: Result<Aggregation, String>,
}

/// Runs a range query: each matching series' samples in `[start, end]`, grouped into
/// `step`-wide buckets from `start`, each bucket reduced by the aggregation. `rate` is the
/// bucket's increase (max − min, counters without resets) per second of step. Empty
/// buckets are omitted.
pub async fn query(db: &DatabaseConnection, q: RangeQuery) -> Result<Vec<SeriesPoints>, AppError> {
    let bad = |field: &str, message: String| AppError::Validation(vec![FieldError::new(field, message)]);
    let start = q.start_micros.map_err(|m| bad("start", m))?;
    let end = q.end_micros.map_err(|m| bad("end", m))?;
    let step = q.step_micros.map_err(|m| bad("step", m))?;
    if end < start {
        return Err(bad("end", "must not be before start".to_owned()));
    }
    if (end - start) / step + 1 > MAX_POINTS_PER_SERIES {
        return Err(bad(
            "step",
            format!("yields more than {MAX_POINTS_PER_SERIES} points per series; use a larger step"),
        ));
    }
    if !valid_name(&q.metric, true) {
        return Err(bad("metric", "must be a metric name ([a-zA-Z_:][a-zA-Z0-9_:]*)".to_owned()));
    }
    if q.labels.values().any(|v| v.contains('\0')) {
        return Err(bad("labels", "must not contain NUL characters".to_owned()));
    }
    let aggregation = q.aggregation.map_err(|m| bad("aggregation", m))?;
    let candidates = storage::samples::series_named(db, &q.metric).await?;
    let matching: Vec<(series::Model, BTreeMap<String, String>)> = candidates
        .into_iter()
        .filter_map(|s| {
            let labels: BTreeMap<String, String> = serde_json::from_str(&s.labels).ok()?;
            q.labels.iter().all(|(k, v)| labels.get(k) == Some(v)).then_some((s, labels))
        })
        .collect();
    let mut result = Vec::with_capacity(matching.len());
    if !matching.is_empty() {
        let ids: Vec<i64> = matching.iter().map(|(s, _)| s.id).collect();
        let step_seconds = step as f64 / 1e6;
        let mut buckets = buckets(db, &ids, start, end, step).await?;
        for (series, mut metric) in matching {
            let Some(series_buckets) = buckets.remove(&series.id) else { continue };
            let values = series_buckets
                .into_iter()
                .map(|(bucket, p)| ((start + bucket * step) as f64 / 1e6, aggregation.reduce(&p, step_seconds)))
                .collect();
            metric.insert("__name__".into(), series.name);
            result.push(SeriesPoints { metric, values });
        }
    }
    Ok(result)
}

impl Aggregation {
    /// An aggregation's name (`None`: `avg`).
    pub fn parse(name: Option<&str>) -> Result<Aggregation, String> {
        Ok(match name.unwrap_or("avg") {
            "avg" => Aggregation::Avg,
            "sum" => Aggregation::Sum,
            "min" => Aggregation::Min,
            "max" => Aggregation::Max,
            "count" => Aggregation::Count,
            "rate" => Aggregation::Rate,
            _ => return Err("must be avg, sum, min, max, count or rate".to_owned()),
        })
    }

    fn reduce(self, p: &Partial, step_seconds: f64) -> f64 {
        match self {
            Aggregation::Avg => p.sum / p.count as f64,
            Aggregation::Sum => p.sum,
            Aggregation::Min => p.min,
            Aggregation::Max => p.max,
            Aggregation::Count => p.count as f64,
            Aggregation::Rate => (p.max - p.min) / step_seconds,
        }
    }
}

/// One series of a range query's answer.
#[derive(Debug, PartialEq)]
pub struct SeriesPoints {
    /// The series' labels, with its name under `__name__`.
    pub metric: BTreeMap<String, String>,
    /// `(bucket start in Unix seconds, value)`, oldest first.
    pub values: Vec<(f64, f64)>,
}

/// Each series' non-empty buckets as `(bucket index, partial)`, in order: the stored
/// samples (chunks and head) reduced here.
async fn buckets(
    db: &DatabaseConnection,
    ids: &[i64],
    start: i64,
    end: i64,
    step: i64,
) -> Result<HashMap<i64, Vec<(i64, Partial)>>, AppError> {
    let mut buckets: HashMap<i64, Vec<(i64, Partial)>> = HashMap::new();
    storage::samples::read_buckets(db, ids, (start, step), start..=end, |id, bucket, p| {
        let series = buckets.entry(id).or_default();
        match series.last_mut() {
            Some((last, merged)) if *last == bucket => merged.merge(&p),
            _ => series.push((bucket, p)),
        }
    })
    .await?;
    Ok(buckets)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_and_label_names_follow_prometheus() {
        assert!(valid_name("http_requests_total", true) && valid_name("a:b", true));
        assert!(!valid_name("a:b", false) && !valid_name("9lives", true) && !valid_name("", true));
    }
}
