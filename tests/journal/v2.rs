//! "New versions" of the bank account to replay history through: a changed typed aggregate, and
//! a JSON-level one (as a plugin would be) that renamed an event.

use evfold_core::examples::{BankAccount, BankCommand, BankError, BankEvent};
use evfold_core::{Aggregate, AggregateFactory, DecideContext, Decision, DynAggregate, Fault, Payload, TypedAggregate};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Version 2: withdrawals capped at 50, a bonus cent on deposits of 100 or more, `Open` on an
/// open account is a no-op, and opening is no longer counted as a movement.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BankAccountV2 {
    /// Owner, once opened.
    pub owner: Option<String>,
    /// Balance in cents.
    pub balance: u64,
    /// Movements (deposits, withdrawals, transfers).
    pub movements: u64,
}

/// Why version 2 refuses a command.
#[derive(Debug, thiserror::Error)]
pub enum V2Error {
    /// The new limit.
    #[error("over the 50 limit")]
    OverLimit,
    /// The old rules.
    #[error(transparent)]
    Bank(#[from] BankError),
}

impl Aggregate for BankAccountV2 {
    const AGGREGATE_TYPE: &'static str = BankAccount::AGGREGATE_TYPE;
    type Command = BankCommand;
    type Event = BankEvent;
    type Error = V2Error;

    fn handle(&self, command: BankCommand) -> Result<Vec<BankEvent>, V2Error> {
        match command {
            BankCommand::Open { .. } if self.owner.is_some() => Ok(vec![]),
            BankCommand::Withdraw { amount } if amount > 50 => Err(V2Error::OverLimit),
            BankCommand::Deposit { amount } if amount >= 100 && self.owner.is_some() => {
                Ok(vec![BankEvent::Deposited { amount }, BankEvent::Deposited { amount: 1 }])
            }
            other => {
                let v1 = BankAccount { owner: self.owner.clone(), balance: self.balance, movements: self.movements };
                Ok(v1.handle(other)?)
            }
        }
    }

    fn apply(mut self, event: &BankEvent) -> Self {
        match event {
            BankEvent::Opened { owner } => self.owner = Some(owner.clone()),
            BankEvent::Deposited { amount } => {
                self.balance += amount;
                self.movements += 1;
            }
            BankEvent::Withdrew { amount } | BankEvent::TransferredOut { amount, .. } => {
                self.balance -= amount;
                self.movements += 1;
            }
        }
        self
    }
}

/// A JSON-level "plugin" that renamed `Deposited` to `MoneyDeposited`: old events no longer decode.
pub struct RenamedEventsFactory;

struct RenamedEvents(TypedAggregate<BankAccount>);

impl AggregateFactory for RenamedEventsFactory {
    fn aggregate_type(&self) -> &str {
        BankAccount::AGGREGATE_TYPE
    }
    fn instantiate(&self) -> Result<Box<dyn DynAggregate>, Fault> {
        Ok(Box::new(RenamedEvents(TypedAggregate::default())))
    }
}

impl DynAggregate for RenamedEvents {
    fn aggregate_type(&self) -> &str {
        self.0.aggregate_type()
    }
    fn decide(&mut self, command: &Payload, context: &DecideContext) -> Result<Decision, Fault> {
        self.0.decide(command, context)
    }
    fn apply(&mut self, events: &[Payload]) -> Result<(), Fault> {
        if let Some(old) = events.iter().find(|e| e.type_name == "Deposited") {
            return Err(Fault::msg(format!("unknown event type {} (now MoneyDeposited)", old.type_name)));
        }
        self.0.apply(events)
    }
    fn snapshot(&mut self) -> Result<Value, Fault> {
        self.0.snapshot()
    }
    fn restore(&mut self, snapshot: &Value) -> Result<(), Fault> {
        self.0.restore(snapshot)
    }
    fn reset(&mut self) -> Result<(), Fault> {
        self.0.reset()
    }
}
