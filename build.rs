//! Generates the CRI v1 gRPC server and client from proto/runtime/v1/api.proto.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The CRI proto uses `debug_redact` (protobuf 22+); Debian's protoc 3.21
    // rejects it, so use the protoc that protoc-bin-vendored carries.
    // SAFETY: build scripts are single-threaded.
    unsafe { std::env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?) };
    println!("cargo:rerun-if-changed=proto/runtime/v1/api.proto");
    tonic_prost_build::configure().compile_protos(&["proto/runtime/v1/api.proto"], &["proto"])?;
    Ok(())
}
