//! Pure translations of the protocols agents speak into the services' domain types.

pub mod otlp;
