//! The native store's integration tests, one binary (one link step) with a module per concern.

mod common;

mod api;
mod basic;
mod concurrency;
mod containment;
mod damage;
mod durability;
mod evolution;
mod faults;
mod holes;
mod ids;
mod import;
mod lazy_open;
mod lock;
mod observability;
mod panics;
mod parity;
mod readers;
mod recovery;
