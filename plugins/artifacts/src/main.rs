//! `evfold-plugin-artifacts [OUT_DIR]`: brings the example plugins' components up to date in
//! OUT_DIR (default `EVFOLD_PLUGIN_DIR`, else `target/plugins`) and lists them. The build of this
//! binary built the wasm modules; `scripts/build-plugins.sh` is `cargo run` of it.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let out_dir = std::env::args_os()
        .nth(1)
        .or_else(|| std::env::var_os("EVFOLD_PLUGIN_DIR"))
        .map(PathBuf::from)
        .unwrap_or_else(evfold_plugin_artifacts::default_dir);
    match evfold_plugin_artifacts::install(&out_dir) {
        Ok(written) => {
            for path in written {
                let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                eprintln!("build-plugins: {} ({size} bytes)", path.display());
            }
            eprintln!("build-plugins: up to date in {}", out_dir.display());
            ExitCode::SUCCESS
        }
        Err(reason) => {
            eprintln!("build-plugins: {reason}");
            ExitCode::FAILURE
        }
    }
}
