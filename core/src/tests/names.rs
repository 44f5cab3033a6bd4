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

#[test]
fn refuses_device_names_reserved_on_windows() {
    let reserved = [
        "CON",
        "con",
        "Con",
        "NUL",
        "nul",
        "PRN",
        "AUX",
        "aux.txt",
        "con.",
        "con..",
        "NUL.tar.gz",
        "COM0",
        "COM1",
        "com9",
        "LPT1",
        "lpt9.log",
        "Lpt5.",
    ];
    for id in reserved {
        let err = StreamId::new("t", id).expect_err(id);
        assert!(matches!(&err, InvalidName::ReservedOnWindows { value, .. } if value == id), "{id:?} gave {err:?}");
        assert!(err.to_string().contains("reserved on Windows"), "{err}");
        assert!(StreamId::new(id, "i").is_err(), "type {id:?}");
    }
    for id in ["CONS", "co", "xcon", "con-1", "COM", "COM10", "LPT", "nul_", ".con", "a.con", "console"] {
        assert!(StreamId::new("t", id).is_ok(), "{id:?} is not reserved");
    }
}
