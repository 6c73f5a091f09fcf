//! # index-text — medic's full-text index
//!
//! A tantivy index per collection under `idx/<collection>/text/`, derived from the store's log through
//! [`store::derived::DerivedIndex`]: rebuilt whenever it is missing, damaged or behind what the log still covers.
