//! `evfold-wasi-run`: runs a `wasm32-wasip1` command module (e.g. a `cargo test` binary) under
//! wasmtime + WASI preview 1, for use as `CARGO_TARGET_WASM32_WASIP1_RUNNER`.
//!
//! ```text
//! evfold-wasi-run path/to/test.wasm [args...]
//! ```
//! The guest gets the host's stdin/stdout/stderr, the module path and the remaining arguments as
//! its argv, and only the host's `RUST_*` environment variables (RUST_BACKTRACE,
//! RUST_TEST_THREADS, ...). No directory is preopened unless `EVFOLD_WASI_RUN_DIR=<host dir>` is
//! set, which maps that directory read-write as `.` in the guest. The guest's exit code becomes
//! the process exit code; a trap exits with 101 (like a Rust panic) after printing the trap.

use std::process::ExitCode;

use wasmtime::{Config, Engine, Linker, Module, Store};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::{FsPerms, I32Exit, WasiCtxBuilder};

/// Exit code used when the module traps or cannot be loaded.
const FAILURE: u8 = 101;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(module_path) = args.first().cloned() else {
        eprintln!("usage: evfold-wasi-run <module.wasm> [args...]");
        return ExitCode::from(2);
    };
    match run(&module_path, &args) {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            eprintln!("evfold-wasi-run: {module_path}: {error:?}");
            ExitCode::from(FAILURE)
        }
    }
}

/// Loads and runs the module's `_start`; returns the exit code.
fn run(module_path: &str, args: &[String]) -> wasmtime::Result<u8> {
    let engine = Engine::new(&Config::new())?;
    let module = Module::from_file(&engine, module_path)?;
    let mut linker: Linker<WasiP1Ctx> = Linker::new(&engine);
    wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |ctx| ctx)?;
    let mut store = Store::new(&engine, wasi_context(args)?);
    let instance = linker.instantiate(&mut store, &module)?;
    let start = instance.get_typed_func::<(), ()>(&mut store, "_start")?;
    match start.call(&mut store, ()) {
        Ok(()) => Ok(0),
        Err(error) => match error.downcast_ref::<I32Exit>() {
            Some(exit) => Ok(u8::try_from(exit.0).unwrap_or(FAILURE)),
            None => Err(error),
        },
    }
}

/// The guest's WASI context: inherited stdio, argv, `RUST_*` env, optional preopen.
fn wasi_context(args: &[String]) -> wasmtime::Result<WasiP1Ctx> {
    let mut builder = WasiCtxBuilder::new();
    builder.inherit_stdio().args(args);
    for (key, value) in std::env::vars().filter(|(key, _)| key.starts_with("RUST_")) {
        builder.env(key, value);
    }
    if let Some(dir) = std::env::var_os("EVFOLD_WASI_RUN_DIR") {
        builder.preopened_dir(dir, ".", FsPerms::ReadWrite)?;
    }
    Ok(builder.build_p1())
}
