//! OTLP/HTTP and OTLP/gRPC protobuf bodies (logs and metrics), decoded as the transports
//! decode them and mapped to the ingest services' inputs. The first byte picks the signal.
#![no_main]

use killkrill::protocol::otlp;
use libfuzzer_sys::fuzz_target;
use opentelemetry_proto::tonic::collector::{
    logs::v1::ExportLogsServiceRequest, metrics::v1::ExportMetricsServiceRequest,
};
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else { return };
    if pick % 2 == 0 {
        if let Ok(request) = ExportLogsServiceRequest::decode(body) {
            let paths = otlp::record_paths(&request);
            let logs = otlp::logs(request);
            assert_eq!(paths.len(), logs.len(), "one path per record");
        }
    } else if let Ok(request) = ExportMetricsServiceRequest::decode(body) {
        let _ = otlp::metrics(request);
    }
});
