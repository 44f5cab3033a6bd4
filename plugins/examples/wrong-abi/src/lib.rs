//! The `wrong-abi` test plugin: a trivial aggregate built against `evfold:plugin@0.1.0` (a frozen
//! copy of that older ABI in `wit/`), a version the host no longer supports. The host must refuse
//! it at load with an ABI error.

#![allow(unsafe_code, missing_docs)]

wit_bindgen::generate!({
    path: "wit",
    world: "evfold:plugin/aggregate-plugin@0.1.0",
});

use exports::evfold::plugin::aggregate::{AggregateInfo, Decision, Guest, Payload};

struct WrongAbi;

impl Guest for WrongAbi {
    fn metadata() -> AggregateInfo {
        AggregateInfo {
            name: "wrong-abi".into(),
            plugin_version: env!("CARGO_PKG_VERSION").into(),
            sdk_version: "none".into(),
            aggregate_type: "wrong-abi".into(),
            event_types: vec![],
            command_types: vec![],
        }
    }
    fn decide(_command: Payload) -> Result<Decision, String> {
        Ok(Decision::Accepted(vec![]))
    }
    fn fold(_events: Vec<Payload>) -> Result<(), String> {
        Ok(())
    }
    fn snapshot() -> Result<String, String> {
        Ok("{}".into())
    }
    fn restore(_state: String) -> Result<(), String> {
        Ok(())
    }
    fn reset() {}
}

export!(WrongAbi);
