//! The `medic` binary: everything is in [`medic::cli`]; this only turns its answer into the process exit code.

fn main() -> std::process::ExitCode {
    medic::cli::main()
}
