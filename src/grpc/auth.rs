//! `killkrill.v1.AuthService`: validate a token, refresh, who-am-I.

use tonic::{Request, Response, Status};

use super::{
    Call,
    proto::{
        Identity, RefreshTokenRequest, TokenPair, ValidateTokenRequest, ValidateTokenResponse, WhoAmIRequest,
        auth_service_server::AuthService,
    },
};
use crate::{
    auth::{Principal, roles},
    service::identity::AuthError,
    state::AppState,
    time::micros_to_rfc3339,
};

pub struct AuthApi(pub AppState);

pub(super) fn identity_of(principal: &Principal) -> Identity {
    Identity {
        user_id: principal.user_id.clone(),
        username: principal.username.clone(),
        roles: roles::names(&principal.roles).into_iter().map(str::to_owned).collect(),
        permissions: roles::permission_names(&principal.roles).into_iter().map(str::to_owned).collect(),
        auth_method: principal.auth_method.as_str().to_owned(),
    }
}

#[tonic::async_trait]
impl AuthService for AuthApi {
    async fn validate_token(
        &self,
        request: Request<ValidateTokenRequest>,
    ) -> Result<Response<ValidateTokenResponse>, Status> {
        let call = Call::new(&request);
        let token = request.into_inner().token;
        call.answer(async {
            match self.0.identity.authenticate_bearer(token.trim()).await {
                Ok(principal) => Ok(ValidateTokenResponse {
                    valid: true,
                    identity: Some(identity_of(&principal)),
                    expires_at: principal
                        .token
                        .as_ref()
                        .map(|claims| micros_to_rfc3339(claims.exp.saturating_mul(1_000_000)))
                        .unwrap_or_default(),
                }),
                Err(AuthError::Db(err)) => Err(err.into()),
                Err(_) => Ok(ValidateTokenResponse::default()),
            }
        })
        .await
    }

    async fn refresh_token(&self, request: Request<RefreshTokenRequest>) -> Result<Response<TokenPair>, Status> {
        let call = Call::new(&request);
        let token = request.into_inner().refresh_token;
        call.answer(async {
            let tokens = self.0.identity.refresh(token.trim(), &call.ctx.audit_meta(None)).await?;
            call.ctx.audit.mark_handled();
            Ok(TokenPair {
                access_token: tokens.access_token,
                refresh_token: tokens.refresh_token,
                token_type: tokens.token_type.to_owned(),
                expires_in: tokens.expires_in,
            })
        })
        .await
    }

    async fn who_am_i(&self, request: Request<WhoAmIRequest>) -> Result<Response<Identity>, Status> {
        let call = Call::new(&request);
        call.answer(async { Ok(identity_of(&call.principal(&self.0).await?)) }).await
    }
}
