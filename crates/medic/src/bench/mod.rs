//! `medic bench`: reproducible evaluation suites.

pub mod nab;
