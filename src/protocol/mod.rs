//! The standard protocols agents speak (OTLP, Prometheus remote_write, Loki push,
//! Elasticsearch `_bulk`): their bodies decoded and mapped to the ingest services'
//! inputs. Pure functions; the transports (`http`, `grpc`) call them and answer in each
//! protocol's own form.

pub mod codec;
pub mod elastic;
pub mod loki;
pub mod otlp;
pub mod remote_write;
