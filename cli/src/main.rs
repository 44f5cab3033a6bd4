//! `evfold`: the command-line tool for evfold stores — run the demo, execute commands, inspect
//! state, events, streams and projections, verify and repair logs, replay history through
//! another plugin version, and inspect plugins.
//!
//! Exit codes: 0 ok, 1 error, 2 usage, 3 corruption found, 4 store locked by another process,
//! 5 replay found divergences.

mod args;
mod cmd;
mod domain;
mod exit;
mod output;
mod store;

use std::process::ExitCode;

use clap::Parser;

use args::{Cli, Command};
use output::Out;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let out = Out::new(cli.json);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => return exit::report(&out, &anyhow::Error::from(e)),
    };
    match runtime.block_on(run(cli, &out)) {
        Ok(code) => code,
        Err(error) => exit::report(&out, &error),
    }
}

async fn run(cli: Cli, out: &Out) -> anyhow::Result<ExitCode> {
    let store = cli.store.clone();
    match cli.command {
        Command::Demo(a) => cmd::demo::run(store, a, out).await,
        Command::Exec(a) => cmd::exec::exec(&store::dir(store)?, a, out).await,
        Command::State(a) => cmd::exec::state(&store::dir(store)?, a, out).await,
        Command::Events(a) => cmd::events::events(&store::dir(store)?, a, out).await,
        Command::Streams(a) => cmd::events::streams(&store::dir(store)?, a, out).await,
        Command::Projection(a) => cmd::projection::run(&store::dir(store)?, a, out).await,
        Command::Verify => cmd::verify::verify(&store::dir(store)?, out),
        Command::Repair(a) => cmd::verify::repair(&store::dir(store)?, a, out),
        Command::Replay(a) => cmd::replay::run(&store::dir(store)?, a, out).await,
        Command::Plugin(a) => cmd::plugin::run(a, out),
    }
}
