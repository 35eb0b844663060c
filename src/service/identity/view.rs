//! A user as the identity service returns it.

use serde::Serialize;

use crate::{
    auth::roles::{self, Role},
    error::AppError,
    storage::entity::user,
    time::micros_to_rfc3339,
};

/// A user as the API shows it: never a password or hash.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UserView {
    pub id: String,
    pub username: String,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub active: bool,
    pub roles: Vec<&'static str>,
    pub permissions: Vec<&'static str>,
    pub created_at: String,
    pub updated_at: String,
    pub last_login_at: Option<String>,
    pub current_login_at: Option<String>,
    pub last_login_ip: Option<String>,
    pub current_login_ip: Option<String>,
    pub login_count: i32,
}

impl UserView {
    pub fn new(user: user::Model, roles: &[Role]) -> Self {
        Self {
            id: user.id,
            username: user.username,
            email: user.email,
            first_name: user.first_name,
            last_name: user.last_name,
            active: user.active,
            roles: roles::names(roles),
            permissions: roles::permission_names(roles),
            created_at: micros_to_rfc3339(user.created_at),
            updated_at: micros_to_rfc3339(user.updated_at),
            last_login_at: user.last_login_at.map(micros_to_rfc3339),
            current_login_at: user.current_login_at.map(micros_to_rfc3339),
            last_login_ip: user.last_login_ip,
            current_login_ip: user.current_login_ip,
            login_count: user.login_count,
        }
    }
}

impl super::Identity {
    /// The user `user_id` shown with `roles` (a principal's, which a key may narrow);
    /// `None` if the user is gone.
    pub async fn user_as(&self, user_id: &str, roles: &[Role]) -> Result<Option<UserView>, AppError> {
        let user = crate::storage::users::find_by_id(&self.db, user_id).await?;
        Ok(user.map(|user| UserView::new(user, roles)))
    }
}
