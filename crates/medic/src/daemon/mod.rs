//! The daemon: HTTP API, metrics, and the healing loop on its schedule.

pub mod error;
pub mod metrics;

pub use error::ApiError;
