//! Output helpers: human text or JSON on stdout, notes on stderr, and progress bars on stderr
//! that stay hidden when stderr is not a terminal, in `--json` mode and under `--quiet`.
//!
//! A closed stdout (`evfold demo | head -1`) never panics: the process ends quietly with exit 0,
//! as it would under the default SIGPIPE, but with a clean code. Everything a command wrote
//! before that is already durable; the lock is released by the OS.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;

/// `--quiet`, for code that has no `Out` at hand.
static QUIET: AtomicBool = AtomicBool::new(false);

/// Where results go and in which form.
#[derive(Debug, Clone, Copy)]
pub struct Out {
    /// `--json`: one JSON document (or JSONL) on stdout, nothing decorative.
    pub json: bool,
    /// `--quiet`: no bars, no notes.
    pub quiet: bool,
}

impl Out {
    /// Output mode from the `--json` and `--quiet` flags.
    pub fn new(json: bool, quiet: bool) -> Out {
        QUIET.store(quiet, Ordering::Relaxed);
        Out { json, quiet }
    }

    /// Prints `text` in human mode, `value` in JSON mode.
    pub fn emit(&self, text: impl FnOnce() -> String, value: impl FnOnce() -> Value) {
        if self.json {
            line(&value().to_string());
        } else {
            line(&text());
        }
    }

    /// A note for people on stderr (not in `--json` or `--quiet` mode).
    pub fn note(&self, text: &str) {
        if !self.json && !self.quiet {
            let _ = writeln!(std::io::stderr(), "{text}");
        }
    }

    /// A progress bar of `len` steps, hidden unless stderr is a terminal.
    pub fn bar(&self, len: u64, what: &str) -> ProgressBar {
        if self.json || self.quiet || QUIET.load(Ordering::Relaxed) || !std::io::stderr().is_terminal() {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::new(len);
        let style = ProgressStyle::with_template("{msg:>12} [{bar:30}] {pos}/{len} ({eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        bar.set_style(style);
        bar.set_message(what.to_owned());
        bar
    }
}

impl Out {
    /// A spinner for work whose length is unknown (hidden like [`Out::bar`]).
    pub fn spinner(&self, what: &str) -> ProgressBar {
        let bar = self.bar(0, what);
        if bar.is_hidden() {
            return bar;
        }
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.enable_steady_tick(std::time::Duration::from_millis(100));
        bar
    }
}

/// Writes one line to stdout and flushes it (so `| head` sees it at once). If stdout is closed,
/// the process exits with 0 (see the module doc); any other write error exits with 1.
pub fn line(text: &str) {
    let mut stdout = std::io::stdout().lock();
    if let Err(error) = writeln!(stdout, "{text}").and_then(|()| stdout.flush()) {
        if error.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(i32::from(crate::exit::OK));
        }
        let _ = writeln!(std::io::stderr(), "error: writing to stdout: {error}");
        std::process::exit(i32::from(crate::exit::ERROR));
    }
}
