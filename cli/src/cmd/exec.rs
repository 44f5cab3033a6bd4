//! `exec` (run one JSON command) and `state` (fold and print an instance's state).

use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use evfold_core::{CommandContext, ExpectedVersion, Payload};
use evfold_native::ExecuteError;
use serde_json::{json, Value};

use crate::args::{ExecArgs, StreamArgs};
use crate::output::Out;
use crate::store::{self, Code};
use crate::{domain, exit};

/// Parses `{"type": "...", "data": ...}` (data optional) into a command payload.
pub fn parse_command(text: &str) -> Result<Payload> {
    let value: Value = serde_json::from_str(text).with_context(|| format!("command is not JSON: {text}"))?;
    let Some(type_name) = value.get("type").and_then(Value::as_str) else {
        bail!("command must be an object with a \"type\" string, e.g. {{\"type\":\"Deposit\",\"data\":{{\"amount\":100}}}}");
    };
    Ok(Payload::new(type_name, value.get("data").cloned().unwrap_or(Value::Null)))
}

/// `evfold exec TYPE ID COMMAND`.
pub async fn exec(dir: &Path, args: ExecArgs, out: &Out) -> Result<ExitCode> {
    let stream = &args.stream;
    let factory = domain::aggregate(&stream.aggregate_type, stream.code.plugin.as_deref())?;
    let command = parse_command(&args.command)?;
    let store = store::open_writer(dir, Code { factories: vec![factory], ..Code::default() }, true).await?;
    let context = CommandContext {
        actor: args.actor.clone(),
        correlation_id: args.correlation_id.clone(),
        ..CommandContext::default()
    };
    let expected = args.expected_version.map_or(ExpectedVersion::Any, ExpectedVersion::Exact);
    let result = store.execute_json(&stream.aggregate_type, &stream.id, command.clone(), context, expected).await;
    let code = match result {
        Ok(committed) => {
            out.emit(
                || format!("ok: {} event(s), {}/{} now at version {}", committed.n_events, stream.aggregate_type, stream.id, committed.version),
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
        Err(ExecuteError::Store(e)) => {
            store.close().await;
            return Err(e).context("executing the command");
        }
        Err(e) => {
            store.close().await;
            bail!("command failed: {e}");
        }
    };
    store.close().await;
    Ok(code)
}

/// `evfold state TYPE ID`: folds the stream read-only (works while another process writes).
pub async fn state(dir: &Path, args: StreamArgs, out: &Out) -> Result<ExitCode> {
    let factory = domain::aggregate(&args.aggregate_type, args.code.plugin.as_deref())?;
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
