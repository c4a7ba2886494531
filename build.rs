//! Generates the CRI v1 gRPC server and client from proto/runtime/v1/api.proto,
//! and the descriptor set of Kubernetes' generated.proto files (proto/k8s.io)
//! that the apiserver's protobuf transcoder reads.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The CRI proto uses `debug_redact` (protobuf 22+); Debian's protoc 3.21
    // rejects it, so use the protoc that protoc-bin-vendored carries.
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY: build scripts are single-threaded.
    unsafe { std::env::set_var("PROTOC", &protoc) };
    println!("cargo:rerun-if-changed=proto/runtime/v1/api.proto");
    tonic_prost_build::configure().compile_protos(&["proto/runtime/v1/api.proto"], &["proto"])?;

    println!("cargo:rerun-if-changed=proto/k8s.io");
    let mut k8s = Vec::new();
    collect_protos(&PathBuf::from("proto/k8s.io"), &mut k8s)?;
    k8s.sort();
    let out = PathBuf::from(std::env::var("OUT_DIR")?).join("k8s.fds");
    let status = std::process::Command::new(&protoc)
        .arg("--proto_path=proto")
        .arg("--include_imports")
        .arg(format!("--descriptor_set_out={}", out.display()))
        .args(&k8s)
        .status()?;
    if !status.success() {
        return Err(format!("protoc failed on proto/k8s.io: {status}").into());
    }
    Ok(())
}

fn collect_protos(dir: &PathBuf, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_protos(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "proto") {
            out.push(path);
        }
    }
    Ok(())
}
