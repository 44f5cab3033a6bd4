//! Fuzzes the plugin output decoders of `evfold-wasi` (`json::parse_checked`: depth pre-check,
//! then serde_json; `json::parse_payload_lines`: the tagged JSONL events `decide` returns). The
//! module is `pub(crate)`, so this target compiles the very same source file. Properties: they
//! never panic, `parse_checked` accepts exactly the valid JSON whose nesting is within the limit,
//! and every event `parse_payload_lines` accepts is within the limit too.
#![no_main]
#![allow(dead_code)]

#[path = "../../host-wasi/src/json.rs"]
mod json;

use evfold_core::codec::json_depth;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let Some((&first, rest)) = input.split_first() else { return };
    let Ok(text) = std::str::from_utf8(rest) else { return };
    let limit = usize::from(first % 64) + 1;
    let checked = json::parse_checked(text, limit);
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(value) if json_depth(&value) <= limit => assert_eq!(checked.ok(), Some(value)),
        Ok(_) => assert_eq!(checked, Err(json::JsonProblem::TooDeep { limit })),
        Err(_) => assert!(checked.is_err()),
    }
    if let Ok(events) = json::parse_payload_lines(text, limit) {
        // The event object itself is one level.
        assert!(events.iter().all(|e| json_depth(&e.data) < limit));
    }
});
