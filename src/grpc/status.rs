//! `killkrill.v1.StatusService`: what `GET /api/v1/status` says, for any authenticated caller.

use tonic::{Request, Response, Status};

use super::{
    Call,
    auth::identity_of,
    proto::{GetStatusRequest, GetStatusResponse, status_service_server::StatusService},
};
use crate::{config::RunMode, state::AppState};

pub struct StatusApi(pub AppState);

#[tonic::async_trait]
impl StatusService for StatusApi {
    async fn get_status(&self, request: Request<GetStatusRequest>) -> Result<Response<GetStatusResponse>, Status> {
        let call = Call::new(&request);
        call.answer(async {
            let principal = call.principal(&self.0).await?;
            let config = &self.0.config;
            Ok(GetStatusResponse {
                status: "operational".to_owned(),
                version: env!("CARGO_PKG_VERSION").to_owned(),
                environment: config.environment.as_str().to_owned(),
                uptime_seconds: self.0.started_at.elapsed().as_secs(),
                database_backend: self.0.db.backend().as_str().to_owned(),
                database_status: if self.0.db.health().is_ok() { "ok" } else { "unavailable" }.to_owned(),
                grpc_enabled: config.run_mode != RunMode::HttpOnly,
                grpc_port: u32::from(config.grpc_port),
                identity: Some(identity_of(&principal)),
            })
        })
        .await
    }
}
