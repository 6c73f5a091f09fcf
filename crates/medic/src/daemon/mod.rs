//! The daemon: HTTP API, metrics, and the healing loop on its schedule.
