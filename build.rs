//! Generates the gRPC code from `proto/` with the protoc that ships in
//! `protoc-bin-vendored`, so a fresh machine needs no protoc of its own.

use std::error::Error;
use std::path::PathBuf;

const PROTOS: [&str; 10] = [
    "proto/servicelevel/v1/webhooks.proto",
    "proto/servicelevel/v1/connections.proto",
    "proto/servicelevel/v1/alerts.proto",
    "proto/servicelevel/v1/packs.proto",
    "proto/servicelevel/v1/hours.proto",
    "proto/servicelevel/v1/calendars.proto",
    "proto/servicelevel/v1/organizations.proto",
    "proto/servicelevel/v1/policies.proto",
    "proto/servicelevel/v1/tickets_common.proto",
    "proto/servicelevel/v1/tickets.proto",
];

fn main() -> Result<(), Box<dyn Error>> {
    println!("cargo:rerun-if-changed=proto");
    println!("cargo:rerun-if-env-changed=PROTOC");
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let well_known = protoc_bin_vendored::include_path()?;
    tonic_prost_build::configure()
        .file_descriptor_set_path(out.join("servicelevel_descriptor.bin"))
        // google.rpc.Status comes compiled with tonic-types, with its error details.
        .extern_path(".google.rpc", "::tonic_types::pb")
        // tonic's codec with undecodable requests answered INVALID_ARGUMENT.
        .codec_path("crate::api::codec::ProstCodec")
        .compile_with_config(
            config,
            &PROTOS.map(PathBuf::from),
            &[PathBuf::from("proto"), well_known],
        )?;
    Ok(())
}
