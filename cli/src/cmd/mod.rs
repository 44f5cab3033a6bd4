//! One module per command group.

pub mod batch;
pub mod demo;
pub mod events;
pub mod exec;
pub mod migrate;
pub mod plugin;
pub mod pm;
pub mod projection;
pub mod replay;
pub mod stats;
pub mod transfer;
pub mod verify;
