//! The command line: every subcommand and its arguments (clap derive).

use std::path::PathBuf;

use clap::{ArgAction, Args, Parser, Subcommand};

/// Examples printed at the end of `evfold --help`.
const EXAMPLES: &str = "\
Examples:
  evfold demo                                           bank scenario in ./evfold-demo
  evfold -s evfold-demo events --pretty                 what the demo wrote
  evfold exec bank-account acc-1 '{\"type\":\"Open\",\"data\":{\"owner\":\"Ada\"}}'
  evfold exec bank-account acc-1 @deposit.json          the command from a file (- reads stdin)
  evfold --wait exec --batch commands.jsonl             many commands, one open, group-committed
  evfold export > all.jsonl && evfold -s copy import all.jsonl
  evfold import eventfold-es ./old --into evfold-data   migrate an eventfold-es store
  evfold -s evfold-demo replay --candidate target/plugins/bank-account-fees.wasm

Exit codes: 0 ok (also when stdout is closed early, as in `| head`), 1 error (rejected command,
missing store, bad plugin), 2 usage, 3 corruption found, 4 store locked by another process,
5 replay found divergences, 6 expected-version conflict.";

/// Examples printed at the end of `evfold exec --help`.
const EXEC_EXAMPLES: &str = "\
Examples:
  evfold exec bank-account acc-1 '{\"type\":\"Deposit\",\"data\":{\"amount\":100}}'
  evfold exec bank-account acc-1 @big-command.json
  echo '{\"type\":\"Increment\"}' | evfold exec counter c1 -
  evfold exec --batch commands.jsonl        one line: {\"type\":\"counter\",\"id\":\"c1\",\"command\":{\"type\":\"Increment\"}}

Native commands: bank-account: Open{owner}, Deposit{amount}, Withdraw{amount},
TransferOut{to,amount}; counter: Increment, Decrement. A plugin's: `evfold plugin info F`.";

/// evfold: a durable event-sourcing engine with sandboxed plugins.
#[derive(Debug, Parser)]
#[command(name = "evfold", version, about, after_help = EXAMPLES)]
pub struct Cli {
    /// Store directory (default: evfold-data; `demo` defaults to evfold-demo).
    #[arg(long, short = 's', global = true, env = "EVFOLD_STORE")]
    pub store: Option<PathBuf>,
    /// Machine-readable JSON on stdout (errors as one JSON object on stderr).
    #[arg(long, global = true)]
    pub json: bool,
    /// Writers: wait up to SECS (default 60) for another writer's lock instead of exiting 4.
    #[arg(long, global = true, value_name = "SECS", num_args = 0..=1, require_equals = true, default_missing_value = "60")]
    pub wait: Option<f64>,
    /// More log output on stderr (-v info, -vv debug, -vvv trace; RUST_LOG overrides).
    #[arg(long, short = 'v', global = true, action = ArgAction::Count)]
    pub verbose: u8,
    /// Only errors on stderr: no progress bars, notes or warnings.
    #[arg(long, short = 'q', global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Compiled-plugin cache (default: $XDG_CACHE_HOME/evfold/plugins or ~/.cache/evfold/plugins).
    #[arg(long, global = true, value_name = "DIR", env = "EVFOLD_PLUGIN_CACHE")]
    pub plugin_cache: Option<PathBuf>,
    /// Compile plugins on every run instead of caching them.
    #[arg(long, global = true, conflicts_with = "plugin_cache")]
    pub no_plugin_cache: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a bank scenario on an embedded store and print what happened.
    Demo(DemoArgs),
    /// Execute a JSON command against an aggregate instance (or a JSONL batch of them).
    #[command(after_help = EXEC_EXAMPLES)]
    Exec(ExecArgs),
    /// Print the current state of an aggregate instance.
    State(StreamArgs),
    /// Print events: of one stream, or of the whole store in store-wide order.
    Events(EventsArgs),
    /// List streams.
    Streams(StreamsArgs),
    /// Counts: events, streams and bytes per aggregate type, events per event type, positions.
    Stats,
    /// Write every event as JSONL (the `events --json` shape) to stdout.
    Export(ExportArgs),
    /// Append the events of an `export`, or import an eventfold-es store (`import eventfold-es DIR`).
    Import(ImportArgs),
    /// Show or rebuild a projection.
    #[command(subcommand)]
    Projection(ProjectionCommand),
    /// Run process managers, or show their position, pending events and dead letters.
    #[command(subcommand)]
    Pm(PmCommand),
    /// Check the CRC and structure of every log; exit 3 if anything is corrupt.
    Verify,
    /// Cut a stream's log at its first bad line (the cut bytes are backed up next to it).
    Repair(RepairArgs),
    /// Replay a store's history through another aggregate version and report divergences.
    Replay(ReplayArgs),
    /// Create, build and inspect plugins.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// `demo` arguments.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Directory holding bank-account.wasm and balances.wasm (default: the first of
    /// ./target/plugins, then plugins/ or target/plugins in up to 3 parents of the binary's
    /// directory; if none has them, the native examples run, with a note).
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
    /// Aggregate type, e.g. `bank-account`.
    #[arg(required_unless_present = "batch")]
    pub aggregate_type: Option<String>,
    /// Instance id, e.g. `acc-1`.
    #[arg(required_unless_present = "batch")]
    pub id: Option<String>,
    /// The command as JSON (`{"type":"Deposit","data":{"amount":100}}`), `@FILE` to read it
    /// from a file, or `-` for stdin.
    #[arg(required_unless_present = "batch")]
    pub command: Option<String>,
    /// Run every command of a JSONL file (`-`: stdin) in one open; see `exec --help`.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["aggregate_type", "expected_version"])]
    pub batch: Option<String>,
    /// Aggregate plugin (.wasm), repeatable with --batch; without it, the type must be a native
    /// example (`bank-account`, `counter`).
    #[arg(long)]
    pub plugin: Vec<PathBuf>,
    /// Refuse unless the stream is at this version (optimistic concurrency; exit 6 if not).
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
    /// Store-wide: start at this position (inclusive); one stream: start after this version
    /// (exclusive), so `--from 3` prints versions 4 and later.
    #[arg(long, default_value_t = 0)]
    pub from: u64,
    /// Human-readable lines instead of JSONL.
    #[arg(long)]
    pub pretty: bool,
    /// Keep printing new events as they become durable (Ctrl-C to stop).
    #[arg(long)]
    pub follow: bool,
    /// Stop after this many events in total.
    #[arg(long, short = 'n')]
    pub limit: Option<usize>,
}

/// `streams` arguments.
#[derive(Debug, Args)]
pub struct StreamsArgs {
    /// Only streams of this aggregate type.
    #[arg(long = "type")]
    pub aggregate_type: Option<String>,
}

/// `export` arguments.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Start at this store-wide position (inclusive).
    #[arg(long, default_value_t = 0)]
    pub from: u64,
}

/// `import` arguments: an export file, or `eventfold-es DIR` (a file literally named
/// `eventfold-es` is `./eventfold-es`).
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct ImportArgs {
    /// Another store to import instead of an export file.
    #[command(subcommand)]
    pub from: Option<ImportFrom>,
    /// The JSONL file written by `export` (or `events --json`); `-` reads stdin.
    #[arg(required = true)]
    pub file: Option<String>,
    /// Aggregate plugin (.wasm) for types that are not native examples; repeatable.
    #[arg(long)]
    pub plugin: Vec<PathBuf>,
}

/// What `import` reads instead of an export file.
#[derive(Debug, Subcommand)]
pub enum ImportFrom {
    /// Import an eventfold-es 0.2 store: every event with its stream, order, id, timestamp and
    /// metadata; then check the result as `verify` does (see docs/migrating.md).
    #[command(name = "eventfold-es")]
    EventfoldEs(PeerImportArgs),
}

/// `import eventfold-es` arguments.
#[derive(Debug, Args)]
pub struct PeerImportArgs {
    /// The eventfold-es store (the directory holding streams/).
    pub dir: PathBuf,
    /// The evfold store to import into (default: --store, else evfold-data); created if missing.
    #[arg(long, value_name = "STORE")]
    pub into: Option<PathBuf>,
    /// Allow a target that already holds other events (the import is added after them).
    #[arg(long)]
    pub append: bool,
    /// Import at most N new events, then stop; the same command again continues.
    #[arg(long, value_name = "N")]
    pub limit: Option<u64>,
    /// Aggregate plugin (.wasm) for types that are not native examples; repeatable.
    #[arg(long)]
    pub plugin: Vec<PathBuf>,
}

/// `projection` subcommands.
#[derive(Debug, Subcommand)]
pub enum ProjectionCommand {
    /// The read model, caught up with every durable event (read-only: the checkpoint is read,
    /// never written).
    Show(ProjectionArgs),
    /// Forget the checkpoint and fold every event again (takes the store's lock).
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

/// `pm` subcommands (process managers; the CLI knows the native `transfers`).
#[derive(Debug, Subcommand)]
pub enum PmCommand {
    /// Let the process managers catch up and dispatch their commands (takes the lock).
    Run,
    /// Checkpoint position, events not yet handled, and dead letters (read-only).
    Show {
        /// Process-manager name (default: every one the store has).
        name: Option<String>,
    },
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
