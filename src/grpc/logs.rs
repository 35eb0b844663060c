//! `killkrill.v1.LogService`: streaming ingest and queries, same service layer as REST.

use serde_json::Value;
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
    data::{
        entity::source,
        ingestor::Ingestor,
        logs::{self, Cursor, LogFilter, LogInput, LogView},
    },
    error::AppError,
    state::AppState,
};

pub struct LogApi(pub AppState);

fn log_input(entry: LogEntry) -> LogInput {
    LogInput {
        timestamp: timestamp(entry.timestamp),
        level: non_empty(entry.level).map(Value::String),
        message: Some(entry.message),
        hostname: entry.hostname,
        application: entry.application,
        attributes: entry.attributes.map(struct_to_json),
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
    }
}

/// Who the call's credentials make the ingesting party: an ingest key, or a user.
pub(super) async fn ingestor(call: &Call, state: &AppState) -> Result<Ingestor, AppError> {
    match call.ingest_key() {
        Some(key) => Ok(Ingestor::Key(state.ingest_keys.authenticate(state.db.conn(), key).await?)),
        None => Ok(Ingestor::User(call.principal(state).await?)),
    }
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
        let ingestor = ingestor(&call, &self.0).await.map_err(|err| call.status(err))?;
        let (mut accepted, mut batches) = (0u64, 0u64);
        // The source of the previous batch: a stream usually feeds one source, so it is
        // looked up (and its ingest rights checked) once, not per batch.
        let mut current: Option<source::Model> = None;
        while let Some(batch) = stream.message().await? {
            let stored = async {
                let source = match current.take() {
                    Some(source) if source.id == batch.source_id => source,
                    _ => ingestor.authorize(db, &batch.source_id, call.client_ip()).await?,
                };
                let entries = batch.logs.into_iter().map(log_input).collect();
                let count = logs::ingest(&self.0.db, &source.id, entries).await?;
                current = Some(source);
                Ok::<_, AppError>(count)
            }
            .await;
            match stored {
                Ok(count) => {
                    accepted += count as u64;
                    batches += 1;
                }
                Err(err) => {
                    let status = call.status(err);
                    if batches == 0 {
                        return Err(status);
                    }
                    let message = format!(
                        "{} (batch {} was refused; the {batches} batches before it, {accepted} entries, are stored)",
                        status.message(),
                        batches + 1,
                    );
                    return Err(Status::new(status.code(), message));
                }
            }
        }
        Ok(Response::new(IngestLogsResponse { accepted, batches }))
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
