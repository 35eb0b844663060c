//! Authentication and authorization: roles, tokens, API keys, login throttling, and the
//! `Principal` extractor every protected route uses.

pub mod keys;
pub mod password;
pub mod principal;
pub mod roles;
pub mod throttle;
pub mod token;

pub use principal::{AdminOnly, AtLeastMaintainer, AtLeastViewer, AuthMethod, Principal, X_API_KEY};
pub use roles::{Permission, Role};
