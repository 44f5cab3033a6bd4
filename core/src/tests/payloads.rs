//! Typed enums <-> payloads: `to_payload` / `from_payload` agree with serde's own tagged form.

use proptest::prelude::*;
use serde_json::{json, Value};

use crate::examples::{BankCommand, BankEvent, CounterEvent};
use crate::{from_payload, to_payload, Payload};

/// The tagged JSON object serde itself would read `payload` from.
fn tagged_object(payload: &Payload) -> Value {
    let mut object = json!({ "type": payload.type_name });
    if !payload.data.is_null() {
        object["data"] = payload.data.clone();
    }
    object
}

#[test]
fn unit_and_data_variants_round_trip() {
    for event in [CounterEvent::Incremented, CounterEvent::WasReset] {
        let payload = to_payload(&event).unwrap();
        assert_eq!(payload.data, Value::Null);
        assert_eq!(from_payload::<CounterEvent>(&payload).unwrap(), event);
    }
    let command = BankCommand::TransferOut { to: "acc-2".into(), amount: 7 };
    assert_eq!(from_payload::<BankCommand>(&to_payload(&command).unwrap()).unwrap(), command);
}

#[test]
fn bad_payloads_are_refused_with_the_type_named() {
    let unknown = from_payload::<BankEvent>(&Payload::new("Vanished", json!({}))).unwrap_err();
    assert!(unknown.to_string().contains("Vanished"), "{unknown}");
    assert!(from_payload::<BankEvent>(&Payload::new("Deposited", Value::Null)).is_err());
    assert!(from_payload::<BankEvent>(&Payload::new("Deposited", json!({"amount": "ten"}))).is_err());
    assert!(from_payload::<BankEvent>(&Payload::new("Deposited", json!([1]))).is_err());
}

proptest! {
    /// Reading a payload in place gives exactly what serde gives for the whole tagged object.
    #[test]
    fn in_place_reading_matches_serde(amount in any::<u64>(), owner in ".{0,12}", pick in 0..4u8) {
        let event = match pick {
            0 => BankEvent::Opened { owner },
            1 => BankEvent::Deposited { amount },
            2 => BankEvent::Withdrew { amount },
            _ => BankEvent::TransferredOut { to: owner, amount },
        };
        let payload = to_payload(&event).unwrap();
        let via_serde: BankEvent = serde_json::from_value(tagged_object(&payload)).unwrap();
        prop_assert_eq!(from_payload::<BankEvent>(&payload).unwrap(), via_serde);
    }
}
