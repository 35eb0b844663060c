//! `killkrill.v1.StatusService`: what `GET /api/v1/status` says, for any authenticated caller.

use tonic::{Request, Response, Status};

use super::{
    Call,
    auth::identity_of,
    convert::json_to_struct,
    proto::{GetStatusRequest, GetStatusResponse, status_service_server::StatusService},
};
use crate::state::AppState;

pub struct StatusApi(pub AppState);

#[tonic::async_trait]
impl StatusService for StatusApi {
    async fn get_status(&self, request: Request<GetStatusRequest>) -> Result<Response<GetStatusResponse>, Status> {
        let call = Call::new(&request);
        call.answer(async {
            let principal = call.principal(&self.0).await?;
            let report = crate::service::status::report(&self.0, &principal);
            Ok(GetStatusResponse {
                status: report.status.to_owned(),
                version: report.version.to_owned(),
                environment: report.environment.to_owned(),
                uptime_seconds: report.uptime_seconds,
                database_backend: report.database.backend.to_owned(),
                database_status: report.database.status.to_owned(),
                grpc_enabled: report.grpc.enabled,
                grpc_port: u32::from(report.grpc.port),
                identity: Some(identity_of(&principal)),
                license: Some(json_to_struct(report.license)),
            })
        })
        .await
    }
}
