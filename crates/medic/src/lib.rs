//! # medic — the program
//!
//! Wires the engine (`heal`) and the store (`store`) into the `medic` binary: configuration, the daemon (HTTP API,
//! metrics), the command line, the SQLite knowledge base, notifiers, and the chaos and bench commands. It holds no
//! healing logic of its own.

/// The git commit this binary was built from (`unknown` outside a git checkout).
pub const BUILD_COMMIT: &str = env!("MEDIC_BUILD_COMMIT");

/// `medic --version`: the package version and the commit.
pub const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("MEDIC_BUILD_COMMIT"),
    ")"
);

pub mod alertmanager;
pub mod app;
pub mod attached;
pub mod bench;
pub mod chaos_graph;
pub mod cli;
pub mod client;
pub mod config;
pub mod daemon;
pub mod diagnostics;
pub mod duration;
pub mod history;
pub mod incident_filter;
pub mod kb;
pub mod machine;
pub mod maintenance;
pub mod notify;
pub mod operators;
pub mod playbook;
pub mod probe;
pub mod report;
pub mod search;
pub mod target;
pub mod watchdog;
