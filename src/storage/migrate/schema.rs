//! The migrations themselves, written with sea-query so each renders for all three
//! backends from one definition.

use sea_orm::{
    DbBackend, DeriveIden, Statement,
    sea_query::{
        Alias, ColumnDef, ForeignKey, ForeignKeyAction, ForeignKeyCreateStatement, Index, Query, Table,
        TableCreateStatement,
    },
};

use super::{Migration, build_all};

pub(super) const MIGRATIONS: &[Migration] = &[
    Migration { version: 1, name: "app_settings", up: app_settings, data: None },
    Migration { version: 2, name: "identity", up: identity, data: None },
    Migration { version: 3, name: "telemetry", up: telemetry, data: None },
    Migration { version: 4, name: "covering_samples_index", up: covering_samples_index, data: None },
    // The data steps of 5 and 8 built the rollups from the samples; 12 drops them.
    Migration { version: 5, name: "metric_rollups", up: metric_rollups, data: None },
    Migration { version: 6, name: "mariadb_exact_utf8", up: mariadb_exact_utf8, data: None },
    Migration { version: 7, name: "login_throttle", up: login_throttle, data: None },
    Migration { version: 8, name: "metric_rollup_slots", up: metric_rollup_slots, data: None },
    Migration { version: 9, name: "protocol_ingest", up: protocol_ingest, data: None },
    Migration { version: 10, name: "source_retention", up: source_retention, data: None },
    Migration { version: 11, name: "metric_chunks", up: metric_chunks, data: None },
    Migration { version: 12, name: "drop_metric_rollups", up: drop_metric_rollups, data: None },
    Migration { version: 13, name: "log_text_search", up: log_text_search, data: None },
    Migration { version: 14, name: "metric_samples_keyed", up: metric_samples_keyed, data: None },
];

#[derive(DeriveIden)]
enum AppSettings {
    Table,
    Key,
    Value,
    UpdatedAt,
}

/// Runtime settings shared by every replica (e.g. the log level set by an admin).
fn app_settings(backend: DbBackend) -> Vec<Statement> {
    build_all(
        backend,
        &[Table::create()
            .table(AppSettings::Table)
            .col(ColumnDef::new(AppSettings::Key).string_len(64).not_null().primary_key())
            .col(ColumnDef::new(AppSettings::Value).text().not_null())
            .col(micros(AppSettings::UpdatedAt))
            .to_owned()],
    )
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
    Username,
    Email,
    PasswordHash,
    FirstName,
    LastName,
    Active,
    TokenVersion,
    CreatedAt,
    UpdatedAt,
    LastLoginAt,
    CurrentLoginAt,
    LastLoginIp,
    CurrentLoginIp,
    LoginCount,
}

#[derive(DeriveIden)]
enum Roles {
    Table,
    Name,
    Description,
    Permissions,
}

#[derive(DeriveIden)]
enum UserRoles {
    Table,
    UserId,
    Role,
}

#[derive(DeriveIden)]
enum ApiKeys {
    Table,
    Id,
    UserId,
    Name,
    Prefix,
    KeyHash,
    Roles,
    ExpiresAt,
    LastUsedAt,
    CreatedAt,
}

#[derive(DeriveIden)]
enum RefreshTokens {
    Table,
    Jti,
    UserId,
    FamilyId,
    ExpiresAt,
    RevokedAt,
}

#[derive(DeriveIden)]
enum RevokedTokens {
    Table,
    Jti,
    UserId,
    ExpiresAt,
    RevokedAt,
}

#[derive(DeriveIden)]
enum AuditLog {
    Table,
    Id,
    Seq,
    UserId,
    Action,
    ResourceType,
    ResourceId,
    Status,
    ClientIp,
    CorrelationId,
    CreatedAt,
    PrevHash,
    Hash,
}

fn id_column<T: sea_orm::sea_query::IntoIden>(name: T) -> ColumnDef {
    ColumnDef::new(name).string_len(36).not_null().primary_key().to_owned()
}

/// Timestamps are stored as microseconds since the Unix epoch (BIGINT): exact, ordered
/// and identical on all three backends (MariaDB's TIMESTAMP ends in 2038 and drops
/// sub-seconds by default).
fn micros<T: sea_orm::sea_query::IntoIden>(name: T) -> ColumnDef {
    ColumnDef::new(name).big_integer().not_null().to_owned()
}

fn optional_micros<T: sea_orm::sea_query::IntoIden>(name: T) -> ColumnDef {
    ColumnDef::new(name).big_integer().null().to_owned()
}

/// Users, roles, API keys, token revocation and the audit trail.
fn identity(backend: DbBackend) -> Vec<Statement> {
    let mut statements = build_all(
        backend,
        &[
            Table::create()
                .table(Users::Table)
                .col(id_column(Users::Id))
                .col(ColumnDef::new(Users::Username).string_len(64).not_null().unique_key())
                .col(ColumnDef::new(Users::Email).string_len(255).not_null().unique_key())
                .col(ColumnDef::new(Users::PasswordHash).string_len(255).not_null())
                .col(ColumnDef::new(Users::FirstName).string_len(100).not_null().default(""))
                .col(ColumnDef::new(Users::LastName).string_len(100).not_null().default(""))
                .col(ColumnDef::new(Users::Active).boolean().not_null().default(true))
                .col(ColumnDef::new(Users::TokenVersion).integer().not_null().default(0))
                .col(micros(Users::CreatedAt))
                .col(micros(Users::UpdatedAt))
                .col(optional_micros(Users::LastLoginAt))
                .col(optional_micros(Users::CurrentLoginAt))
                .col(ColumnDef::new(Users::LastLoginIp).string_len(64).null())
                .col(ColumnDef::new(Users::CurrentLoginIp).string_len(64).null())
                .col(ColumnDef::new(Users::LoginCount).integer().not_null().default(0))
                .to_owned(),
            Table::create()
                .table(Roles::Table)
                .col(ColumnDef::new(Roles::Name).string_len(32).not_null().primary_key())
                .col(ColumnDef::new(Roles::Description).string_len(255).not_null())
                .col(ColumnDef::new(Roles::Permissions).string_len(255).not_null())
                .to_owned(),
            Table::create()
                .table(UserRoles::Table)
                .col(ColumnDef::new(UserRoles::UserId).string_len(36).not_null())
                .col(ColumnDef::new(UserRoles::Role).string_len(32).not_null())
                .primary_key(Index::create().col(UserRoles::UserId).col(UserRoles::Role))
                .foreign_key(
                    ForeignKey::create()
                        .from(UserRoles::Table, UserRoles::UserId)
                        .to(Users::Table, Users::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .foreign_key(ForeignKey::create().from(UserRoles::Table, UserRoles::Role).to(Roles::Table, Roles::Name))
                .to_owned(),
            Table::create()
                .table(ApiKeys::Table)
                .col(id_column(ApiKeys::Id))
                .col(ColumnDef::new(ApiKeys::UserId).string_len(36).not_null())
                .col(ColumnDef::new(ApiKeys::Name).string_len(128).not_null())
                .col(ColumnDef::new(ApiKeys::Prefix).string_len(16).not_null())
                .col(ColumnDef::new(ApiKeys::KeyHash).string_len(64).not_null().unique_key())
                .col(ColumnDef::new(ApiKeys::Roles).string_len(128).null())
                .col(optional_micros(ApiKeys::ExpiresAt))
                .col(optional_micros(ApiKeys::LastUsedAt))
                .col(micros(ApiKeys::CreatedAt))
                .foreign_key(
                    ForeignKey::create()
                        .from(ApiKeys::Table, ApiKeys::UserId)
                        .to(Users::Table, Users::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
            Table::create()
                .table(RefreshTokens::Table)
                .col(ColumnDef::new(RefreshTokens::Jti).string_len(36).not_null().primary_key())
                .col(ColumnDef::new(RefreshTokens::UserId).string_len(36).not_null())
                .col(ColumnDef::new(RefreshTokens::FamilyId).string_len(36).not_null())
                .col(micros(RefreshTokens::ExpiresAt))
                .col(optional_micros(RefreshTokens::RevokedAt))
                .to_owned(),
            Table::create()
                .table(RevokedTokens::Table)
                .col(ColumnDef::new(RevokedTokens::Jti).string_len(36).not_null().primary_key())
                .col(ColumnDef::new(RevokedTokens::UserId).string_len(36).not_null())
                .col(micros(RevokedTokens::ExpiresAt))
                .col(micros(RevokedTokens::RevokedAt))
                .to_owned(),
            Table::create()
                .table(AuditLog::Table)
                .col(ColumnDef::new(AuditLog::Id).big_integer().not_null().auto_increment().primary_key())
                .col(ColumnDef::new(AuditLog::Seq).big_integer().null().unique_key())
                .col(ColumnDef::new(AuditLog::UserId).string_len(36).null())
                .col(ColumnDef::new(AuditLog::Action).string_len(96).not_null())
                .col(ColumnDef::new(AuditLog::ResourceType).string_len(64).not_null())
                .col(ColumnDef::new(AuditLog::ResourceId).string_len(128).null())
                .col(ColumnDef::new(AuditLog::Status).string_len(16).not_null())
                .col(ColumnDef::new(AuditLog::ClientIp).string_len(64).null())
                .col(ColumnDef::new(AuditLog::CorrelationId).string_len(128).not_null())
                .col(micros(AuditLog::CreatedAt))
                .col(ColumnDef::new(AuditLog::PrevHash).string_len(64).null())
                .col(ColumnDef::new(AuditLog::Hash).string_len(64).null())
                .to_owned(),
        ],
    );
    statements.extend(build_all(
        backend,
        &[
            Index::create().name("ix_user_roles_role").table(UserRoles::Table).col(UserRoles::Role).to_owned(),
            Index::create().name("ix_api_keys_user").table(ApiKeys::Table).col(ApiKeys::UserId).to_owned(),
            Index::create()
                .name("ix_refresh_family")
                .table(RefreshTokens::Table)
                .col(RefreshTokens::FamilyId)
                .to_owned(),
            Index::create()
                .name("ix_refresh_expires")
                .table(RefreshTokens::Table)
                .col(RefreshTokens::ExpiresAt)
                .to_owned(),
            Index::create().name("ix_revoked_user").table(RevokedTokens::Table).col(RevokedTokens::UserId).to_owned(),
            Index::create()
                .name("ix_revoked_expires")
                .table(RevokedTokens::Table)
                .col(RevokedTokens::ExpiresAt)
                .to_owned(),
            Index::create()
                .name("ix_audit_user_time")
                .table(AuditLog::Table)
                .col(AuditLog::UserId)
                .col(AuditLog::CreatedAt)
                .to_owned(),
            Index::create()
                .name("ix_audit_action_time")
                .table(AuditLog::Table)
                .col(AuditLog::Action)
                .col(AuditLog::CreatedAt)
                .to_owned(),
            Index::create().name("ix_audit_time").table(AuditLog::Table).col(AuditLog::CreatedAt).to_owned(),
        ],
    ));
    let roles = [
        ("admin", "Full access to all resources and operations", "read,write,create,update,delete,admin"),
        ("maintainer", "Can create, update and delete resources", "read,write,create,update,delete"),
        ("viewer", "Read-only access", "read"),
    ];
    let mut insert = Query::insert()
        .into_table(Roles::Table)
        .columns([Roles::Name, Roles::Description, Roles::Permissions])
        .to_owned();
    for (name, description, permissions) in roles {
        insert.values_panic([name.into(), description.into(), permissions.into()]);
    }
    statements.push(backend.build(&insert));
    statements
}

#[derive(DeriveIden)]
enum Sources {
    Table,
    Id,
    Name,
    SourceType,
    Description,
    Enabled,
    Config,
    AllowedCidrs,
    CreatedAt,
    UpdatedAt,
    CreatedBy,
    RetentionDays,
}

#[derive(DeriveIden)]
enum IngestKeys {
    Table,
    Id,
    SourceId,
    Name,
    Prefix,
    KeyHash,
    CreatedAt,
    LastUsedAt,
    CreatedBy,
}

#[derive(DeriveIden)]
enum Logs {
    Table,
    Id,
    SourceId,
    Ts,
    ReceivedAt,
    Level,
    Message,
    Hostname,
    Application,
    Attributes,
    Labels,
}

#[derive(DeriveIden)]
enum MetricSeries {
    Table,
    Id,
    SourceId,
    SeriesKey,
    Name,
    Labels,
    MetricType,
    LastValue,
    LastTimestamp,
    LastBits,
}

#[derive(DeriveIden)]
enum MetricSamples {
    Table,
    Id,
    SeriesId,
    Ts,
    Value,
    Bits,
}

#[derive(DeriveIden)]
enum MetricMetadata {
    Table,
    SourceId,
    Name,
    MetricType,
    Help,
    Unit,
    UpdatedAt,
}

/// Long text: MariaDB's TEXT stops at 65,535 bytes, below what the API accepts.
fn long_text<T: sea_orm::sea_query::IntoIden>(name: T, backend: DbBackend) -> ColumnDef {
    let mut column = ColumnDef::new(name);
    match backend {
        DbBackend::MySql => column.custom(Alias::new("MEDIUMTEXT")),
        _ => column.text(),
    };
    column.not_null().to_owned()
}

/// MariaDB compares with the server's default collation (case- and accent-insensitive);
/// names must compare exactly, as on PostgreSQL and SQLite.
fn exact_collation(table: &mut TableCreateStatement, backend: DbBackend) -> TableCreateStatement {
    if backend == DbBackend::MySql {
        table.character_set("utf8mb4").collate("utf8mb4_bin");
    }
    table.to_owned()
}

/// `table.column` references `to.to_column`; deleting the referenced row deletes this one.
fn cascade<F, T>(table: F, column: F, to: T, to_column: T) -> ForeignKeyCreateStatement
where
    F: sea_orm::sea_query::IntoIden + 'static,
    T: sea_orm::sea_query::IntoIden + 'static,
{
    ForeignKey::create().from(table, column).to(to, to_column).on_delete(ForeignKeyAction::Cascade).to_owned()
}

fn cascade_to_sources<T: sea_orm::sea_query::IntoIden + 'static>(table: T, column: T) -> ForeignKeyCreateStatement {
    cascade(table, column, Sources::Table, Sources::Id)
}

fn cascade_to_series<T: sea_orm::sea_query::IntoIden + 'static>(table: T, column: T) -> ForeignKeyCreateStatement {
    cascade(table, column, MetricSeries::Table, MetricSeries::Id)
}

/// Sources, their ingest keys, logs and metric samples. Deleting a source deletes its
/// keys, logs and metrics (foreign keys with ON DELETE CASCADE).
fn telemetry(backend: DbBackend) -> Vec<Statement> {
    let mut statements = build_all(
        backend,
        &[
            exact_collation(
                Table::create()
                    .table(Sources::Table)
                    .col(id_column(Sources::Id))
                    .col(ColumnDef::new(Sources::Name).string_len(128).not_null().unique_key())
                    .col(ColumnDef::new(Sources::SourceType).string_len(16).not_null())
                    .col(ColumnDef::new(Sources::Description).text().not_null())
                    .col(ColumnDef::new(Sources::Enabled).boolean().not_null())
                    .col(long_text(Sources::Config, backend))
                    .col(ColumnDef::new(Sources::AllowedCidrs).text().not_null())
                    .col(micros(Sources::CreatedAt))
                    .col(micros(Sources::UpdatedAt))
                    .col(ColumnDef::new(Sources::CreatedBy).string_len(36).null()),
                backend,
            ),
            exact_collation(
                Table::create()
                    .table(IngestKeys::Table)
                    .col(id_column(IngestKeys::Id))
                    .col(ColumnDef::new(IngestKeys::SourceId).string_len(36).not_null())
                    .col(ColumnDef::new(IngestKeys::Name).string_len(128).not_null())
                    .col(ColumnDef::new(IngestKeys::Prefix).string_len(16).not_null())
                    .col(ColumnDef::new(IngestKeys::KeyHash).string_len(64).not_null().unique_key())
                    .col(micros(IngestKeys::CreatedAt))
                    .col(optional_micros(IngestKeys::LastUsedAt))
                    .col(ColumnDef::new(IngestKeys::CreatedBy).string_len(36).null())
                    .foreign_key(&mut cascade_to_sources(IngestKeys::Table, IngestKeys::SourceId)),
                backend,
            ),
            exact_collation(
                Table::create()
                    .table(Logs::Table)
                    .col(ColumnDef::new(Logs::Id).big_integer().not_null().auto_increment().primary_key())
                    .col(ColumnDef::new(Logs::SourceId).string_len(36).not_null())
                    .col(micros(Logs::Ts))
                    .col(micros(Logs::ReceivedAt))
                    .col(ColumnDef::new(Logs::Level).string_len(16).not_null())
                    .col(long_text(Logs::Message, backend))
                    .col(ColumnDef::new(Logs::Hostname).string_len(255).null())
                    .col(ColumnDef::new(Logs::Application).string_len(255).null())
                    .col(ColumnDef::new(Logs::Attributes).text().null())
                    .foreign_key(&mut cascade_to_sources(Logs::Table, Logs::SourceId)),
                backend,
            ),
            exact_collation(
                Table::create()
                    .table(MetricSeries::Table)
                    .col(ColumnDef::new(MetricSeries::Id).big_integer().not_null().auto_increment().primary_key())
                    .col(ColumnDef::new(MetricSeries::SourceId).string_len(36).not_null())
                    .col(ColumnDef::new(MetricSeries::SeriesKey).string_len(64).not_null().unique_key())
                    .col(ColumnDef::new(MetricSeries::Name).string_len(255).not_null())
                    .col(ColumnDef::new(MetricSeries::Labels).text().not_null())
                    .col(ColumnDef::new(MetricSeries::MetricType).string_len(16).not_null())
                    .col(ColumnDef::new(MetricSeries::LastValue).double().not_null())
                    .col(micros(MetricSeries::LastTimestamp))
                    .foreign_key(&mut cascade_to_sources(MetricSeries::Table, MetricSeries::SourceId)),
                backend,
            ),
            exact_collation(
                Table::create()
                    .table(MetricSamples::Table)
                    .col(ColumnDef::new(MetricSamples::Id).big_integer().not_null().auto_increment().primary_key())
                    .col(ColumnDef::new(MetricSamples::SeriesId).big_integer().not_null())
                    .col(micros(MetricSamples::Ts))
                    .col(ColumnDef::new(MetricSamples::Value).double().not_null())
                    .foreign_key(&mut cascade_to_series(MetricSamples::Table, MetricSamples::SeriesId)),
                backend,
            ),
        ],
    );
    statements.extend(build_all(
        backend,
        &[
            Index::create().name("ix_sources_type").table(Sources::Table).col(Sources::SourceType).to_owned(),
            Index::create().name("ix_ingest_keys_source").table(IngestKeys::Table).col(IngestKeys::SourceId).to_owned(),
            // Newest-first listing, alone or per source / level, with the id as tie-breaker.
            Index::create().name("ix_logs_ts").table(Logs::Table).col(Logs::Ts).col(Logs::Id).to_owned(),
            Index::create()
                .name("ix_logs_source_ts")
                .table(Logs::Table)
                .col(Logs::SourceId)
                .col(Logs::Ts)
                .col(Logs::Id)
                .to_owned(),
            Index::create()
                .name("ix_logs_level_ts")
                .table(Logs::Table)
                .col(Logs::Level)
                .col(Logs::Ts)
                .col(Logs::Id)
                .to_owned(),
            Index::create().name("ix_series_name").table(MetricSeries::Table).col(MetricSeries::Name).to_owned(),
            Index::create().name("ix_series_source").table(MetricSeries::Table).col(MetricSeries::SourceId).to_owned(),
            Index::create()
                .name("ix_samples_series_ts")
                .table(MetricSamples::Table)
                .col(MetricSamples::SeriesId)
                .col(MetricSamples::Ts)
                .to_owned(),
        ],
    ));
    statements
}

/// Range queries read `(series_id, ts, value)` of up to millions of samples: with `value`
/// in the index they never visit the table. On SQLite that was most of the cost of an
/// all-series query (a table page per sample). The new index is built before the old one
/// is dropped, as MariaDB needs an index on `series_id` for the foreign key at all times.
fn covering_samples_index(backend: DbBackend) -> Vec<Statement> {
    let mut statements = build_all(
        backend,
        &[Index::create()
            .name("ix_samples_series_ts_value")
            .table(MetricSamples::Table)
            .col(MetricSamples::SeriesId)
            .col(MetricSamples::Ts)
            .col(MetricSamples::Value)
            .to_owned()],
    );
    statements.extend(build_all(
        backend,
        &[Index::drop().name("ix_samples_series_ts").table(MetricSamples::Table).to_owned()],
    ));
    statements
}

#[derive(DeriveIden)]
enum MetricRollups {
    Table,
    SeriesId,
    Hour,
    Minutes,
    Fine,
}

/// Each series' samples summed up per minute, an hour a row, which range queries read
/// until the metric chunks answered them (dropped by 12).
fn metric_rollups(backend: DbBackend) -> Vec<Statement> {
    let create = backend.build(&exact_collation(
        Table::create()
            .table(MetricRollups::Table)
            .col(ColumnDef::new(MetricRollups::SeriesId).big_integer().not_null())
            .col(ColumnDef::new(MetricRollups::Hour).big_integer().not_null())
            .col(ColumnDef::new(MetricRollups::Minutes).blob().not_null())
            .primary_key(Index::create().col(MetricRollups::SeriesId).col(MetricRollups::Hour))
            .foreign_key(&mut cascade_to_series(MetricRollups::Table, MetricRollups::SeriesId)),
        backend,
    ));
    // Not WITHOUT ROWID on SQLite: rows of up to 2 KB would spill into overflow pages.
    vec![create]
}

/// MariaDB only: text that migrations 1 and 2 left in the database's default character
/// set and collation (often case- and accent-insensitive, sometimes not even utf8mb4),
/// and two lists that outgrew `TEXT`.
///
/// - There alone `Alice` and `alice` could not both be users, a login as `ALICE` found
///   `alice`, and the audit log's filters ignored case. The identity tables' text now
///   compares exactly, as on PostgreSQL and SQLite; that only loosens uniqueness, so no
///   existing row can conflict.
/// - On a database whose default is not utf8mb4, names were stored with `?` for what the
///   character set cannot hold (emoji, CJK).
/// - `metric_series.labels` (up to 32 labels of 1,024 characters, JSON-escaped) and
///   `sources.allowed_cidrs` can exceed `TEXT`'s 64 KiB, which answered 500 (or, outside
///   strict mode, truncated the JSON).
///
/// Columns under a foreign key (`users.id`, `roles.name`, `user_roles`, `api_keys.user_id`)
/// keep their collation: MariaDB cannot change it while the key exists, and they hold
/// only UUIDs and role names, which the service writes in one canonical form.
fn mariadb_exact_utf8(backend: DbBackend) -> Vec<Statement> {
    if backend != DbBackend::MySql {
        return Vec::new();
    }
    const EXACT: &str = "CHARACTER SET utf8mb4 COLLATE utf8mb4_bin";
    [
        format!(
            "ALTER TABLE users \
             MODIFY username VARCHAR(64) {EXACT} NOT NULL, \
             MODIFY email VARCHAR(255) {EXACT} NOT NULL, \
             MODIFY password_hash VARCHAR(255) {EXACT} NOT NULL, \
             MODIFY first_name VARCHAR(100) {EXACT} NOT NULL DEFAULT '', \
             MODIFY last_name VARCHAR(100) {EXACT} NOT NULL DEFAULT '', \
             MODIFY last_login_ip VARCHAR(64) {EXACT} NULL, \
             MODIFY current_login_ip VARCHAR(64) {EXACT} NULL"
        ),
        format!(
            "ALTER TABLE api_keys \
             MODIFY name VARCHAR(128) {EXACT} NOT NULL, \
             MODIFY prefix VARCHAR(16) {EXACT} NOT NULL, \
             MODIFY key_hash VARCHAR(64) {EXACT} NOT NULL, \
             MODIFY roles VARCHAR(128) {EXACT} NULL"
        ),
        format!(
            "ALTER TABLE roles \
             MODIFY description VARCHAR(255) {EXACT} NOT NULL, \
             MODIFY permissions VARCHAR(255) {EXACT} NOT NULL"
        ),
        format!("ALTER TABLE refresh_tokens CONVERT TO {EXACT}"),
        format!("ALTER TABLE revoked_tokens CONVERT TO {EXACT}"),
        format!("ALTER TABLE audit_log CONVERT TO {EXACT}"),
        format!("ALTER TABLE app_settings CONVERT TO {EXACT}"),
        "ALTER TABLE metric_series MODIFY labels MEDIUMTEXT NOT NULL".to_owned(),
        "ALTER TABLE sources MODIFY allowed_cidrs MEDIUMTEXT NOT NULL".to_owned(),
    ]
    .into_iter()
    .map(|sql| Statement::from_string(backend, sql))
    .collect()
}

#[derive(DeriveIden)]
enum LoginThrottle {
    Table,
    KeyHash,
    Failures,
    WindowStart,
    BlockedUntil,
    Blocks,
    KeepUntil,
}

/// Failed logins per account and per client address, shared by every replica (see
/// `identity::throttle`); times in microseconds.
fn login_throttle(backend: DbBackend) -> Vec<Statement> {
    let big = |name| ColumnDef::new(name).big_integer().not_null().to_owned();
    build_all(
        backend,
        &[exact_collation(
            Table::create()
                .table(LoginThrottle::Table)
                .col(ColumnDef::new(LoginThrottle::KeyHash).string_len(64).not_null().primary_key())
                .col(ColumnDef::new(LoginThrottle::Failures).integer().not_null())
                .col(big(LoginThrottle::WindowStart))
                .col(big(LoginThrottle::BlockedUntil))
                .col(ColumnDef::new(LoginThrottle::Blocks).integer().not_null())
                .col(big(LoginThrottle::KeepUntil)),
            backend,
        )],
    )
    .into_iter()
    .chain(build_all(
        backend,
        &[Index::create()
            .name("ix_login_throttle_keep_until")
            .table(LoginThrottle::Table)
            .col(LoginThrottle::KeepUntil)
            .to_owned()],
    ))
    .collect()
}

/// Five-second slots beside the minutes of each rollup row, for range queries on whole
/// multiples of five seconds (dropped with the rollups by 12).
fn metric_rollup_slots(backend: DbBackend) -> Vec<Statement> {
    build_all(
        backend,
        &[Table::alter()
            .table(MetricRollups::Table)
            .add_column(ColumnDef::new(MetricRollups::Fine).blob().null())
            .to_owned()],
    )
}

/// What the standard protocols bring beyond the JSON API:
/// - `logs.labels`: a log line's stream labels, a JSON object of strings (MEDIUMTEXT on
///   MariaDB: 20 labels of 1,024 characters can outgrow TEXT); those the line's columns
///   and source give (`source`, `level`, `hostname`, `application`) are not stored, and a
///   line with no others has NULL;
/// - `metric_samples.bits` and `metric_series.last_bits`: the bits of a value that is not
///   a finite number (NaN, Prometheus' stale marker, ±Inf), which SQLite would turn into
///   NULL and MariaDB refuses; `value` then holds 0 and the reads skip the row;
/// - `metric_metadata`: the type, help and unit a sender declared for a metric family.
fn protocol_ingest(backend: DbBackend) -> Vec<Statement> {
    let mut labels = long_text(Logs::Labels, backend);
    labels.null();
    build_all(
        backend,
        &[
            Table::alter().table(Logs::Table).add_column(labels).to_owned(),
            Table::alter()
                .table(MetricSamples::Table)
                .add_column(ColumnDef::new(MetricSamples::Bits).big_integer().null())
                .to_owned(),
            Table::alter()
                .table(MetricSeries::Table)
                .add_column(ColumnDef::new(MetricSeries::LastBits).big_integer().null())
                .to_owned(),
        ],
    )
    .into_iter()
    .chain([backend.build(&exact_collation(
        Table::create()
            .table(MetricMetadata::Table)
            .col(ColumnDef::new(MetricMetadata::SourceId).string_len(36).not_null())
            .col(ColumnDef::new(MetricMetadata::Name).string_len(255).not_null())
            .col(ColumnDef::new(MetricMetadata::MetricType).string_len(16).not_null())
            .col(ColumnDef::new(MetricMetadata::Help).text().not_null())
            .col(ColumnDef::new(MetricMetadata::Unit).string_len(64).not_null())
            .col(micros(MetricMetadata::UpdatedAt))
            .primary_key(Index::create().col(MetricMetadata::SourceId).col(MetricMetadata::Name))
            .foreign_key(&mut cascade_to_sources(MetricMetadata::Table, MetricMetadata::SourceId)),
        backend,
    ))])
    .collect()
}

/// `sources.retention_days`: how many days the source's log lines and samples are kept,
/// over `LOG_RETENTION_DAYS` and `METRIC_RETENTION_DAYS`; `NULL` for those, 0 for
/// forever. Adding a nullable column rewrites no row on any of the three databases.
fn source_retention(backend: DbBackend) -> Vec<Statement> {
    build_all(
        backend,
        &[Table::alter()
            .table(Sources::Table)
            .add_column(ColumnDef::new(Sources::RetentionDays).integer().null())
            .to_owned()],
    )
}

#[derive(DeriveIden)]
enum MetricChunks {
    Table,
    SeriesId,
    StartTs,
    FirstTs,
    EndTs,
    Samples,
    Data,
}

/// `metric_chunks`: a series' samples of one closed window, compressed (see
/// `storage::chunk` and `storage::compaction`). `start_ts` is the window's aligned start,
/// `first_ts` and `end_ts` its first and last sample's times, so that "has a sample in a
/// range" is answered without decoding. The table starts empty: the compaction moves the
/// samples already stored into it in its first runs, window by window.
fn metric_chunks(backend: DbBackend) -> Vec<Statement> {
    let mut data = ColumnDef::new(MetricChunks::Data);
    // MariaDB's BLOB holds 64 KiB: a window of a sub-second scrape can be more.
    if backend == DbBackend::MySql {
        data.custom(Alias::new("LONGBLOB"));
    } else {
        data.blob();
    }
    vec![
        backend.build(&exact_collation(
            Table::create()
                .table(MetricChunks::Table)
                .col(ColumnDef::new(MetricChunks::SeriesId).big_integer().not_null())
                .col(micros(MetricChunks::StartTs))
                .col(micros(MetricChunks::FirstTs))
                .col(micros(MetricChunks::EndTs))
                .col(ColumnDef::new(MetricChunks::Samples).integer().not_null())
                .col(data.not_null())
                .primary_key(Index::create().col(MetricChunks::SeriesId).col(MetricChunks::StartTs))
                .foreign_key(&mut cascade_to_series(MetricChunks::Table, MetricChunks::SeriesId)),
            backend,
        )),
    ]
}

/// The rollups go: range queries reduce the samples of the metric chunks and the head,
/// and ingest no longer writes them. A replica of an earlier release still running
/// during a rolling update fails its metric batches once the table is gone (they are
/// answered 5xx and resent by the agents): upgrade metric ingest in one step.
fn drop_metric_rollups(backend: DbBackend) -> Vec<Statement> {
    build_all(backend, &[Table::drop().table(MetricRollups::Table).if_exists().to_owned()])
}

/// An index that answers `q` (a substring of the message, see `storage::logs::page`)
/// without reading every line:
/// - PostgreSQL: `pg_trgm`'s GIN index on `LOWER(message)`, the very expression the
///   search compares, so the results are those of the scan (the index only narrows the rows
///   the predicate is checked on). The extension is created here; a role that may not
///   create it gets an error saying what to run and as whom (see docs/OPERATIONS.md).
/// - SQLite: an FTS5 table of the messages' trigrams, with no copy of the text
///   (`content='logs'`) and no positions (`detail=none`), kept by
///   triggers on insert and delete (cascaded deletes fire them too); existing lines are
///   indexed here.
/// - MariaDB: none. Its FULLTEXT parsers find words, not substrings (the n-gram parser is
///   MySQL's), so `q` stays a scan there.
fn log_text_search(backend: DbBackend) -> Vec<Statement> {
    let statements: &[&str] = match backend {
        DbBackend::Postgres => &[
            "DO $$ BEGIN \
               IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm') THEN \
                 CREATE EXTENSION pg_trgm; \
               END IF; \
             EXCEPTION \
               WHEN insufficient_privilege THEN RAISE EXCEPTION \
                 'role % may not create the extension pg_trgm (text search index): run \"CREATE EXTENSION pg_trgm;\" in database % as a superuser or the database owner, then start again', \
                 current_user, current_database(); \
               WHEN undefined_file THEN RAISE EXCEPTION \
                 'the extension pg_trgm (text search index) is not installed on the PostgreSQL server: install the server''s contrib package (Debian: postgresql-contrib, part of postgresql), then start again'; \
             END $$",
            "CREATE INDEX ix_logs_message_trgm ON logs USING gin (LOWER(message) gin_trgm_ops)",
        ],
        DbBackend::Sqlite => &[
            "CREATE VIRTUAL TABLE logs_fts USING fts5(message, content = 'logs', content_rowid = 'id', \
             tokenize = 'trigram', detail = 'none')",
            "CREATE TRIGGER logs_fts_insert AFTER INSERT ON logs BEGIN \
             INSERT INTO logs_fts (rowid, message) VALUES (new.id, new.message); END",
            "CREATE TRIGGER logs_fts_delete AFTER DELETE ON logs BEGIN \
             INSERT INTO logs_fts (logs_fts, rowid, message) VALUES ('delete', old.id, old.message); END",
            "CREATE TRIGGER logs_fts_update AFTER UPDATE OF message ON logs BEGIN \
             INSERT INTO logs_fts (logs_fts, rowid, message) VALUES ('delete', old.id, old.message); \
             INSERT INTO logs_fts (rowid, message) VALUES (new.id, new.message); END",
            "INSERT INTO logs_fts (logs_fts) VALUES ('rebuild')",
        ],
        // MariaDB.
        _ => &[],
    };
    statements.iter().map(|sql| Statement::from_string(backend, *sql)).collect()
}

/// The head (`metric_samples`) keyed by `(series_id, ts)`: a series has one sample at a
/// time, so ingest writes a batch with one upsert (the last write wins) instead of deleting
/// the rows it replaces first, and each row goes into one B-tree (SQLite's table is
/// `WITHOUT ROWID`; MariaDB's rows are clustered on the key) instead of a table and an
/// index. The rows are copied over, the latest of each series and time only (the head
/// holds at most the open windows' samples, about half an hour's).
///
/// A replica of an earlier release still running during a rolling update keeps writing
/// samples the new key accepts, but its batches that replace a stored sample fail
/// (answered 5xx and resent by the agents): upgrade metric ingest in one step.
fn metric_samples_keyed(backend: DbBackend) -> Vec<Statement> {
    let mut create = Table::create()
        .table(Alias::new("metric_samples_keyed"))
        .col(ColumnDef::new(MetricSamples::SeriesId).big_integer().not_null())
        .col(micros(MetricSamples::Ts))
        .col(ColumnDef::new(MetricSamples::Value).double().not_null())
        .col(ColumnDef::new(MetricSamples::Bits).big_integer().null())
        .primary_key(Index::create().col(MetricSamples::SeriesId).col(MetricSamples::Ts))
        .foreign_key(&mut cascade(
            Alias::new("metric_samples_keyed"),
            Alias::new("series_id"),
            Alias::new("metric_series"),
            Alias::new("id"),
        ))
        .to_owned();
    let mut create = backend.build(&exact_collation(&mut create, backend));
    if backend == DbBackend::Sqlite {
        create.sql.push_str(" WITHOUT ROWID");
    }
    let copy = "INSERT INTO metric_samples_keyed (series_id, ts, value, bits) \
                SELECT m.series_id, m.ts, m.value, m.bits FROM metric_samples m \
                WHERE NOT EXISTS (SELECT 1 FROM metric_samples n \
                                  WHERE n.series_id = m.series_id AND n.ts = m.ts AND n.id > m.id)";
    let rename = match backend {
        DbBackend::MySql => "RENAME TABLE metric_samples_keyed TO metric_samples",
        _ => "ALTER TABLE metric_samples_keyed RENAME TO metric_samples",
    };
    let mut statements = vec![create, Statement::from_string(backend, copy)];
    statements.extend(build_all(backend, &[Table::drop().table(MetricSamples::Table).to_owned()]));
    statements.push(Statement::from_string(backend, rename));
    statements
}
