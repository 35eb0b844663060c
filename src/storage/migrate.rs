//! Versioned schema migrations, run at start-up by every replica.
//!
//! Replicas starting together must neither fail nor apply a migration twice, so the
//! whole run holds a lock: a transaction-scoped advisory lock on PostgreSQL, a named lock
//! on MariaDB/MySQL, and a write (`BEGIN IMMEDIATE`) transaction on SQLite. PostgreSQL and
//! SQLite apply DDL transactionally; MariaDB commits each DDL statement on its own, so a
//! migration that fails there half-way must be repaired by hand (the error says which).

use std::{future::Future, pin::Pin};

use sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr, DeriveIden, Statement,
    StatementBuilder,
    sea_query::{ColumnDef, Expr, Query, Table},
};

mod schema;

use crate::{
    config::Config,
    storage::{Database, StartError},
};

/// One schema change. `up` renders its statements for the backend at hand; `data`, if
/// any, then moves data the way SQL alone cannot (in the same transaction on PostgreSQL
/// and SQLite).
pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub up: fn(DbBackend) -> Vec<Statement>,
    pub data: Option<DataStep>,
}

pub type DataStep = for<'a> fn(&'a DatabaseTransaction) -> Pin<Box<dyn Future<Output = Result<(), DbErr>> + Send + 'a>>;

/// Every migration, oldest first. Append only: never edit a released one.
pub const MIGRATIONS: &[Migration] = schema::MIGRATIONS;

/// Arbitrary, fixed key of the PostgreSQL advisory lock ("kkmigr" in ASCII).
const PG_LOCK_KEY: i64 = 0x6b6b_6d69_6772;
const MYSQL_LOCK_NAME: &str = "killkrill_migrations";
const MYSQL_LOCK_WAIT_SECONDS: u32 = 120;

#[derive(DeriveIden)]
enum SchemaMigrations {
    #[sea_orm(iden = "kk_schema_migrations")]
    Table,
    Version,
    Name,
    AppliedAt,
}

/// Opens the database (retrying while it is unreachable, for `DB_CONNECT_RETRY_SECONDS`)
/// and applies the migrations it has not seen.
pub async fn open(config: &Config) -> Result<Database, StartError> {
    let db = Database::open(config).await?;
    match prepare(&db, config).await {
        Ok(()) => Ok(db),
        Err(err) => {
            db.close().await;
            Err(err)
        }
    }
}

/// Applies the migrations `db` has not seen, and says so in the log.
pub async fn prepare(db: &Database, config: &Config) -> Result<(), StartError> {
    let applied = run(db.conn()).await.map_err(StartError::Migration)?;
    let url = &config.database_url;
    tracing::info!(
        event = "database_ready",
        database = %url,
        backend = url.backend().as_str(),
        max_connections = db.pool_stats().max,
        migrations_applied = applied,
    );
    Ok(())
}

/// Applies the migrations this database has not seen; returns how many it applied.
pub async fn run(db: &DatabaseConnection) -> Result<usize, DbErr> {
    let backend = db.get_database_backend();
    let txn = crate::storage::begin_write(db).await?;
    lock(&txn, backend).await?;
    let result = apply_pending(&txn, backend).await;
    if backend == DbBackend::MySql {
        txn.execute_unprepared(&format!("SELECT RELEASE_LOCK('{MYSQL_LOCK_NAME}')")).await?;
    }
    match result {
        Ok(applied) => {
            txn.commit().await?;
            Ok(applied)
        }
        Err(err) => {
            txn.rollback().await?;
            Err(err)
        }
    }
}

async fn lock(txn: &impl ConnectionTrait, backend: DbBackend) -> Result<(), DbErr> {
    match backend {
        DbBackend::Postgres => {
            txn.execute_unprepared(&format!("SELECT pg_advisory_xact_lock({PG_LOCK_KEY})")).await?;
        }
        DbBackend::MySql => {
            let sql = format!("SELECT GET_LOCK('{MYSQL_LOCK_NAME}', {MYSQL_LOCK_WAIT_SECONDS}) AS got");
            let row = txn.query_one_raw(Statement::from_string(backend, sql)).await?;
            let got: Option<i64> = row.map(|r| r.try_get("", "got")).transpose()?.flatten();
            if got != Some(1) {
                return Err(DbErr::Custom(format!(
                    "another replica held the migration lock for over {MYSQL_LOCK_WAIT_SECONDS}s"
                )));
            }
        }
        // BEGIN IMMEDIATE already holds SQLite's single write lock.
        _ => {}
    }
    Ok(())
}

async fn apply_pending(txn: &DatabaseTransaction, backend: DbBackend) -> Result<usize, DbErr> {
    txn.execute(
        Table::create()
            .table(SchemaMigrations::Table)
            .if_not_exists()
            .col(ColumnDef::new(SchemaMigrations::Version).big_integer().not_null().primary_key())
            .col(ColumnDef::new(SchemaMigrations::Name).string_len(128).not_null())
            .col(ColumnDef::new(SchemaMigrations::AppliedAt).timestamp_with_time_zone().not_null()),
    )
    .await?;
    let rows = txn.query_all(Query::select().column(SchemaMigrations::Version).from(SchemaMigrations::Table)).await?;
    let applied: Vec<i64> = rows.iter().map(|row| row.try_get("", "version")).collect::<Result<_, _>>()?;
    let mut count = 0;
    for migration in MIGRATIONS.iter().filter(|m| !applied.contains(&m.version)) {
        for statement in (migration.up)(backend) {
            txn.execute_raw(statement)
                .await
                .map_err(|err| DbErr::Migration(format!("{} {}: {err}", migration.version, migration.name)))?;
        }
        if let Some(data) = migration.data {
            data(txn)
                .await
                .map_err(|err| DbErr::Migration(format!("{} {} (data): {err}", migration.version, migration.name)))?;
        }
        txn.execute(
            Query::insert()
                .into_table(SchemaMigrations::Table)
                .columns([SchemaMigrations::Version, SchemaMigrations::Name, SchemaMigrations::AppliedAt])
                .values_panic([migration.version.into(), migration.name.into(), Expr::current_timestamp()]),
        )
        .await?;
        tracing::info!(event = "migration_applied", version = migration.version, name = migration.name);
        count += 1;
    }
    Ok(count)
}

/// Renders schema statements for one backend.
pub(crate) fn build_all<S: StatementBuilder>(backend: DbBackend, statements: &[S]) -> Vec<Statement> {
    statements.iter().map(|s| backend.build(s)).collect()
}
