//! The one capability a plugin has: writing to the host's log. Also installs the panic hook that
//! reports a guest panic's message to the host before the panic traps the instance.

use std::sync::Once;

use crate::bindings::aggregate::evfold::plugin::host::{self, Level};

/// Log severity, as the host's `tracing` sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    /// Very fine-grained.
    Trace,
    /// Debugging.
    Debug,
    /// Normal operation.
    Info,
    /// Something odd.
    Warn,
    /// Something failed.
    Error,
}

/// Writes one line to the host's log. The host caps what it keeps per call.
pub fn log(level: LogLevel, message: &str) {
    let level = match level {
        LogLevel::Trace => Level::Trace,
        LogLevel::Debug => Level::Debug,
        LogLevel::Info => Level::Info,
        LogLevel::Warn => Level::Warn,
        LogLevel::Error => Level::Error,
    };
    host::log(level, message);
}

/// Makes every guest panic write `panicked at ...: message` to the host's log first, so the host
/// can name the cause in the trap error. Idempotent and cheap; the export glue calls it on entry.
pub fn install_panic_hook() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            let at = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
            let message = if let Some(text) = info.payload().downcast_ref::<&str>() {
                (*text).to_owned()
            } else if let Some(text) = info.payload().downcast_ref::<String>() {
                text.clone()
            } else {
                "(non-string panic payload)".to_owned()
            };
            host::log(Level::Error, &format!("{PANIC_PREFIX}{at}: {message}"));
        }));
    });
}

/// Prefix of the log line a guest panic writes; the host recognises it.
pub const PANIC_PREFIX: &str = "panicked";
