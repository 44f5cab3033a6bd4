//! `exec` (run one JSON command, given inline, as `@FILE` or on stdin) and `state` (fold and print
//! an instance's state). After a command the store's process managers catch up (see
//! [`crate::cmd::pm`]), so a `TransferOut` is delivered before `exec` exits.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use evfold_core::{AggregateFactory, CommandContext, ExpectedVersion, Payload};
use evfold_native::{ExecuteError, JsonExecuteError};
use serde_json::{json, Value};

use crate::args::{ExecArgs, StreamArgs};
use crate::cmd::pm;
use crate::exit::CliError;
use crate::output::Out;
use crate::{domain, exit, input, store};

/// Parses `{"type": "...", "data": ...}` (data optional) into a command payload.
pub fn parse_command(text: &str) -> Result<Payload> {
    let value: Value =
        serde_json::from_str(text.trim()).with_context(|| format!("command is not JSON: {}", abbreviate(text)))?;
    command_of(&value)
}

/// The command payload of a decoded JSON value.
pub fn command_of(value: &Value) -> Result<Payload> {
    let Some(type_name) = value.get("type").and_then(Value::as_str) else {
        bail!("command must be an object with a \"type\" string, e.g. {{\"type\":\"Deposit\",\"data\":{{\"amount\":100}}}}");
    };
    Ok(Payload::new(type_name, value.get("data").cloned().unwrap_or(Value::Null)))
}

fn abbreviate(text: &str) -> String {
    let text = text.trim();
    match text.char_indices().nth(200) {
        Some((cut, _)) => format!("{}… ({} bytes)", &text[..cut], text.len()),
        None => text.to_owned(),
    }
}

/// The factory for each of `types`: a plugin of that type among `plugins`, else the native example.
pub fn factories(types: &[String], plugins: &[std::path::PathBuf]) -> Result<Vec<Arc<dyn AggregateFactory>>> {
    let loaded = plugins.iter().map(|p| domain::plugin_aggregate(p)).collect::<Result<Vec<_>>>()?;
    let mut chosen: Vec<Arc<dyn AggregateFactory>> = Vec::new();
    for t in types {
        if chosen.iter().any(|f| f.aggregate_type() == t) {
            continue;
        }
        match loaded.iter().find(|f| f.aggregate_type() == t) {
            Some(factory) => chosen.push(factory.clone()),
            None if plugins.len() == 1 && types.len() == 1 => {
                bail!(
                    "plugin {} implements aggregate type {:?}, not {t:?}",
                    plugins[0].display(),
                    loaded[0].aggregate_type()
                )
            }
            None => chosen.push(domain::aggregate(t, None, "--plugin")?),
        }
    }
    Ok(chosen)
}

/// The context of a command run from the command line.
pub fn context(actor: Option<String>, correlation_id: Option<String>) -> CommandContext {
    CommandContext { actor, correlation_id, ..CommandContext::default() }
}

/// `evfold exec TYPE ID COMMAND`.
pub async fn exec(dir: &Path, args: ExecArgs, out: &Out) -> Result<ExitCode> {
    let (Some(aggregate_type), Some(id), Some(command)) = (&args.aggregate_type, &args.id, &args.command) else {
        bail!("exec needs TYPE ID COMMAND, or --batch FILE");
    };
    let factories = factories(std::slice::from_ref(aggregate_type), &args.plugin)?;
    let command = parse_command(&input::command_text(command)?)?;
    let store = pm::open_with_managers(dir, factories, std::slice::from_ref(aggregate_type)).await?;
    let context = context(args.actor.clone(), args.correlation_id.clone());
    let expected = args.expected_version.map_or(ExpectedVersion::Any, ExpectedVersion::Exact);
    let result = store.execute_json(aggregate_type, id, command.clone(), context, expected).await;
    let stream = format!("{aggregate_type}/{id}");
    let code = match result {
        Ok(committed) => {
            out.emit(
                || format!("ok: {} event(s), {stream} now at version {}", committed.n_events, committed.version),
                || json!({ "accepted": true, "version": committed.version, "events": committed.n_events, "positions": committed.positions }),
            );
            ExitCode::SUCCESS
        }
        Err(ExecuteError::Rejected(rejection)) => {
            out.emit(
                || format!("rejected: {} ({})", rejection.message, command.type_name),
                || json!({ "accepted": false, "rejected": rejection.message }),
            );
            ExitCode::from(exit::ERROR)
        }
        Err(error) => {
            store.close().await;
            return Err(failure(dir, &stream, error));
        }
    };
    let managers = pm::catch_up(&store, out).await;
    store.close().await;
    managers?;
    Ok(code)
}

/// An execute error as the CLI reports it: a conflict names the stream and versions (exit 6);
/// an untyped storage failure is checked against the store's logs (corrupt: exit 3).
pub fn failure(dir: &Path, stream: &str, error: JsonExecuteError) -> anyhow::Error {
    match error {
        ExecuteError::WrongExpectedVersion { expected: ExpectedVersion::Exact(expected), actual } => {
            CliError::Conflict { stream: stream.to_owned(), expected, actual }.into()
        }
        ExecuteError::Store(e) => {
            store::explain_failure(dir, anyhow::Error::new(e)).context(format!("executing the command on {stream}"))
        }
        e @ (ExecuteError::Storage(_) | ExecuteError::Unavailable(_)) => {
            store::explain_failure(dir, anyhow::anyhow!("{e}")).context(format!("executing the command on {stream}"))
        }
        e => anyhow::anyhow!("command on {stream} failed: {e}"),
    }
}

/// `evfold state TYPE ID`: folds the stream read-only (works while another process writes).
pub async fn state(dir: &Path, args: StreamArgs, out: &Out) -> Result<ExitCode> {
    let factory = domain::aggregate(&args.aggregate_type, args.code.plugin.as_deref(), "--plugin")?;
    let store = store::open_reader(dir, vec![factory]).await?;
    let (version, state) = store.state_json(&args.aggregate_type, &args.id).await.context("reading the state")?;
    out.emit(
        || format!("{}/{} @ version {version}\n{}", args.aggregate_type, args.id, pretty(&state)),
        || json!({ "stream": format!("{}/{}", args.aggregate_type, args.id), "version": version, "state": state }),
    );
    Ok(ExitCode::SUCCESS)
}

/// Pretty JSON.
pub fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
}
