//! Stream-id validation: everything that could escape a directory or confuse a path is refused.

use crate::types::{InvalidName, StreamId, MAX_NAME_BYTES};

#[test]
fn accepts_path_safe_names() {
    for id in ["a", "acc-1", "A_b.c", "x".repeat(MAX_NAME_BYTES).as_str(), "..a", "a.."] {
        assert!(StreamId::new("bank-account", id).is_ok(), "{id:?} should be accepted");
    }
}

#[test]
fn refuses_unsafe_names() {
    let long = "x".repeat(MAX_NAME_BYTES + 1);
    type Check = fn(&InvalidName) -> bool;
    let cases: [(&str, Check); 9] = [
        ("", |e| matches!(e, InvalidName::Empty { .. })),
        (".", |e| matches!(e, InvalidName::DotName { .. })),
        ("..", |e| matches!(e, InvalidName::DotName { .. })),
        ("../x", |e| matches!(e, InvalidName::BadByte { byte: b'/', .. })),
        ("a/b", |e| matches!(e, InvalidName::BadByte { byte: b'/', index: 1, .. })),
        ("a\0b", |e| matches!(e, InvalidName::BadByte { byte: 0, .. })),
        ("a b", |e| matches!(e, InvalidName::BadByte { byte: b' ', .. })),
        ("é", |e| matches!(e, InvalidName::BadByte { .. })),
        (long.as_str(), |e| matches!(e, InvalidName::TooLong { len: 129, .. })),
    ];
    for (id, expected) in cases {
        let err = StreamId::new("t", id).expect_err(id);
        assert!(expected(&err), "{id:?} gave {err:?}");
        let err = StreamId::new(id, "i").expect_err(id);
        assert!(expected(&err), "type {id:?} gave {err:?}");
    }
}

#[test]
fn deserializing_validates_too() {
    let bad = serde_json::json!({"aggregate_type": "t", "instance_id": "../etc"});
    assert!(serde_json::from_value::<StreamId>(bad).is_err());
    let good = serde_json::json!({"aggregate_type": "t", "instance_id": "ok"});
    assert_eq!(serde_json::from_value::<StreamId>(good).unwrap(), StreamId::new("t", "ok").unwrap());
}
