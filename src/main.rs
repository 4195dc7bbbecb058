//! The `dagrun` binary: wires the built-in stage kinds of `dagrun-stages` into the
//! engine and hands the command line (`cli/`) to it. Nothing else lives here.

mod cli;

use dagrun_engine::Catalog;

/// The kinds a pipeline can name besides the engine's own `cmd`.
fn catalog() -> Catalog {
    Catalog::new(dagrun_stages::catalog())
}

fn main() {
    // candle asks for its thread count on every matmul and, unless RAYON_NUM_THREADS
    // is set, counts physical cores by reading /proc/cpuinfo each time (8% of a
    // training step here). Setting it once, before any other thread exists, is sound.
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        let n = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        // SAFETY: single-threaded at this point; nothing reads the environment concurrently.
        unsafe { std::env::set_var("RAYON_NUM_THREADS", n.to_string()) };
    }
    std::process::exit(cli::main());
}
