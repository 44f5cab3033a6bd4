//! Unit tests of the core with access to internals: codec properties, stream-id validation,
//! machine traces pinned by insta, and the example aggregates end to end on the in-memory driver.

mod codec;
mod context;
mod damage;
mod depth;
mod machines;
mod names;
mod payloads;
mod schema;
mod shapes;
mod subscriptions;
