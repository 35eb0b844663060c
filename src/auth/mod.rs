//! Authentication and authorization: roles, tokens, API keys, login throttling, and the
//! `Principal` every protected operation checks.

pub mod agent;
pub mod keys;
pub mod password;
pub mod principal;
pub mod roles;
pub mod throttle;
pub mod token;

pub use principal::{AuthMethod, Principal, X_API_KEY};
pub use roles::{Permission, Role};
