//! The wired application: the store, the engine and the knowledge base, opened together from a `Config`. Used by the daemon and by offline CLI commands.
