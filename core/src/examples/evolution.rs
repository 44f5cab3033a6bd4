//! Schema evolution, worked: one account aggregate and one projection in two deployed versions.
//!
//! Version 1 kept euros: `Funded {owner, amount}` (open and deposit at once), `Deposited
//! {amount}`, `Withdrew {amount}`. Version 2 keeps cents and smaller events: `Opened {owner}`,
//! `Deposited {cents}` (v2 of the type), `Withdrawn {cents}`. Its [`EventSchema`] reads every
//! version-1 event as today's: `Deposited` v1 → v2 changes the unit and the field, `Funded`
//! splits into `Opened` + `Deposited`, `Withdrew` is renamed `Withdrawn`. A store written by
//! version 1 and read by version 2 gives the state a fresh version-2 history gives.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::schema::EventSchema;
use crate::types::{Payload, StoredEvent};

/// The stream type both versions share.
pub const ACCOUNT: &str = "account";

/// Version 1: euros.
pub mod v1 {
    use super::*;

    /// An account, in euros.
    #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
    pub struct Account {
        /// Who owns it, once funded.
        pub owner: Option<String>,
        /// Balance in euros.
        pub euros: u64,
    }

    /// Version 1's commands.
    #[derive(Debug, Clone, Serialize, Deserialize)]
    #[serde(tag = "type", content = "data")]
    pub enum Command {
        /// Open with a first deposit.
        Fund {
            /// Owner.
            owner: String,
            /// Euros.
            amount: u64,
        },
        /// Add euros.
        Deposit {
            /// Euros.
            amount: u64,
        },
        /// Take euros out.
        Withdraw {
            /// Euros.
            amount: u64,
        },
    }

    /// Version 1's events.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(tag = "type", content = "data")]
    pub enum Event {
        /// Opened with a first deposit.
        Funded {
            /// Owner.
            owner: String,
            /// Euros.
            amount: u64,
        },
        /// Euros in.
        Deposited {
            /// Euros.
            amount: u64,
        },
        /// Euros out.
        Withdrew {
            /// Euros.
            amount: u64,
        },
    }

    impl crate::Aggregate for Account {
        const AGGREGATE_TYPE: &'static str = ACCOUNT;
        type Command = Command;
        type Event = Event;
        type Error = super::Refused;

        fn handle(&self, command: Command) -> Result<Vec<Event>, super::Refused> {
            match command {
                Command::Fund { owner, amount } => Ok(vec![Event::Funded { owner, amount }]),
                Command::Deposit { amount } => Ok(vec![Event::Deposited { amount }]),
                Command::Withdraw { amount } if amount > self.euros => Err(super::Refused("insufficient funds")),
                Command::Withdraw { amount } => Ok(vec![Event::Withdrew { amount }]),
            }
        }

        fn apply(mut self, event: &Event) -> Self {
            match event {
                Event::Funded { owner, amount } => {
                    self.owner = Some(owner.clone());
                    self.euros += amount;
                }
                Event::Deposited { amount } => self.euros += amount,
                Event::Withdrew { amount } => self.euros -= amount,
            }
            self
        }
    }

    /// Version 1's read model: money held, in euros, and events folded.
    #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
    pub struct Totals {
        /// Sum of balances, euros.
        pub euros: i64,
        /// Events folded.
        pub events: u64,
    }

    impl crate::Projection for Totals {
        const NAME: &'static str = "totals";

        fn apply(&mut self, event: &StoredEvent) {
            let Ok(event) = crate::from_payload::<Event>(&event.record.payload()) else { return };
            self.events += 1;
            match event {
                Event::Funded { amount, .. } | Event::Deposited { amount } => self.euros += amount as i64,
                Event::Withdrew { amount } => self.euros -= amount as i64,
            }
        }
    }
}

/// Version 2: cents, smaller events, upcasters from version 1.
pub mod v2 {
    use super::*;

    /// An account, in cents.
    #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
    pub struct Account {
        /// Who owns it, once opened.
        pub owner: Option<String>,
        /// Balance in cents.
        pub cents: u64,
    }

    /// Version 2's commands.
    #[derive(Debug, Clone, Serialize, Deserialize)]
    #[serde(tag = "type", content = "data")]
    pub enum Command {
        /// Open.
        Open {
            /// Owner.
            owner: String,
        },
        /// Add cents.
        Deposit {
            /// Cents.
            cents: u64,
        },
        /// Take cents out.
        Withdraw {
            /// Cents.
            cents: u64,
        },
    }

    /// Version 2's events.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(tag = "type", content = "data")]
    pub enum Event {
        /// Opened.
        Opened {
            /// Owner.
            owner: String,
        },
        /// Cents in (version 2 of the type).
        Deposited {
            /// Cents.
            cents: u64,
        },
        /// Cents out.
        Withdrawn {
            /// Cents.
            cents: u64,
        },
    }

    fn cents(data: &Value) -> Result<u64, String> {
        let euros = data["amount"].as_u64().ok_or_else(|| format!("no amount in {data}"))?;
        euros.checked_mul(100).ok_or_else(|| format!("{euros} euros overflow in cents"))
    }

    /// How version 2 reads version 1's events.
    pub fn schema() -> EventSchema {
        EventSchema::new()
            .upcast("Deposited", 1, |data| Ok(vec![Payload::new("Deposited", json!({ "cents": cents(&data)? }))]))
            .upcast("Funded", 1, |data| {
                let owner = data["owner"].clone();
                Ok(vec![
                    Payload::new("Opened", json!({ "owner": owner })),
                    Payload::new("Deposited", json!({ "cents": cents(&data)? })),
                ])
            })
            .upcast("Withdrew", 1, |data| Ok(vec![Payload::new("Withdrawn", json!({ "cents": cents(&data)? }))]))
    }

    impl crate::Aggregate for Account {
        const AGGREGATE_TYPE: &'static str = ACCOUNT;
        /// The state changed shape (euros → cents): version-1 snapshots are refolded.
        const STATE_VERSION: u32 = 2;
        type Command = Command;
        type Event = Event;
        type Error = super::Refused;

        fn handle(&self, command: Command) -> Result<Vec<Event>, super::Refused> {
            match command {
                Command::Open { owner } => Ok(vec![Event::Opened { owner }]),
                Command::Deposit { cents } => Ok(vec![Event::Deposited { cents }]),
                Command::Withdraw { cents } if cents > self.cents => Err(super::Refused("insufficient funds")),
                Command::Withdraw { cents } => Ok(vec![Event::Withdrawn { cents }]),
            }
        }

        fn apply(mut self, event: &Event) -> Self {
            match event {
                Event::Opened { owner } => self.owner = Some(owner.clone()),
                Event::Deposited { cents } => self.cents += cents,
                Event::Withdrawn { cents } => self.cents -= cents,
            }
            self
        }

        fn schema() -> EventSchema {
            schema()
        }
    }

    /// Version 2's read model, in cents: a new fold, so a new projection version.
    #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
    pub struct Totals {
        /// Sum of balances, cents.
        pub cents: i64,
        /// Events folded.
        pub events: u64,
    }

    impl crate::Projection for Totals {
        const NAME: &'static str = "totals";
        const VERSION: u32 = 2;

        fn apply(&mut self, event: &StoredEvent) {
            let Ok(event) = crate::from_payload::<Event>(&event.record.payload()) else { return };
            self.events += 1;
            match event {
                Event::Opened { .. } => {}
                Event::Deposited { cents } => self.cents += cents as i64,
                Event::Withdrawn { cents } => self.cents -= cents as i64,
            }
        }
    }
}

/// Why an account refused a command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub &'static str);
