//! The tamper-evident audit trail.
//!
//! A request writes its row in its own transaction, with no chain lock: rows are inserted
//! unsealed. A sealer (one at a time across replicas, under a database lock) then gives
//! unsealed rows the next chain positions (`seq`) in id order, each with
//! `hash = SHA-256(prev_hash, content)`. Verification walks the chain by `seq`: an edited
//! row breaks its hash, a removed row leaves a gap or a broken link. Requests therefore
//! never queue on one lock; the chain lags writes by at most the sealing interval.

use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr};
use serde::Serialize;
use sha2::{Digest, Sha256};

pub use crate::storage::audit::AuditFilter;
use crate::{
    storage::{
        audit::{self as rows, Origin},
        entity::audit_log,
    },
    time::{micros_to_rfc3339, now_micros},
};

pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";
const SEAL_BATCH: u64 = 1_000;

/// Which plane a state-changing request belongs to, as its transport classifies it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plane {
    /// Changes to users, keys, sources, settings and sessions.
    Control,
    /// Ingest batches, and reads sent as POST (a metric query): counted in `/metrics`.
    Data,
}

/// The audit policy (docs/API.md, "Audit policy"), in one place:
/// - a control-plane change is audited by the service that makes it, in the change's own
///   transaction (so a change and its row commit together);
/// - a control-plane request refused before any change (400, 403, 404, 409 ...) by a known
///   principal is audited by its transport once the answer is known; this function says
///   whether such a request gets that row;
/// - nothing else is audited: a request that matches no route (`plane` is `None`), one
///   refused before a principal is known (a 401: `user_id` is `None`), and the data plane.
pub fn audits_refusal(plane: Option<Plane>, user_id: Option<&str>) -> bool {
    plane == Some(Plane::Control) && user_id.is_some()
}

/// How the audited request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AuditStatus {
    Success,
    /// Refused for lack of credentials or rights (401, 403, 429).
    Denied,
    /// Refused as invalid, or failed (other 4xx, 5xx).
    Failure,
}

impl AuditStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditStatus::Success => "success",
            AuditStatus::Denied => "denied",
            AuditStatus::Failure => "failure",
        }
    }
}

/// Who asked, from where, under which correlation id.
#[derive(Clone, Debug, Default)]
pub struct AuditMeta {
    pub user_id: Option<String>,
    pub client_ip: Option<String>,
    pub correlation_id: String,
}

/// One audit row to write.
#[derive(Clone, Debug)]
pub struct AuditEntry {
    pub action: String,
    pub resource_type: String,
    pub resource_id: Option<String>,
    pub status: AuditStatus,
}

impl AuditEntry {
    pub fn new(action: &str, resource_type: &str, resource_id: Option<&str>, status: AuditStatus) -> Self {
        Self {
            action: action.to_owned(),
            resource_type: resource_type.to_owned(),
            resource_id: resource_id.map(|id| truncate(id, 128)),
            status,
        }
    }
}

fn truncate(value: &str, max: usize) -> String {
    value.chars().take(max).collect()
}

/// Writes one row; pass the transaction of the change it records, where there is one.
pub async fn record(conn: &impl ConnectionTrait, meta: &AuditMeta, entry: AuditEntry) -> Result<(), DbErr> {
    let origin = Origin {
        user_id: meta.user_id.clone(),
        client_ip: meta.client_ip.clone(),
        correlation_id: truncate(&meta.correlation_id, 128),
    };
    let action = truncate(&entry.action, 96);
    let resource_type = truncate(&entry.resource_type, 64);
    rows::insert(conn, origin, action, resource_type, entry.resource_id, entry.status.as_str(), now_micros()).await
}

/// The hash of a sealed row: over its content, its position and the previous hash.
pub fn row_hash(row: &audit_log::Model, seq: i64, prev_hash: &str) -> String {
    let content = serde_json::json!([
        row.id,
        seq,
        row.user_id,
        row.action,
        row.resource_type,
        row.resource_id,
        row.status,
        row.client_ip,
        row.correlation_id,
        row.created_at,
    ]);
    let mut hasher = Sha256::new();
    hasher.update(prev_hash.as_bytes());
    hasher.update(b"\n");
    hasher.update(content.to_string().as_bytes());
    hex::encode(hasher.finalize())
}

/// Chains every unsealed row; returns how many it sealed.
pub async fn seal(db: &DatabaseConnection) -> Result<usize, DbErr> {
    let mut sealed = 0;
    loop {
        let txn = crate::storage::begin_write(db).await?;
        rows::lock_chain(&txn).await?;
        let head = rows::chain_head(&txn).await?;
        let (mut seq, mut prev) = head.map_or((0, GENESIS_HASH.to_owned()), |h| {
            (h.seq.unwrap_or(0), h.hash.unwrap_or_else(|| GENESIS_HASH.to_owned()))
        });
        let pending = rows::unsealed(&txn, SEAL_BATCH).await?;
        let batch = pending.len();
        for row in pending {
            seq += 1;
            let hash = row_hash(&row, seq, &prev);
            rows::seal_row(&txn, row.id, seq, &prev, &hash).await?;
            prev = hash;
        }
        rows::unlock_chain(&txn).await?;
        txn.commit().await?;
        sealed += batch;
        if (batch as u64) < SEAL_BATCH {
            return Ok(sealed);
        }
    }
}

/// Keeps sealing in the background until the task is aborted.
pub fn spawn_sealer(db: DatabaseConnection, every: std::time::Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            if let Err(err) = seal(&db).await {
                tracing::warn!(event = "audit_seal_failed", error = %err);
            }
        }
    })
}

/// The result of walking the chain.
#[derive(Debug, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct VerifyReport {
    pub valid: bool,
    /// Sealed rows checked.
    pub checked: u64,
    /// Rows written but not yet chained.
    pub pending: u64,
    pub first_broken: Option<BrokenLink>,
}

#[derive(Debug, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct BrokenLink {
    pub seq: i64,
    /// The row's id, as `GET /api/v1/audit` shows it.
    pub id: Option<String>,
    pub reason: String,
}

/// Seals what is pending, then checks every link from the first row.
pub async fn verify(db: &DatabaseConnection) -> Result<VerifyReport, DbErr> {
    seal(db).await?;
    let mut expected_seq = 1;
    let mut prev = GENESIS_HASH.to_owned();
    let mut checked = 0;
    loop {
        let batch = rows::sealed_from(db, expected_seq, SEAL_BATCH).await?;
        let last_batch = (batch.len() as u64) < SEAL_BATCH;
        for row in batch {
            let seq = row.seq.unwrap_or_default();
            let broken = |reason: &str, seq: i64, id: Option<i64>| BrokenLink {
                seq,
                id: id.map(crate::ids::of_row),
                reason: reason.to_owned(),
            };
            let problem = if seq != expected_seq {
                Some(broken("a row is missing from the chain", expected_seq, None))
            } else if row.prev_hash.as_deref() != Some(prev.as_str()) {
                Some(broken("the link to the previous row does not match", seq, Some(row.id)))
            } else if row.hash.as_deref() != Some(row_hash(&row, seq, &prev).as_str()) {
                Some(broken("the row's content does not match its hash", seq, Some(row.id)))
            } else {
                None
            };
            if let Some(first_broken) = problem {
                let pending = pending(db).await?;
                return Ok(VerifyReport { valid: false, checked, pending, first_broken: Some(first_broken) });
            }
            prev = row.hash.unwrap_or_default();
            expected_seq += 1;
            checked += 1;
        }
        if last_batch {
            let pending = pending(db).await?;
            return Ok(VerifyReport { valid: true, checked, pending, first_broken: None });
        }
    }
}

async fn pending(db: &DatabaseConnection) -> Result<u64, DbErr> {
    rows::count_unsealed(db).await
}

/// An audit row as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditView {
    /// The row's number as a UUID ([`crate::ids::of_row`]).
    pub id: String,
    pub seq: Option<i64>,
    pub user_id: Option<String>,
    pub action: String,
    pub resource_type: String,
    pub resource_id: Option<String>,
    pub status: String,
    pub client_ip: Option<String>,
    pub correlation_id: String,
    pub created_at: String,
    pub hash: Option<String>,
}

impl From<audit_log::Model> for AuditView {
    fn from(row: audit_log::Model) -> Self {
        Self {
            id: crate::ids::of_row(row.id),
            seq: row.seq,
            user_id: row.user_id,
            action: row.action,
            resource_type: row.resource_type,
            resource_id: row.resource_id,
            status: row.status,
            client_ip: row.client_ip,
            correlation_id: row.correlation_id,
            created_at: micros_to_rfc3339(row.created_at),
            hash: row.hash,
        }
    }
}

/// Newest first.
pub async fn list(
    db: &impl ConnectionTrait,
    filter: &AuditFilter,
    limit: u64,
    offset: u64,
) -> Result<(Vec<AuditView>, u64), DbErr> {
    let (found, total) = rows::list(db, filter, limit, offset).await?;
    Ok((found.into_iter().map(AuditView::from).collect(), total))
}
