//! The first user. Development gets the well-known `admin` / `admin123` so `cargo run`
//! is usable at once (with a warning); production never gets a default password: an
//! operator runs `killkrill create-user ... --password-stdin`.

use sea_orm::DbErr;

use crate::{
    auth::{Role, password::Verification},
    service::identity::Identity,
    state::AppState,
    storage::users::{self, NewUser},
};

pub const DEV_ADMIN_USERNAME: &str = "admin";
pub const DEV_ADMIN_EMAIL: &str = "admin@localhost.local";
pub const DEV_ADMIN_PASSWORD: &str = "admin123";

/// Creates the development admin when there are no users at all.
pub async fn default_admin(identity: &Identity) -> Result<(), DbErr> {
    if users::count(&identity.db).await? > 0 {
        return Ok(());
    }
    let hash = identity.passwords.hash(DEV_ADMIN_PASSWORD).await.map_err(|e| DbErr::Custom(e.to_string()))?;
    let txn = crate::storage::begin_write(&identity.db).await?;
    // Another replica may create it at the same moment (its insert is not visible to our
    // count until it commits): then our insert violates the unique username, and theirs
    // stands. That is not a start-up failure.
    if users::count(&txn).await? == 0 {
        match users::insert(&txn, dev_admin(hash)).await {
            Err(err) if matches!(err.sql_err(), Some(sea_orm::SqlErr::UniqueConstraintViolation(_))) => return Ok(()),
            inserted => inserted?,
        };
        txn.commit().await?;
        tracing::warn!(
            event = "default_admin_created",
            username = DEV_ADMIN_USERNAME,
            email = DEV_ADMIN_EMAIL,
            detail = "development only: change this password (it is the published default)",
        );
    }
    Ok(())
}

/// Warns at start-up while a user `admin` still has the published default password and the
/// ports listen on an address other than loopback, where others can reach it.
pub async fn warn_if_default_password_exposed(state: &AppState) {
    let host = state.config.host;
    if host.is_loopback() {
        return;
    }
    let admin = match users::find_by_login(&state.identity.db, DEV_ADMIN_USERNAME).await {
        Ok(Some(admin)) if admin.active => admin,
        _ => return,
    };
    let verified = state.identity.passwords.verify(DEV_ADMIN_PASSWORD, &admin.password_hash).await;
    if matches!(verified, Ok(Verification::Valid { .. })) {
        tracing::warn!(
            event = "default_password_exposed",
            username = DEV_ADMIN_USERNAME,
            address = %host,
            detail = "the published default password is in use on an address others can reach: change it, \
                      or listen on loopback (FLASK_HOST=127.0.0.1)",
        );
    }
}

fn dev_admin(password_hash: String) -> NewUser {
    NewUser {
        username: DEV_ADMIN_USERNAME.to_owned(),
        email: DEV_ADMIN_EMAIL.to_owned(),
        password_hash,
        first_name: String::new(),
        last_name: String::new(),
        active: true,
        roles: vec![Role::Admin],
    }
}
