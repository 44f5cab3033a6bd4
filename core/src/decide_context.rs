//! What domain code may read, besides its state, when it decides a command: the
//! [`DecideContext`] (stream id, stream version, the machine's `now`, the command's context), and
//! the helpers that carry a typed domain error across the JSON boundary as data
//! ([`error_to_data`], [`error_from_data`]).
//!
//! The aggregate machine builds the context from its own inputs only (the stream it owns, its
//! version, the `now` it was given, the command's context), so a journal replay decides with the
//! very same context, and a WASM plugin receives it as JSON and reads back an equal value.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::codec::MAX_JSON_DEPTH;
use crate::depth::to_value_within;
use crate::types::{CommandContext, StreamId, Timestamp};

/// The read-only, deterministic context a command is decided in (see
/// [`crate::Aggregate::handle_with`]). Equal on native code and in a plugin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecideContext {
    /// The stream the command is addressed to (aggregate type + instance id).
    pub stream: StreamId,
    /// The stream version the command is decided against: the events of commands decided
    /// earlier in the same group commit included.
    pub version: u64,
    /// The machine's `now` (what the host's clock said when the command was handled): the `ts`
    /// the events of this command get. Never read a clock in domain code; read this.
    pub now: Timestamp,
    /// Who and why: the context the caller sent with the command (actor, correlation id, ...),
    /// which also becomes the events' `meta`.
    pub command_context: CommandContext,
}

impl DecideContext {
    /// The context of a command to `stream` at version 0, `now` 0, without caller context: for
    /// driving a [`crate::DynAggregate`] by hand (tests, benchmarks). Set the fields to vary it.
    pub fn new(stream: StreamId) -> Self {
        DecideContext { stream, version: 0, now: Timestamp(0), command_context: CommandContext::default() }
    }

    /// The stream's instance id (e.g. the SKU of an inventory stream).
    pub fn instance_id(&self) -> &str {
        self.stream.instance_id()
    }

    /// The command's actor, if the caller named one.
    pub fn actor(&self) -> Option<&str> {
        self.command_context.actor.as_deref()
    }

    /// The command's correlation id, if any.
    pub fn correlation_id(&self) -> Option<&str> {
        self.command_context.correlation_id.as_deref()
    }
}

/// A domain error as JSON data, for [`crate::Aggregate::error_to_data`]: an aggregate whose error
/// type is serde-serializable enables typed errors across the plugin boundary with
/// `fn error_to_data(e: &Self::Error) -> Option<Value> { evfold_core::error_to_data(e) }`.
/// `None` when the error does not serialize or nests deeper than a log line may.
pub fn error_to_data<E: Serialize>(error: &E) -> Option<Value> {
    to_value_within(error, MAX_JSON_DEPTH).ok()
}

/// The domain error back from [`error_to_data`]'s JSON, for
/// [`crate::Aggregate::error_from_data`]: `None` when the data is not an `E`.
pub fn error_from_data<E: DeserializeOwned>(data: &Value) -> Option<E> {
    E::deserialize(data).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::examples::BankError;

    #[test]
    fn the_context_crosses_json_unchanged() {
        let context = DecideContext {
            stream: StreamId::new("inventory", "sku-1").unwrap(),
            version: 7,
            now: Timestamp(1_790_000_000_000),
            command_context: CommandContext::default().with_actor("alice").with_correlation_id("c-1"),
        };
        let json = serde_json::to_string(&context).unwrap();
        assert_eq!(serde_json::from_str::<DecideContext>(&json).unwrap(), context);
        assert_eq!(
            (context.instance_id(), context.actor(), context.correlation_id()),
            ("sku-1", Some("alice"), Some("c-1"))
        );
    }

    #[test]
    fn a_serde_error_round_trips_as_data() {
        let error = BankError::InsufficientFunds { balance: 3, requested: 5 };
        let data = error_to_data(&error).unwrap();
        assert_eq!(error_from_data::<BankError>(&data), Some(error));
        assert_eq!(error_from_data::<BankError>(&serde_json::json!({"Nope": 1})), None);
    }
}
