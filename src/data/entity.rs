//! sea-orm entities of sources, ingest keys, logs and metrics (see `db/migrate/schema.rs`).

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
        #[sea_orm(primary_key)]
        pub id: i64,
        pub series_id: i64,
        pub ts: i64,
        pub value: f64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
