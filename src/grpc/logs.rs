//! `killkrill.v1.LogService`: streaming ingest and queries, same service layer as REST.

use std::time::{Duration, Instant};

use tonic::{Request, Response, Status, Streaming};

use super::{
    Call,
    convert::{json_to_struct, non_empty, struct_to_json, timestamp},
    page,
    proto::{
        IngestLogsRequest, IngestLogsResponse, LogEntry, QueryLogsRequest, QueryLogsResponse, StoredLog,
        log_service_server::LogService,
    },
};
use crate::{
    auth::Role,
    error::AppError,
    service::{
        ingestor::Ingestor,
        logs::{self, Cursor, Level, LogFilter, LogView, NewLog},
    },
    state::AppState,
    storage::entity::source,
};

pub struct LogApi(pub AppState);

fn new_log(entry: LogEntry) -> NewLog {
    NewLog {
        timestamp: timestamp(entry.timestamp),
        level: non_empty(entry.level).as_deref().map(Level::parse).transpose(),
        message: entry.message,
        hostname: entry.hostname,
        application: entry.application,
        attributes: entry.attributes.map(struct_to_json),
        labels: entry.labels.into_iter().collect(),
    }
}

fn stored_log(view: LogView) -> StoredLog {
    StoredLog {
        id: view.id,
        source_id: view.source_id,
        timestamp: view.timestamp,
        received_at: view.received_at,
        level: view.level,
        message: view.message,
        hostname: view.hostname,
        application: view.application,
        attributes: (!view.attributes.is_null()).then(|| json_to_struct(view.attributes)),
        labels: view.labels.into_iter().collect(),
    }
}

/// Who the call's credentials make the ingesting party: an ingest key, or a user.
pub(super) async fn ingestor(call: &Call, state: &AppState) -> Result<Ingestor, AppError> {
    match call.ingest_key() {
        Some(key) => Ok(Ingestor::Key(state.ingest_keys.authenticate(state.db.conn(), key).await?)),
        None => Ok(Ingestor::User(call.principal(state).await?)),
    }
}

/// How long a stream's right to ingest into a source stands before it is checked again:
/// as long as a replica caches a user's rights or an ingest key.
const RIGHTS_TTL: Duration = Duration::from_secs(2);

/// The status that ends a stream after `batches` stored batches: it says what is stored.
fn after_batches(status: Status, batches: u64, accepted: u64) -> Status {
    if batches == 0 {
        return status;
    }
    let message = format!(
        "{} (batch {} was refused; the {batches} batches before it, {accepted} entries, are stored)",
        status.message(),
        batches + 1,
    );
    Status::new(status.code(), message)
}

#[tonic::async_trait]
impl LogService for LogApi {
    async fn ingest_logs(
        &self,
        request: Request<Streaming<IngestLogsRequest>>,
    ) -> Result<Response<IngestLogsResponse>, Status> {
        let call = Call::new(&request);
        let mut stream = request.into_inner();
        let db = self.0.db.conn();
        let mut ingestor = ingestor(&call, &self.0).await.map_err(|err| call.status(err))?;
        let (mut accepted, mut batches, mut dropped) = (0u64, 0u64, 0u64);
        // The source of the previous batch and when the right to ingest into it was
        // checked: a stream usually feeds one source, so that is checked again only once
        // the rights may have changed (a key deleted, a source disabled, a user demoted),
        // as often as a REST request would see such a change.
        let mut current: Option<(source::Model, Instant)> = None;
        loop {
            let batch = match stream.message().await {
                Ok(Some(batch)) => batch,
                Ok(None) => break,
                Err(status) => return Err(after_batches(status, batches, accepted)),
            };
            let stored = async {
                let (source, checked) = match current.take() {
                    Some((source, checked)) if source.id == batch.source_id && checked.elapsed() < RIGHTS_TTL => {
                        (source, checked)
                    }
                    previous => {
                        if previous.is_some() {
                            ingestor = self::ingestor(&call, &self.0).await?;
                        }
                        (ingestor.authorize(db, &batch.source_id, call.client_ip()).await?, Instant::now())
                    }
                };
                let entries = batch.logs.into_iter().map(new_log).collect();
                let count =
                    logs::ingest(&self.0.db, &self.0.metrics, self.0.config.retention, &source, entries).await?;
                current = Some((source, checked));
                Ok::<_, AppError>(count)
            }
            .await;
            match stored {
                Ok(count) => {
                    accepted += count.accepted as u64;
                    dropped += count.dropped as u64;
                    batches += 1;
                }
                Err(err) => return Err(after_batches(call.status(err), batches, accepted)),
            }
        }
        Ok(Response::new(IngestLogsResponse { accepted, batches, dropped }))
    }

    async fn query_logs(&self, request: Request<QueryLogsRequest>) -> Result<Response<QueryLogsResponse>, Status> {
        let call = Call::new(&request);
        let q = request.into_inner();
        call.answer(async {
            call.principal(&self.0).await?.require_role(Role::Viewer)?;
            let page = page(q.limit, 0)?;
            let filter =
                LogFilter::parse(q.source_id, q.level.as_deref(), q.since.as_deref(), q.until.as_deref(), q.q)?;
            let cursor = q.cursor.as_deref().map(Cursor::decode).transpose()?;
            let (entries, next_cursor) = logs::query(self.0.db.conn(), &filter, page.limit, cursor).await?;
            Ok(QueryLogsResponse {
                logs: entries.into_iter().map(stored_log).collect(),
                limit: page.limit,
                next_cursor,
            })
        })
        .await
    }
}
