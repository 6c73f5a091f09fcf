//! A client for a running daemon, used by the CLI when a daemon holds the data directory.
