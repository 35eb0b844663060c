//! Logs: batches stored whole or not at all, and newest-first reads with a stable cursor.
//!
//! The cursor carries the position `(ts, id)` of the last row returned and the highest
//! log id that existed when the first page was read. Later pages only look at rows at or
//! below that id, ordered by `(ts DESC, id DESC)`, so logs ingested while a client pages
//! through never shift the pages: nothing is skipped, nothing repeated.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use sea_orm::{
    ColumnTrait, Condition, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set,
    sea_query::Expr, sqlx,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::storage::entity::log;
use crate::{
    error::{AppError, FieldError},
    storage::{Backend, Database},
    time::{micros_to_rfc3339, now_micros, parse_time},
};

pub const MAX_BATCH: usize = 10_000;
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;
pub const MAX_ATTRIBUTES_BYTES: usize = 16 * 1024;
const MAX_NAME_CHARS: usize = 255;
const INSERT_CHUNK: usize = 1_000;
/// Text bytes in one multi-row INSERT, at most. MariaDB refuses a statement larger than
/// its `max_allowed_packet` (16 MiB by default), and a batch just under the body limit
/// holds more than that once each row repeats its source id and times.
const INSERT_CHUNK_BYTES: usize = 4 * 1024 * 1024;

/// One log entry as clients send it.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct LogInput {
    pub timestamp: Option<Value>,
    pub level: Option<Value>,
    #[schema(required = true, min_length = 1)]
    pub message: Option<String>,
    pub hostname: Option<String>,
    pub application: Option<String>,
    pub attributes: Option<Value>,
}

pub const LEVELS: [&str; 8] = ["debug", "info", "notice", "warning", "error", "critical", "alert", "emergency"];

/// Normalizes level names and syslog severities (0 emergency … 7 debug).
pub fn normalize_level(level: Option<&Value>) -> Result<&'static str, String> {
    let Some(level) = level else { return Ok("info") };
    if let Some(n) = level.as_u64().or_else(|| level.as_str().and_then(|s| s.trim().parse().ok())) {
        let by_severity = ["emergency", "alert", "critical", "error", "warning", "notice", "info", "debug"];
        return by_severity.get(n as usize).copied().ok_or_else(|| format!("syslog severity {n} is not 0-7"));
    }
    let name = level.as_str().ok_or("must be a level name or a syslog severity")?.trim().to_ascii_lowercase();
    Ok(match name.as_str() {
        "trace" | "debug" => "debug",
        "info" | "information" | "informational" => "info",
        "notice" => "notice",
        "warn" | "warning" => "warning",
        "err" | "error" => "error",
        "crit" | "critical" | "fatal" => "critical",
        "alert" => "alert",
        "emerg" | "emergency" | "panic" => "emergency",
        _ => return Err(format!("unknown level `{name}`")),
    })
}

/// RFC 3339, or Unix seconds (number or numeric string), as microseconds.
pub fn parse_timestamp(value: &Value) -> Result<i64, String> {
    let seconds = value.as_f64().or_else(|| value.as_str().and_then(|s| s.trim().parse::<f64>().ok()));
    if let Some(seconds) = seconds {
        if !(0.0..=253_402_300_799.0).contains(&seconds) {
            return Err("is out of range".to_owned());
        }
        return Ok((seconds * 1_000_000.0).round() as i64);
    }
    let text = value.as_str().ok_or("must be an RFC 3339 time or Unix seconds")?;
    let micros = chrono::DateTime::parse_from_rfc3339(text.trim())
        .map(|t| t.timestamp_micros())
        .map_err(|_| "must be an RFC 3339 time or Unix seconds".to_owned())?;
    // The range numbers have: an offset can carry a time past 9999 (which would read back
    // as `+10000-...`, not RFC 3339) or before 1970.
    if !(0..=253_402_300_799_999_999).contains(&micros) {
        return Err("is out of range".to_owned());
    }
    Ok(micros)
}

/// A valid entry, as it will be stored (its source and arrival time are the batch's).
struct NewLog {
    ts: i64,
    level: &'static str,
    message: String,
    hostname: Option<String>,
    application: Option<String>,
    attributes: Option<String>,
}

impl NewLog {
    /// The row's size in an INSERT: its text, plus the source id, times and level.
    fn text_bytes(&self) -> usize {
        let optional = |text: &Option<String>| text.as_ref().map_or(0, String::len);
        self.message.len() + optional(&self.hostname) + optional(&self.application) + optional(&self.attributes) + 80
    }
}

fn validate(index: usize, entry: LogInput, received_at: i64, problems: &mut Vec<FieldError>) -> Option<NewLog> {
    let field = |name: &str| format!("logs[{index}].{name}");
    let before = problems.len();
    let ts = match entry.timestamp.as_ref().filter(|v| !v.is_null()) {
        Some(value) => parse_timestamp(value).map_err(|m| problems.push(FieldError::new(field("timestamp"), m))).ok(),
        None => Some(received_at),
    };
    let level = normalize_level(entry.level.as_ref().filter(|v| !v.is_null()))
        .map_err(|m| problems.push(FieldError::new(field("level"), m)))
        .ok();
    let message = entry.message.unwrap_or_default();
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
    if problems.len() > before {
        return None;
    }
    Some(NewLog {
        ts: ts?,
        level: level?,
        message,
        hostname: entry.hostname,
        application: entry.application,
        attributes,
    })
}

/// Validates every entry, then stores all of them in one transaction, or none.
pub async fn ingest(db: &Database, source_id: &str, entries: Vec<LogInput>) -> Result<usize, AppError> {
    if entries.is_empty() {
        return Err(AppError::Validation(vec![FieldError::new("logs", "must contain at least one entry")]));
    }
    if entries.len() > MAX_BATCH {
        return Err(AppError::TooLarge(format!("A batch holds at most {MAX_BATCH} log entries")));
    }
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
    let count = rows.len();
    match db.backend() {
        Backend::Postgres => insert_unnest(db.conn().get_postgres_connection_pool(), source_id, received_at, rows)
            .await
            .map_err(crate::storage::exec_error),
        Backend::Sqlite | Backend::MySql => insert_values(db.conn(), source_id, received_at, rows).await,
    }
    .map_err(|err| super::source_gone_or(err, source_id))?;
    Ok(count)
}

/// SQLite and MariaDB: multi-row INSERTs of at most [`INSERT_CHUNK`] rows and
/// [`INSERT_CHUNK_BYTES`] of text, in one transaction.
async fn insert_values(
    conn: &DatabaseConnection,
    source_id: &str,
    received_at: i64,
    rows: Vec<NewLog>,
) -> Result<(), DbErr> {
    let txn = crate::storage::begin_write(conn).await?;
    let mut rows = rows.into_iter().peekable();
    let mut chunk = Vec::with_capacity(INSERT_CHUNK.min(rows.len()));
    let mut bytes = 0;
    while let Some(row) = rows.next() {
        bytes += row.text_bytes();
        chunk.push(row_model(source_id, received_at, row));
        let full = chunk.len() == INSERT_CHUNK
            || rows.peek().is_some_and(|next| bytes + next.text_bytes() > INSERT_CHUNK_BYTES);
        if full || rows.peek().is_none() {
            log::Entity::insert_many(std::mem::take(&mut chunk)).exec_without_returning(&txn).await?;
            bytes = 0;
        }
    }
    txn.commit().await
}

fn row_model(source_id: &str, received_at: i64, row: NewLog) -> log::ActiveModel {
    log::ActiveModel {
        source_id: Set(source_id.to_owned()),
        ts: Set(row.ts),
        received_at: Set(received_at),
        level: Set(row.level.to_owned()),
        message: Set(row.message),
        hostname: Set(row.hostname),
        application: Set(row.application),
        attributes: Set(row.attributes),
        ..Default::default()
    }
}

/// PostgreSQL: the whole batch in one statement of eight parameters, a column of the
/// batch in each array. One prepared statement serves every batch size (a multi-row
/// `VALUES` is a new statement, prepared anew, for each size), PostgreSQL reads eight
/// arrays instead of binding 8,000 parameters for each 1,000 rows, and one statement is atomic without
/// a transaction around it.
const PG_INSERT_LOGS: &str = "INSERT INTO logs \
    (source_id, ts, received_at, level, message, hostname, application, attributes) \
    SELECT $1, t.ts, $2, t.level, t.message, t.hostname, t.application, t.attributes \
    FROM UNNEST($3::int8[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[]) \
    AS t(ts, level, message, hostname, application, attributes)";

async fn insert_unnest(
    pool: &sqlx::PgPool,
    source_id: &str,
    received_at: i64,
    rows: Vec<NewLog>,
) -> Result<(), sqlx::Error> {
    let mut ts = Vec::with_capacity(rows.len());
    let mut level = Vec::with_capacity(rows.len());
    let mut message = Vec::with_capacity(rows.len());
    let mut hostname = Vec::with_capacity(rows.len());
    let mut application = Vec::with_capacity(rows.len());
    let mut attributes = Vec::with_capacity(rows.len());
    for row in rows {
        ts.push(row.ts);
        level.push(row.level);
        message.push(row.message);
        hostname.push(row.hostname);
        application.push(row.application);
        attributes.push(row.attributes);
    }
    sqlx::query(PG_INSERT_LOGS)
        .bind(source_id)
        .bind(received_at)
        .bind(ts)
        .bind(level)
        .bind(message)
        .bind(hostname)
        .bind(application)
        .bind(attributes)
        .execute(pool)
        .await?;
    Ok(())
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
}

impl From<log::Model> for LogView {
    fn from(l: log::Model) -> Self {
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
        }
    }
}

#[derive(Debug, Default)]
pub struct LogFilter {
    pub source_id: Option<String>,
    pub level: Option<String>,
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
        let level = match level {
            Some(level) => Some(
                normalize_level(Some(&Value::String(level.to_owned())))
                    .map_err(|m| AppError::Validation(vec![FieldError::new("level", m)]))?
                    .to_owned(),
            ),
            None => None,
        };
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

/// Escapes LIKE wildcards so `q` matches as a plain substring.
fn like_pattern(q: &str) -> String {
    let mut pattern = String::with_capacity(q.len() + 2);
    pattern.push('%');
    for c in q.chars() {
        if matches!(c, '%' | '_' | '!') {
            pattern.push('!');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
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
        None => log::Entity::find()
            .select_only()
            .column_as(log::Column::Id.max(), "max_id")
            .into_tuple::<Option<i64>>()
            .one(db)
            .await?
            .flatten()
            .unwrap_or(0),
    };
    // On PostgreSQL the source's (else the level's) own index must answer: see `pinned_eq`.
    let postgres = db.get_database_backend() == sea_orm::DbBackend::Postgres;
    let mut leading = None;
    let mut condition = Condition::all().add(log::Column::Id.lte(max_id));
    for (column, value) in [(log::Column::SourceId, &filter.source_id), (log::Column::Level, &filter.level)] {
        let Some(value) = value else { continue };
        if postgres && leading.is_none() {
            leading = Some(column);
            condition = condition.add(pinned_eq(column, value));
        } else {
            condition = condition.add(column.eq(value.as_str()));
        }
    }
    if let Some(since) = filter.since {
        condition = condition.add(log::Column::Ts.gte(since));
    }
    if let Some(until) = filter.until {
        condition = condition.add(log::Column::Ts.lte(until));
    }
    if let Some(q) = filter.q.as_deref().filter(|q| !q.is_empty()) {
        // The database's own LOWER() lowers both sides, so searching for a stored message
        // exactly always finds it, whatever that function does with a letter (SQLite's
        // folds ASCII only; Unicode's rules for 'İ', 'ẞ' or a final sigma differ between
        // Rust and the databases, and between databases).
        let sql = match db.get_database_backend() {
            sea_orm::DbBackend::Postgres => "LOWER(message) LIKE LOWER($1) ESCAPE '!'",
            _ => "LOWER(message) LIKE LOWER(?) ESCAPE '!'",
        };
        let matches = Expr::cust_with_values(sql, [like_pattern(q)]);
        condition = condition.add(matches);
    }
    if let Some(c) = cursor {
        // `ts <= c.ts` alone is what an index range can start from: without it every
        // database read the newer rows again and filtered them out (a page 30 M rows deep
        // took 27 s on PostgreSQL).
        condition = condition.add(log::Column::Ts.lte(c.ts)).add(
            Condition::any()
                .add(log::Column::Ts.lt(c.ts))
                .add(Condition::all().add(log::Column::Ts.eq(c.ts)).add(log::Column::Id.lt(c.id))),
        );
    }
    let mut select = log::Entity::find().filter(condition);
    if let Some(column) = leading {
        select = select.order_by_desc(column);
    }
    let mut rows =
        select.order_by_desc(log::Column::Ts).order_by_desc(log::Column::Id).limit(limit + 1).all(db).await?;
    let next = if rows.len() as u64 > limit {
        rows.truncate(limit as usize);
        rows.last().map(|last| Cursor { ts: last.ts, id: last.id, max_id }.encode())
    } else {
        None
    };
    Ok((rows.into_iter().map(LogView::from).collect(), next))
}

/// `column = value` in a form PostgreSQL's planner does not fold into a constant, for the
/// column whose index must answer the query (which then also orders by that column first).
///
/// With a plain equality, `ORDER BY ts DESC, id DESC LIMIT 51` may be planned as a
/// backward scan of the `(ts, id)` index that filters rows on the way. That costs the
/// same as the `(source_id, ts, id)` index while a source's lines are spread evenly, but for
/// a source that went quiet it reads every newer line of every other source first: 51 ms
/// behind 500,000 newer lines (3.6 M in all) against 0.1 ms through its own index, and it
/// grows with the traffic since. PostgreSQL turns `IN (a, a)` into `= ANY(ARRAY[a, a])`,
/// which means the same, and after which an order starting with the column is given by
/// that column's own index only.
fn pinned_eq(column: log::Column, value: &str) -> sea_orm::sea_query::SimpleExpr {
    column.is_in([value, value])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn levels_and_syslog_severities_normalize() {
        assert_eq!(normalize_level(None), Ok("info"));
        assert_eq!(normalize_level(Some(&json!("WARN"))), Ok("warning"));
        assert_eq!(normalize_level(Some(&json!("warning"))), Ok("warning"));
        assert_eq!(normalize_level(Some(&json!(3))), Ok("error"));
        assert_eq!(normalize_level(Some(&json!("0"))), Ok("emergency"));
        assert_eq!(normalize_level(Some(&json!(7))), Ok("debug"));
        assert!(normalize_level(Some(&json!(8))).is_err());
        assert!(normalize_level(Some(&json!("loud"))).is_err());
    }

    #[test]
    fn timestamps_parse_from_rfc3339_and_unix_seconds() {
        assert_eq!(parse_timestamp(&json!("2026-11-25T10:30:45.123456Z")), Ok(1_795_602_645_123_456));
        assert_eq!(parse_timestamp(&json!(1_795_602_645.5)), Ok(1_795_602_645_500_000));
        assert_eq!(parse_timestamp(&json!("1795602645")), Ok(1_795_602_645_000_000));
        assert!(parse_timestamp(&json!("yesterday")).is_err());
        assert!(parse_timestamp(&json!(-5)).is_err());
        assert_eq!(parse_timestamp(&json!("9999-12-31T23:59:59.999999Z")), Ok(253_402_300_799_999_999));
        assert!(parse_timestamp(&json!("9999-12-31T23:59:59.999999-23:59")).is_err(), "past 9999 in UTC");
        assert!(parse_timestamp(&json!("1969-12-31T23:59:59Z")).is_err(), "before 1970, as for numbers");
    }

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let c = Cursor { ts: 5, id: 7, max_id: 9 };
        assert_eq!(Cursor::decode(&c.encode()).unwrap(), c);
        assert!(Cursor::decode("garbage").is_err());
        assert!(Cursor::decode(&URL_SAFE_NO_PAD.encode("v1:1:2")).is_err());
    }

    #[test]
    fn like_wildcards_are_escaped() {
        assert_eq!(like_pattern("50%_Off!"), "%50!%!_Off!!%");
        assert_eq!(like_pattern("Échec"), "%Échec%");
    }
}
