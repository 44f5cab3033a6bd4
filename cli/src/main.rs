//! `evfold`: the command-line tool for evfold stores — run the demo, execute commands (one, from
//! a file or stdin, or a JSONL batch), inspect state, events, streams, stats and projections,
//! export and import events, run process managers, verify and repair logs, replay history
//! through another plugin version, and inspect plugins.
//!
//! Exit codes: see [`exit`] (0 ok, 1 error, 2 usage, 3 corruption found, 4 store locked,
//! 5 replay found divergences, 6 expected-version conflict).

mod args;
mod cmd;
mod domain;
mod exit;
mod input;
mod output;
mod store;

use std::process::ExitCode;

use clap::{CommandFactory, Parser};

use args::{Cli, Command};
use output::Out;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let out = Out::new(cli.json, cli.quiet);
    init_logging(&cli);
    store::set_wait(cli.wait);
    domain::set_cache(cli.plugin_cache.clone(), cli.no_plugin_cache);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => return exit::report(&out, &anyhow::Error::from(e)),
    };
    match runtime.block_on(run(cli, &out)) {
        Ok(code) => code,
        Err(error) => exit::report(&out, &error),
    }
}

/// Log output on stderr: warnings by default, more with `-v`, only errors with `-q`; `RUST_LOG`
/// (an env-filter directive) overrides both. Plugin log lines use the target `evfold_plugin`.
fn init_logging(cli: &Cli) {
    let level = match (cli.quiet, cli.verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, 2) => "debug",
        _ => "trace",
    };
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|directive| tracing_subscriber::EnvFilter::try_new(directive).ok())
        .unwrap_or_else(|| tracing_subscriber::EnvFilter::new(level));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(true).try_init();
}

async fn run(cli: Cli, out: &Out) -> anyhow::Result<ExitCode> {
    let store = cli.store.clone();
    match cli.command {
        Command::Demo(a) => cmd::demo::run(store, a, out).await,
        Command::Exec(a) if a.batch.is_some() => cmd::batch::run(&store::dir(store)?, a, out).await,
        Command::Exec(a) => cmd::exec::exec(&store::dir(store)?, a, out).await,
        Command::State(a) => cmd::exec::state(&store::dir(store)?, a, out).await,
        Command::Events(a) => cmd::events::events(&store::dir(store)?, a, out).await,
        Command::Streams(a) => cmd::events::streams(&store::dir(store)?, a, out).await,
        Command::Stats => cmd::stats::run(&store::dir(store)?, out).await,
        Command::Export(a) => cmd::transfer::export(&store::dir(store)?, a, out).await,
        Command::Import(args::ImportArgs { from: Some(args::ImportFrom::EventfoldEs(a)), .. }) => {
            cmd::migrate::run(store, a, out).await
        }
        Command::Import(a) => cmd::transfer::import(&store::dir(store)?, a, out).await,
        Command::Projection(a) => cmd::projection::run(&store::dir(store)?, a, out).await,
        Command::Pm(a) => cmd::pm::run(&store::dir(store)?, a, out).await,
        Command::Verify => cmd::verify::verify(&store::dir(store)?, out),
        Command::Repair(a) => cmd::verify::repair(&store::dir(store)?, a, out),
        Command::Replay(a) => cmd::replay::run(&store::dir(store)?, a, out).await,
        Command::Plugin(a) => cmd::plugin::run(a, out),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "evfold", &mut std::io::stdout());
            Ok(ExitCode::from(exit::OK))
        }
    }
}
