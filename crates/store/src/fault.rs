//! Seeded, reproducible fault injection over a data directory.
