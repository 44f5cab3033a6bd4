//! The command line: every subcommand and its arguments (clap derive).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// evfold: a durable event-sourcing engine with sandboxed plugins.
///
/// Exit codes: 0 ok, 1 error, 2 usage, 3 corruption found, 4 store locked by another process,
/// 5 replay found divergences.
#[derive(Debug, Parser)]
#[command(name = "evfold", version, about, long_about)]
pub struct Cli {
    /// Store directory (default: ./evfold-data; `demo` defaults to ./evfold-demo).
    #[arg(long, short = 's', global = true, env = "EVFOLD_STORE")]
    pub store: Option<PathBuf>,
    /// Machine-readable JSON output on stdout.
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a bank scenario on an embedded store and print what happened.
    Demo(DemoArgs),
    /// Execute one JSON command against an aggregate instance.
    Exec(ExecArgs),
    /// Print the current state of an aggregate instance.
    State(StreamArgs),
    /// Print events: of one stream, or of the whole store in store-wide order.
    Events(EventsArgs),
    /// List streams.
    Streams(StreamsArgs),
    /// Show or rebuild a projection.
    #[command(subcommand)]
    Projection(ProjectionCommand),
    /// Check the CRC and structure of every log; exit 3 if anything is corrupt.
    Verify,
    /// Cut a stream's log at its first bad line (the cut bytes are backed up next to it).
    Repair(RepairArgs),
    /// Replay a store's history through another aggregate version and report divergences.
    Replay(ReplayArgs),
    /// Create, build and inspect plugins.
    #[command(subcommand)]
    Plugin(PluginCommand),
}

/// `demo` arguments.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Directory holding the example plugins (default: target/plugins next to the workspace).
    #[arg(long, env = "EVFOLD_PLUGIN_DIR")]
    pub plugin_dir: Option<PathBuf>,
    /// Use the native example code even if the plugins are there.
    #[arg(long)]
    pub native: bool,
}

/// Which code runs an aggregate: a native example (by type name) or a plugin file.
#[derive(Debug, Args, Clone)]
pub struct AggregateCode {
    /// Aggregate plugin (.wasm); without it, TYPE must be a native example
    /// (`bank-account`, `counter`).
    #[arg(long)]
    pub plugin: Option<PathBuf>,
}

/// One stream.
#[derive(Debug, Args)]
pub struct StreamArgs {
    /// Aggregate type, e.g. `bank-account`.
    pub aggregate_type: String,
    /// Instance id, e.g. `acc-1`.
    pub id: String,
    /// The aggregate's code.
    #[command(flatten)]
    pub code: AggregateCode,
}

/// `exec` arguments.
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// The stream.
    #[command(flatten)]
    pub stream: StreamArgs,
    /// The command as JSON: `{"type":"Deposit","data":{"amount":100}}`.
    pub command: String,
    /// Refuse unless the stream is at this version (optimistic concurrency).
    #[arg(long)]
    pub expected_version: Option<u64>,
    /// Recorded as the event's actor.
    #[arg(long)]
    pub actor: Option<String>,
    /// Recorded as the event's correlation id.
    #[arg(long)]
    pub correlation_id: Option<String>,
}

/// `events` arguments.
#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Aggregate type (with ID: one stream; alone: not allowed).
    #[arg(requires = "id")]
    pub aggregate_type: Option<String>,
    /// Instance id.
    pub id: Option<String>,
    /// Store-wide: start at this position; one stream: start after this version.
    #[arg(long, default_value_t = 0)]
    pub from: u64,
    /// Human-readable lines instead of JSONL.
    #[arg(long)]
    pub pretty: bool,
    /// Keep printing new events as they become durable (Ctrl-C to stop).
    #[arg(long)]
    pub follow: bool,
    /// With --follow: stop after this many events in total (for scripts and tests).
    #[arg(long, hide = true)]
    pub limit: Option<usize>,
}

/// `streams` arguments.
#[derive(Debug, Args)]
pub struct StreamsArgs {
    /// Only streams of this aggregate type.
    #[arg(long = "type")]
    pub aggregate_type: Option<String>,
}

/// `projection` subcommands.
#[derive(Debug, Subcommand)]
pub enum ProjectionCommand {
    /// The read model, caught up with every durable event.
    Show(ProjectionArgs),
    /// Forget the checkpoint and fold every event again.
    Rebuild(ProjectionArgs),
}

/// Which projection.
#[derive(Debug, Args)]
pub struct ProjectionArgs {
    /// Projection name: a native example (`balances`) or the name of the plugin given.
    pub name: Option<String>,
    /// Projection plugin (.wasm).
    #[arg(long)]
    pub plugin: Option<PathBuf>,
}

/// `repair` arguments.
#[derive(Debug, Args)]
pub struct RepairArgs {
    /// Aggregate type of the stream to repair (or `--all`).
    #[arg(required_unless_present = "all", requires = "id")]
    pub aggregate_type: Option<String>,
    /// Instance id.
    pub id: Option<String>,
    /// Repair every stream `verify` reports as damaged.
    #[arg(long, conflicts_with = "aggregate_type")]
    pub all: bool,
    /// Put the valid events found after the bad line back (same ids, new versions and
    /// positions) instead of cutting them; everything cut is still backed up.
    #[arg(long)]
    pub keep_valid: bool,
}

/// `replay` arguments.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The new aggregate version (.wasm plugin).
    #[arg(long)]
    pub candidate: PathBuf,
    /// The version that wrote the history: a plugin file (default: the native example of the
    /// candidate's aggregate type).
    #[arg(long)]
    pub baseline: Option<PathBuf>,
    /// Only this instance id.
    #[arg(long)]
    pub id: Option<String>,
}

/// `plugin` subcommands.
#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// What a plugin file is: kind, name, versions, ABI, command and event types.
    Info {
        /// The .wasm file.
        file: PathBuf,
    },
    /// Create a plugin crate: an aggregate with the one-line export, its own workspace, a native test.
    New {
        /// Crate name (also the directory created, unless --dir).
        name: String,
        /// Directory to create (default: ./NAME).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// evfold source checkout the crate depends on by path (default: $EVFOLD_SOURCE_DIR, else
        /// the checkout this binary was built from, else crates.io versions).
        #[arg(long, env = "EVFOLD_SOURCE_DIR")]
        evfold_path: Option<PathBuf>,
    },
    /// Build a plugin crate for wasm32-unknown-unknown through cargo and componentize it.
    Build {
        /// The plugin crate (default: the current directory).
        dir: Option<PathBuf>,
        /// Where to write the component (default: TARGET_DIR/evfold-plugins/NAME.wasm).
        #[arg(long, short = 'o')]
        out: Option<PathBuf>,
        /// Cargo target dir of the wasm build (default: cargo's, e.g. DIR/target).
        #[arg(long)]
        target_dir: Option<PathBuf>,
    },
    /// Turn a core wasm module (built for wasm32-unknown-unknown) into a plugin component.
    Componentize {
        /// The module.
        module: PathBuf,
        /// Where to write the component (default: MODULE with extension .component.wasm).
        #[arg(long, short = 'o')]
        out: Option<PathBuf>,
    },
}
