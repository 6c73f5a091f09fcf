//! The SQLite knowledge base: incidents, repair attempts, strategy statistics, metric history.
