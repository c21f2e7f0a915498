//! Helpers for bufsync's device tests.
