//! `medic bench`: reproducible evaluation suites.
