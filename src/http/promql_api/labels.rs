//! `/series`, `/labels`, `/label/{name}/values` and `/metadata`: what Grafana's metric
//! browser and template variables ask, honouring the time range and any `match[]`.

use axum::{
    extract::{Path, State, rejection::PathRejection},
    response::Response,
};
use promql_parser::{label::Matchers, parser::Expr};

use super::{
    ApiError, PromError, Reader,
    params::{Instant, Params},
    render::success,
};
use crate::{service::promql, state::AppState};

/// The warning of an answer cut short by `limit` (Prometheus 2.48's wording).
const TRUNCATED: &str = "results truncated due to limit";

fn warnings(truncated: bool) -> Vec<String> {
    if truncated { vec![TRUNCATED.to_owned()] } else { Vec::new() }
}

const EMPTY_MATCHERS: &str = "match[] must contain at least one non-empty matcher";

/// The times of `start` and `end`, in milliseconds; `None` when neither bounds them.
fn window(params: &Params) -> Result<promql::Window, PromError> {
    let start = params.time("start")?;
    let end = params.time("end")?;
    if start.is_none() && end.is_none() {
        return Ok(None);
    }
    Ok(Some(start.unwrap_or(Instant::MIN).millis()..=end.unwrap_or(Instant::MAX).millis()))
}

/// The series selectors of `match[]` (Prometheus' `parseMatchersParam`): each a selector
/// such as `up{job="api"}` or `{__name__=~"http_.*"}`, with at least one matcher that
/// does not match the empty string.
fn selectors(params: &Params) -> Result<Vec<Matchers>, String> {
    let mut selectors = Vec::new();
    for text in params.values("match[]") {
        // The parser refuses a selector of empty matchers itself; Prometheus' API says it
        // in its own words.
        let parsed = promql_parser::parser::parse(text).map_err(|err| {
            if err.contains("at least one non-empty matcher") { EMPTY_MATCHERS.to_owned() } else { err }
        })?;
        let selector = match parsed {
            Expr::VectorSelector(vs) if vs.offset.is_none() && vs.at.is_none() => promql::selector_matchers(&vs),
            _ => return Err(format!("parse error: {text:?} is not a series selector such as up{{job=\"api\"}}")),
        };
        let groups: Vec<&[promql_parser::label::Matcher]> = if selector.or_matchers.is_empty() {
            vec![&selector.matchers]
        } else {
            selector.or_matchers.iter().map(Vec::as_slice).collect()
        };
        if groups.iter().any(|group| group.iter().all(|m| m.is_match(""))) {
            return Err(EMPTY_MATCHERS.to_owned());
        }
        selectors.push(selector);
    }
    Ok(selectors)
}

/// `GET|POST /series`: the label sets `match[]` (required) selects.
pub async fn series(State(state): State<AppState>, _: Reader, params: Params) -> Result<Response, ApiError> {
    if params.values("match[]").is_empty() {
        return Err(PromError::bad_data("no match[] parameter provided").into());
    }
    let window = window(&params)?;
    let selectors = selectors(&params).map_err(|err| super::params::invalid("match[]", &err))?;
    let limit = params.limit()?;
    let (series, truncated) = promql::series(state.db.conn(), &selectors, &window, limit).await?;
    Ok(success(series, &warnings(truncated)))
}

/// `GET|POST /labels`: the label names of the series selected (all without `match[]`).
pub async fn label_names(State(state): State<AppState>, _: Reader, params: Params) -> Result<Response, ApiError> {
    let window = window(&params)?;
    let selectors = selectors(&params).map_err(PromError::bad_data)?;
    let limit = params.limit()?;
    let (names, truncated) = promql::label_names(state.db.conn(), &selectors, &window, limit).await?;
    Ok(success(names, &warnings(truncated)))
}

/// Prometheus' label names (`model.LabelNameRE`).
fn valid_label_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// `GET /label/{name}/values`: the values of a label among the series selected;
/// `__name__` gives the metric names.
pub async fn label_values(
    State(state): State<AppState>,
    _: Reader,
    name: Result<Path<String>, PathRejection>,
    params: Params,
) -> Result<Response, ApiError> {
    let Path(name) = name.map_err(|rejection| PromError::bad_data(rejection.body_text()))?;
    if !valid_label_name(&name) {
        return Err(PromError::bad_data(format!("invalid label name: {name:?}")).into());
    }
    let window = window(&params)?;
    let selectors = selectors(&params).map_err(PromError::bad_data)?;
    let limit = params.limit()?;
    let (values, truncated) = promql::label_values(state.db.conn(), &name, &selectors, &window, limit).await?;
    Ok(success(values, &warnings(truncated)))
}

/// `GET /metadata`: what remote_write and OTLP senders declared about each metric
/// family (`metric`: one family; `limit`: at most that many families, a negative one
/// none, as Prometheus 2.42 reads it).
pub async fn metadata(State(state): State<AppState>, _: Reader, params: Params) -> Result<Response, ApiError> {
    let limit = match params.value("limit") {
        None => None,
        Some(text) => match text.parse::<i64>() {
            Ok(n) => usize::try_from(n).ok(),
            Err(_) => return Err(PromError::bad_data("limit must be a number").into()),
        },
    };
    let families = promql::metadata(state.db.conn(), params.value("metric"), limit).await?;
    Ok(success(families, &[]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_names_follow_prometheus() {
        assert!(valid_label_name("job") && valid_label_name("__name__") && valid_label_name("_a1"));
        assert!(
            !valid_label_name("1a") && !valid_label_name("") && !valid_label_name("a-b") && !valid_label_name("a:b")
        );
    }
}
