//! `plugin new NAME`: writes a plugin crate: an aggregate (commands, events, a refusal) exported
//! with the one SDK line, a native test on the in-memory store, its own `[workspace]` (so it
//! builds anywhere, also inside another repository), and the release profile plugins want.
//!
//! The evfold dependencies point at a source checkout by path (`--evfold-path`,
//! `EVFOLD_SOURCE_DIR`, else the checkout this binary was built from); with none, at crates.io
//! versions. With a checkout, the checkout's tested `plugins/examples/Cargo.lock` seeds the
//! crate's lock file, so the new crate builds with the versions the examples are tested with.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use serde_json::json;

use crate::output::Out;

/// Version requirement of the evfold crates when no checkout is used.
const EVFOLD_VERSION: &str = env!("CARGO_PKG_VERSION");

/// `evfold plugin new NAME [--dir DIR] [--evfold-path CHECKOUT]`.
pub fn run(name: &str, dir: Option<PathBuf>, evfold_path: Option<PathBuf>, out: &Out) -> Result<ExitCode> {
    check_name(name)?;
    let dir = dir.unwrap_or_else(|| PathBuf::from(name));
    if dir.exists() && std::fs::read_dir(&dir).map(|mut d| d.next().is_some()).unwrap_or(true) {
        bail!("{} already exists and is not empty; pass --dir with a new directory", dir.display());
    }
    let checkout = match evfold_path {
        Some(path) => Some(checked_checkout(&path)?),
        None => built_from_checkout(),
    };
    let dependencies = match &checkout {
        Some(root) => format!(
            "evfold-core = {{ path = {core:?} }}\nevfold-plugin-sdk = {{ path = {sdk:?} }}",
            core = root.join("core").display().to_string(),
            sdk = root.join("plugins/sdk").display().to_string()
        ),
        None => format!("evfold-core = \"{EVFOLD_VERSION}\"\nevfold-plugin-sdk = \"{EVFOLD_VERSION}\""),
    };
    std::fs::create_dir_all(dir.join("src")).with_context(|| format!("creating {}", dir.display()))?;
    let write = |file: &str, text: String| {
        let path = dir.join(file);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
    };
    write("Cargo.toml", MANIFEST.replace("{name}", name).replace("{dependencies}", &dependencies))?;
    write("src/lib.rs", LIB.replace("{name}", name))?;
    write(".gitignore", "/target\n".into())?;
    if let Some(root) = &checkout {
        let lock = root.join("plugins/examples/Cargo.lock");
        if lock.is_file() {
            std::fs::copy(&lock, dir.join("Cargo.lock")).with_context(|| format!("copying {}", lock.display()))?;
        }
    }
    let source = match &checkout {
        Some(root) => format!("evfold crates by path from {}", root.display()),
        None => format!("evfold crates {EVFOLD_VERSION} from crates.io"),
    };
    out.emit(
        || {
            format!(
                "created plugin crate {name} in {dir} ({source})\nnext:\n  cd {dir}\n  cargo test                 # the native test\n  evfold plugin build        # wasm32 build + component, prints its SHA-256\n  evfold exec {name} t1 '{{\"type\":\"Add\",\"data\":{{\"amount\":2}}}}' --plugin target/evfold-plugins/{name}.wasm",
                dir = dir.display()
            )
        },
        || json!({ "name": name, "dir": dir, "evfold": source }),
    );
    Ok(ExitCode::SUCCESS)
}

/// A cargo package name that is also a valid stream type: ASCII letters, digits, `-`, `_`,
/// starting with a letter, at most 64 bytes.
fn check_name(name: &str) -> Result<()> {
    let valid_chars = name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if name.is_empty() || name.len() > 64 || !valid_chars || !name.as_bytes()[0].is_ascii_alphabetic() {
        bail!(
            "plugin name {name:?}: use ASCII letters, digits, `-` and `_`, starting with a letter (at most 64 bytes)"
        );
    }
    Ok(())
}

fn checked_checkout(path: &Path) -> Result<PathBuf> {
    let root = std::path::absolute(path).with_context(|| format!("resolving {}", path.display()))?;
    if !is_checkout(&root) {
        bail!("{} is not an evfold checkout (no plugins/sdk/Cargo.toml)", root.display());
    }
    Ok(root)
}

/// The checkout this binary was compiled from, if it is still there.
fn built_from_checkout() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent()?;
    is_checkout(root).then(|| root.to_path_buf())
}

fn is_checkout(root: &Path) -> bool {
    root.join("plugins/sdk/Cargo.toml").is_file() && root.join("core/Cargo.toml").is_file()
}

const MANIFEST: &str = r#"[package]
name = "{name}"                 # the plugin's name (and, in src/lib.rs, its aggregate type)
version = "0.1.0"               # the plugin's version, shown by `evfold plugin info`
edition = "2021"
publish = false

[lib]
# cdylib: the wasm plugin; rlib: lets tests and other crates use the aggregate natively.
crate-type = ["cdylib", "rlib"]

[dependencies]
{dependencies}
serde = { version = "1", features = ["derive"] }

# Its own workspace: the crate builds on its own, wherever it is.
[workspace]

[profile.release]
opt-level = 3
lto = true
codegen-units = 1
panic = "abort"
strip = true
"#;

const LIB: &str = r#"//! The `{name}` plugin: an evfold aggregate, tested natively, exported as a WASM plugin.
//!
//! Build the plugin: `evfold plugin build` (wasm32-unknown-unknown + componentize).
//! Run it: `evfold exec {name} ID '{"type":"Add","data":{"amount":2}}' --plugin target/evfold-plugins/{name}.wasm`

use evfold_core::Aggregate;
use serde::{Deserialize, Serialize};

/// The state: a running total that may not exceed a limit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    /// Sum of everything added since the last reset.
    pub total: u64,
}

/// What callers ask for (JSON: `{"type":"Add","data":{"amount":2}}`, `{"type":"Reset"}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum TallyCommand {
    /// Add an amount.
    Add { amount: u64 },
    /// Back to zero.
    Reset,
}

/// What happened. Only these variants may be emitted: the host refuses any other event type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum TallyEvent {
    /// An amount was added.
    Added { amount: u64 },
    /// The total went back to zero.
    WasReset,
}

/// Why a command was refused (a domain "no", stored nowhere).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TallyError {
    /// The total would exceed [`Tally::LIMIT`].
    OverLimit { total: u64, amount: u64 },
}

impl std::fmt::Display for TallyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TallyError::OverLimit { total, amount } => {
                write!(f, "adding {amount} to {total} would exceed the limit of {}", Tally::LIMIT)
            }
        }
    }
}

impl std::error::Error for TallyError {}

impl Tally {
    /// The highest total allowed.
    pub const LIMIT: u64 = 1_000;
}

impl Aggregate for Tally {
    const AGGREGATE_TYPE: &'static str = "{name}";
    type Command = TallyCommand;
    type Event = TallyEvent;
    type Error = TallyError;

    /// Decides: pure, no clock, no randomness, no IO (the plugin has none).
    fn handle(&self, command: TallyCommand) -> Result<Vec<TallyEvent>, TallyError> {
        match command {
            TallyCommand::Add { amount } if self.total + amount > Self::LIMIT => {
                Err(TallyError::OverLimit { total: self.total, amount })
            }
            TallyCommand::Add { amount } => Ok(vec![TallyEvent::Added { amount }]),
            TallyCommand::Reset if self.total == 0 => Ok(vec![]),
            TallyCommand::Reset => Ok(vec![TallyEvent::WasReset]),
        }
    }

    /// Folds an event: never fails, events are facts.
    fn apply(mut self, event: &TallyEvent) -> Self {
        match event {
            TallyEvent::Added { amount } => self.total += amount,
            TallyEvent::WasReset => self.total = 0,
        }
        self
    }
}

// The one line that makes this crate a plugin (wasm only: native builds, such as `cargo test`,
// link no plugin exports).
#[cfg(target_arch = "wasm32")]
evfold_plugin_sdk::export_aggregate!(Tally);

#[cfg(test)]
mod tests {
    use super::*;
    use evfold_core::memory::MemoryStore;
    use evfold_core::{CommandContext, CommandError};

    #[test]
    fn adds_up_to_the_limit_and_refuses_beyond_it() {
        let mut store = MemoryStore::new();
        store.register::<Tally>();
        let add = |amount| TallyCommand::Add { amount };
        store.execute::<Tally>("t1", add(600), CommandContext::default()).unwrap();
        store.execute::<Tally>("t1", add(400), CommandContext::default()).unwrap();
        let refused = store.execute::<Tally>("t1", add(1), CommandContext::default()).unwrap_err();
        assert!(matches!(refused, CommandError::Rejected(_)), "{refused:?}");
        assert_eq!(store.state::<Tally>("t1").unwrap(), Tally { total: 1_000 });
        store.execute::<Tally>("t1", TallyCommand::Reset, CommandContext::default()).unwrap();
        assert_eq!(store.state::<Tally>("t1").unwrap(), Tally { total: 0 });
    }
}
"#;
