//! The `dagrun` binary: argument parsing lives in `cli.rs`, everything else in the library.

mod cli;

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
