//! The HTTP transport: extractors, middleware and handlers. Routes live in `router.rs`.

pub mod audit;
pub mod auth;
pub mod context;
pub mod extract;
pub mod health;
pub mod middleware;
pub mod openapi;
pub mod pagination;
pub mod sources;
pub mod status;
pub mod telemetry;
pub mod users;
