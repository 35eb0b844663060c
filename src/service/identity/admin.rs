//! User administration: creating, changing and deleting users, with one set of rules for
//! every caller (`/api/v1/users` and `killkrill create-user`): the field rules, the
//! password policy, at least one role, never fewer than one active admin; each change
//! audited in its own transaction, and the user's cached rights dropped after it.

use super::{Identity, UserView};
use crate::{
    auth::{Role, password::check_policy, roles},
    error::{AppError, FieldError},
    service::audit::{self, AuditEntry, AuditMeta, AuditStatus},
    service::conflict_or,
    storage::users::{self, NewUser, UserChange},
};

/// A user to create. Roles are parsed by the caller (`auth::roles::parse_list`).
#[derive(Debug)]
pub struct UserInput {
    pub username: String,
    pub email: String,
    pub password: String,
    pub first_name: String,
    pub last_name: String,
    /// `None`: viewer.
    pub roles: Option<Vec<Role>>,
    /// `None`: active.
    pub active: Option<bool>,
}

/// The fields of a user to change; `None` leaves a field as it is.
#[derive(Debug, Default)]
pub struct UserUpdate {
    pub email: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub roles: Option<Vec<Role>>,
    pub active: Option<bool>,
    pub password: Option<String>,
}

fn check_username(username: &str, problems: &mut Vec<FieldError>) {
    let ok_chars = username.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if !(3..=64).contains(&username.chars().count()) || !ok_chars {
        problems.push(FieldError::new("username", "must be 3 to 64 letters, digits, '.', '_' or '-'"));
    }
}

fn check_email(email: &str, problems: &mut Vec<FieldError>) {
    let valid = email.len() <= 255
        && !email.chars().any(char::is_whitespace)
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && domain.contains('.') && !domain.starts_with('.') && !domain.ends_with('.')
        });
    if !valid {
        problems.push(FieldError::new("email", "must be a valid email address"));
    }
}

fn check_name(field: &str, value: &str, problems: &mut Vec<FieldError>) {
    if value.chars().count() > 100 {
        problems.push(FieldError::new(field, "must be at most 100 characters"));
    }
}

fn check_password(password: &str, username: &str, problems: &mut Vec<FieldError>) {
    if let Err(message) = check_policy(password, username) {
        problems.push(FieldError::new("password", message));
    }
}

/// The roles given, normalised; an empty list is refused.
fn check_roles(given: Option<Vec<Role>>, problems: &mut Vec<FieldError>) -> Option<Vec<Role>> {
    match given {
        Some(list) if list.is_empty() => {
            problems.push(FieldError::new("roles", "must name at least one role"));
            None
        }
        other => other.map(roles::normalize),
    }
}

fn refused(problems: Vec<FieldError>) -> Result<(), AppError> {
    if problems.is_empty() { Ok(()) } else { Err(AppError::Validation(problems)) }
}

impl Identity {
    /// Creates a user; `meta` names who asked (`None` for the command line).
    pub async fn create_user(&self, input: UserInput, meta: &AuditMeta) -> Result<UserView, AppError> {
        let mut problems = Vec::new();
        check_username(&input.username, &mut problems);
        check_email(&input.email, &mut problems);
        check_name("first_name", &input.first_name, &mut problems);
        check_name("last_name", &input.last_name, &mut problems);
        check_password(&input.password, &input.username, &mut problems);
        let roles = check_roles(input.roles, &mut problems).unwrap_or_else(|| vec![Role::Viewer]);
        refused(problems)?;
        let hash = self.passwords.hash(&input.password).await.map_err(AppError::internal)?;
        let new = NewUser {
            username: input.username,
            email: input.email,
            password_hash: hash,
            first_name: input.first_name,
            last_name: input.last_name,
            active: input.active.unwrap_or(true),
            roles,
        };
        let roles = new.roles.clone();
        let txn = crate::storage::begin_write(&self.db).await?;
        let user = users::insert(&txn, new).await.map_err(|e| conflict_or(e, "A user with this username or email"))?;
        let entry = AuditEntry::new("CREATE_USER", "user", Some(&user.id), AuditStatus::Success);
        audit::record(&txn, meta, entry).await?;
        txn.commit().await?;
        Ok(UserView::new(user, &roles))
    }

    /// One user with its roles, or 404.
    pub async fn user(&self, id: &str) -> Result<UserView, AppError> {
        let (user, roles) = self.load_user(id).await?;
        Ok(UserView::new(user, &roles))
    }

    /// A page of users, oldest first, and how many there are.
    pub async fn list_users(&self, limit: u64, offset: u64) -> Result<(Vec<UserView>, u64), AppError> {
        let (found, total) = users::list(&self.db, limit, offset).await?;
        let ids: Vec<String> = found.iter().map(|u| u.id.clone()).collect();
        let mut roles = users::roles_of_many(&self.db, &ids).await?;
        let views = found
            .into_iter()
            .map(|u| {
                let user_roles = roles.remove(&u.id).unwrap_or_default();
                UserView::new(u, &user_roles)
            })
            .collect();
        Ok((views, total))
    }

    async fn load_user(&self, id: &str) -> Result<(crate::storage::entity::user::Model, Vec<Role>), AppError> {
        let not_found = || AppError::NotFound(format!("User not found: {id}"));
        let user = users::find_by_id(&self.db, id).await?.ok_or_else(not_found)?;
        let roles = users::roles_of(&self.db, id).await?;
        Ok((user, roles))
    }

    /// Changes a user. A new password or deactivation ends the user's sessions (its token
    /// version moves on); the last active admin can be neither demoted nor deactivated.
    pub async fn update_user(&self, id: &str, update: UserUpdate, meta: &AuditMeta) -> Result<UserView, AppError> {
        let (current, current_roles) = self.load_user(id).await?;
        let mut problems = Vec::new();
        if let Some(email) = &update.email {
            check_email(email, &mut problems);
        }
        for (field, value) in [("first_name", &update.first_name), ("last_name", &update.last_name)] {
            if let Some(value) = value {
                check_name(field, value, &mut problems);
            }
        }
        if let Some(password) = &update.password {
            check_password(password, &current.username, &mut problems);
        }
        let new_roles = check_roles(update.roles, &mut problems);
        refused(problems)?;
        let hash = match &update.password {
            Some(password) => Some(self.passwords.hash(password).await.map_err(AppError::internal)?),
            None => None,
        };
        let was_admin = current.active && current_roles.contains(&Role::Admin);
        let stays_admin = update.active.unwrap_or(current.active)
            && new_roles.as_ref().unwrap_or(&current_roles).contains(&Role::Admin);
        let txn = crate::storage::begin_write(&self.db).await?;
        if was_admin && !stays_admin && users::count_active_admins(&txn).await? <= 1 {
            return Err(AppError::Conflict("The last active admin cannot be demoted or deactivated".into()));
        }
        let revoke_tokens = hash.is_some() || update.active == Some(false);
        let change = UserChange {
            email: update.email.map(|email| email.to_lowercase()),
            first_name: update.first_name,
            last_name: update.last_name,
            active: update.active,
            password_hash: hash,
            token_version: revoke_tokens.then(|| current.token_version.saturating_add(1)),
        };
        // A delete that committed since the user was loaded leaves nothing to update: 404.
        let updated = users::update(&txn, id, change).await.map_err(|err| match err {
            sea_orm::DbErr::RecordNotUpdated => AppError::NotFound(format!("User not found: {id}")),
            other => conflict_or(other, "A user with this email"),
        })?;
        if let Some(roles) = &new_roles {
            users::set_roles(&txn, id, roles).await?;
        }
        audit::record(&txn, meta, AuditEntry::new("UPDATE_USER", "user", Some(id), AuditStatus::Success)).await?;
        txn.commit().await?;
        self.invalidate_user(id);
        Ok(UserView::new(updated, new_roles.as_ref().unwrap_or(&current_roles)))
    }

    /// Deletes a user; the last active admin cannot be deleted.
    pub async fn delete_user(&self, id: &str, meta: &AuditMeta) -> Result<(), AppError> {
        let (current, roles) = self.load_user(id).await?;
        let txn = crate::storage::begin_write(&self.db).await?;
        if current.active && roles.contains(&Role::Admin) && users::count_active_admins(&txn).await? <= 1 {
            return Err(AppError::Conflict("The last active admin cannot be deleted".into()));
        }
        users::delete(&txn, id).await?;
        audit::record(&txn, meta, AuditEntry::new("DELETE_USER", "user", Some(id), AuditStatus::Success)).await?;
        txn.commit().await?;
        self.invalidate_user(id);
        Ok(())
    }
}
