//! The HTTP transport: extractors, middleware and handlers. Routes live in `router.rs`.

pub mod extract;
pub mod health;
pub mod middleware;
