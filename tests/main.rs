//! The cross-crate integration test target: one binary, one module per suite.

mod sim;
mod tidy;
