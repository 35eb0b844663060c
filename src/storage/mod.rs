//! Storage, the only layer that writes SQL: one pool for SQLite, PostgreSQL or
//! MariaDB/MySQL, picked at run time from `DATABASE_URL`, with a background health check
//! the probes read; the migrations; every entity (`entity`); and a module per aggregate
//! (`users`, `sessions`, `api_keys`, `throttle`, `audit`, `settings`, `sources`,
//! `ingest_keys`, `logs`, `samples` with `compaction` (the chunks; `chunk` is their
//! encoding, pure)), and what the retention sweep deletes (`retention`). Services call
//! them, inside the transactions they open with [`begin_write`].

pub mod api_keys;
pub mod audit;
pub mod chunk;
pub mod compaction;
pub mod entity;
mod health;
pub mod ingest_keys;
pub mod logs;
pub mod migrate;
pub mod paging;
pub mod retention;
pub mod samples;
pub mod sessions;
pub mod settings;
pub mod sources;
pub mod throttle;
pub mod users;
mod value;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use sea_orm::{
    ConnectOptions, ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbErr, SqliteTransactionMode,
    TransactionOptions, TransactionTrait,
};

pub use self::health::{DbHealth, HealthStatus};
use crate::config::Config;
pub use crate::config::{Backend, DbUrl};

/// How long one connection attempt, or one wait for a pooled connection, may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest a single start-up connection attempt may take.
const MAX_ATTEMPT: Duration = Duration::from_secs(2);
/// Longest pause between two start-up connection attempts.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(5);
/// How long a SQLite writer waits for another writer before giving up.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Rows a SQLite connection's thread may read ahead of the task taking them. sqlx's 50
/// is soon full when the task decodes each row as it comes (the metric chunks): from
/// then on every row taken wakes that thread for one more. The buffer never holds more
/// than `query_all` collects whole; a metric chunk is a few hundred bytes.
const SQLITE_ROW_BUFFER: usize = 4096;
/// How many ingest batches may be validated and written at once on SQLite. SQLite has one
/// writer: with two, one batch is prepared while the other is written; more only queue on
/// its lock, each holding its rows and statement in memory meanwhile; a wider gate gives
/// no more lines/s (benches/HISTORY.md).
const SQLITE_INGEST_WRITERS: usize = 2;

/// The pool and what the service knows about it. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Database {
    conn: DatabaseConnection,
    backend: Backend,
    health: DbHealth,
    max_connections: u32,
    /// Bounds concurrent ingest batches where the database takes one writer at a time.
    ingest_gate: Option<Arc<tokio::sync::Semaphore>>,
    series_ids: Arc<samples::SeriesIds>,
}

/// Why the service could not start: the database could not be opened, or a setting that
/// is only checked when it is used (TLS files, the license server URL) is wrong.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("DATABASE_URL: database unreachable after {waited:?}: {cause}")]
    Unreachable { waited: Duration, cause: String },
    #[error("DATABASE_URL: migrations failed: {0}")]
    Migration(DbErr),
    #[error("DATABASE_URL: creating the development default admin failed: {0}")]
    DefaultAdmin(DbErr),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    /// `variable: problem`.
    #[error("{0}")]
    Setting(String),
}

/// Pool figures for `/metrics`.
#[derive(Clone, Copy, Debug, Default)]
pub struct PoolStats {
    pub size: u32,
    pub idle: u32,
    pub max: u32,
}

impl Database {
    /// Connects, retrying with backoff for `DB_CONNECT_RETRY_SECONDS`, then giving up (the
    /// commands, such as `create-user`). The schema is brought up to date by
    /// [`crate::storage::migrate::open`], which calls this.
    pub async fn open(config: &Config) -> Result<Self, StartError> {
        Self::open_with(config, Patience::Window(config.db_connect_retry)).await
    }

    /// Connects, retrying for as long as the database does not answer (the server, whose
    /// listeners answer 503 meanwhile). Fails only for what waiting cannot fix.
    pub async fn open_when_reachable(config: &Config) -> Result<Self, StartError> {
        Self::open_with(config, Patience::Forever { loudly_for: config.db_connect_retry }).await
    }

    async fn open_with(config: &Config, patience: Patience) -> Result<Self, StartError> {
        check_settings(config)?;
        let url = &config.database_url;
        let max_connections = if url.is_in_memory() { 1 } else { config.max_db_connections() };
        wait_until_reachable(url, patience).await?;
        let conn = sea_orm::Database::connect(connect_options(url, max_connections))
            .await
            .map_err(|err| StartError::Unreachable { waited: config.db_connect_retry, cause: err.to_string() })?;
        let ingest_gate =
            (url.backend() == Backend::Sqlite).then(|| Arc::new(tokio::sync::Semaphore::new(SQLITE_INGEST_WRITERS)));
        Ok(Self {
            conn,
            backend: url.backend(),
            health: DbHealth::new_healthy(),
            max_connections,
            ingest_gate,
            series_ids: Arc::default(),
        })
    }

    pub fn conn(&self) -> &DatabaseConnection {
        &self.conn
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The series ids this process has seen stored (see [`samples::SeriesIds`]).
    fn series_ids(&self) -> &samples::SeriesIds {
        &self.series_ids
    }

    /// Waits for a turn to write an ingest batch, on backends that take one writer at a
    /// time (SQLite); elsewhere admits at once. Batches that wait here hold only their
    /// parsed input, not the rows and statement built from it, so memory stays bounded
    /// however many producers post at once, and they are served in arrival order.
    pub async fn ingest_turn(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        let gate = self.ingest_gate.clone()?;
        // The semaphore is never closed, so acquiring cannot fail.
        gate.acquire_owned().await.ok()
    }

    /// The last result of the background health check.
    pub fn health(&self) -> HealthStatus {
        self.health.get()
    }

    /// Checks the database now and records the result.
    pub async fn check(&self) -> HealthStatus {
        let result = tokio::time::timeout(health::CHECK_TIMEOUT, self.conn.execute_unprepared("SELECT 1")).await;
        let status = match result {
            Ok(Ok(_)) => HealthStatus::Ok,
            Ok(Err(err)) => HealthStatus::Failing(err.to_string()),
            Err(_) => HealthStatus::Failing("timed out".to_owned()),
        };
        self.health.set(status.clone());
        status
    }

    /// Keeps [`Database::health`] fresh until the returned task is aborted.
    pub fn spawn_health_monitor(&self, every: Duration) -> tokio::task::JoinHandle<()> {
        let db = self.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(every);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                let before = db.health.get();
                let now = db.check().await;
                if before != now {
                    match &now {
                        HealthStatus::Ok => tracing::info!(event = "database_recovered"),
                        HealthStatus::Failing(error) => {
                            tracing::error!(event = "database_unhealthy", error = %error)
                        }
                    }
                }
            }
        })
    }

    /// Connections open and idle, for `/metrics`.
    pub fn pool_stats(&self) -> PoolStats {
        let (size, idle) = match self.backend {
            Backend::Sqlite => {
                let pool = self.conn.get_sqlite_connection_pool();
                (pool.size(), pool.num_idle())
            }
            Backend::Postgres => {
                let pool = self.conn.get_postgres_connection_pool();
                (pool.size(), pool.num_idle())
            }
            Backend::MySql => {
                let pool = self.conn.get_mysql_connection_pool();
                (pool.size(), pool.num_idle())
            }
        };
        PoolStats { size, idle: u32::try_from(idle).unwrap_or(u32::MAX), max: self.max_connections }
    }

    /// Closes every pooled connection; used at shutdown.
    pub async fn close(&self) {
        if let Err(err) = self.conn.close_by_ref().await {
            tracing::warn!(event = "database_close_failed", error = %err);
        }
    }
}

/// An error of a statement run on the driver's pool directly (sqlx), reported as sea-orm
/// reports its own, so `AppError` maps both the same way.
pub fn exec_error(err: sea_orm::sqlx::Error) -> DbErr {
    DbErr::Exec(sea_orm::RuntimeErr::SqlxError(Arc::new(err)))
}

/// A failure to get a connection from the driver's pool directly (sqlx): the database is
/// unreachable, as when sea-orm's own pool reports it (`DbErr::Conn`).
pub fn acquire_error(err: sea_orm::sqlx::Error) -> DbErr {
    DbErr::Conn(sea_orm::RuntimeErr::SqlxError(Arc::new(err)))
}

/// The SQLSTATE of a database error, when the driver reported one (PostgreSQL and
/// MariaDB/MySQL both do; for SQLite, its extended result code, e.g. "13").
pub fn sqlstate(err: &DbErr) -> Option<String> {
    let (DbErr::Exec(sea_orm::RuntimeErr::SqlxError(e)) | DbErr::Query(sea_orm::RuntimeErr::SqlxError(e))) = err else {
        return None;
    };
    e.as_database_error().and_then(|d| d.code()).map(|c| c.into_owned())
}

/// Whether the database could not be reached or the connection to it was lost: no
/// connection could be had, the socket failed or closed, or the server said it is
/// shutting down, restarting or not yet accepting connections (SQLSTATE class 08, and
/// PostgreSQL's 57P01 to 57P03, and 70100, MariaDB's connection or statement killed, by
/// its shutdown or a KILL). Not the statement's fault: the client may send it again once
/// the database is back.
pub fn connection_lost(err: &DbErr) -> bool {
    use sea_orm::sqlx::Error as Sqlx;
    match err {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => true,
        DbErr::Exec(sea_orm::RuntimeErr::SqlxError(e)) | DbErr::Query(sea_orm::RuntimeErr::SqlxError(e)) => {
            match e.as_ref() {
                Sqlx::Io(_) | Sqlx::Tls(_) | Sqlx::PoolTimedOut | Sqlx::PoolClosed | Sqlx::WorkerCrashed => true,
                Sqlx::Database(db) => db.code().is_some_and(|code| {
                    code.starts_with("08") || matches!(&*code, "57P01" | "57P02" | "57P03" | "70100")
                }),
                _ => false,
            }
        }
        _ => false,
    }
}

/// Whether the database refused a write for want of disk space: SQLite's SQLITE_FULL
/// (result code 13, which sqlx reports as the code) or PostgreSQL's `disk_full` (53100).
pub fn out_of_space(err: &DbErr) -> bool {
    matches!(sqlstate(err).as_deref(), Some("13" | "53100"))
}

/// Whether SQLite gave up waiting for another writer's lock (SQLITE_BUSY, with its
/// extended codes, after the busy timeout; SQLITE_LOCKED): the statement is not at fault
/// and goes through once the other writer is done.
pub fn busy(err: &DbErr) -> bool {
    matches!(sqlstate(err).as_deref(), Some("5" | "261" | "517" | "773" | "6" | "262"))
}

/// How many times a transaction that lost a deadlock is run again.
const DEADLOCK_RETRIES: u32 = 4;

/// Runs a write transaction, and runs it again (up to [`DEADLOCK_RETRIES`] times, after
/// 10, 20, 40, 80 ms plus jitter) when the database chose it as a deadlock victim or could not
/// serialize it (SQLSTATE 40001 or 40P01): it was rolled back whole, and a second run
/// usually passes. MariaDB deadlocks this way when two batches insert rows into the same
/// index gap; the alternative is a 500 for a valid batch.
pub async fn retry_deadlocks<T, F, Fut>(mut transaction: F) -> Result<T, DbErr>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, DbErr>>,
{
    let mut retries = 0;
    loop {
        match transaction().await {
            Err(err) if retries < DEADLOCK_RETRIES && matches!(sqlstate(&err).as_deref(), Some("40001" | "40P01")) => {
                retries += 1;
                tracing::warn!(event = "transaction_retried", retry = retries, error = %err);
                // Up to 10 ms of jitter, so that victims of one deadlock do not retry in step.
                let jitter = u64::from(uuid::Uuid::new_v4().as_bytes()[0] % 10);
                tokio::time::sleep(Duration::from_millis((10 << (retries - 1)) + jitter)).await;
            }
            done => return done,
        }
    }
}

/// Starts a transaction that will write. On SQLite it takes the write lock at `BEGIN`
/// (`BEGIN IMMEDIATE`), waiting for it up to the busy timeout: a deferred transaction that
/// reads first and then writes fails at once with "database is locked" when another
/// connection wrote in between, as SQLite cannot move a read snapshot forward. PostgreSQL
/// and MariaDB ignore the mode.
pub async fn begin_write(db: &DatabaseConnection) -> Result<DatabaseTransaction, DbErr> {
    begin_write_at(db, None).await
}

/// [`begin_write`], but on MariaDB/MySQL at READ COMMITTED instead of REPEATABLE READ.
/// There a locking read of a key that does not exist locks the gap it would go in, and
/// two transactions that each locked the same gap and then insert into it deadlock. At
/// READ COMMITTED locking reads lock only the rows they find, so a caller that needs a
/// missing row to stay missing must hold some other lock that every writer of it takes.
/// PostgreSQL and SQLite start as in [`begin_write`].
pub async fn begin_write_gapless(db: &DatabaseConnection) -> Result<DatabaseTransaction, DbErr> {
    let isolation_level =
        (db.get_database_backend() == sea_orm::DbBackend::MySql).then_some(sea_orm::IsolationLevel::ReadCommitted);
    begin_write_at(db, isolation_level).await
}

async fn begin_write_at(
    db: &DatabaseConnection,
    isolation_level: Option<sea_orm::IsolationLevel>,
) -> Result<DatabaseTransaction, DbErr> {
    db.begin_with_options(TransactionOptions {
        isolation_level,
        sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
        ..Default::default()
    })
    .await
}

/// What about `DATABASE_URL` no amount of waiting fixes: a SQLite file in a directory that
/// does not exist will not appear by waiting (usually it is a relative path meant to be
/// absolute: three slashes, not four). Checked before anything listens.
pub fn check_settings(config: &Config) -> Result<(), StartError> {
    let url = &config.database_url;
    let missing_dir = url.sqlite_file().map(std::path::Path::new).and_then(std::path::Path::parent);
    if let Some(dir) = missing_dir.filter(|dir| !dir.as_os_str().is_empty() && !dir.is_dir()) {
        return Err(StartError::Setting(format!(
            "DATABASE_URL: the SQLite file's directory {} does not exist (sqlite:///name.db is relative \
             to the working directory, sqlite:////path/name.db absolute)",
            dir.display()
        )));
    }
    Ok(())
}

/// How long to keep trying an unreachable database.
#[derive(Clone, Copy, Debug)]
enum Patience {
    /// Give up once this has passed.
    Window(Duration),
    /// Never give up; log each attempt for `loudly_for`, then one line a minute.
    Forever { loudly_for: Duration },
}

/// How often attempts are logged once the database has been unreachable for longer than
/// `DB_CONNECT_RETRY_SECONDS` (the server keeps trying every [`MAX_RETRY_DELAY`]).
const QUIET_LOG_INTERVAL: Duration = Duration::from_secs(60);

/// Probes the database with one short-lived connection until it answers (or, with a
/// [`Patience::Window`], until the window has passed). The probe's own short timeouts keep
/// each attempt short without shortening the timeouts of the real pool. Attempts back off
/// from 250 ms to [`MAX_RETRY_DELAY`].
async fn wait_until_reachable(url: &DbUrl, patience: Patience) -> Result<(), StartError> {
    let started = Instant::now();
    let mut delay = Duration::from_millis(250);
    let mut attempts: u64 = 0;
    let mut last_logged: Option<Instant> = None;
    loop {
        attempts += 1;
        let attempt = match patience {
            Patience::Window(window) => window.saturating_sub(started.elapsed()),
            Patience::Forever { .. } => MAX_ATTEMPT,
        }
        .clamp(Duration::from_millis(250), MAX_ATTEMPT);
        let mut probe = connect_options(url, 1);
        probe.connect_timeout(attempt).acquire_timeout(attempt);
        let err = match sea_orm::Database::connect(probe).await {
            Ok(conn) => {
                let _ = conn.close().await;
                if attempts > 1 {
                    tracing::info!(event = "database_reachable", database = %url, attempts);
                }
                return Ok(());
            }
            Err(err) => plain_cause(url, err).await,
        };
        let waited = started.elapsed();
        match patience {
            Patience::Window(window) if waited + delay > window => {
                return Err(StartError::Unreachable { waited, cause: err });
            }
            Patience::Forever { loudly_for } if waited > loudly_for => {
                if last_logged.is_none_or(|at| at.elapsed() >= QUIET_LOG_INTERVAL) {
                    last_logged = Some(Instant::now());
                    tracing::error!(
                        event = "database_unreachable",
                        database = %url,
                        error = %err,
                        attempts,
                        waited_seconds = waited.as_secs(),
                        retry_in_ms = delay.as_millis() as u64,
                        detail = "still retrying; logged once a minute from now on",
                    );
                }
            }
            _ => tracing::warn!(
                event = "database_connect_retry",
                database = %url,
                error = %err,
                attempts,
                retry_in_ms = delay.as_millis() as u64,
            ),
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(MAX_RETRY_DELAY);
    }
}

/// The pool reports any failure to connect as "pool timed out"; when the server's port
/// does not even take a TCP connection, that says more (refused, no route, no such host).
async fn plain_cause(url: &DbUrl, err: DbErr) -> String {
    if let Some((host, port)) = url.address() {
        let connect = tokio::net::TcpStream::connect((host, port));
        match tokio::time::timeout(Duration::from_secs(1), connect).await {
            Ok(Err(tcp)) => return format!("{host}:{port}: {tcp}"),
            Err(_) => return format!("{host}:{port}: no answer to a TCP connection in 1 s"),
            Ok(Ok(_)) => {}
        }
    }
    err.to_string()
}

fn connect_options(url: &DbUrl, max_connections: u32) -> ConnectOptions {
    let mut options = ConnectOptions::new(url.connect_url().to_owned());
    options
        .max_connections(max_connections)
        .connect_timeout(CONNECT_TIMEOUT)
        .acquire_timeout(CONNECT_TIMEOUT)
        .sqlx_logging(false);
    if url.is_in_memory() {
        // The database vanishes with its last connection: keep exactly one, forever.
        options.min_connections(1).idle_timeout(None::<Duration>).max_lifetime(None::<Duration>);
    }
    if url.backend() == Backend::Sqlite {
        use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
        options.map_sqlx_sqlite_opts(|opts| {
            opts.journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(SQLITE_BUSY_TIMEOUT)
                .foreign_keys(true)
                .row_buffer_size(SQLITE_ROW_BUFFER)
                // Statement journals (which every multi-row write inside a transaction
                // keeps, for its own rollback) and temporary tables in memory: as files
                // they were created, written and deleted once a batch, about 12 % of a
                // remote_write batch's time (benches/README.md, "Protocols").
                .pragma("temp_store", "memory")
        });
        // SQLite rolls a transaction back by itself when its COMMIT fails for want of
        // disk space (SQLITE_FULL; also on I/O errors and when out of memory). The driver
        // still counts the transaction as open: its ROLLBACK then fails ("no transaction
        // is active"), and the connection would go back to the pool one level deep. The
        // next `BEGIN IMMEDIATE` on it fails, and a plain `begin` becomes a SAVEPOINT
        // that a failed write leaves open (ROLLBACK TO does not end it), holding the
        // write lock ("database is locked" for every other connection) and swallowing
        // the commits of later batches. Such a connection is closed instead of reused;
        // the ping first runs the rollback a dropped transaction has queued.
        options.map_sqlx_sqlite_pool_opts(|pool| {
            pool.after_release(|conn, _| {
                Box::pin(async move {
                    use sea_orm::sqlx::Connection;
                    conn.ping().await?;
                    if conn.is_in_transaction() {
                        tracing::warn!(
                            event = "database_connection_discarded",
                            detail = "released inside a transaction SQLite had already rolled back",
                        );
                        return Ok(false);
                    }
                    Ok(true)
                })
            })
        });
    }
    if url.backend() == Backend::MySql {
        // Strict on every connection, whatever the server's default: outside strict mode
        // MariaDB stores a value too long for its column cut short (a JSON list of CIDRs
        // cut in the middle reads back as no restriction at all) instead of refusing it.
        options.map_sqlx_mysql_pool_opts(|pool| {
            pool.after_connect(|conn, _| {
                Box::pin(async move {
                    use sea_orm::sqlx::Executor;
                    conn.execute("SET SESSION sql_mode = CONCAT_WS(',', NULLIF(@@sql_mode, ''), 'STRICT_ALL_TABLES')")
                        .await?;
                    Ok(())
                })
            })
        });
    }
    options
}
