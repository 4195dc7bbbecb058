//! The `dagrun` binary: argument parsing lives in `cli.rs`, everything else in the library.

mod cli;

fn main() {
    std::process::exit(cli::main());
}
