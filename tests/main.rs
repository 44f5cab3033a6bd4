//! The cross-crate integration test target: one binary, one module per suite.

mod journal;
mod sim;
mod tidy;
