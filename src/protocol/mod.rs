//! The wire formats of the ecosystem's protocols, as pure functions: each module parses its
//! protocol's requests into domain types and renders its answers. The transports (`http/`,
//! `grpc/`) call them; nothing here reads a socket, a database or the application's state.

pub mod elastic;
