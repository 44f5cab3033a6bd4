//! `exec --batch FILE.jsonl`: many commands in one writing open. One line is
//! `{"type":"bank-account","id":"acc-1","command":{"type":"Deposit","data":{"amount":5}}}` with
//! optional `"expected_version"`, `"actor"` and `"correlation_id"`; blank lines are skipped.
//!
//! The whole file is parsed first: a malformed line fails the batch before anything is written.
//! Then commands go to the store in windows, each window's commands sent in file order before
//! any reply is awaited, so the commands of one stream are decided in file order and share
//! appends and fsyncs (group commit). Every line is reported (`line N: ...`, or one JSON object
//! per line); a rejected or conflicting command does not stop the batch. Exit code: 0 if every
//! command was accepted, else the code of the first line that was not (1 rejected, 6 conflict,
//! 3 corruption, 1 other).

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::process::ExitCode;
use std::task::Poll;

use anyhow::{Context, Result};
use evfold_core::{ExpectedVersion, Payload};
use evfold_native::ExecuteError;
use serde_json::{json, Value};

use crate::args::ExecArgs;
use crate::cmd::exec::{self, failure};
use crate::cmd::pm;
use crate::exit::{self, CliError};
use crate::input;
use crate::output::Out;

/// Commands in flight at once.
const WINDOW: usize = 512;

/// One parsed line.
struct Line {
    number: usize,
    aggregate_type: String,
    id: String,
    command: Payload,
    expected: ExpectedVersion,
    actor: Option<String>,
    correlation_id: Option<String>,
}

fn parse_line(number: usize, text: &str) -> Result<Line> {
    let bad = |why: String| CliError::Input(format!("line {number}: {why}"));
    let value: Value = serde_json::from_str(text).map_err(|e| bad(format!("not JSON: {e}")))?;
    let field = |name: &str| value.get(name).and_then(Value::as_str).map(str::to_owned);
    let aggregate_type = field("type").ok_or_else(|| bad("needs a \"type\" string (the aggregate type)".into()))?;
    let id = field("id").ok_or_else(|| bad("needs an \"id\" string (the instance id)".into()))?;
    let command = value.get("command").ok_or_else(|| bad("needs a \"command\" object".into()))?;
    let command = exec::command_of(command).map_err(|e| bad(e.to_string()))?;
    let expected = match value.get("expected_version") {
        None | Some(Value::Null) => ExpectedVersion::Any,
        Some(v) => {
            ExpectedVersion::Exact(v.as_u64().ok_or_else(|| bad("\"expected_version\" must be a number".into()))?)
        }
    };
    Ok(Line {
        number,
        aggregate_type,
        id,
        command,
        expected,
        actor: field("actor"),
        correlation_id: field("correlation_id"),
    })
}

/// Polls every future in index order on each wake, so each one's first poll (which sends its
/// command) happens in order; resolves to their outputs in the same order.
pub async fn join_in_order<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut pending: Vec<Option<Pin<Box<F>>>> = futures.into_iter().map(|f| Some(Box::pin(f))).collect();
    let mut outputs: Vec<Option<F::Output>> = pending.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut done = true;
        for (slot, output) in pending.iter_mut().zip(outputs.iter_mut()) {
            if let Some(future) = slot {
                match future.as_mut().poll(cx) {
                    Poll::Ready(value) => {
                        *output = Some(value);
                        *slot = None;
                    }
                    Poll::Pending => done = false,
                }
            }
        }
        if done {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}

/// `evfold exec --batch FILE`.
pub async fn run(dir: &Path, args: ExecArgs, out: &Out) -> Result<ExitCode> {
    let source = args.batch.clone().unwrap_or_default();
    let (reader, _) = input::lines(&source)?;
    let mut lines = Vec::new();
    for (index, text) in std::io::BufRead::lines(reader).enumerate() {
        let text = text.with_context(|| format!("reading {source}"))?;
        if !text.trim().is_empty() {
            lines.push(parse_line(index + 1, &text)?);
        }
    }
    let mut types: Vec<String> = lines.iter().map(|l| l.aggregate_type.clone()).collect();
    types.sort();
    types.dedup();
    let factories = exec::factories(&types, &args.plugin)?;
    let store = pm::open_with_managers(dir, factories, &types).await?;
    let bar = out.bar(lines.len() as u64, "executing");
    let (mut accepted, mut first_failure) = (0usize, None::<u8>);
    for window in lines.chunks(WINDOW) {
        let futures = window.iter().map(|line| {
            let context = exec::context(
                line.actor.clone().or_else(|| args.actor.clone()),
                line.correlation_id.clone().or_else(|| args.correlation_id.clone()),
            );
            store.execute_json(&line.aggregate_type, &line.id, line.command.clone(), context, line.expected)
        });
        let results = join_in_order(futures.collect()).await;
        for (line, result) in window.iter().zip(results) {
            let stream = format!("{}/{}", line.aggregate_type, line.id);
            let (text, value, code) = match result {
                Ok(c) => (
                    format!("ok: {} event(s), {stream} now at version {}", c.n_events, c.version),
                    json!({ "accepted": true, "version": c.version, "events": c.n_events, "positions": c.positions }),
                    exit::OK,
                ),
                Err(ExecuteError::Rejected(r)) => (
                    format!("rejected: {} ({} on {stream})", r.message, line.command.type_name),
                    json!({ "accepted": false, "rejected": r.message }),
                    exit::ERROR,
                ),
                Err(e) => {
                    let error = failure(dir, &stream, e);
                    let message = exit::messages(&error).join(": ");
                    (
                        format!("failed: {message}"),
                        json!({ "accepted": false, "error": message }),
                        exit::code_of(&error),
                    )
                }
            };
            if code == exit::OK {
                accepted += 1;
            } else {
                first_failure.get_or_insert(code);
            }
            bar.suspend(|| {
                out.emit(
                    || format!("line {}: {text}", line.number),
                    || {
                        let mut value = value;
                        value["line"] = json!(line.number);
                        value["stream"] = json!(stream);
                        value
                    },
                )
            });
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    let managers = pm::catch_up(&store, out).await;
    store.close().await;
    managers?;
    out.note(&format!("{} command(s): {accepted} accepted, {} not", lines.len(), lines.len() - accepted));
    Ok(ExitCode::from(first_failure.unwrap_or(exit::OK)))
}
