//! Fuzzes the plugin output decoder of `evfold-wasi` (`json::parse_checked`: depth pre-check,
//! then serde_json). The module is `pub(crate)`, so this target compiles the very same source
//! file. Property: it never panics, and it accepts exactly the valid JSON whose nesting is
//! within the limit.
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
});
