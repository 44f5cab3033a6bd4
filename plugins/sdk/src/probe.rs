//! Lists the variant names of a serde-derived enum (the event and command types a plugin
//! declares) without an instance: deserializing `{"type": <probe>}` makes serde's derived code
//! report `unknown_variant(probe, VARIANTS)`, and a custom error type keeps `VARIANTS`.

use std::fmt;

use serde::de::value::MapDeserializer;
use serde::de::{self, DeserializeOwned};

/// Error type that remembers the expected variant list serde reports.
#[derive(Debug)]
struct Probe(Option<&'static [&'static str]>);

impl fmt::Display for Probe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "variant probe: {:?}", self.0)
    }
}

impl std::error::Error for Probe {}

impl de::Error for Probe {
    fn custom<T: fmt::Display>(_msg: T) -> Self {
        Probe(None)
    }
    fn unknown_variant(_variant: &str, expected: &'static [&'static str]) -> Self {
        Probe(Some(expected))
    }
}

/// A tag no real variant has.
const PROBE_TAG: &str = "\u{0}evfold-variant-probe";

/// The variant names of an adjacently tagged (`#[serde(tag = "type", content = "data")]`)
/// serde-derived enum, in declaration order; empty if the type does not report them.
pub fn variant_names<T: DeserializeOwned>() -> Vec<String> {
    let entries = [("type", PROBE_TAG)];
    let map = MapDeserializer::<_, Probe>::new(entries.into_iter());
    match T::deserialize(map) {
        Err(Probe(Some(names))) => names.iter().map(|name| (*name).to_owned()).collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use evfold_core::examples::{BankCommand, BankEvent, CounterEvent};

    use super::variant_names;

    #[test]
    fn lists_the_variants_of_the_example_enums() {
        assert_eq!(variant_names::<BankEvent>(), ["Opened", "Deposited", "Withdrew", "TransferredOut"]);
        assert_eq!(variant_names::<BankCommand>(), ["Open", "Deposit", "Withdraw", "TransferOut"]);
        assert_eq!(variant_names::<CounterEvent>(), ["Incremented", "Decremented", "WasReset"]);
    }

    #[test]
    fn a_non_enum_reports_nothing() {
        assert!(variant_names::<u64>().is_empty());
        assert!(variant_names::<String>().is_empty());
    }
}
