//! Checks JSON text a plugin returns: size, nesting depth, then parses it.

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

#[cfg(test)]
mod tests {
    use super::*;

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
