//! Fuzzes stream-id validation (`StreamId::new` and its serde form): an accepted id is always
//! path-safe (and not a device name Windows reserves), and accepted ids round-trip through JSON.
#![no_main]

use evfold_core::{StreamId, MAX_NAME_BYTES};
use libfuzzer_sys::fuzz_target;

fn path_safe(part: &str) -> bool {
    !part.is_empty()
        && part.len() <= MAX_NAME_BYTES
        && part != "."
        && part != ".."
        && part.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && !windows_device(part)
}

/// An independent statement of Windows' rule: the name before its first dot, upper-cased, is a
/// device name.
fn windows_device(part: &str) -> bool {
    let stem = part.split('.').next().unwrap_or_default().to_ascii_uppercase();
    let numbered = |prefix: &str| {
        stem.strip_prefix(prefix).is_some_and(|rest| rest.len() == 1 && rest.as_bytes()[0].is_ascii_digit())
    };
    ["CON", "PRN", "AUX", "NUL"].contains(&stem.as_str()) || numbered("COM") || numbered("LPT")
}

fuzz_target!(|data: &[u8]| {
    // As raw JSON: whatever deserializes must be valid.
    if let Ok(id) = serde_json::from_slice::<StreamId>(data) {
        assert!(path_safe(id.aggregate_type()) && path_safe(id.instance_id()));
    }
    // As two strings split at the first 0xff byte.
    let text = String::from_utf8_lossy(data);
    let (a, b) = text.split_once('\u{fffd}').unwrap_or((&text, "x"));
    let accepted = StreamId::new(a, b);
    assert_eq!(accepted.is_ok(), path_safe(a) && path_safe(b), "validation disagrees for {a:?}/{b:?}");
    if let Ok(id) = accepted {
        assert_eq!(id.to_string(), format!("{a}/{b}"));
        let json = serde_json::to_vec(&id).expect("serializes");
        let back: StreamId = serde_json::from_slice(&json).expect("round-trips");
        assert_eq!(back, id);
    }
});
