//! Who may ingest where: a source's ingest key (its own source only, from its allowed
//! addresses only) or a user with the maintainer role; never into a disabled source.
//! REST and gRPC ingest both ask here.

use std::net::IpAddr;

use sea_orm::DatabaseConnection;

use super::{
    identity::Identity,
    ingest_keys::{IngestKeyAuth, IngestKeyCache},
    sources,
};
use crate::storage::entity::source;
use crate::{
    auth::{Principal, Role, agent::AgentCredential},
    error::{AppError, FieldError},
    tls::ClientCert,
};

/// Why a user's ingest request was refused for naming no source.
pub const NAME_THE_SOURCE: &str = "a user's credential must name the source to ingest into, by id or name, in the X-Source header or the source query parameter";

/// Who is ingesting: a source's ingest key, or a user.
pub enum Ingestor {
    Key(IngestKeyAuth),
    User(Principal),
}

impl Ingestor {
    /// Who an agent's credential makes the ingesting party: a source's ingest key, or the
    /// user of an API key, access token, password or (with no credential header) client
    /// certificate.
    pub async fn of_agent(
        identity: &Identity,
        ingest_keys: &IngestKeyCache,
        db: &DatabaseConnection,
        credential: AgentCredential,
        client_cert: Option<&ClientCert>,
        client_ip: Option<IpAddr>,
    ) -> Result<Self, AppError> {
        match &credential {
            AgentCredential::IngestKey(key) => Ok(Ingestor::Key(ingest_keys.authenticate(db, key).await?)),
            user => Ok(Ingestor::User(identity.authenticate_agent(user, client_cert, client_ip).await?)),
        }
    }

    /// The source an agent's request ingests into: an ingest key's own (a source named
    /// beside it must be that one), or the one a maintainer names by id or name.
    pub async fn target(
        &self,
        db: &DatabaseConnection,
        named: Option<&str>,
        client_ip: Option<IpAddr>,
    ) -> Result<source::Model, AppError> {
        let named = named.map(str::trim).filter(|n| !n.is_empty());
        let source_id = match (self, named) {
            (Ingestor::Key(key), None) => key.source_id.clone(),
            (_, Some(named)) => {
                if let Ingestor::User(principal) = self {
                    principal.require_role(Role::Maintainer)?;
                }
                sources::find_by_id_or_name(db, named).await?.id
            }
            (Ingestor::User(principal), None) => {
                principal.require_role(Role::Maintainer)?;
                return Err(AppError::Validation(vec![FieldError::new("source", NAME_THE_SOURCE)]));
            }
        };
        self.authorize(db, &source_id, client_ip).await
    }

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
