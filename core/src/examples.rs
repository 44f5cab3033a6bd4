//! Reference domain models used by the docs, the tests, the demo and the example plugins: the same
//! code runs natively and, built by `plugins/examples/*`, as a sandboxed WASM plugin.

pub mod evolution;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use serde_json::Value;

use crate::decide_context::{error_from_data, error_to_data, DecideContext};
use crate::domain::{Aggregate, CommandEnvelope, ProcessManager, Projection};
use crate::types::{CommandContext, StoredEvent, Timestamp};

/// A counter that can be incremented, decremented (not below zero) and reset.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counter {
    /// Current value.
    pub value: u64,
}

/// Counter commands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum CounterCommand {
    /// Add one.
    Increment,
    /// Subtract one; refused at zero.
    Decrement,
    /// Back to zero.
    Reset,
}

/// Counter events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum CounterEvent {
    /// Added one.
    Incremented,
    /// Subtracted one.
    Decremented,
    /// Went back to zero.
    WasReset,
}

/// Counter refusals.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CounterError {
    /// Decrement at zero.
    #[error("counter is already at zero")]
    AtZero,
}

impl Aggregate for Counter {
    const AGGREGATE_TYPE: &'static str = "counter";
    type Command = CounterCommand;
    type Event = CounterEvent;
    type Error = CounterError;

    fn handle(&self, command: CounterCommand) -> Result<Vec<CounterEvent>, CounterError> {
        match command {
            CounterCommand::Increment => Ok(vec![CounterEvent::Incremented]),
            CounterCommand::Decrement if self.value == 0 => Err(CounterError::AtZero),
            CounterCommand::Decrement => Ok(vec![CounterEvent::Decremented]),
            CounterCommand::Reset if self.value == 0 => Ok(vec![]),
            CounterCommand::Reset => Ok(vec![CounterEvent::WasReset]),
        }
    }

    fn apply(mut self, event: &CounterEvent) -> Self {
        match event {
            CounterEvent::Incremented => self.value += 1,
            CounterEvent::Decremented => self.value -= 1,
            CounterEvent::WasReset => self.value = 0,
        }
        self
    }
}

/// A bank account: opened once, deposits, withdrawals that may not overdraw, transfers out.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BankAccount {
    /// Owner, once opened.
    pub owner: Option<String>,
    /// Balance in cents.
    pub balance: u64,
    /// Number of movements.
    pub movements: u64,
}

/// Bank-account commands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum BankCommand {
    /// Open the account.
    Open {
        /// Owner's name.
        owner: String,
    },
    /// Put money in.
    Deposit {
        /// Cents.
        amount: u64,
    },
    /// Take money out; refused when it would overdraw.
    Withdraw {
        /// Cents.
        amount: u64,
    },
    /// Move money to another account (the `transfers` process manager deposits it there).
    TransferOut {
        /// Target account id.
        to: String,
        /// Cents.
        amount: u64,
    },
}

/// Bank-account events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum BankEvent {
    /// The account was opened.
    Opened {
        /// Owner's name.
        owner: String,
    },
    /// Money came in.
    Deposited {
        /// Cents.
        amount: u64,
    },
    /// Money went out.
    Withdrew {
        /// Cents.
        amount: u64,
    },
    /// Money left for another account.
    TransferredOut {
        /// Target account id.
        to: String,
        /// Cents.
        amount: u64,
    },
}

/// Bank-account refusals (carried as data across the plugin boundary).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum BankError {
    /// Open on an open account.
    #[error("account is already open")]
    AlreadyOpen,
    /// Anything but Open on an account never opened.
    #[error("account is not open")]
    NotOpen,
    /// A zero amount.
    #[error("amount must be positive")]
    ZeroAmount,
    /// Withdrawal or transfer above the balance.
    #[error("insufficient funds: balance {balance}, requested {requested}")]
    InsufficientFunds {
        /// Current balance.
        balance: u64,
        /// Requested amount.
        requested: u64,
    },
}

impl Aggregate for BankAccount {
    const AGGREGATE_TYPE: &'static str = "bank-account";
    type Command = BankCommand;
    type Event = BankEvent;
    type Error = BankError;

    fn handle(&self, command: BankCommand) -> Result<Vec<BankEvent>, BankError> {
        match command {
            BankCommand::Open { .. } if self.owner.is_some() => Err(BankError::AlreadyOpen),
            BankCommand::Open { owner } => Ok(vec![BankEvent::Opened { owner }]),
            _ if self.owner.is_none() => Err(BankError::NotOpen),
            BankCommand::Deposit { amount: 0 }
            | BankCommand::Withdraw { amount: 0 }
            | BankCommand::TransferOut { amount: 0, .. } => Err(BankError::ZeroAmount),
            BankCommand::Deposit { amount } => Ok(vec![BankEvent::Deposited { amount }]),
            BankCommand::Withdraw { amount } | BankCommand::TransferOut { amount, .. } if amount > self.balance => {
                Err(BankError::InsufficientFunds { balance: self.balance, requested: amount })
            }
            BankCommand::Withdraw { amount } => Ok(vec![BankEvent::Withdrew { amount }]),
            BankCommand::TransferOut { to, amount } => Ok(vec![BankEvent::TransferredOut { to, amount }]),
        }
    }

    fn error_to_data(error: &BankError) -> Option<Value> {
        error_to_data(error)
    }

    fn error_from_data(data: &Value) -> Option<BankError> {
        error_from_data(data)
    }

    fn apply(mut self, event: &BankEvent) -> Self {
        match event {
            BankEvent::Opened { owner } => self.owner = Some(owner.clone()),
            BankEvent::Deposited { amount } => self.balance += amount,
            BankEvent::Withdrew { amount } | BankEvent::TransferredOut { amount, .. } => self.balance -= amount,
        }
        self.movements += 1;
        self
    }
}

/// Stock of one SKU, the instance id of its stream: the eventfold-es inventory, whose rules
/// read the [`DecideContext`] (this SKU only; every movement stamped with its actor and the
/// engine's `now`) and whose typed errors cross the plugin boundary as data.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inventory {
    /// Units in stock.
    pub on_hand: u64,
    /// The actor of the last movement.
    pub last_actor: Option<String>,
}

/// Inventory commands: each names the SKU it means, which must be the stream's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum InventoryCommand {
    /// Units arrived.
    Receive {
        /// The SKU the caller means.
        sku: String,
        /// Units.
        quantity: u64,
    },
    /// Units leave; refused beyond the stock.
    Ship {
        /// The SKU the caller means.
        sku: String,
        /// Units.
        quantity: u64,
    },
}

/// Inventory events, stamped with who and when (from the decide context).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum InventoryEvent {
    /// Units arrived.
    Received {
        /// Units.
        quantity: u64,
        /// The command's actor.
        by: String,
        /// The engine's `now` when it was decided.
        at: Timestamp,
    },
    /// Units left.
    Shipped {
        /// Units.
        quantity: u64,
        /// The command's actor.
        by: String,
        /// The engine's `now` when it was decided.
        at: Timestamp,
    },
}

/// Inventory refusals, carried as data across the plugin boundary.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum InventoryError {
    /// The command names another SKU than the stream's.
    #[error("command for SKU {command} sent to the stream of SKU {stream}")]
    WrongSku {
        /// The stream's SKU.
        stream: String,
        /// The SKU the command names.
        command: String,
    },
    /// No actor in the command's context: movements must be attributable.
    #[error("no actor: inventory movements must name who makes them")]
    NoActor,
    /// A zero quantity.
    #[error("quantity must be positive")]
    ZeroQuantity,
    /// A shipment above the stock.
    #[error("insufficient stock: {available} on hand, {requested} requested")]
    InsufficientStock {
        /// Units on hand.
        available: u64,
        /// Units requested.
        requested: u64,
    },
}

impl Aggregate for Inventory {
    const AGGREGATE_TYPE: &'static str = "inventory";
    type Command = InventoryCommand;
    type Event = InventoryEvent;
    type Error = InventoryError;

    /// Without a context nobody can be stamped: the rules need [`Aggregate::handle_with`].
    fn handle(&self, _command: InventoryCommand) -> Result<Vec<InventoryEvent>, InventoryError> {
        Err(InventoryError::NoActor)
    }

    fn handle_with(
        &self,
        command: InventoryCommand,
        context: &DecideContext,
    ) -> Result<Vec<InventoryEvent>, InventoryError> {
        let (InventoryCommand::Receive { sku, quantity } | InventoryCommand::Ship { sku, quantity }) = &command;
        if sku != context.instance_id() {
            return Err(InventoryError::WrongSku { stream: context.instance_id().to_owned(), command: sku.clone() });
        }
        let by = context.actor().ok_or(InventoryError::NoActor)?.to_owned();
        let (quantity, at) = (*quantity, context.now);
        match command {
            _ if quantity == 0 => Err(InventoryError::ZeroQuantity),
            InventoryCommand::Receive { .. } => Ok(vec![InventoryEvent::Received { quantity, by, at }]),
            InventoryCommand::Ship { .. } if quantity > self.on_hand => {
                Err(InventoryError::InsufficientStock { available: self.on_hand, requested: quantity })
            }
            InventoryCommand::Ship { .. } => Ok(vec![InventoryEvent::Shipped { quantity, by, at }]),
        }
    }

    fn apply(mut self, event: &InventoryEvent) -> Self {
        let by = match event {
            InventoryEvent::Received { quantity, by, .. } => {
                self.on_hand += quantity;
                by
            }
            InventoryEvent::Shipped { quantity, by, .. } => {
                self.on_hand -= quantity;
                by
            }
        };
        self.last_actor = Some(by.clone());
        self
    }

    fn error_to_data(error: &InventoryError) -> Option<Value> {
        error_to_data(error)
    }

    fn error_from_data(data: &Value) -> Option<InventoryError> {
        error_from_data(data)
    }
}

/// Read model: the balance of every bank account and their total.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Balances {
    /// Balance per account id.
    pub accounts: BTreeMap<String, u64>,
    /// Sum of all balances.
    pub total: u64,
    /// Events folded.
    pub events: u64,
}

impl Projection for Balances {
    const NAME: &'static str = "balances";

    fn apply(&mut self, event: &StoredEvent) {
        if event.stream.aggregate_type() != BankAccount::AGGREGATE_TYPE {
            return;
        }
        let Ok(bank_event) = crate::domain::from_payload::<BankEvent>(&event.record.payload()) else { return };
        let balance = self.accounts.entry(event.stream.instance_id().to_owned()).or_default();
        match bank_event {
            BankEvent::Opened { .. } => {}
            BankEvent::Deposited { amount } => {
                *balance += amount;
                self.total += amount;
            }
            BankEvent::Withdrew { amount } | BankEvent::TransferredOut { amount, .. } => {
                *balance -= amount;
                self.total -= amount;
            }
        }
        self.events += 1;
    }
}

/// Process manager: every `TransferredOut` becomes a `Deposit` on the target account. A deposit
/// the target refuses (account not open) is dead-lettered.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transfers {
    /// Transfers dispatched so far.
    pub dispatched: u64,
}

impl ProcessManager for Transfers {
    const NAME: &'static str = "transfers";

    fn react(&mut self, event: &StoredEvent) -> Vec<CommandEnvelope> {
        if event.stream.aggregate_type() != BankAccount::AGGREGATE_TYPE {
            return vec![];
        }
        let Ok(BankEvent::TransferredOut { to, amount }) = crate::domain::from_payload(&event.record.payload()) else {
            return vec![];
        };
        let context = CommandContext::default()
            .with_causation_id(event.record.id.0.clone())
            .with_correlation_id(event.record.meta.correlation_id.clone().unwrap_or_else(|| event.record.id.0.clone()));
        match CommandEnvelope::to::<BankAccount>(&to, &BankCommand::Deposit { amount }, context) {
            Ok(envelope) => {
                self.dispatched += 1;
                vec![envelope]
            }
            Err(_) => vec![],
        }
    }
}
