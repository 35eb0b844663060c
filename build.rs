//! Compiles `proto/killkrill/v1/*.proto` with protox (no `protoc` binary needed) into the
//! gRPC server and client code, and writes the descriptor set that server reflection serves.

use std::{env, path::PathBuf};

use prost::Message;

const PROTOS: [&str; 5] = [
    "killkrill/v1/auth.proto",
    "killkrill/v1/sources.proto",
    "killkrill/v1/logs.proto",
    "killkrill/v1/metrics.proto",
    "killkrill/v1/status.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let descriptors = protox::compile(PROTOS, ["proto"])?;
    let out = PathBuf::from(env::var("OUT_DIR")?);
    std::fs::write(out.join("killkrill_descriptor.bin"), descriptors.encode_to_vec())?;
    tonic_prost_build::configure().build_transport(false).compile_fds(descriptors)?;
    Ok(())
}
