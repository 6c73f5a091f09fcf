//! The `medic` binary.

fn main() {
    println!("medic: not wired yet");
}
