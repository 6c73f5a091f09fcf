//! # index-vector — medic's vector indexes
//!
//! HNSW and IVF indexes per collection under `idx/<collection>/<hnsw|ivf>/`, derived from the store's log through
//! [`store::derived::DerivedIndex`]: rebuilt whenever they are missing, damaged or behind what the log still covers.
