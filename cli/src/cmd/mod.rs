//! One module per command group.

pub mod demo;
pub mod events;
pub mod exec;
pub mod plugin;
pub mod projection;
pub mod replay;
pub mod verify;
