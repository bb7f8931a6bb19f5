//! Generates the CRI v1 server and client from the vendored proto.
//!
//! `proto/api.proto` is kubernetes/cri-api's file as published (see
//! `proto/README.md`); `proto/strip.rs` removes the options Debian's protoc
//! cannot read, into `OUT_DIR`, and tonic-build compiles that copy with
//! `protoc`: `$PROTOC`, else the one on `PATH` (Debian's `protobuf-compiler`,
//! installed by `scripts/install-deps.sh`).

#[path = "proto/strip.rs"]
mod strip;

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=proto/api.proto");
    println!("cargo:rerun-if-changed=proto/strip.rs");
    println!("cargo:rerun-if-env-changed=PROTOC");
    let src = std::fs::read_to_string("proto/api.proto").expect("read proto/api.proto");
    let stripped = strip::strip(&src).unwrap_or_else(|e| panic!("{e}"));
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR")).join("proto");
    std::fs::create_dir_all(&out).expect("create OUT_DIR/proto");
    let file = out.join("api.proto");
    std::fs::write(&file, stripped).expect("write the stripped api.proto");

    let protoc = std::env::var_os("PROTOC").map(PathBuf::from).or_else(|| {
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
            .map(|d| d.join("protoc"))
            .find(|p| p.is_file())
    });
    let Some(protoc) = protoc else {
        panic!(
            "protoc not found: install Debian's protobuf-compiler (scripts/install-deps.sh does) \
             or set PROTOC to a protoc binary"
        );
    };
    // prost-build runs the protoc that PROTOC names.
    std::env::set_var("PROTOC", &protoc);
    tonic_build::configure()
        .build_server(true)
        .build_client(true)
        // Its password and tokens must never reach a log: Debug is ours.
        .skip_debug("runtime.v1.AuthConfig")
        .compile_protos(&[&file], &[&out])
        .unwrap_or_else(|e| {
            panic!(
                "compiling {} with {}: {e}",
                file.display(),
                protoc.display()
            )
        });
}
