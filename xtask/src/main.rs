//! `cargo xtask`: bufsync's developer tasks.
fn main() {}
