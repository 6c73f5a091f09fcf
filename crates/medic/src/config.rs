//! Configuration: one TOML file, every option documented and validated with bounds.
