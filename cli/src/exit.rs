//! The exit-code table every command honours, the CLI's own error type, and how an error
//! becomes an exit code plus a message on stderr (one JSON object under `--json`).
//!
//! | code | meaning |
//! |---|---|
//! | 0 | ok; also a closed stdout (`evfold events \| head`): the command ends quietly |
//! | 1 | error: rejected command, missing store, bad plugin, bad input, IO |
//! | 2 | usage (clap) |
//! | 3 | corruption found (`verify`, or any command that met a corrupt log, an imported eventfold-es one too) |
//! | 4 | store locked by another writer (after `--wait`, if given) |
//! | 5 | `replay` found divergences |
//! | 6 | `--expected-version` conflict |

use std::io::Write;
use std::process::ExitCode;

use evfold_native::StoreError;

use crate::output::Out;

/// Everything went fine.
pub const OK: u8 = 0;
/// Any other error (missing store, bad plugin, IO, a rejected command, ...).
pub const ERROR: u8 = 1;
/// Corruption found (by `verify`, or a store that refuses to open).
pub const CORRUPT: u8 = 3;
/// The store is locked by another process.
pub const LOCKED: u8 = 4;
/// `replay` found divergences.
pub const DIVERGED: u8 = 5;
/// The stream was not at `--expected-version`.
pub const CONFLICT: u8 = 6;

/// Failures the CLI itself classifies (store errors keep their own type).
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A command met a corrupt log (found by checking the store after an untyped failure).
    #[error("corrupt log {path} at line {line}: {reason}; run `evfold verify`, then `evfold repair {stream}`")]
    Corrupt {
        /// The damaged stream, as `TYPE ID` (what `repair` takes).
        stream: String,
        /// Its log.
        path: String,
        /// 1-based line of the first bad line.
        line: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// `--expected-version` did not match.
    #[error("{stream} is at version {actual}, not {expected}: nothing was written (re-read it with `evfold state`, or retry with --expected-version {actual})")]
    Conflict {
        /// `type/id`.
        stream: String,
        /// What the caller expected.
        expected: u64,
        /// The stream's version.
        actual: u64,
    },
    /// Another writer kept the lock for the whole `--wait`.
    #[error("the store stayed locked by another writer for {secs} s (--wait)")]
    WaitedTooLong {
        /// How long we waited.
        secs: f64,
    },
    /// Bad input file or line.
    #[error("{0}")]
    Input(String),
}

/// The exit code an error maps to.
pub fn code_of(error: &anyhow::Error) -> u8 {
    for cause in error.chain() {
        match cause.downcast_ref::<StoreError>() {
            Some(StoreError::LockHeld { .. }) => return LOCKED,
            Some(StoreError::Corrupt { .. } | StoreError::PeerLine { .. }) => return CORRUPT,
            _ => {}
        }
        match cause.downcast_ref::<CliError>() {
            Some(CliError::Corrupt { .. }) => return CORRUPT,
            Some(CliError::Conflict { .. }) => return CONFLICT,
            Some(CliError::WaitedTooLong { .. }) => return LOCKED,
            _ => {}
        }
    }
    ERROR
}

/// Whether the error is a write to a closed pipe (the reader went away: not a failure).
pub fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error
        .chain()
        .any(|cause| cause.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe))
}

/// The error's messages, outermost first, leaving out a cause whose text the message before it
/// already ends with (IO errors embed their source in their own message).
pub fn messages(error: &anyhow::Error) -> Vec<String> {
    let mut messages: Vec<String> = Vec::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if messages.last().is_some_and(|previous| previous.ends_with(&text)) {
            continue;
        }
        messages.push(text);
    }
    messages
}

/// Prints the error on stderr and returns its exit code; a closed stdout ends quietly with 0.
pub fn report(out: &Out, error: &anyhow::Error) -> ExitCode {
    if is_broken_pipe(error) {
        return ExitCode::from(OK);
    }
    let code = code_of(error);
    let messages = messages(error);
    let mut stderr = std::io::stderr().lock();
    // Nothing more can be done if stderr is gone too.
    let _ = if out.json {
        let value = serde_json::json!({ "error": messages.join(": "), "causes": messages, "exit_code": code });
        writeln!(stderr, "{value}")
    } else {
        writeln!(stderr, "error: {}", messages.join(": ")).and_then(|()| {
            if code == LOCKED {
                writeln!(stderr, "hint: another process has this store open for writing; read-only commands still work; --wait[=SECS] waits for it")
            } else {
                Ok(())
            }
        })
    };
    ExitCode::from(code)
}
