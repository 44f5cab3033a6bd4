//! The `legacy-counter` test plugin: `evfold_core::examples::Counter` written by hand against
//! the frozen `evfold:plugin@0.2.0` ABI (`plugins/wit-0.2.0/`), as a plugin built before 0.3.0
//! is. The host must still load it and serve it like the native counter (same events, same
//! snapshots; its refusals carry a message only, as 0.2.0 rejections always did).

#![allow(unsafe_code, missing_docs)]

use std::cell::Cell;

wit_bindgen::generate!({
    path: "../../wit-0.2.0",
    world: "evfold:plugin/aggregate-plugin@0.2.0",
});

use exports::evfold::plugin::aggregate::{AggregateInfo, Decision, Guest};

thread_local! {
    static VALUE: Cell<u64> = const { Cell::new(0) };
}

struct LegacyCounter;

/// The `type` of a tagged JSON object.
fn type_of(text: &str) -> Result<String, String> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    value["type"].as_str().map(str::to_owned).ok_or_else(|| format!("no type in {text}"))
}

fn event(type_name: &str) -> Decision {
    Decision::Accepted(format!("{{\"type\":\"{type_name}\"}}\n"))
}

impl Guest for LegacyCounter {
    fn metadata() -> AggregateInfo {
        AggregateInfo {
            name: "legacy-counter".into(),
            plugin_version: env!("CARGO_PKG_VERSION").into(),
            sdk_version: "none".into(),
            aggregate_type: "counter".into(),
            event_types: ["Incremented", "Decremented", "WasReset"].map(String::from).to_vec(),
            command_types: ["Increment", "Decrement", "Reset"].map(String::from).to_vec(),
        }
    }

    fn decide(command: String) -> Result<Decision, String> {
        let value = VALUE.with(Cell::get);
        Ok(match type_of(&command)?.as_str() {
            "Increment" => event("Incremented"),
            "Decrement" if value == 0 => Decision::Rejected("counter is already at zero".into()),
            "Decrement" => event("Decremented"),
            "Reset" if value == 0 => Decision::Accepted(String::new()),
            "Reset" => event("WasReset"),
            other => return Err(format!("unknown command {other}")),
        })
    }

    fn fold(events: String) -> Result<(), String> {
        for line in events.lines().filter(|line| !line.trim().is_empty()) {
            let next = match (type_of(line)?.as_str(), VALUE.with(Cell::get)) {
                ("Incremented", value) => value + 1,
                ("Decremented", value) => value.saturating_sub(1),
                ("WasReset", _) => 0,
                (other, _) => return Err(format!("unknown event {other}")),
            };
            VALUE.with(|v| v.set(next));
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

export!(LegacyCounter);
