//! The chaos harness behind `medic chaos`: fill a store, inject faults, run the engine, verify every acknowledged document.
