//! `cargo run --release --example s3_server -- DIR`: the tests' S3 server (s3s-fs
//! over DIR, bucket `bench`) for `benches/remote.sh`; prints its endpoint, then
//! serves until stdin closes.

#[path = "../tests/common/s3.rs"]
mod s3;

fn main() {
    let Some(dir) = std::env::args().nth(1) else {
        eprintln!("usage: s3_server DIR");
        std::process::exit(2);
    };
    std::fs::create_dir_all(&dir).expect("the server's directory");
    let server = s3::S3Server::start(std::path::Path::new(&dir), "bench");
    println!("http://{}", server.addr);
    // Serves until the script closes our stdin.
    let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
}
