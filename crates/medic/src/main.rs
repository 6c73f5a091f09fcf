//! The `medic` binary: everything is in [`medic::cli`]; this only turns its answer into the process exit code.

fn main() -> std::process::ExitCode {
    restore_default_sigpipe();
    medic::cli::main()
}

/// A write into a closed pipe (`medic config --print-default | head`) ends the process quietly, as it does for
/// every Unix tool, instead of panicking in `print!` with "Broken pipe": Rust's runtime ignores SIGPIPE, this puts
/// back the default action. `medic serve` ignores it again before it opens a socket (`daemon::serve`): a daemon
/// reads a peer's hang-up as an error on that connection, never as the signal that ends it.
#[allow(unsafe_code)]
fn restore_default_sigpipe() {
    // SAFETY: called first thing in `main`, before any other thread exists; `SIG_DFL` is a valid disposition for
    // SIGPIPE and no handler of ours is replaced.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
