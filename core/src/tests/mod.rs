//! Unit tests of the core with access to internals.
