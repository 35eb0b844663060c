//! The `logs` table: batches stored whole or not at all, and newest-first pages read by
//! keyset (`(ts, id)`, below a snapshot's highest id: see `service::logs`).

use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, ExprTrait, QueryFilter,
    QueryOrder, QuerySelect, QueryTrait, Set, sea_query::Expr, sqlx,
};

use super::{Backend, Database, entity::log};

/// Rows in one multi-row INSERT, at most: a power of two, so that a full chunk is one
/// statement of one of the sizes [`statement_sizes`] gives.
const INSERT_CHUNK: usize = 512;
/// Text bytes in one multi-row INSERT, at most. MariaDB refuses a statement larger than
/// its `max_allowed_packet` (16 MiB by default), and a batch just under the body limit
/// holds more than that once each row repeats its source id and times.
const INSERT_CHUNK_BYTES: usize = 4 * 1024 * 1024;

/// A valid entry, as it will be stored (its source and arrival time are the batch's).
pub struct LogRow {
    pub ts: i64,
    pub level: &'static str,
    pub message: String,
    pub hostname: Option<String>,
    pub application: Option<String>,
    /// A JSON object, as text.
    pub attributes: Option<String>,
    /// The labels the line's own columns and source do not give (see `service::logs`),
    /// as a JSON object of strings; `None` when there are none.
    pub labels: Option<String>,
}

impl LogRow {
    /// The row's size in an INSERT: its text, plus the source id, times and level.
    fn text_bytes(&self) -> usize {
        let optional = |text: &Option<String>| text.as_ref().map_or(0, String::len);
        self.message.len()
            + optional(&self.hostname)
            + optional(&self.application)
            + optional(&self.attributes)
            + optional(&self.labels)
            + 80
    }
}

/// Stores all of `rows` in one transaction (PostgreSQL: of one statement), or none.
pub async fn insert(db: &Database, source_id: &str, received_at: i64, rows: Vec<LogRow>) -> Result<(), DbErr> {
    match db.backend() {
        Backend::Postgres => {
            let txn = db.conn().get_postgres_connection_pool().begin().await.map_err(super::acquire_error)?;
            insert_unnest(txn, source_id, received_at, rows).await.map_err(super::exec_error)
        }
        Backend::Sqlite | Backend::MySql => insert_values(db.conn(), source_id, received_at, rows).await,
    }
}

/// SQLite and MariaDB: multi-row INSERTs of at most [`INSERT_CHUNK`] rows and
/// [`INSERT_CHUNK_BYTES`] of text, each of a row count [`statement_sizes`] gives, in one
/// transaction.
async fn insert_values(
    conn: &DatabaseConnection,
    source_id: &str,
    received_at: i64,
    rows: Vec<LogRow>,
) -> Result<(), DbErr> {
    let txn = super::begin_write(conn).await?;
    let mut rows = rows.into_iter().peekable();
    let mut chunk = Vec::with_capacity(INSERT_CHUNK.min(rows.len()));
    let mut bytes = 0;
    while let Some(row) = rows.next() {
        bytes += row.text_bytes();
        chunk.push(row_model(source_id, received_at, row));
        let full = chunk.len() == INSERT_CHUNK
            || rows.peek().is_some_and(|next| bytes + next.text_bytes() > INSERT_CHUNK_BYTES);
        if full || rows.peek().is_none() {
            let mut models = std::mem::take(&mut chunk).into_iter();
            for size in statement_sizes(models.len()) {
                log::Entity::insert_many(models.by_ref().take(size)).exec_without_returning(&txn).await?;
            }
            bytes = 0;
        }
    }
    txn.commit().await
}

/// The row counts of the INSERTs that store `n` rows: the powers of two of `n`'s binary
/// form, largest first (300 rows: 256, 32, 8 and 4). A multi-row INSERT of each row count
/// is a statement of its own, which the driver prepares and keeps in the connection's
/// statement cache (100 statements a connection): with one INSERT of whatever size a batch
/// has, batches of a few hundred lines of varying sizes filled every connection's cache
/// with statements used about once, each holding its compiled program and parameters
/// (hundreds of KiB for a few hundred rows), and RSS grew by some hundred MiB before it
/// levelled off (tests/soak). Powers of two up to [`INSERT_CHUNK`] are ten statements, each
/// prepared once a connection.
fn statement_sizes(n: usize) -> impl Iterator<Item = usize> {
    (0..usize::BITS).rev().map(|bit| 1_usize << bit).filter(move |size| n & size != 0)
}

fn row_model(source_id: &str, received_at: i64, row: LogRow) -> log::ActiveModel {
    log::ActiveModel {
        source_id: Set(source_id.to_owned()),
        ts: Set(row.ts),
        received_at: Set(received_at),
        level: Set(row.level.to_owned()),
        message: Set(row.message),
        hostname: Set(row.hostname),
        application: Set(row.application),
        attributes: Set(row.attributes),
        labels: Set(row.labels),
        ..Default::default()
    }
}

/// PostgreSQL: the whole batch in one statement of nine parameters, a column of the
/// batch in each array. One prepared statement serves every batch size (a multi-row
/// `VALUES` is a new statement, prepared anew, for each size), PostgreSQL reads nine
/// arrays instead of binding 9,000 parameters for each 1,000 rows.
const PG_INSERT_LOGS: &str = "INSERT INTO logs \
    (source_id, ts, received_at, level, message, hostname, application, attributes, labels) \
    SELECT $1, t.ts, $2, t.level, t.message, t.hostname, t.application, t.attributes, t.labels \
    FROM UNNEST($3::int8[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[]) \
    AS t(ts, level, message, hostname, application, attributes, labels)";

/// Runs [`PG_INSERT_LOGS`] in `txn` and commits it. The statement is atomic by itself, but
/// in autocommit PostgreSQL runs it to the end and commits even when the connection is
/// lost meanwhile: the batch would be stored while the client is answered 503. In a
/// transaction, a connection lost before the COMMIT rolls it back, and only the COMMIT's
/// own round trip is left in doubt.
async fn insert_unnest(
    mut txn: sqlx::Transaction<'_, sqlx::Postgres>,
    source_id: &str,
    received_at: i64,
    rows: Vec<LogRow>,
) -> Result<(), sqlx::Error> {
    let mut ts = Vec::with_capacity(rows.len());
    let mut level = Vec::with_capacity(rows.len());
    let mut message = Vec::with_capacity(rows.len());
    let mut hostname = Vec::with_capacity(rows.len());
    let mut application = Vec::with_capacity(rows.len());
    let mut attributes = Vec::with_capacity(rows.len());
    let mut labels = Vec::with_capacity(rows.len());
    for row in rows {
        ts.push(row.ts);
        level.push(row.level);
        message.push(row.message);
        hostname.push(row.hostname);
        application.push(row.application);
        attributes.push(row.attributes);
        labels.push(row.labels);
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
        .bind(labels)
        .execute(&mut *txn)
        .await?;
    txn.commit().await
}

/// The highest log id there is (0 for none): the snapshot a first page starts.
pub async fn max_id(db: &impl ConnectionTrait) -> Result<i64, DbErr> {
    Ok(log::Entity::find()
        .select_only()
        .column_as(log::Column::Id.max(), "max_id")
        .into_tuple::<Option<i64>>()
        .one(db)
        .await?
        .flatten()
        .unwrap_or(0))
}

/// Which rows a page is taken from.
#[derive(Debug, Default, Clone, Copy)]
pub struct LogSelection<'a> {
    pub source_id: Option<&'a str>,
    pub level: Option<&'a str>,
    pub since: Option<i64>,
    pub until: Option<i64>,
    /// A substring of the message, in any case.
    pub q: Option<&'a str>,
    /// Only rows up to this id: the snapshot the pages belong to.
    pub max_id: i64,
    /// Only rows after this `(ts, id)` in newest-first order: where the previous page ended.
    pub after: Option<(i64, i64)>,
}

/// The newest rows of a selection a text search on SQLite reads before it turns to the
/// trigram index. The index lists every row holding the string before they can be sorted
/// by time, a cost in proportion to how common the string is, while a short scan of the
/// newest rows finds a page of a common string at once; a rarer one costs this scan more.
const SQLITE_SCAN_FIRST: u64 = 10_000;

/// Up to `limit` rows of `selection`, newest first (`ts DESC, id DESC`).
pub async fn page(db: &DatabaseConnection, selection: &LogSelection<'_>, limit: u64) -> Result<Vec<log::Model>, DbErr> {
    let search = selection.q.filter(|_| db.get_database_backend() == sea_orm::DbBackend::Sqlite);
    match search.and_then(fts_trigrams) {
        Some(trigrams) => sqlite_search(db, selection, &trigrams, limit).await,
        None => scan(db, selection, limit).await,
    }
}

/// The rows of `selection` as the database's planner chooses to find them (PostgreSQL
/// uses its trigram index for `q` this way).
async fn scan(db: &DatabaseConnection, selection: &LogSelection<'_>, limit: u64) -> Result<Vec<log::Model>, DbErr> {
    let (condition, leading) = conditions(selection, db.get_database_backend());
    let mut select = log::Entity::find().filter(condition);
    if let Some(column) = leading {
        select = select.order_by_desc(column);
    }
    select.order_by_desc(log::Column::Ts).order_by_desc(log::Column::Id).limit(limit).all(db).await
}

/// SQLite, `q` of a trigram or more: the newest [`SQLITE_SCAN_FIRST`] rows of the
/// selection are scanned, and when they hold less than a page, the rows below them are
/// looked up from `logs_fts`.
async fn sqlite_search(
    db: &DatabaseConnection,
    selection: &LogSelection<'_>,
    trigrams: &str,
    limit: u64,
) -> Result<Vec<log::Model>, DbErr> {
    let backend = db.get_database_backend();
    let unsearched = LogSelection { q: None, ..*selection };
    let edge: Option<(i64, i64)> = log::Entity::find()
        .filter(conditions(&unsearched, backend).0)
        .select_only()
        .column(log::Column::Ts)
        .column(log::Column::Id)
        .order_by_desc(log::Column::Ts)
        .order_by_desc(log::Column::Id)
        .offset(SQLITE_SCAN_FIRST - 1)
        .limit(1)
        .into_tuple()
        .one(db)
        .await?;
    // Fewer rows than that: the scan reads them all.
    let Some((edge_ts, edge_id)) = edge else { return scan(db, selection, limit).await };
    let newest = log::Column::Ts.gt(edge_ts).or(log::Column::Ts.eq(edge_ts).and(log::Column::Id.gte(edge_id)));
    let mut rows = log::Entity::find()
        .filter(conditions(selection, backend).0.add(log::Column::Ts.gte(edge_ts)).add(newest))
        .order_by_desc(log::Column::Ts)
        .order_by_desc(log::Column::Id)
        .limit(limit)
        .all(db)
        .await?;
    if rows.len() as u64 >= limit {
        return Ok(rows);
    }
    // The rows below the edge (which is at or below `after`) that hold every trigram.
    let older = LogSelection { after: Some((edge_ts, edge_id)), ..*selection };
    let fts = "id IN (SELECT rowid FROM logs_fts WHERE logs_fts MATCH ?)";
    let statement = log::Entity::find()
        .filter(conditions(&older, backend).0.add(Expr::cust_with_values(fts, [trigrams])))
        .order_by_desc(log::Column::Ts)
        .order_by_desc(log::Column::Id)
        .limit(limit - rows.len() as u64)
        .build(backend);
    rows.extend(log::Entity::find().from_raw_sql(not_indexed(statement)).all(db).await?);
    Ok(rows)
}

/// `statement` reading `logs` by primary key only: its planner would otherwise walk an
/// index that gives the order (`(ts, id)`, or a source's) and test each row against the
/// list of matches, reading every row of the selection for a rare string.
fn not_indexed(mut statement: sea_orm::Statement) -> sea_orm::Statement {
    statement.sql = statement.sql.replacen(r#"FROM "logs" WHERE"#, r#"FROM "logs" NOT INDEXED WHERE"#, 1);
    statement
}

/// The `WHERE` of `selection`, and on PostgreSQL the column whose index must answer it
/// (see [`pinned_eq`]), which the order must then start with.
fn conditions(selection: &LogSelection<'_>, backend: sea_orm::DbBackend) -> (Condition, Option<log::Column>) {
    let postgres = backend == sea_orm::DbBackend::Postgres;
    let mut leading = None;
    let mut condition = Condition::all().add(log::Column::Id.lte(selection.max_id));
    for (column, value) in [(log::Column::SourceId, selection.source_id), (log::Column::Level, selection.level)] {
        let Some(value) = value else { continue };
        if postgres && leading.is_none() {
            leading = Some(column);
            condition = condition.add(pinned_eq(column, value));
        } else {
            condition = condition.add(column.eq(value));
        }
    }
    if let Some(since) = selection.since {
        condition = condition.add(log::Column::Ts.gte(since));
    }
    if let Some(until) = selection.until {
        condition = condition.add(log::Column::Ts.lte(until));
    }
    if let Some(q) = selection.q.filter(|q| !q.is_empty()) {
        // The database's own LOWER() lowers both sides, so searching for a stored message
        // exactly always finds it, whatever that function does with a letter (SQLite's
        // folds ASCII only; Unicode's rules for 'İ', 'ẞ' or a final sigma differ between
        // Rust and the databases, and between databases). This predicate decides the
        // results on every backend; a text index only narrows the rows it is tested on.
        let sql = match backend {
            sea_orm::DbBackend::Postgres => "LOWER(message) LIKE LOWER($1) ESCAPE '!'",
            _ => "LOWER(message) LIKE LOWER(?) ESCAPE '!'",
        };
        condition = condition.add(Expr::cust_with_values(sql, [like_pattern(q)]));
    }
    if let Some((ts, id)) = selection.after {
        // `ts <= c.ts` alone is what an index range can start from: without it the
        // database reads every newer row again and filters it out, so a page would cost in
        // proportion to its depth.
        condition = condition.add(log::Column::Ts.lte(ts)).add(
            Condition::any()
                .add(log::Column::Ts.lt(ts))
                .add(Condition::all().add(log::Column::Ts.eq(ts)).add(log::Column::Id.lt(id))),
        );
    }
    (condition, leading)
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

/// Trigrams of `q` picked from evenly spaced places, at most this many: more would
/// narrow the rows less than they cost to look up.
const MAX_TRIGRAMS: usize = 16;

/// An FTS5 query for the rows of `logs_fts` holding trigrams of `q`, each as a quoted
/// string (the table's trigram tokenizer folds its case the way it folded the messages';
/// a quote in it is doubled); `None` when `q` is shorter than a trigram, which the index
/// cannot answer.
fn fts_trigrams(q: &str) -> Option<String> {
    let chars: Vec<char> = q.chars().collect();
    let windows = chars.len().checked_sub(2).filter(|&n| n > 0)?;
    let step = windows.div_ceil(MAX_TRIGRAMS);
    let mut picked: Vec<String> = Vec::new();
    for start in (0..windows).step_by(step).chain([windows - 1]) {
        let trigram: String = chars[start..start + 3].iter().collect();
        if !picked.contains(&trigram) {
            picked.push(trigram);
        }
    }
    let quoted: Vec<String> = picked.iter().map(|t| format!("\"{}\"", t.replace('"', "\"\""))).collect();
    Some(quoted.join(" AND "))
}

/// `column = value` in a form PostgreSQL's planner does not fold into a constant, for the
/// column whose index must answer the query (which then also orders by that column first).
///
/// With a plain equality, `ORDER BY ts DESC, id DESC LIMIT 51` may be planned as a
/// backward scan of the `(ts, id)` index that filters rows on the way. That costs the
/// same as the `(source_id, ts, id)` index while a source's lines are spread evenly, but for
/// a source that went quiet it reads every newer line of every other source first, a cost
/// that grows with the traffic since, where its own index reads only its page. PostgreSQL turns `IN (a, a)` into `= ANY(ARRAY[a, a])`,
/// which means the same, and after which an order starting with the column is given by
/// that column's own index only.
fn pinned_eq(column: log::Column, value: &str) -> sea_orm::sea_query::SimpleExpr {
    column.is_in([value, value])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Batches of 1 to 300 lines are stored with few distinct INSERT statements (each a
    /// prepared statement the connection keeps), not one for each batch size.
    #[tokio::test]
    async fn batches_of_any_size_share_a_few_insert_statements() {
        use std::{
            collections::HashSet,
            sync::{Arc, Mutex},
        };
        let mut conn = sea_orm::Database::connect("sqlite::memory:").await.unwrap();
        crate::storage::migrate::run(&conn).await.unwrap();
        let source = "0b4f3c2a-6a55-4f3e-9d1e-6c8a2f7e1b00";
        conn.execute_unprepared(&format!(
            "INSERT INTO sources (id, name, source_type, description, enabled, config, allowed_cidrs, created_at, updated_at) \
             VALUES ('{source}', 'statements', 'http', '', 1, '{{}}', '[]', 0, 0)"
        ))
        .await
        .unwrap();
        let inserts = Arc::new(Mutex::new(HashSet::new()));
        let seen = Arc::clone(&inserts);
        conn.set_metric_callback(move |info| {
            if info.statement.sql.starts_with(r#"INSERT INTO "logs""#) {
                seen.lock().unwrap().insert(info.statement.sql.clone());
            }
        });
        let mut stored = 0;
        for size in 1..=300 {
            let rows = (0..size)
                .map(|i| LogRow {
                    ts: i,
                    level: "info",
                    message: format!("line {i} of {size}"),
                    hostname: None,
                    application: None,
                    attributes: None,
                    labels: None,
                })
                .collect();
            insert_values(&conn, source, 0, rows).await.unwrap();
            stored += size;
        }
        let count: Option<i64> = log::Entity::find()
            .select_only()
            .column_as(log::Column::Id.count(), "n")
            .into_tuple()
            .one(&conn)
            .await
            .unwrap();
        assert_eq!(count, Some(stored));
        let distinct = inserts.lock().unwrap().len();
        assert!(distinct <= 9, "{distinct} distinct INSERT statements for 300 batch sizes");
    }

    #[test]
    fn statement_sizes_are_the_binary_digits() {
        assert_eq!(statement_sizes(300).collect::<Vec<_>>(), [256, 32, 8, 4]);
        assert_eq!(statement_sizes(512).collect::<Vec<_>>(), [512]);
        assert_eq!(statement_sizes(1).collect::<Vec<_>>(), [1]);
        assert_eq!(statement_sizes(0).count(), 0);
        for n in 1..=INSERT_CHUNK {
            assert_eq!(statement_sizes(n).sum::<usize>(), n);
        }
    }

    #[test]
    fn like_wildcards_are_escaped() {
        assert_eq!(like_pattern("50%_Off!"), "%50!%!_Off!!%");
        assert_eq!(like_pattern("Échec"), "%Échec%");
    }

    #[test]
    fn the_index_path_reads_logs_by_primary_key_only() {
        let selection = LogSelection { q: Some("abc"), source_id: Some("s"), max_id: 9, ..Default::default() };
        let statement = log::Entity::find()
            .filter(conditions(&selection, sea_orm::DbBackend::Sqlite).0)
            .build(sea_orm::DbBackend::Sqlite);
        assert!(not_indexed(statement).sql.contains(r#"FROM "logs" NOT INDEXED WHERE"#));
    }

    #[test]
    fn fts_queries_quote_each_trigram() {
        assert_eq!(fts_trigrams("ab"), None);
        assert_eq!(fts_trigrams(""), None);
        assert_eq!(fts_trigrams("abc").as_deref(), Some(r#""abc""#));
        assert_eq!(fts_trigrams(r#"a"bc"#).as_deref(), Some(r#""a""b" AND """bc""#));
        assert_eq!(fts_trigrams("aaaa").as_deref(), Some(r#""aaa""#));
        assert_eq!(fts_trigrams("Éé🚀x").as_deref(), Some(r#""Éé🚀" AND "é🚀x""#));
    }

    #[test]
    fn long_fts_queries_keep_trigrams_from_both_ends() {
        let q: String = ('a'..='z').collect();
        let query = fts_trigrams(&q).unwrap();
        assert!(query.starts_with(r#""abc" AND"#), "{query}");
        assert!(query.ends_with(r#"AND "xyz""#), "{query}");
        assert!(query.matches(" AND ").count() < MAX_TRIGRAMS + 1, "{query}");
    }
}
