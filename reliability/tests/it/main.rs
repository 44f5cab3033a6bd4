//! Hostile input and redispatch tests against the real native store, one binary with a module
//! per concern (the kill and load tests stay separate binaries: `scripts/test.sh` runs them on
//! their own to print their figures).

mod depth;
mod hostile;
mod links;
mod pm_redispatch;
