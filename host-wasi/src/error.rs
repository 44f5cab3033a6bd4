//! `PluginError`: every way a plugin can fail, each naming the plugin and the call.

use std::fmt;
use std::path::PathBuf;

/// Which plugin entry point was running when something failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// Loading: reading, compiling, checking the ABI.
    Load,
    /// Creating an instance.
    Instantiate,
    /// Reading the plugin's metadata.
    Metadata,
    /// Deciding a command (its type name).
    Decide(String),
    /// Folding events into aggregate state.
    Fold,
    /// Applying events to a projection.
    Apply,
    /// Taking a snapshot of the state or read model.
    Snapshot,
    /// Restoring a snapshot.
    Restore,
    /// Resetting to the initial state.
    Reset,
    /// Querying a projection's read model.
    Query,
}

impl fmt::Display for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Call::Load => f.write_str("load"),
            Call::Instantiate => f.write_str("instantiate"),
            Call::Metadata => f.write_str("metadata"),
            Call::Decide(command) => write!(f, "decide({command})"),
            Call::Fold => f.write_str("fold"),
            Call::Apply => f.write_str("apply"),
            Call::Snapshot => f.write_str("snapshot"),
            Call::Restore => f.write_str("restore"),
            Call::Reset => f.write_str("reset"),
            Call::Query => f.write_str("query"),
        }
    }
}

/// A plugin failed. The core wraps it in `evfold_core::Fault`; get it back with
/// `fault.source_error().downcast_ref::<PluginError>()`.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// The plugin file could not be read.
    #[error("plugin {}: cannot read: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a valid component, or compiling / linking it failed.
    #[error("plugin {plugin}: {call}: invalid plugin: {message}")]
    Invalid {
        /// Plugin name (file stem until the metadata is known).
        plugin: String,
        /// The call.
        call: Call,
        /// What wasmtime said.
        message: String,
    },
    /// The plugin was built for an ABI (WIT package version) this host does not support.
    #[error("plugin {plugin}: ABI mismatch: the plugin exports {found:?}, this host supports {supported}")]
    AbiMismatch {
        /// Plugin name.
        plugin: String,
        /// The evfold interfaces the plugin exports (with versions), possibly none.
        found: Vec<String>,
        /// What this host accepts, e.g. `evfold:plugin/aggregate@0.3.x`.
        supported: String,
    },
    /// The plugin imports something the host does not provide (another host API, `wasi:http`,
    /// a WASI version other than 0.2.x).
    #[error("plugin {plugin}: imports {import:?}, which this host does not provide (plugins may import only evfold:plugin/host and wasi:{{cli,io,clocks,random,filesystem,sockets}}@0.2.x)")]
    ForbiddenImport {
        /// Plugin name.
        plugin: String,
        /// The import's name.
        import: String,
    },
    /// The guest trapped (a panic, an `unreachable`, an out-of-bounds access, ...).
    #[error("plugin {plugin}: {call}: trapped: {trap}{}", panic.as_deref().map(|p| format!(" ({p})")).unwrap_or_default())]
    Trap {
        /// Plugin name.
        plugin: String,
        /// The call.
        call: Call,
        /// The trap as wasmtime describes it.
        trap: String,
        /// The guest's panic message, when the SDK's panic hook reported one.
        panic: Option<String>,
    },
    /// The call used up its fuel budget (deterministic CPU limit).
    #[error("plugin {plugin}: {call}: out of fuel (budget {fuel} units per call)")]
    OutOfFuel {
        /// Plugin name.
        plugin: String,
        /// The call.
        call: Call,
        /// The budget.
        fuel: u64,
    },
    /// The guest tried to grow its linear memory beyond the cap.
    #[error("plugin {plugin}: {call}: memory limit exceeded: asked for {requested} bytes, the cap is {limit}")]
    MemoryLimit {
        /// Plugin name.
        plugin: String,
        /// The call.
        call: Call,
        /// The cap in bytes.
        limit: usize,
        /// The size the guest asked for.
        requested: usize,
    },
    /// The guest exhausted its stack (unbounded recursion).
    #[error("plugin {plugin}: {call}: stack overflow (stack cap {limit} bytes)")]
    StackOverflow {
        /// Plugin name.
        plugin: String,
        /// The call.
        call: Call,
        /// The configured stack cap.
        limit: usize,
    },
    /// The guest overflowed its *shadow* stack: the stack that Rust (LLVM) keeps in linear memory
    /// for frame data whose address is taken (1 MiB by default, at the bottom of memory). Its
    /// overflow is not a wasm stack overflow but an out-of-bounds memory access (the stack pointer
    /// wraps below address 0); the host tells it apart from other out-of-bounds accesses by the
    /// backtrace: the access happened under at least [`crate::SHADOW_RECURSION_FRAMES`] nested
    /// calls of one recursion cycle. A shadow-stack overflow in shallower code (frames of tens of
    /// KiB each) still shows as [`PluginError::Trap`].
    #[error("plugin {plugin}: {call}: shadow stack overflow (out-of-bounds access under {frames}+ recursive calls)")]
    ShadowStackOverflow {
        /// Plugin name.
        plugin: String,
        /// The call.
        call: Call,
        /// Recursive frames seen in the backtrace (capped at the captured depth).
        frames: usize,
    },
    /// The call ran longer than the wall-clock backstop (`Limits::wall_clock_limit`). An
    /// infrastructure error, not a deterministic outcome: the same call may finish on a less
    /// loaded machine (fuel is the deterministic limit). Retry or alert; never store it as a
    /// domain result.
    #[error(
        "plugin {plugin}: {call}: wall-clock limit of {limit:?} exceeded (infrastructure timeout, not deterministic)"
    )]
    WallClockTimeout {
        /// Plugin name.
        plugin: String,
        /// The call.
        call: Call,
        /// The configured limit.
        limit: std::time::Duration,
    },
    /// The guest returned more bytes than allowed.
    #[error("plugin {plugin}: {call}: output of {size} bytes exceeds the cap of {limit}")]
    OutputTooLarge {
        /// Plugin name.
        plugin: String,
        /// The call.
        call: Call,
        /// Bytes returned.
        size: usize,
        /// The cap.
        limit: usize,
    },
    /// The guest returned JSON that does not parse, or nests deeper than allowed.
    #[error("plugin {plugin}: {call}: bad output: {reason}")]
    BadOutput {
        /// Plugin name.
        plugin: String,
        /// The call.
        call: Call,
        /// What is wrong with it.
        reason: String,
    },
    /// `decide` produced an event type the plugin's metadata does not declare.
    #[error(
        "plugin {plugin}: {call}: event type {event_type:?} is not declared by the plugin (declared: {declared:?})"
    )]
    UndeclaredEventType {
        /// Plugin name.
        plugin: String,
        /// The call.
        call: Call,
        /// The offending type name.
        event_type: String,
        /// What the metadata declares.
        declared: Vec<String>,
    },
    /// The plugin reported a failure of its own (a payload or snapshot it cannot decode).
    #[error("plugin {plugin}: {call}: the plugin failed: {message}")]
    Guest {
        /// Plugin name.
        plugin: String,
        /// The call.
        call: Call,
        /// The plugin's message.
        message: String,
    },
    /// The instance trapped earlier and was discarded; `reset()` builds a new one.
    #[error("plugin {plugin}: {call}: the instance was discarded after a trap; reset() rebuilds it")]
    Discarded {
        /// Plugin name.
        plugin: String,
        /// The call.
        call: Call,
    },
    /// The file is a plugin of the other kind (a projection where an aggregate was expected, ...).
    #[error("plugin {plugin}: is a {found} plugin, expected a {expected} plugin")]
    WrongKind {
        /// Plugin name.
        plugin: String,
        /// What the caller asked for.
        expected: &'static str,
        /// What the file is.
        found: &'static str,
    },
    /// The engine could not be configured (e.g. the pooling allocator could not reserve memory).
    #[error("plugin engine: {0}")]
    Engine(String),
    /// The compiled-artifact cache failed (the plugin still loads, compiled afresh, unless the
    /// cache directory itself is unusable).
    #[error("plugin cache {}: {message}", path.display())]
    Cache {
        /// The cache file or directory.
        path: PathBuf,
        /// What failed.
        message: String,
    },
}

impl PluginError {
    /// The plugin's name, when the error concerns one plugin.
    pub fn plugin(&self) -> Option<&str> {
        match self {
            PluginError::Invalid { plugin, .. }
            | PluginError::AbiMismatch { plugin, .. }
            | PluginError::ForbiddenImport { plugin, .. }
            | PluginError::Trap { plugin, .. }
            | PluginError::OutOfFuel { plugin, .. }
            | PluginError::MemoryLimit { plugin, .. }
            | PluginError::StackOverflow { plugin, .. }
            | PluginError::WallClockTimeout { plugin, .. }
            | PluginError::ShadowStackOverflow { plugin, .. }
            | PluginError::OutputTooLarge { plugin, .. }
            | PluginError::BadOutput { plugin, .. }
            | PluginError::UndeclaredEventType { plugin, .. }
            | PluginError::Guest { plugin, .. }
            | PluginError::Discarded { plugin, .. }
            | PluginError::WrongKind { plugin, .. } => Some(plugin),
            PluginError::Read { .. } | PluginError::Engine(_) | PluginError::Cache { .. } => None,
        }
    }

    /// Whether the instance that raised this error is unusable (the host discards it).
    pub fn kills_instance(&self) -> bool {
        matches!(
            self,
            PluginError::Trap { .. }
                | PluginError::OutOfFuel { .. }
                | PluginError::MemoryLimit { .. }
                | PluginError::StackOverflow { .. }
                | PluginError::WallClockTimeout { .. }
                | PluginError::ShadowStackOverflow { .. }
                | PluginError::Discarded { .. }
        )
    }
}

/// Gets the `PluginError` out of a core `Fault`, if that is what it wraps.
pub fn plugin_error(fault: &evfold_core::Fault) -> Option<&PluginError> {
    fault.source_error().downcast_ref::<PluginError>()
}
