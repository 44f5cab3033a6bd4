//! The `hostile` test plugin: a counter that misbehaves on command, written against the raw WIT
//! bindings (not the SDK) so it can break every rule the SDK would enforce. Commands:
//! `Increment` (healthy), `Loop` (infinite loop), `Bomb` (allocates without end), `Recurse`
//! (unbounded recursion), `Panic`, `Huge` (an event of 20 MiB), `BadJson` (event data that is not
//! JSON), `Deep` (event data nested 100,000 levels), `Undeclared` (an event type the metadata
//! does not declare), `Chatty` (logs 4 MiB), `BadErrorData` (a rejection whose error data is not
//! JSON).

#![allow(unsafe_code, missing_docs)]

use std::cell::Cell;
use std::hint::black_box;

wit_bindgen::generate!({
    path: "../../wit",
    world: "evfold:plugin/aggregate-plugin@0.3.0",
});

use evfold::plugin::host::{log, Level};
use exports::evfold::plugin::aggregate::{AggregateInfo, Decision, Guest, Rejection};

thread_local! {
    static VALUE: Cell<u64> = const { Cell::new(0) };
}

struct Hostile;

/// One event line of raw text: `data` is pasted in unchecked (that is the point).
fn event(type_name: &str, data: String) -> Result<Decision, String> {
    let mut line = String::with_capacity(data.len() + type_name.len() + 24);
    for part in ["{\"type\":\"", type_name, "\",\"data\":", &data, "}\n"] {
        line.push_str(part);
    }
    Ok(Decision::Accepted(line))
}

/// The `type` of a tagged JSON object.
fn type_of(text: &str) -> Result<String, String> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    value["type"].as_str().map(str::to_owned).ok_or_else(|| format!("no type in {text}"))
}

/// A JSON string literal of `len` bytes plus quotes, filled in bulk (cheap in fuel, so the
/// host's output cap is what stops it).
fn huge_string(len: usize) -> String {
    let mut bytes = vec![b'x'; len + 2];
    bytes[0] = b'"';
    bytes[len + 1] = b'"';
    // SAFETY: every byte is ASCII.
    unsafe { String::from_utf8_unchecked(bytes) }
}

fn spin() -> ! {
    let mut x = 1u64;
    loop {
        x = black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
    }
}

fn bomb() -> ! {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        // Reserve without touching: costs little fuel, so the memory cap is what stops it.
        hoard.push(black_box(Vec::with_capacity(1 << 20)));
        black_box(&hoard);
    }
}

/// Recursion that only uses wasm locals (no frame data in the shadow stack in linear memory),
/// so it exhausts the engine's wasm stack: the host must report a stack overflow.
#[allow(unconditional_recursion)]
fn recurse(depth: u64) -> u64 {
    black_box(recurse(black_box(depth + 1))) + 1
}

impl Guest for Hostile {
    fn metadata() -> AggregateInfo {
        AggregateInfo {
            name: "hostile".into(),
            plugin_version: env!("CARGO_PKG_VERSION").into(),
            sdk_version: "none".into(),
            aggregate_type: "hostile".into(),
            event_types: vec!["Incremented".into()],
            command_types: [
                "Increment",
                "Loop",
                "Bomb",
                "Recurse",
                "Panic",
                "Huge",
                "BadJson",
                "Deep",
                "Undeclared",
                "Chatty",
                "BadErrorData",
            ]
            .map(String::from)
            .to_vec(),
        }
    }

    fn decide(command: String, _context: String) -> Result<Decision, String> {
        match type_of(&command)?.as_str() {
            "Increment" => event("Incremented", "null".into()),
            "Loop" => spin(),
            "Bomb" => bomb(),
            "Recurse" => Ok(Decision::Rejected(Rejection { message: recurse(0).to_string(), error: None })),
            "Panic" => {
                // Reports the message like the SDK's hook does, so the host can name it.
                std::panic::set_hook(Box::new(|info| log(Level::Error, &format!("panicked: {info}"))));
                panic!("hostile plugin panics on purpose")
            }
            "Huge" => event("Incremented", huge_string(20 << 20)),
            "BadJson" => event("Incremented", "{not json".into()),
            "Deep" => event("Incremented", format!("{}{}", "[".repeat(100_000), "]".repeat(100_000))),
            "Undeclared" => event("Surprise", "null".into()),
            "Chatty" => {
                let line = "y".repeat(1024);
                for _ in 0..4096 {
                    log(Level::Info, &line);
                }
                event("Incremented", "null".into())
            }
            "BadErrorData" => {
                Ok(Decision::Rejected(Rejection { message: "refused".into(), error: Some("{not json".into()) }))
            }
            other => Err(format!("unknown command {other}")),
        }
    }

    fn fold(events: String) -> Result<(), String> {
        for line in events.lines().filter(|line| !line.trim().is_empty()) {
            match type_of(line)?.as_str() {
                "Incremented" => VALUE.with(|v| v.set(v.get() + 1)),
                other => return Err(format!("unknown event {other}")),
            }
        }
        Ok(())
    }

    fn snapshot() -> Result<String, String> {
        Ok(format!("{{\"value\":{}}}", VALUE.with(Cell::get)))
    }

    fn restore(state: String) -> Result<(), String> {
        let value: serde_json::Value = serde_json::from_str(&state).map_err(|e| e.to_string())?;
        VALUE.with(|v| v.set(value["value"].as_u64().unwrap_or(0)));
        Ok(())
    }

    fn reset() {
        VALUE.with(|v| v.set(0));
    }
}

export!(Hostile);
