//! Export glue for aggregates: runs a typed `evfold_core::Aggregate` behind the WIT `aggregate`
//! interface. One component instance holds one aggregate state.

use std::any::Any;
use std::cell::RefCell;
use std::marker::PhantomData;

use evfold_core::{to_payload, Aggregate};

use crate::bindings::aggregate::exports::evfold::plugin::aggregate::{AggregateInfo, Decision, Guest, Payload};
use crate::host::install_panic_hook;
use crate::probe::variant_names;

/// Ties a typed aggregate to the plugin crate's name and version; `export_aggregate!` implements
/// it for you.
pub trait AggregatePlugin: 'static {
    /// The typed aggregate this plugin runs.
    type Aggregate: Aggregate;
    /// Plugin (crate) name.
    const NAME: &'static str;
    /// Plugin (crate) version.
    const VERSION: &'static str;
}

/// The WIT export implementation for plugin `P`; used by `export_aggregate!`.
pub struct AggregateExport<P>(PhantomData<P>);

thread_local! {
    /// The state of the single aggregate this instance holds (type-erased: statics can't be generic).
    static STATE: RefCell<Option<Box<dyn Any>>> = const { RefCell::new(None) };
}

/// Runs `f` on the aggregate state, creating the default state on first use.
fn with_state<A: Aggregate, R>(f: impl FnOnce(&mut A) -> R) -> R {
    STATE.with(|cell| {
        let mut slot = cell.borrow_mut();
        let state = slot.get_or_insert_with(|| Box::new(A::default()));
        match state.downcast_mut::<A>() {
            Some(state) => f(state),
            None => panic!("evfold-plugin-sdk: one aggregate type per plugin"),
        }
    })
}

/// Parses a payload (type name + JSON data text) as the adjacently tagged typed enum `T`.
pub(crate) fn parse_tagged<T: serde::de::DeserializeOwned>(type_name: &str, data: &str) -> Result<T, String> {
    let tag = serde_json::to_string(type_name).map_err(|e| e.to_string())?;
    let text = if data.trim() == "null" {
        format!("{{\"type\":{tag}}}")
    } else {
        format!("{{\"type\":{tag},\"data\":{data}}}")
    };
    serde_json::from_str(&text).map_err(|e| format!("{type_name}: {e}"))
}

/// Serializes a typed command or event as a WIT payload, exactly as the native adapter does.
fn to_wit_payload<T: serde::Serialize>(value: &T) -> Result<Payload, String> {
    let payload = to_payload(value).map_err(|e| e.to_string())?;
    let data = serde_json::to_string(&payload.data).map_err(|e| e.to_string())?;
    Ok(Payload { type_name: payload.type_name, data })
}

impl<P: AggregatePlugin> Guest for AggregateExport<P> {
    fn metadata() -> AggregateInfo {
        install_panic_hook();
        AggregateInfo {
            name: P::NAME.to_owned(),
            plugin_version: P::VERSION.to_owned(),
            sdk_version: crate::SDK_VERSION.to_owned(),
            aggregate_type: <P::Aggregate as Aggregate>::AGGREGATE_TYPE.to_owned(),
            event_types: variant_names::<<P::Aggregate as Aggregate>::Event>(),
            command_types: variant_names::<<P::Aggregate as Aggregate>::Command>(),
        }
    }

    fn decide(command: Payload) -> Result<Decision, String> {
        install_panic_hook();
        let command = parse_tagged(&command.type_name, &command.data)?;
        match with_state::<P::Aggregate, _>(|state| state.handle(command)) {
            Ok(events) => Ok(Decision::Accepted(events.iter().map(to_wit_payload).collect::<Result<_, _>>()?)),
            Err(error) => Ok(Decision::Rejected(error.to_string())),
        }
    }

    fn fold(events: Vec<Payload>) -> Result<(), String> {
        install_panic_hook();
        with_state::<P::Aggregate, _>(|state| {
            for payload in &events {
                let event = parse_tagged(&payload.type_name, &payload.data)?;
                *state = std::mem::take(state).apply(&event);
            }
            Ok(())
        })
    }

    fn snapshot() -> Result<String, String> {
        install_panic_hook();
        with_state::<P::Aggregate, _>(|state| serde_json::to_string(state).map_err(|e| e.to_string()))
    }

    fn restore(state: String) -> Result<(), String> {
        install_panic_hook();
        let restored: P::Aggregate = serde_json::from_str(&state).map_err(|e| format!("snapshot: {e}"))?;
        with_state::<P::Aggregate, _>(|current| *current = restored);
        Ok(())
    }

    fn reset() {
        install_panic_hook();
        with_state::<P::Aggregate, _>(|state| *state = P::Aggregate::default());
    }
}

#[cfg(test)]
mod tests {
    use evfold_core::examples::{BankEvent, CounterEvent};

    use super::{parse_tagged, to_wit_payload};

    #[test]
    fn payloads_round_trip_through_the_tagged_text_form() {
        let event = BankEvent::Deposited { amount: 42 };
        let payload = to_wit_payload(&event).unwrap();
        assert_eq!((payload.type_name.as_str(), payload.data.as_str()), ("Deposited", r#"{"amount":42}"#));
        assert_eq!(parse_tagged::<BankEvent>(&payload.type_name, &payload.data).unwrap(), event);
    }

    #[test]
    fn unit_variants_carry_null_data() {
        let payload = to_wit_payload(&CounterEvent::Incremented).unwrap();
        assert_eq!(payload.data, "null");
        assert_eq!(parse_tagged::<CounterEvent>("Incremented", "null").unwrap(), CounterEvent::Incremented);
    }

    #[test]
    fn a_hostile_type_name_cannot_inject_json() {
        assert!(parse_tagged::<CounterEvent>("Incremented\",\"x\":\"", "null").is_err());
    }
}
