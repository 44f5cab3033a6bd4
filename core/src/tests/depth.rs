//! Property tests of the depth limits (`crate::depth`): on random JSON shapes (arrays and
//! objects mixed, deep spines with side branches that may be deeper than the spine below them),
//! the iterative depth check agrees with the depth the shape was built with, the refusal is the
//! typed `TooDeep`, the bounded serializer accepts exactly what the check accepts, and a refused
//! value of any depth is taken apart without recursion. Every value is built and dropped
//! iteratively, so a failure is an assertion, never a stack overflow of the test thread.

use proptest::prelude::*;
use serde_json::{json, Map, Value};

use crate::depth::{self, dismantle, exceeds, to_value_within, MAX_JSON_DEPTH};
use crate::domain::PayloadError;
use crate::types::{Metadata, Payload};

/// One level of a spine: the container kind and an optional side branch of that many levels.
#[derive(Debug, Clone)]
struct Level {
    object: bool,
    side: Option<usize>,
}

fn level() -> impl Strategy<Value = Level> {
    (any::<bool>(), prop::option::weighted(0.05, 1..400usize)).prop_map(|(object, side)| Level { object, side })
}

/// A chain of `depth` single-element arrays around a scalar (depth 0 is the scalar).
fn chain(depth: usize) -> Value {
    (0..depth).fold(json!(7), |inner, _| Value::Array(vec![inner]))
}

/// Builds the spine bottom-up (iteratively) and returns it with its true depth: the spine's
/// length, or deeper where a side branch at level `i` (0 = outermost) reaches `i + 1 + side`.
fn build(levels: &[Level]) -> (Value, usize) {
    let mut value = json!("leaf");
    for level in levels.iter().rev() {
        let side = level.side.map(chain).unwrap_or(json!(1));
        value = if level.object {
            let mut map = Map::new();
            map.insert("spine".into(), value);
            map.insert("side".into(), side);
            Value::Object(map)
        } else {
            Value::Array(vec![side, value])
        };
    }
    let sides = levels.iter().enumerate().filter_map(|(i, l)| l.side.map(|s| i + 1 + s));
    let depth = sides.chain(std::iter::once(levels.len())).max().unwrap_or(0);
    (value, depth)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 192, ..ProptestConfig::default() })]

    #[test]
    fn the_check_agrees_with_the_depth_the_shape_was_built_with(
        levels in prop::collection::vec(level(), 0..3_000),
        limit in 0..3_500usize,
    ) {
        let (value, depth) = build(&levels);
        prop_assert_eq!(exceeds(&value, limit), depth > limit, "depth {} limit {}", depth, limit);
        prop_assert!(!exceeds(&value, depth));
        if depth > 0 {
            prop_assert!(exceeds(&value, depth - 1));
        }
        dismantle(value);
    }

    #[test]
    fn the_bounded_serializer_accepts_exactly_what_the_check_accepts(
        levels in prop::collection::vec(level(), 0..600),
        limit in 0..700usize,
    ) {
        let (value, depth) = build(&levels);
        match to_value_within(&value, limit) {
            Ok(copy) => {
                prop_assert!(depth <= limit, "depth {} serialized under limit {}", depth, limit);
                prop_assert!(copy == value, "the bounded serializer changed the value");
                dismantle(copy);
            }
            Err(depth::Unserializable::TooDeep) => prop_assert!(depth > limit, "depth {} refused at {}", depth, limit),
            Err(depth::Unserializable::Serde(e)) => prop_assert!(false, "serde refused: {}", e),
        }
        dismantle(value);
    }

    #[test]
    fn admit_refuses_deep_data_or_metadata_typed_and_passes_the_rest_unchanged(
        levels in prop::collection::vec(level(), 0..2_000),
        in_metadata in any::<bool>(),
    ) {
        let (value, depth) = build(&levels);
        let (data, meta) = if in_metadata {
            (json!({"amount": 1}), Metadata::default().with_extra("trace", value))
        } else {
            (value, Metadata::default())
        };
        let expected = if in_metadata { "metadata \"trace\"" } else { "Put data" };
        match depth::admit(Payload::new("Put", data), meta) {
            Ok((payload, meta)) => {
                prop_assert!(depth <= MAX_JSON_DEPTH, "depth {} admitted", depth);
                dismantle(payload.data);
                depth::dismantle_metadata(meta);
            }
            Err(PayloadError::TooDeep { what, limit }) => {
                prop_assert!(depth > MAX_JSON_DEPTH, "depth {} refused", depth);
                prop_assert_eq!(limit, MAX_JSON_DEPTH);
                prop_assert_eq!(what, expected);
            }
            Err(other) => prop_assert!(false, "not TooDeep: {}", other),
        }
    }
}

#[test]
fn two_hundred_thousand_levels_are_measured_refused_and_taken_apart_in_constant_stack() {
    let value = chain(200_000);
    assert!(exceeds(&value, MAX_JSON_DEPTH));
    assert!(!exceeds(&value, 200_000));
    assert!(matches!(to_value_within(&value, MAX_JSON_DEPTH), Err(depth::Unserializable::TooDeep)));
    let refused = depth::admit(Payload::new("Put", value), Metadata::default());
    assert!(matches!(refused, Err(PayloadError::TooDeep { .. })));
}
