//! Exit codes and how an error becomes one (and a message on stderr, or JSON on stdout).

use std::process::ExitCode;

use evfold_native::StoreError;

use crate::output::Out;

/// Everything went fine.
pub const OK: u8 = 0;
/// Any other error (missing store, bad plugin, IO, ...).
pub const ERROR: u8 = 1;
/// Corruption found (by `verify`, or a store that refuses to open).
pub const CORRUPT: u8 = 3;
/// The store is locked by another process.
pub const LOCKED: u8 = 4;
/// `replay` found divergences.
pub const DIVERGED: u8 = 5;

/// The exit code an error maps to.
pub fn code_of(error: &anyhow::Error) -> u8 {
    for cause in error.chain() {
        match cause.downcast_ref::<StoreError>() {
            Some(StoreError::LockHeld { .. }) => return LOCKED,
            Some(StoreError::Corrupt { .. }) => return CORRUPT,
            _ => {}
        }
    }
    ERROR
}

/// Prints the error and returns its exit code.
pub fn report(out: &Out, error: &anyhow::Error) -> ExitCode {
    let code = code_of(error);
    if out.json {
        let chain: Vec<String> = error.chain().map(ToString::to_string).collect();
        println!("{}", serde_json::json!({ "error": error.to_string(), "causes": chain, "exit_code": code }));
    } else {
        eprintln!("error: {error:#}");
        if code == LOCKED {
            eprintln!("hint: another process has this store open for writing; read-only commands still work");
        }
    }
    ExitCode::from(code)
}
