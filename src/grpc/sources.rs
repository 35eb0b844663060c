//! `killkrill.v1.SourceService`: the REST sources API over gRPC, same service layer.

use tonic::{Request, Response, Status};

use super::{
    Call,
    convert::{json_to_struct, struct_to_json},
    page,
    proto::{
        CreateSourceRequest, DeleteSourceRequest, DeleteSourceResponse, GetSourceRequest, ListSourcesRequest,
        ListSourcesResponse, Source, UpdateSourceRequest, source_service_server::SourceService,
    },
};
use crate::{
    auth::Role,
    service::sources::{self, SourceFilter, SourceInput, SourceView},
    state::AppState,
};

pub struct SourceApi(pub AppState);

fn source_of(view: SourceView) -> Source {
    Source {
        id: view.id,
        name: view.name,
        r#type: view.source_type,
        description: view.description,
        enabled: view.enabled,
        config: Some(json_to_struct(view.config)),
        allowed_cidrs: view.allowed_cidrs,
        created_at: view.created_at,
        updated_at: view.updated_at,
        created_by: view.created_by,
        retention_days: view.retention_days,
    }
}

#[tonic::async_trait]
impl SourceService for SourceApi {
    async fn list_sources(
        &self,
        request: Request<ListSourcesRequest>,
    ) -> Result<Response<ListSourcesResponse>, Status> {
        let call = Call::new(&request);
        let query = request.into_inner();
        call.answer(async {
            call.principal(&self.0).await?.require_role(Role::Viewer)?;
            let page = page(query.limit, query.offset)?;
            let filter = SourceFilter { source_type: query.r#type, enabled: query.enabled };
            let (items, total) = sources::list(self.0.db.conn(), &filter, page.limit, page.offset).await?;
            Ok(ListSourcesResponse {
                sources: items.into_iter().map(source_of).collect(),
                total,
                limit: page.limit,
                offset: page.offset,
            })
        })
        .await
    }

    async fn get_source(&self, request: Request<GetSourceRequest>) -> Result<Response<Source>, Status> {
        let call = Call::new(&request);
        let id = request.into_inner().id;
        call.answer(async {
            call.principal(&self.0).await?.require_role(Role::Viewer)?;
            Ok(source_of(SourceView::from(sources::find(self.0.db.conn(), &id).await?)))
        })
        .await
    }

    async fn create_source(&self, request: Request<CreateSourceRequest>) -> Result<Response<Source>, Status> {
        let call = Call::new(&request);
        let body = request.into_inner();
        call.answer(async {
            let principal = call.principal(&self.0).await?;
            principal.require_role(Role::Maintainer)?;
            let input = SourceInput {
                name: Some(body.name),
                source_type: Some(body.r#type),
                description: body.description,
                enabled: body.enabled,
                config: body.config.map(struct_to_json),
                allowed_cidrs: Some(body.allowed_cidrs),
                retention_days: body.retention_days.map(serde_json::Value::from),
            };
            let meta = call.ctx.audit_meta(Some(&principal.user_id));
            let view = sources::create(self.0.db.conn(), input, &principal.user_id, &meta).await?;
            call.ctx.audit.mark_handled();
            Ok(source_of(view))
        })
        .await
    }

    async fn update_source(&self, request: Request<UpdateSourceRequest>) -> Result<Response<Source>, Status> {
        let call = Call::new(&request);
        let body = request.into_inner();
        call.answer(async {
            let principal = call.principal(&self.0).await?;
            principal.require_role(Role::Maintainer)?;
            let input = SourceInput {
                name: body.name,
                source_type: body.r#type,
                description: body.description,
                enabled: body.enabled,
                config: body.config.map(struct_to_json),
                allowed_cidrs: body.set_allowed_cidrs.then_some(body.allowed_cidrs),
                retention_days: if body.reset_retention_days {
                    Some(serde_json::Value::Null)
                } else {
                    body.retention_days.map(serde_json::Value::from)
                },
            };
            let meta = call.ctx.audit_meta(Some(&principal.user_id));
            let view = sources::update(self.0.db.conn(), &body.id, input, &meta).await?;
            call.ctx.audit.mark_handled();
            Ok(source_of(view))
        })
        .await
    }

    async fn delete_source(
        &self,
        request: Request<DeleteSourceRequest>,
    ) -> Result<Response<DeleteSourceResponse>, Status> {
        let call = Call::new(&request);
        let id = request.into_inner().id;
        call.answer(async {
            let principal = call.principal(&self.0).await?;
            principal.require_role(Role::Maintainer)?;
            let meta = call.ctx.audit_meta(Some(&principal.user_id));
            sources::delete(self.0.db.conn(), &self.0.ingest_keys, &id, &meta).await?;
            call.ctx.audit.mark_handled();
            Ok(DeleteSourceResponse {})
        })
        .await
    }
}
