//! Shared pieces of bufsync's example programs.
