//! Logs: batches stored whole or not at all, and newest-first reads with a stable cursor.
//!
//! The cursor carries the position `(ts, id)` of the last row returned and the highest
//! log id that existed when the first page was read. Later pages only look at rows at or
//! below that id, ordered by `(ts DESC, id DESC)`, so logs ingested while a client pages
//! through never shift the pages: nothing is skipped, nothing repeated.

use std::collections::BTreeMap;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use sea_orm::DatabaseConnection;
use serde::Serialize;
use serde_json::Value;

use super::retention::{self, Ingested, Kept};
use crate::{
    config::Retention,
    error::{AppError, FieldError},
    metrics::{IngestKind, Metrics},
    storage::{
        self, Database,
        entity::{log, source},
        logs::{LogRow, LogSelection},
    },
    time::{micros_to_rfc3339, now_micros, parse_time},
};

pub const MAX_BATCH: usize = 10_000;
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;
pub const MAX_ATTRIBUTES_BYTES: usize = 16 * 1024;
const MAX_NAME_CHARS: usize = 255;
/// Labels on one line, the four the service sets included.
pub const MAX_LABELS: usize = 20;
pub const MAX_LABEL_NAME_BYTES: usize = 128;
pub const MAX_LABEL_VALUE_CHARS: usize = 1024;
/// The labels the service sets on every line from the line itself, over any supplied.
const OWN_LABELS: [&str; 4] = ["source", "level", "hostname", "application"];

/// A log's severity, the syslog levels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Debug,
    Info,
    Notice,
    Warning,
    Error,
    Critical,
    Alert,
    Emergency,
}

/// Why a level sent as neither text nor a whole number could not be read.
pub const LEVEL_FORMAT: &str = "must be a level name or a syslog severity";

impl Level {
    /// By syslog severity: 0 emergency … 7 debug.
    const BY_SEVERITY: [Level; 8] = [
        Level::Emergency,
        Level::Alert,
        Level::Critical,
        Level::Error,
        Level::Warning,
        Level::Notice,
        Level::Info,
        Level::Debug,
    ];

    /// The name stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Notice => "notice",
            Level::Warning => "warning",
            Level::Error => "error",
            Level::Critical => "critical",
            Level::Alert => "alert",
            Level::Emergency => "emergency",
        }
    }

    /// A syslog severity (0 emergency … 7 debug).
    pub fn from_severity(n: u64) -> Result<Level, String> {
        usize::try_from(n)
            .ok()
            .and_then(|n| Self::BY_SEVERITY.get(n).copied())
            .ok_or_else(|| format!("syslog severity {n} is not 0-7"))
    }

    /// A level as clients write it: a name or one of its usual spellings (`WARN`, `err`,
    /// `fatal` …, in any case), or a syslog severity written as a number.
    pub fn parse(text: &str) -> Result<Level, String> {
        if let Ok(n) = text.trim().parse::<u64>() {
            return Self::from_severity(n);
        }
        let name = text.trim().to_ascii_lowercase();
        Ok(match name.as_str() {
            "trace" | "debug" => Level::Debug,
            "info" | "information" | "informational" => Level::Info,
            "notice" => Level::Notice,
            "warn" | "warning" => Level::Warning,
            "err" | "error" => Level::Error,
            "crit" | "critical" | "fatal" => Level::Critical,
            "alert" => Level::Alert,
            "emerg" | "emergency" | "panic" => Level::Emergency,
            _ => return Err(format!("unknown level `{name}`")),
        })
    }
}

/// One log entry as a transport read it. The time and level are parsed by the transport
/// (whose wire forms differ); what it could not parse comes as the reason, which
/// [`ingest`] reports with the entry's other problems, every entry's at once.
#[derive(Debug)]
pub struct NewLog {
    /// Microseconds since the Unix epoch; `None` for the time of receipt.
    pub timestamp: Result<Option<i64>, String>,
    /// `None` for `info`.
    pub level: Result<Option<Level>, String>,
    pub message: String,
    pub hostname: Option<String>,
    pub application: Option<String>,
    /// A JSON object (`null` counts as none).
    pub attributes: Option<Value>,
    /// Stream labels the transport supplies (a protocol's, or the client's own); the
    /// service adds `source`, `level`, `hostname` and `application` over them.
    pub labels: BTreeMap<String, String>,
}

/// Whether `name` may name a label: `[a-zA-Z_][a-zA-Z0-9_]*`.
pub fn valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `name` made a valid label name: every other character becomes `_`, and a leading
/// digit gets one before it (`service.name` → `service_name`).
pub fn label_name(name: &str) -> String {
    let mut out: String = name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
    if !out.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
        out.insert(0, '_');
    }
    out
}

/// The supplied labels' problem, if any; the line's own labels are counted in the bound.
fn labels_problem(labels: &BTreeMap<String, String>) -> Option<String> {
    let extra = labels.keys().filter(|name| !OWN_LABELS.contains(&name.as_str())).count();
    if extra + OWN_LABELS.len() > MAX_LABELS {
        return Some(format!("at most {} labels besides {}", MAX_LABELS - OWN_LABELS.len(), OWN_LABELS.join(", ")));
    }
    labels.iter().find_map(|(name, value)| {
        if name.len() > MAX_LABEL_NAME_BYTES || !valid_label_name(name) {
            Some(format!(
                "label name `{name}` must match [a-zA-Z_][a-zA-Z0-9_]* (at most {MAX_LABEL_NAME_BYTES} bytes)"
            ))
        } else if value.chars().count() > MAX_LABEL_VALUE_CHARS {
            Some(format!("label `{name}` is over {MAX_LABEL_VALUE_CHARS} characters"))
        } else if value.contains('\0') {
            Some(format!("label `{name}` must not contain NUL characters"))
        } else {
            None
        }
    })
}

fn validate(index: usize, entry: NewLog, received_at: i64, problems: &mut Vec<FieldError>) -> Option<LogRow> {
    let field = |name: &str| format!("logs[{index}].{name}");
    let before = problems.len();
    let ts = match entry.timestamp {
        Ok(ts) => Some(ts.unwrap_or(received_at)),
        Err(m) => {
            problems.push(FieldError::new(field("timestamp"), m));
            None
        }
    };
    let level = match entry.level {
        Ok(level) => Some(level.unwrap_or(Level::Info)),
        Err(m) => {
            problems.push(FieldError::new(field("level"), m));
            None
        }
    };
    let message = entry.message;
    if message.is_empty() {
        problems.push(FieldError::new(field("message"), "is required"));
    } else if message.len() > MAX_MESSAGE_BYTES {
        problems.push(FieldError::new(field("message"), format!("is over {MAX_MESSAGE_BYTES} bytes")));
    } else if message.contains('\0') {
        // No database stores it alike (PostgreSQL refuses it); gRPC can send one.
        problems.push(FieldError::new(field("message"), "must not contain NUL characters"));
    }
    for (name, value) in [("hostname", &entry.hostname), ("application", &entry.application)] {
        if value.as_ref().is_some_and(|v| v.chars().count() > MAX_NAME_CHARS) {
            problems.push(FieldError::new(field(name), format!("is over {MAX_NAME_CHARS} characters")));
        } else if value.as_ref().is_some_and(|v| v.contains('\0')) {
            problems.push(FieldError::new(field(name), "must not contain NUL characters"));
        }
    }
    let attributes = match entry.attributes.filter(|v| !v.is_null()) {
        Some(value) if !value.is_object() => {
            problems.push(FieldError::new(field("attributes"), "must be a JSON object"));
            None
        }
        Some(value) => {
            let text = value.to_string();
            if text.len() > MAX_ATTRIBUTES_BYTES {
                problems.push(FieldError::new(field("attributes"), format!("are over {MAX_ATTRIBUTES_BYTES} bytes")));
            } else if let Some(problem) = super::json_problem(&value) {
                problems.push(FieldError::new(field("attributes"), problem));
            }
            Some(text)
        }
        None => None,
    };
    let mut labels = entry.labels;
    if let Some(problem) = labels_problem(&labels) {
        problems.push(FieldError::new(field("labels"), problem));
    }
    if problems.len() > before {
        return None;
    }
    let level = level?.as_str();
    // The own labels are the row's columns and its source's name: stored once, there.
    labels.retain(|name, _| !OWN_LABELS.contains(&name.as_str()));
    let labels = if labels.is_empty() { None } else { Some(serde_json::to_string(&labels).ok()?) };
    Some(LogRow {
        ts: ts?,
        level,
        labels,
        message,
        hostname: entry.hostname,
        application: entry.application,
        attributes,
    })
}

/// Validates every entry, then stores all of them in one transaction, or none; counts the
/// batch's lines for its source in `/metrics`, accepted or refused. Valid lines already
/// older than the source's retention (`retention` where the source sets none) are
/// accepted but not stored, and counted as dropped.
pub async fn ingest(
    db: &Database,
    metrics: &Metrics,
    retention: Retention,
    source: &source::Model,
    entries: Vec<NewLog>,
) -> Result<Ingested, AppError> {
    let items = entries.len();
    super::counted(metrics, &source.id, IngestKind::Logs, items, store(db, retention, source, entries)).await
}

async fn store(
    db: &Database,
    retention: Retention,
    source: &source::Model,
    entries: Vec<NewLog>,
) -> Result<Ingested, AppError> {
    super::check_batch(entries.len(), MAX_BATCH, "logs", ("entry", "log entries"))?;
    let _turn = db.ingest_turn().await;
    let received_at = now_micros();
    let mut problems = Vec::new();
    let mut rows = Vec::with_capacity(entries.len());
    for (index, entry) in entries.into_iter().enumerate() {
        if let Some(row) = validate(index, entry, received_at, &mut problems) {
            rows.push(row);
        }
    }
    if !problems.is_empty() {
        problems.truncate(50);
        return Err(AppError::Validation(problems));
    }
    let valid = rows.len();
    if let Some(oldest) = retention::ingest_cutoff(source, retention, IngestKind::Logs) {
        rows.retain(|row| row.ts >= oldest);
    }
    let ingested = Ingested { accepted: rows.len(), dropped: valid - rows.len() };
    if !rows.is_empty() {
        storage::logs::insert(db, &source.id, received_at, rows)
            .await
            .map_err(|err| super::source_gone_or(err, &source.id))?;
    }
    Ok(ingested)
}

/// Validates each entry on its own and stores the valid ones in one transaction (the
/// protocols whose answer is per item: OTLP's partial success, Elasticsearch's `_bulk`).
/// Returns one outcome per entry, in order: stored, dropped (valid, but older than the
/// source's retention), or refused with its reasons; fails whole only for what fails the
/// request (an empty or oversized batch, the database, the source gone). Counts the
/// lines for the source in `/metrics`.
pub async fn ingest_each(
    db: &Database,
    metrics: &Metrics,
    retention: Retention,
    source: &source::Model,
    entries: Vec<NewLog>,
) -> Result<Vec<Result<Kept, String>>, AppError> {
    let items = entries.len();
    let outcomes = store_each(db, retention, source, entries).await;
    super::counted_each(metrics, &source.id, IngestKind::Logs, items, &outcomes);
    outcomes
}

async fn store_each(
    db: &Database,
    retention: Retention,
    source: &source::Model,
    entries: Vec<NewLog>,
) -> Result<Vec<Result<Kept, String>>, AppError> {
    super::check_batch(entries.len(), MAX_BATCH, "logs", ("entry", "log entries"))?;
    let _turn = db.ingest_turn().await;
    let received_at = now_micros();
    let oldest = retention::ingest_cutoff(source, retention, IngestKind::Logs);
    let mut outcomes = Vec::with_capacity(entries.len());
    let mut rows = Vec::with_capacity(entries.len());
    for (index, entry) in entries.into_iter().enumerate() {
        let mut problems = Vec::new();
        match validate(index, entry, received_at, &mut problems) {
            Some(row) if oldest.is_some_and(|oldest| row.ts < oldest) => outcomes.push(Ok(Kept::Dropped)),
            Some(row) => {
                rows.push(row);
                outcomes.push(Ok(Kept::Stored));
            }
            None => outcomes.push(Err(super::reasons(&problems))),
        }
    }
    if !rows.is_empty() {
        storage::logs::insert(db, &source.id, received_at, rows)
            .await
            .map_err(|err| super::source_gone_or(err, &source.id))?;
    }
    Ok(outcomes)
}

/// A stored log entry as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LogView {
    /// The row's number as a UUID ([`crate::ids::of_row`]).
    pub id: String,
    pub source_id: String,
    pub timestamp: String,
    pub received_at: String,
    pub level: String,
    pub message: String,
    pub hostname: Option<String>,
    pub application: Option<String>,
    #[schema(value_type = Option<Object>, required = true)]
    pub attributes: Value,
    /// The line's stream labels: `source` (its source's name), `level`, `hostname` and
    /// `application` (when it has them), and those the sender supplied.
    pub labels: BTreeMap<String, String>,
}

impl LogView {
    /// The row as the API shows it; `source_name` is its source's (for the `source`
    /// label), the other own labels come from the row's columns.
    fn of(l: log::Model, source_name: Option<&str>) -> Self {
        let mut labels: BTreeMap<String, String> =
            l.labels.and_then(|a| serde_json::from_str(&a).ok()).unwrap_or_default();
        // Rows stored before the own labels were left out have them too: these win.
        labels.retain(|name, _| !OWN_LABELS.contains(&name.as_str()));
        let own = [
            ("source", source_name),
            ("level", Some(l.level.as_str())),
            ("hostname", l.hostname.as_deref()),
            ("application", l.application.as_deref()),
        ];
        for (name, value) in own {
            if let Some(value) = value {
                labels.insert(name.to_owned(), value.to_owned());
            }
        }
        Self {
            id: crate::ids::of_row(l.id),
            source_id: l.source_id,
            timestamp: micros_to_rfc3339(l.ts),
            received_at: micros_to_rfc3339(l.received_at),
            level: l.level,
            message: l.message,
            hostname: l.hostname,
            application: l.application,
            attributes: l.attributes.and_then(|a| serde_json::from_str(&a).ok()).unwrap_or(Value::Null),
            labels,
        }
    }
}

#[derive(Debug, Default)]
pub struct LogFilter {
    pub source_id: Option<String>,
    pub level: Option<Level>,
    pub since: Option<i64>,
    pub until: Option<i64>,
    pub q: Option<String>,
}

impl LogFilter {
    /// The filter of a query as clients write it: a level name or severity, and times
    /// in RFC 3339 or Unix seconds.
    pub fn parse(
        source_id: Option<String>,
        level: Option<&str>,
        since: Option<&str>,
        until: Option<&str>,
        q: Option<String>,
    ) -> Result<Self, AppError> {
        let level =
            level.map(Level::parse).transpose().map_err(|m| AppError::Validation(vec![FieldError::new("level", m)]))?;
        // SQLite's LIKE stops at a NUL, and would match everything after it.
        if q.as_deref().is_some_and(|q| q.contains('\0')) {
            return Err(AppError::Validation(vec![FieldError::new("q", "must not contain NUL characters")]));
        }
        Ok(LogFilter {
            source_id: source_id.map(|id| crate::ids::filter(&id, "source_id")).transpose()?,
            level,
            since: since.map(|v| parse_time("since", v)).transpose()?,
            until: until.map(|v| parse_time("until", v)).transpose()?,
            q,
        })
    }
}

/// Where the next page starts, and the snapshot it belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cursor {
    pub ts: i64,
    pub id: i64,
    pub max_id: i64,
}

impl Cursor {
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!("v1:{}:{}:{}", self.ts, self.id, self.max_id))
    }

    pub fn decode(text: &str) -> Result<Self, AppError> {
        let invalid = || AppError::Validation(vec![FieldError::new("cursor", "is not a cursor this server issued")]);
        let bytes = URL_SAFE_NO_PAD.decode(text.trim()).map_err(|_| invalid())?;
        let text = String::from_utf8(bytes).map_err(|_| invalid())?;
        let mut parts = text.strip_prefix("v1:").ok_or_else(invalid)?.split(':').map(str::parse::<i64>);
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(Ok(ts)), Some(Ok(id)), Some(Ok(max_id)), None) => Ok(Cursor { ts, id, max_id }),
            _ => Err(invalid()),
        }
    }
}

/// Newest first; returns the page and the cursor of the next one, if any.
pub async fn query(
    db: &DatabaseConnection,
    filter: &LogFilter,
    limit: u64,
    cursor: Option<Cursor>,
) -> Result<(Vec<LogView>, Option<String>), AppError> {
    let max_id = match cursor {
        Some(c) => c.max_id,
        None => storage::logs::max_id(db).await?,
    };
    let selection = LogSelection {
        source_id: filter.source_id.as_deref(),
        level: filter.level.map(Level::as_str),
        since: filter.since,
        until: filter.until,
        q: filter.q.as_deref(),
        max_id,
        after: cursor.map(|c| (c.ts, c.id)),
    };
    let mut rows = storage::logs::page(db, &selection, limit + 1).await?;
    let next = if rows.len() as u64 > limit {
        rows.truncate(limit as usize);
        rows.last().map(|last| Cursor { ts: last.ts, id: last.id, max_id }.encode())
    } else {
        None
    };
    let mut source_ids: Vec<&str> = rows.iter().map(|row| row.source_id.as_str()).collect();
    source_ids.sort_unstable();
    source_ids.dedup();
    let names = storage::sources::names(db, &source_ids).await?;
    let views = rows
        .into_iter()
        .map(|row| {
            let name = names.get(&row.source_id).map(String::as_str);
            LogView::of(row, name)
        })
        .collect();
    Ok((views, next))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_and_syslog_severities_normalize() {
        assert_eq!(Level::parse("WARN"), Ok(Level::Warning));
        assert_eq!(Level::parse(" warning "), Ok(Level::Warning));
        assert_eq!(Level::from_severity(3), Ok(Level::Error));
        assert_eq!(Level::parse("0"), Ok(Level::Emergency));
        assert_eq!(Level::from_severity(7), Ok(Level::Debug));
        assert_eq!(Level::from_severity(8), Err("syslog severity 8 is not 0-7".to_owned()));
        assert_eq!(Level::parse("Loud"), Err("unknown level `loud`".to_owned()));
        for level in Level::BY_SEVERITY {
            assert_eq!(Level::parse(level.as_str()), Ok(level));
        }
    }

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let c = Cursor { ts: 5, id: 7, max_id: 9 };
        assert_eq!(Cursor::decode(&c.encode()).unwrap(), c);
        assert!(Cursor::decode("garbage").is_err());
        assert!(Cursor::decode(&URL_SAFE_NO_PAD.encode("v1:1:2")).is_err());
    }
}
