//! The migrations themselves, written with sea-query so each renders for all three
//! backends from one definition.

use sea_orm::{
    DbBackend, DeriveIden, Statement,
    sea_query::{ColumnDef, Table},
};

use super::{Migration, build_all};

pub(super) const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "app_settings",
    up: app_settings,
}];

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
            .col(
                ColumnDef::new(AppSettings::Key)
                    .string_len(64)
                    .not_null()
                    .primary_key(),
            )
            .col(ColumnDef::new(AppSettings::Value).text().not_null())
            .col(
                ColumnDef::new(AppSettings::UpdatedAt)
                    .timestamp_with_time_zone()
                    .not_null(),
            )
            .to_owned()],
    )
}
