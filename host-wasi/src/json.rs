//! The JSON text that crosses the plugin boundary: writes commands and event batches in the
//! tagged JSONL form of the ABI (`{"type":..,"data":..}` per line), and checks what a plugin
//! returns (nesting depth, syntax, shape) before it becomes a value.

use evfold_core::{Payload, StoredEvent};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Why plugin output was refused (before it becomes a `PluginError`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum JsonProblem {
    /// Nested deeper than the cap.
    TooDeep {
        /// The cap.
        limit: usize,
    },
    /// Not JSON.
    Invalid(String),
}

impl std::fmt::Display for JsonProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JsonProblem::TooDeep { limit } => write!(f, "JSON nested deeper than {limit} levels"),
            JsonProblem::Invalid(message) => write!(f, "invalid JSON: {message}"),
        }
    }
}

/// The deepest `[`/`{` nesting of `text`, ignoring brackets inside strings; stops counting as
/// soon as `limit` is exceeded. Linear time, no allocation.
fn exceeds_depth(text: &str, limit: usize) -> bool {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for byte in text.bytes() {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// Parses plugin output after checking its nesting depth.
pub(crate) fn parse_checked(text: &str, depth_limit: usize) -> Result<Value, JsonProblem> {
    if exceeds_depth(text, depth_limit) {
        return Err(JsonProblem::TooDeep { limit: depth_limit });
    }
    serde_json::from_str(text).map_err(|e| JsonProblem::Invalid(e.to_string()))
}

/// A payload as the ABI writes it: `data` omitted for variants without data.
#[derive(Serialize)]
struct TaggedRef<'a> {
    #[serde(rename = "type")]
    type_name: &'a str,
    #[serde(skip_serializing_if = "Value::is_null")]
    data: &'a Value,
}

/// A payload as a plugin returns it; any other key is refused.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Tagged {
    #[serde(rename = "type")]
    type_name: String,
    #[serde(default)]
    data: Value,
}

/// Appends `payload` as one tagged JSON object (no newline).
pub(crate) fn write_tagged(out: &mut Vec<u8>, payload: &Payload) {
    let tagged = TaggedRef { type_name: &payload.type_name, data: &payload.data };
    serde_json::to_writer(out, &tagged).expect("a JSON value always serializes");
}

/// Writes `events` into `out` (cleared first) as tagged JSONL and returns it as text.
pub(crate) fn payload_lines<'a>(out: &'a mut Vec<u8>, events: &[Payload]) -> &'a str {
    let tagged = events.iter().map(|e| TaggedRef { type_name: &e.type_name, data: &e.data });
    json_lines(out, tagged)
}

/// Writes stored events into `out` (cleared first) as JSONL, one serialized `StoredEvent` per line.
pub(crate) fn stored_lines<'a>(out: &'a mut Vec<u8>, events: &[StoredEvent]) -> &'a str {
    json_lines(out, events)
}

/// Writes `items` into `out` (cleared first), one JSON value per line, and returns it as text.
fn json_lines<T: Serialize>(out: &mut Vec<u8>, items: impl IntoIterator<Item = T>) -> &str {
    out.clear();
    for item in items {
        serde_json::to_writer(&mut *out, &item).expect("events always serialize");
        out.push(b'\n');
    }
    std::str::from_utf8(out).expect("serde_json writes UTF-8")
}

/// Parses the tagged JSONL a plugin's `decide` returned, after checking its nesting depth.
pub(crate) fn parse_payload_lines(text: &str, depth_limit: usize) -> Result<Vec<Payload>, JsonProblem> {
    if exceeds_depth(text, depth_limit) {
        return Err(JsonProblem::TooDeep { limit: depth_limit });
    }
    serde_json::Deserializer::from_str(text)
        .into_iter::<Tagged>()
        .enumerate()
        .map(|(index, event)| {
            let Tagged { type_name, data } =
                event.map_err(|e| JsonProblem::Invalid(format!("event {index} of the batch: {e}")))?;
            Ok(Payload { type_name, data })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn payloads_are_written_as_tagged_lines_and_read_back() {
        let events = [Payload::new("Deposited", json!({"amount": 5})), Payload::new("Closed", Value::Null)];
        let mut buffer = Vec::new();
        let text = payload_lines(&mut buffer, &events).to_owned();
        assert_eq!(text, "{\"type\":\"Deposited\",\"data\":{\"amount\":5}}\n{\"type\":\"Closed\"}\n");
        assert_eq!(parse_payload_lines(&text, 8).unwrap(), events);
        assert_eq!(payload_lines(&mut buffer, &[]), "");
        assert_eq!(parse_payload_lines("", 8).unwrap(), []);
    }

    #[test]
    fn returned_lines_with_extra_keys_bad_syntax_or_depth_are_refused() {
        let extra = parse_payload_lines(r#"{"type":"A","data":1,"sneaky":2}"#, 8).unwrap_err();
        assert!(matches!(&extra, JsonProblem::Invalid(m) if m.contains("event 0") && m.contains("sneaky")), "{extra}");
        let second = parse_payload_lines("{\"type\":\"A\"}\n{not json\n", 8).unwrap_err();
        assert!(matches!(&second, JsonProblem::Invalid(m) if m.starts_with("event 1")), "{second}");
        assert!(parse_payload_lines(r#"{"data":1}"#, 8).is_err());
        let deep = format!("{{\"type\":\"A\",\"data\":{}1{}}}", "[".repeat(20), "]".repeat(20));
        assert_eq!(parse_payload_lines(&deep, 8), Err(JsonProblem::TooDeep { limit: 8 }));
    }

    #[test]
    fn depth_counts_only_structure_outside_strings() {
        assert!(!exceeds_depth(r#"{"a":[1,{"b":"[[[[[["}]}"#, 3));
        assert!(exceeds_depth(r#"{"a":[1,{"b":[[]]}]}"#, 4));
        assert!(!exceeds_depth(r#"{"a":[1,{"b":[[]]}]}"#, 5));
        assert!(!exceeds_depth(r#""\"[[[[""#, 1));
    }

    #[test]
    fn parse_checked_refuses_deep_and_invalid_text() {
        assert_eq!(parse_checked(r#"{"amount":5}"#, 4).unwrap()["amount"], 5);
        assert_eq!(parse_checked(&"[".repeat(100), 10), Err(JsonProblem::TooDeep { limit: 10 }));
        assert!(matches!(parse_checked("{not json", 10), Err(JsonProblem::Invalid(_))));
    }
}
