//! The sea-orm entities of every table (their schema is in `storage/migrate/schema.rs`).
//! Timestamps are microseconds since the Unix epoch.

pub mod source {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "sources")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub name: String,
        pub source_type: String,
        pub description: String,
        pub enabled: bool,
        /// A JSON object.
        pub config: String,
        /// A JSON array of CIDR strings.
        pub allowed_cidrs: String,
        pub created_at: i64,
        pub updated_at: i64,
        pub created_by: Option<String>,
        /// Days its logs and samples are kept: `None` for the global settings, 0 forever.
        pub retention_days: Option<i32>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod ingest_key {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "ingest_keys")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub source_id: String,
        pub name: String,
        pub prefix: String,
        pub key_hash: String,
        pub created_at: i64,
        pub last_used_at: Option<i64>,
        pub created_by: Option<String>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod log {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "logs")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub source_id: String,
        pub ts: i64,
        pub received_at: i64,
        pub level: String,
        pub message: String,
        pub hostname: Option<String>,
        pub application: Option<String>,
        pub attributes: Option<String>,
        /// The line's stream labels: a JSON object of strings.
        pub labels: Option<String>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod series {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "metric_series")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub source_id: String,
        pub series_key: String,
        pub name: String,
        /// A JSON object with sorted keys.
        pub labels: String,
        pub metric_type: String,
        pub last_value: f64,
        pub last_timestamp: i64,
        /// The bits of a last value that is not a finite number (`last_value` is then 0).
        pub last_bits: Option<i64>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod sample {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "metric_samples")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub series_id: i64,
        #[sea_orm(primary_key, auto_increment = false)]
        pub ts: i64,
        pub value: f64,
        /// The bits of a value that is not a finite number (`value` is then 0).
        pub bits: Option<i64>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod metadata {
    use sea_orm::entity::prelude::*;

    /// What a sender declared about a metric family (remote_write's metadata).
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "metric_metadata")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub source_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub name: String,
        pub metric_type: String,
        pub help: String,
        pub unit: String,
        pub updated_at: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod user {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "users")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub username: String,
        pub email: String,
        pub password_hash: String,
        pub first_name: String,
        pub last_name: String,
        pub active: bool,
        pub token_version: i32,
        pub created_at: i64,
        pub updated_at: i64,
        pub last_login_at: Option<i64>,
        pub current_login_at: Option<i64>,
        pub last_login_ip: Option<String>,
        pub current_login_ip: Option<String>,
        pub login_count: i32,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod user_role {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "user_roles")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub user_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub role: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod api_key {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "api_keys")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub user_id: String,
        pub name: String,
        pub prefix: String,
        pub key_hash: String,
        /// Comma-separated role names the key is narrowed to; `None`: the owner's roles.
        pub roles: Option<String>,
        pub expires_at: Option<i64>,
        pub last_used_at: Option<i64>,
        pub created_at: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod refresh_token {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "refresh_tokens")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub jti: String,
        pub user_id: String,
        pub family_id: String,
        pub expires_at: i64,
        pub revoked_at: Option<i64>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod revoked_token {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "revoked_tokens")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub jti: String,
        pub user_id: String,
        pub expires_at: i64,
        pub revoked_at: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod audit_log {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "audit_log")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        /// Position in the hash chain; `None` until the sealer has chained the row.
        pub seq: Option<i64>,
        pub user_id: Option<String>,
        pub action: String,
        pub resource_type: String,
        pub resource_id: Option<String>,
        pub status: String,
        pub client_ip: Option<String>,
        pub correlation_id: String,
        pub created_at: i64,
        pub prev_hash: Option<String>,
        pub hash: Option<String>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
