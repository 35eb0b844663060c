//! OTLP/gRPC: `opentelemetry.proto.collector.logs.v1.LogsService/Export` and
//! `…metrics.v1.MetricsService/Export`, the same adapter as OTLP/HTTP (`protocol::otlp`)
//! with the credential forms agents send read from metadata (`Call::protocol_source`). Partial success is in
//! the answer; a failure of the whole export is a status code (`Call::status`).

use opentelemetry_proto::tonic::collector::{
    logs::v1::logs_service_server::{LogsService, LogsServiceServer},
    metrics::v1::metrics_service_server::{MetricsService, MetricsServiceServer},
};
use tonic::{Request, Response, Status, codec::CompressionEncoding};

use super::Call;
use crate::{
    protocol::otlp::{
        self, ExportLogsServiceRequest, ExportLogsServiceResponse, ExportMetricsServiceRequest,
        ExportMetricsServiceResponse,
    },
    state::AppState,
};

/// The paths of the methods served here (for `observe`, which names calls by them).
pub const METHODS: [&str; 2] = [
    "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
    "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
];

/// The names `grpc.health.v1.Health` answers for.
pub const SERVICE_NAMES: [&str; 2] =
    ["opentelemetry.proto.collector.logs.v1.LogsService", "opentelemetry.proto.collector.metrics.v1.MetricsService"];

pub struct OtlpLogs(pub AppState);
pub struct OtlpMetrics(pub AppState);

/// Both services as served: gzip accepted (the Collector sends it by default) and answered
/// to clients that accept it, messages up to the body limit.
pub fn servers(state: &AppState) -> (LogsServiceServer<OtlpLogs>, MetricsServiceServer<OtlpMetrics>) {
    let limit = state.config.max_body_bytes;
    let logs = LogsServiceServer::new(OtlpLogs(state.clone()))
        .accept_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(limit)
        .max_encoding_message_size(limit);
    let metrics = MetricsServiceServer::new(OtlpMetrics(state.clone()))
        .accept_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(limit)
        .max_encoding_message_size(limit);
    (logs, metrics)
}

#[tonic::async_trait]
impl LogsService for OtlpLogs {
    async fn export(
        &self,
        request: Request<ExportLogsServiceRequest>,
    ) -> Result<Response<ExportLogsServiceResponse>, Status> {
        let call = Call::new(&request);
        let export = request.into_inner();
        call.answer(async {
            let source = call.protocol_source(&self.0).await?;
            otlp::export_logs(&self.0, &source, export).await
        })
        .await
    }
}

#[tonic::async_trait]
impl MetricsService for OtlpMetrics {
    async fn export(
        &self,
        request: Request<ExportMetricsServiceRequest>,
    ) -> Result<Response<ExportMetricsServiceResponse>, Status> {
        let call = Call::new(&request);
        let export = request.into_inner();
        call.answer(async {
            let source = call.protocol_source(&self.0).await?;
            otlp::export_metrics(&self.0, &source, export).await
        })
        .await
    }
}
