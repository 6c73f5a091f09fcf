//! # medic — the program
//!
//! Wires the engine (`heal`) and the store (`store`) into the `medic` binary: configuration, the daemon (HTTP API,
//! metrics), the command line, the SQLite knowledge base, notifiers, and the chaos and bench commands. It holds no
//! healing logic of its own.

pub mod app;
pub mod bench;
pub mod cli;
pub mod client;
pub mod config;
pub mod daemon;
pub mod kb;
pub mod machine;
pub mod notify;
pub mod operators;
pub mod probe;
pub mod watchdog;
