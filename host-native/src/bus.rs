//! `CommandBus`: routes commands to aggregates by aggregate type and command type. Unlike the
//! peer crate (one route per Rust command type, last registration silently wins), two
//! aggregates may share a command type: the bus reports the ambiguity and `dispatch_to` names
//! the target.

use std::any::TypeId;
use std::collections::{BTreeMap, HashMap};

use evfold_core::{to_payload, Aggregate, CommandContext, Committed, ExpectedVersion, Payload};
use serde::Serialize;

use crate::error::JsonExecuteError;
use crate::store::AggregateStore;

/// Why the bus did not deliver a command.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// No registered aggregate takes this command type.
    #[error("no aggregate takes command {0}")]
    UnknownCommand(String),
    /// Several registered aggregates take it: use `dispatch_to`.
    #[error("command {command} is taken by several aggregates ({aggregate_types:?}); use dispatch_to")]
    Ambiguous {
        /// The command type.
        command: String,
        /// The aggregates taking it.
        aggregate_types: Vec<String>,
    },
    /// The named aggregate does not take this command type.
    #[error("aggregate {aggregate_type} does not take command {command}")]
    NotRouted {
        /// The aggregate.
        aggregate_type: String,
        /// The command type.
        command: String,
    },
    /// The command was delivered and failed.
    #[error(transparent)]
    Execute(#[from] JsonExecuteError),
}

/// Routes commands by (aggregate type, command type).
#[derive(Clone)]
pub struct CommandBus {
    store: AggregateStore,
    typed: HashMap<TypeId, Vec<&'static str>>,
    named: BTreeMap<String, Vec<String>>,
}

impl CommandBus {
    /// A bus over `store` with no routes.
    pub fn new(store: AggregateStore) -> Self {
        CommandBus { store, typed: HashMap::new(), named: BTreeMap::new() }
    }

    /// Routes `A::Command` to aggregate `A`.
    pub fn register<A: Aggregate>(mut self) -> Self {
        let routes = self.typed.entry(TypeId::of::<A::Command>()).or_default();
        if !routes.contains(&A::AGGREGATE_TYPE) {
            routes.push(A::AGGREGATE_TYPE);
        }
        self.store.register_typed::<A>();
        self
    }

    /// Routes JSON commands named `command_types` (payload `type`) to `aggregate_type`
    /// (plugins, CLI).
    pub fn register_json(mut self, aggregate_type: &str, command_types: &[&str]) -> Self {
        for name in command_types {
            let routes = self.named.entry((*name).to_owned()).or_default();
            if !routes.iter().any(|t| t == aggregate_type) {
                routes.push(aggregate_type.to_owned());
            }
        }
        self
    }

    /// Sends a typed command to the one aggregate registered for its type.
    pub async fn dispatch<C: Serialize + 'static>(
        &self,
        id: &str,
        command: &C,
        context: CommandContext,
    ) -> Result<Committed, BusError> {
        let name = std::any::type_name::<C>();
        let routes = self.typed.get(&TypeId::of::<C>()).ok_or_else(|| BusError::UnknownCommand(name.into()))?;
        let aggregate_type = single(name, routes.iter().map(|s| (*s).to_owned()).collect())?;
        self.send(&aggregate_type, id, to_payload_for_bus(command)?, context).await
    }

    /// Sends a typed command to a named aggregate type (for shared command types).
    pub async fn dispatch_to<C: Serialize + 'static>(
        &self,
        aggregate_type: &str,
        id: &str,
        command: &C,
        context: CommandContext,
    ) -> Result<Committed, BusError> {
        let name = std::any::type_name::<C>();
        let routed = self.typed.get(&TypeId::of::<C>()).is_some_and(|r| r.contains(&aggregate_type));
        if !routed {
            return Err(BusError::NotRouted { aggregate_type: aggregate_type.into(), command: name.into() });
        }
        self.send(aggregate_type, id, to_payload_for_bus(command)?, context).await
    }

    /// Sends a JSON command by its payload type name (routes from `register_json`); with
    /// `aggregate_type`, to that aggregate (required when the name is shared).
    pub async fn dispatch_json(
        &self,
        aggregate_type: Option<&str>,
        id: &str,
        command: Payload,
        context: CommandContext,
    ) -> Result<Committed, BusError> {
        let name = command.type_name.clone();
        let routes = self.named.get(&name).cloned().unwrap_or_default();
        let target = match aggregate_type {
            Some(t) if routes.iter().any(|r| r == t) => t.to_owned(),
            Some(t) => return Err(BusError::NotRouted { aggregate_type: t.into(), command: name }),
            None => single(&name, routes)?,
        };
        self.send(&target, id, command, context).await
    }

    async fn send(
        &self,
        aggregate_type: &str,
        id: &str,
        command: Payload,
        context: CommandContext,
    ) -> Result<Committed, BusError> {
        Ok(self.store.execute_json(aggregate_type, id, command, context, ExpectedVersion::Any).await?)
    }
}

fn single(command: &str, routes: Vec<String>) -> Result<String, BusError> {
    match routes.len() {
        0 => Err(BusError::UnknownCommand(command.into())),
        1 => Ok(routes.into_iter().next().expect("one route")),
        _ => Err(BusError::Ambiguous { command: command.into(), aggregate_types: routes }),
    }
}

fn to_payload_for_bus<C: Serialize>(command: &C) -> Result<Payload, BusError> {
    to_payload(command).map_err(|f| BusError::Execute(crate::error::ExecuteError::Fault(f)))
}
