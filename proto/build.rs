//! Compiles the .proto files with protox (pure Rust, so no `protoc` to install)
//! and writes the encoded descriptor set next to the generated code, for gRPC
//! reflection.

use std::{env, fs, path::PathBuf};

use prost::Message;

const PROTOS: &[&str] = &[
    "delestage/relay/v1/relay.proto",
    "delestage/forecast/v1/forecast.proto",
    "delestage/controller/v1/controller.proto",
    "delestage/meter/v1/meter.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }

    let fds = protox::compile(PROTOS, ["."])?;

    // `compile_fds` ignores `file_descriptor_set_path`, so write it ourselves.
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(
        out_dir.join("delestage_descriptor.bin"),
        fds.encode_to_vec(),
    )?;

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // Small per-call buffers: see src/codec.rs.
        .codec_path("crate::codec::SmallBufferCodec")
        .compile_fds(fds)?;
    Ok(())
}
