//! Who may ingest where: a source's ingest key (its own source only, from its allowed
//! addresses only) or a user with the maintainer role; never into a disabled source.
//! REST and gRPC ingest both ask here.

use std::net::IpAddr;

use sea_orm::DatabaseConnection;

use super::{ingest_keys::IngestKeyAuth, sources};
use crate::storage::entity::source;
use crate::{
    auth::{Principal, Role},
    error::AppError,
};

/// Who is ingesting: a source's ingest key, or a user.
pub enum Ingestor {
    Key(IngestKeyAuth),
    User(Principal),
}

impl Ingestor {
    /// Loads the target source and checks the caller may ingest into it from `client_ip`.
    pub async fn authorize(
        &self,
        db: &DatabaseConnection,
        source_id: &str,
        client_ip: Option<IpAddr>,
    ) -> Result<source::Model, AppError> {
        if let Ingestor::User(principal) = self {
            principal.require_role(Role::Maintainer)?;
        }
        let source = sources::find(db, source_id).await?;
        if let Ingestor::Key(key) = self {
            if key.source_id != source.id {
                return Err(AppError::Forbidden("This ingest key belongs to another source".into()));
            }
            if !source.admits(client_ip) {
                tracing::warn!(event = "ingest_refused_address", source_id = %source.id, client_ip = ?client_ip);
                return Err(AppError::Forbidden("This address may not ingest for this source".into()));
            }
        }
        if !source.enabled {
            return Err(AppError::Forbidden(format!("Source {} is disabled", source.id)));
        }
        Ok(source)
    }
}
