//! End-to-end tests: each starts the real `hearth` binary as a child process
//! on 127.0.0.1 with its own temporary data dir and talks HTTP to it.
//!
//! Run: `cargo test --release -p hearth --test e2e`.

mod support;

mod crash;
mod crud;
mod errors;
mod export;
mod export_azure;
mod export_crash;
mod export_groups;
mod export_sinks;
mod export_synthea;
mod import;
mod import_azure;
mod import_crash;
mod import_errors;
mod import_lock;
mod import_roundtrip;
mod import_synthea;
mod plugins;
mod synthea;
mod transaction;
