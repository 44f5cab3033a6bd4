//! Output helpers: human text or JSON on stdout, and progress bars on stderr that stay hidden
//! when stderr is not a terminal (or in `--json` mode).

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;

/// Where results go and in which form.
#[derive(Debug, Clone, Copy)]
pub struct Out {
    /// `--json`: one JSON document (or JSONL) on stdout, nothing decorative.
    pub json: bool,
}

impl Out {
    /// Output mode from the `--json` flag.
    pub fn new(json: bool) -> Out {
        Out { json }
    }

    /// Prints `text` in human mode, `value` in JSON mode.
    pub fn emit(&self, text: impl FnOnce() -> String, value: impl FnOnce() -> Value) {
        if self.json {
            println!("{}", value());
        } else {
            println!("{}", text());
        }
    }

    /// A progress bar of `len` steps, hidden unless stderr is a terminal.
    pub fn bar(&self, len: u64, what: &str) -> ProgressBar {
        if self.json || !std::io::stderr().is_terminal() {
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
