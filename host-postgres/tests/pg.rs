//! pg tests
fn main() {}
