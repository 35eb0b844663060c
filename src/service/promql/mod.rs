//! What the Prometheus query API reads: series selected by label matchers (merged across
//! sources: the same label set from two sources is one PromQL series), their raw samples
//! in batches, label names and values, and the metadata remote_write and OTLP declared.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    ops::{ControlFlow, RangeInclusive},
};

use promql_parser::{
    label::{MatchOp, Matcher, Matchers},
    parser::VectorSelector,
};
use sea_orm::DatabaseConnection;
use serde::Serialize;

pub mod query;

use crate::{
    error::AppError,
    promql::Fetch,
    storage::{
        self,
        samples::{NameFilter, SeriesRow},
    },
};

/// A series' labels, its name under `__name__`, sorted as Prometheus sorts them.
pub type Labels = BTreeMap<String, String>;

/// The label holding a series' metric name.
pub const METRIC_NAME: &str = "__name__";

/// Inclusive times in milliseconds, Prometheus' unit; `None`: all time.
pub type Window = Option<RangeInclusive<i64>>;

/// The milliseconds the store's microseconds can hold.
const MIN_MS: i64 = i64::MIN / 1000 + 1;
const MAX_MS: i64 = i64::MAX / 1000 - 1;

/// The stored times (microseconds) of the milliseconds `window`: a sample at µs `t`
/// belongs to ms `floor(t / 1000)`.
fn micros(window: &RangeInclusive<i64>) -> RangeInclusive<i64> {
    window.start().saturating_mul(1000)..=window.end().saturating_mul(1000).saturating_add(999)
}

/// The matchers of a parsed selector, its metric name (`up{…}`) among them as a
/// `__name__` equality, in each group of a selector written with `or`.
pub fn selector_matchers(selector: &VectorSelector) -> Matchers {
    let mut matchers = selector.matchers.clone();
    if let Some(name) = &selector.name {
        let name = Matcher::new(MatchOp::Equal, METRIC_NAME, name);
        if matchers.or_matchers.is_empty() {
            matchers.matchers.push(name);
        } else {
            matchers.or_matchers.iter_mut().for_each(|group| group.push(name.clone()));
        }
    }
    matchers
}

/// What SQL can narrow a fetch's series by: the metric name an equality pins, or the
/// literal start of a `__name__` regex. Every matcher is still evaluated afterwards.
pub fn name_filter(fetch: &Fetch) -> NameFilter<'_> {
    if let Some(name) = fetch.metric_name() {
        return NameFilter::Exact(name);
    }
    if !fetch.matchers.or_matchers.is_empty() {
        return NameFilter::Any;
    }
    fetch
        .matchers
        .matchers
        .iter()
        .filter(|m| m.name == METRIC_NAME)
        .find_map(|m| match &m.op {
            MatchOp::Re(_) => literal_prefix(&m.value).map(NameFilter::Prefix),
            _ => None,
        })
        .unwrap_or(NameFilter::Any)
}

/// The literal text every match of the (fully anchored) regex `re` starts with, when
/// that is plain to see: the characters before the first metacharacter, less one
/// made optional by a following `?`, `*` or `{`. `None` for an alternation anywhere.
fn literal_prefix(re: &str) -> Option<&str> {
    if re.contains('|') {
        return None;
    }
    let end = re.find(|c: char| "\\.[]{}()*+?^$".contains(c)).unwrap_or(re.len());
    let mut prefix = &re[..end];
    if re[end..].starts_with(['?', '*', '{']) {
        let mut chars = prefix.chars();
        chars.next_back();
        prefix = chars.as_str();
    }
    (!prefix.is_empty()).then_some(prefix)
}

/// A series found by a selector: its label set and the stored series (one per source)
/// that carry it.
#[derive(Debug)]
pub struct Selected {
    pub labels: Labels,
    pub ids: Vec<i64>,
    /// Each of `ids`' newest sample: time (µs) and value.
    pub last: Vec<(i64, f64)>,
}

/// A stored series' label set; a label with an empty value is no label, in PromQL.
fn labels_of(row: &SeriesRow) -> Option<Labels> {
    let mut labels: Labels = serde_json::from_str(&row.labels).ok()?;
    labels.retain(|_, value| !value.is_empty());
    labels.insert(METRIC_NAME.to_owned(), row.name.clone());
    Some(labels)
}

/// The label sets (each with its stored series) that `fetch` selects among the series
/// with a sample at its start or later (and, with `sampled`, one in its window), in
/// label order.
pub async fn select_series(db: &DatabaseConnection, fetch: &Fetch, sampled: bool) -> Result<Vec<Selected>, AppError> {
    let window = fetch.start_ms..=fetch.end_ms;
    let since = *micros(&window).start();
    let rows =
        storage::samples::find_series(db, name_filter(fetch), Some(since), sampled.then(|| micros(&window))).await?;
    let mut by_labels: BTreeMap<Labels, Selected> = BTreeMap::new();
    for row in rows {
        match labels_of(&row) {
            Some(labels) if fetch.matches(&labels) => {
                let selected = by_labels.entry(labels.clone()).or_insert_with(|| Selected {
                    labels,
                    ids: Vec::new(),
                    last: Vec::new(),
                });
                selected.ids.push(row.id);
                selected.last.push(row.last);
            }
            Some(_) => {}
            None => tracing::warn!(event = "series_labels_unreadable", series_id = row.id),
        }
    }
    Ok(by_labels.into_values().collect())
}

/// The samples of `selected` in `window` (milliseconds, inclusive), read in batches of
/// series: each label set's points oldest first, those of its sources merged by time (at
/// the same time, one of them). With `latest_only`, a series whose newest sample is not
/// after the window gives that sample alone (or nothing, when it is before the window),
/// without reading its samples. Fails with `TooManySamples` past `max_samples`.
pub async fn read_samples(
    db: &DatabaseConnection,
    selected: &[Selected],
    window: RangeInclusive<i64>,
    latest_only: bool,
    max_samples: usize,
) -> Result<Vec<Vec<(i64, f64)>>, ReadError> {
    let times = micros(&window);
    let mut points: Vec<Vec<(i64, f64)>> = vec![Vec::new(); selected.len()];
    let mut slot_of: HashMap<i64, usize> = HashMap::new();
    let mut ids = Vec::new();
    let mut loaded = 0usize;
    for (slot, s) in selected.iter().enumerate() {
        for (id, &(last_micros, last_value)) in s.ids.iter().zip(&s.last) {
            if latest_only && last_micros <= *times.end() {
                if last_micros >= *times.start() {
                    loaded += 1;
                    points[slot].push((last_micros, last_value));
                }
                continue;
            }
            slot_of.insert(*id, slot);
            ids.push(*id);
        }
    }
    if loaded > max_samples {
        return Err(ReadError::TooManySamples);
    }
    ids.sort_unstable();
    storage::samples::read_points(db, &ids, times, |id, micros, value| {
        loaded += 1;
        if loaded > max_samples {
            return ControlFlow::Break(());
        }
        if let Some(slot) = slot_of.get(&id) {
            points[*slot].push((micros, value));
        }
        ControlFlow::Continue(())
    })
    .await
    .map_err(|err| ReadError::App(err.into()))?;
    if loaded > max_samples {
        return Err(ReadError::TooManySamples);
    }
    for (s, points) in selected.iter().zip(&mut points) {
        if s.ids.len() > 1 {
            points.sort_by_key(|(t, _)| *t);
        }
        // Two sources at the same time, or two samples in one millisecond: the newest
        // (the one a latest-only read gives too).
        points.reverse();
        points.dedup_by_key(|(t, _)| t.div_euclid(1000));
        points.reverse();
        points.iter_mut().for_each(|(t, _)| *t = t.div_euclid(1000));
    }
    Ok(points)
}

/// Why samples could not be read.
#[derive(Debug)]
pub enum ReadError {
    /// More raw samples than the query may load.
    TooManySamples,
    App(AppError),
}

/// The label sets of the series with a sample in `window` that any of `selectors`
/// matches (all series without selectors), sorted.
async fn matching(
    db: &DatabaseConnection,
    selectors: &[Matchers],
    window: &Window,
) -> Result<BTreeSet<Labels>, AppError> {
    let mut found = BTreeSet::new();
    if selectors.is_empty() {
        let times = window.as_ref().map(micros);
        let since = times.as_ref().map(|times| *times.start());
        for row in storage::samples::find_series(db, NameFilter::Any, since, times).await? {
            found.extend(labels_of(&row));
        }
    }
    let (start_ms, end_ms) = window.as_ref().map_or((MIN_MS, MAX_MS), |w| (*w.start(), *w.end()));
    for selector in selectors {
        let fetch = Fetch { matchers: selector.clone(), start_ms, end_ms, latest_only: false };
        found.extend(select_series(db, &fetch, window.is_some()).await?.into_iter().map(|s| s.labels));
    }
    Ok(found)
}

/// At most `limit` of `items`, and whether some were left out.
fn limited<T>(items: impl IntoIterator<Item = T>, limit: usize) -> (Vec<T>, bool) {
    let mut items = items.into_iter();
    let kept: Vec<T> = items.by_ref().take(limit).collect();
    let truncated = items.next().is_some();
    (kept, truncated)
}

/// `/series`: the label sets matched by any of `selectors` (at least one) in `window`.
pub async fn series(
    db: &DatabaseConnection,
    selectors: &[Matchers],
    window: &Window,
    limit: usize,
) -> Result<(Vec<Labels>, bool), AppError> {
    Ok(limited(matching(db, selectors, window).await?, limit))
}

/// `/labels`: the label names of the series matched (all series without selectors).
pub async fn label_names(
    db: &DatabaseConnection,
    selectors: &[Matchers],
    window: &Window,
    limit: usize,
) -> Result<(Vec<String>, bool), AppError> {
    let names: BTreeSet<String> =
        matching(db, selectors, window).await?.into_iter().flat_map(Labels::into_keys).collect();
    Ok(limited(names, limit))
}

/// `/label/{name}/values`: the values `name` takes among the series matched (`__name__`:
/// the metric names).
pub async fn label_values(
    db: &DatabaseConnection,
    name: &str,
    selectors: &[Matchers],
    window: &Window,
    limit: usize,
) -> Result<(Vec<String>, bool), AppError> {
    if name == METRIC_NAME && selectors.is_empty() {
        // Every series' name (Grafana's metric browser asks this on opening): read
        // without the labels.
        let times = window.as_ref().map(micros);
        let since = times.as_ref().map(|times| *times.start());
        let names: BTreeSet<String> = storage::samples::series_names(db, since, times).await?.into_iter().collect();
        return Ok(limited(names, limit));
    }
    let values: BTreeSet<String> =
        matching(db, selectors, window).await?.into_iter().filter_map(|mut labels| labels.remove(name)).collect();
    Ok(limited(values, limit))
}

/// What a metric family was declared as, in Prometheus' metadata form.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct FamilyMetadata {
    #[serde(rename = "type")]
    pub metric_type: String,
    pub help: String,
    pub unit: String,
}

/// `/metadata`: each family's declarations (the distinct ones of all sources), of
/// `metric` only when given, of at most `limit` families when given.
pub async fn metadata(
    db: &DatabaseConnection,
    metric: Option<&str>,
    limit: Option<usize>,
) -> Result<BTreeMap<String, Vec<FamilyMetadata>>, AppError> {
    let mut families: BTreeMap<String, BTreeSet<FamilyMetadata>> = BTreeMap::new();
    for row in storage::samples::metadata_rows(db, metric).await? {
        if !families.contains_key(&row.name) && limit.is_some_and(|limit| families.len() >= limit) {
            break;
        }
        let declared = FamilyMetadata { metric_type: row.metric_type, help: row.help, unit: row.unit };
        families.entry(row.name).or_default().insert(declared);
    }
    Ok(families.into_iter().map(|(name, set)| (name, set.into_iter().collect())).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn selector(text: &str) -> Matchers {
        match promql_parser::parser::parse(text).unwrap() {
            promql_parser::parser::Expr::VectorSelector(vs) => selector_matchers(&vs),
            other => panic!("{other:?}"),
        }
    }

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn regex_prefixes_are_the_plain_start_only() {
        assert_eq!(literal_prefix("http_requests_.*"), Some("http_requests_"));
        assert_eq!(literal_prefix("node_cpu"), Some("node_cpu"));
        assert_eq!(literal_prefix("abc?d"), Some("ab"));
        assert_eq!(literal_prefix("abc*"), Some("ab"));
        assert_eq!(literal_prefix("abc{2}"), Some("ab"));
        assert_eq!(literal_prefix("abc+"), Some("abc"));
        assert_eq!(literal_prefix("a|b"), None);
        assert_eq!(literal_prefix("(a)b"), None);
        assert_eq!(literal_prefix(".*x"), None);
        assert_eq!(literal_prefix("a?"), None);
    }

    fn fetch(text: &str) -> Fetch {
        Fetch { matchers: selector(text), start_ms: 0, end_ms: 0, latest_only: false }
    }

    #[test]
    fn name_filters_come_from_the_name_matchers() {
        assert_eq!(name_filter(&fetch(r#"up{job="a"}"#)), NameFilter::Exact("up"));
        assert_eq!(name_filter(&fetch(r#"{__name__=~"http_.+", job="a"}"#)), NameFilter::Prefix("http_"));
        assert_eq!(name_filter(&fetch(r#"{__name__!="x", job="a"}"#)), NameFilter::Any);
        assert_eq!(name_filter(&fetch(r#"{job="a"}"#)), NameFilter::Any);
    }

    #[test]
    fn parsed_selectors_hold_their_metric_name() {
        let up = labels(&[("__name__", "up"), ("job", "api")]);
        assert!(fetch(r#"up{job=~"a.*"}"#).matches(&up));
        assert!(!fetch(r#"up{job=~"a"}"#).matches(&up), "regexes are anchored");
        assert!(!fetch(r#"down{job="api"}"#).matches(&up));
        assert!(fetch(r#"up{missing=""}"#).matches(&up), "a missing label is empty");
    }

    #[test]
    fn limits_say_when_they_cut() {
        assert_eq!(limited([1, 2, 3], 2), (vec![1, 2], true));
        assert_eq!(limited([1, 2], 2), (vec![1, 2], false));
    }
}
