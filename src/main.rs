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
    // candle runs an elementwise op of 64k values or more on a process-wide pool of
    // workers that spin between ops, sized by CANDLE_NUM_THREADS (default: every
    // core). Stages run side by side in one process, and a trainer's ops are small:
    // the spinning only took the other stage's core. Two MovieLens trainings at -j 2
    // took 36 s each with the pool, 7–8.5 s without it.
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        // SAFETY: as above.
        unsafe { std::env::set_var("CANDLE_NUM_THREADS", "1") };
    }
    std::process::exit(cli::main());
}
