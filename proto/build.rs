//! Compiles the wire contract with the vendored protoc, so a fresh machine needs no system package.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // prost-build finds protoc through this variable.
    unsafe_env_set("PROTOC", protoc);
    tonic_prost_build::configure().build_client(true).build_server(true).compile_protos(
        &[
            "proto/drover/v1/tracking.proto",
            "proto/drover/v1/execution.proto",
            "proto/drover/v1/sweeps.proto",
            "proto/drover/v1/models.proto",
        ],
        &["proto"],
    )?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}

#[allow(unsafe_code)]
fn unsafe_env_set(key: &str, value: std::path::PathBuf) {
    // Setting the environment is unsafe in edition 2024 because other threads may read it;
    // a build script has no other threads.
    unsafe { std::env::set_var(key, value) };
}
