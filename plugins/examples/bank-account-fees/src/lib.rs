//! The `bank-account-fees` plugin: version 0.2.0 of the bank account, which charges a fee of 1
//! per withdrawal when folding. Same aggregate type, commands and events as
//! `evfold_core::examples::BankAccount`, different state from the same history:
//! `evfold replay --candidate bank-account-fees.wasm` reports the divergence (exit code 5).

use evfold_core::examples::{BankAccount, BankCommand, BankError, BankEvent};
use evfold_core::Aggregate;
use serde::{Deserialize, Serialize};

/// Fee charged per withdrawal, in cents.
const WITHDRAWAL_FEE: u64 = 1;

/// The bank account state of version 0.1, folded with fees.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct FeeAccount(BankAccount);

impl Aggregate for FeeAccount {
    const AGGREGATE_TYPE: &'static str = BankAccount::AGGREGATE_TYPE;
    type Command = BankCommand;
    type Event = BankEvent;
    type Error = BankError;

    fn handle(&self, command: BankCommand) -> Result<Vec<BankEvent>, BankError> {
        self.0.handle(command)
    }

    fn apply(self, event: &BankEvent) -> Self {
        let mut next = self.0.apply(event);
        if matches!(event, BankEvent::Withdrew { .. }) {
            next.balance = next.balance.saturating_sub(WITHDRAWAL_FEE);
        }
        FeeAccount(next)
    }
}

evfold_plugin_sdk::export_aggregate!(FeeAccount);
