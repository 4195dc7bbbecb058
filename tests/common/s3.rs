//! An S3-compatible server in this process (s3s over a directory, s3s-fs), on
//! 127.0.0.1 and a port the OS picks; the tests and `benches/remote.sh` point
//! object_store's S3 client at it through `AWS_ENDPOINT_URL`.

#![allow(dead_code)] // the tests use all of it, the bench server not its client side

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;

pub const ACCESS_KEY: &str = "dagrun-test-access";
pub const SECRET_KEY: &str = "dagrun-test-secret-4f9c2e";

/// Serves `root`'s subdirectories as buckets until it is dropped.
pub struct S3Server {
    pub addr: SocketAddr,
    pub root: PathBuf,
    _rt: tokio::runtime::Runtime,
}

impl S3Server {
    /// Starts serving `root` (which must exist); `bucket` is created in it.
    pub fn start(root: &Path, bucket: &str) -> S3Server {
        std::fs::create_dir_all(root.join(bucket)).expect("bucket directory");
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
        let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).expect("bind");
        let addr = listener.local_addr().expect("address");
        let fs = s3s_fs::FileSystem::new(root).expect("s3s-fs");
        let mut builder = S3ServiceBuilder::new(fs);
        builder.set_auth(SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
        let service = builder.build();
        rt.spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                // Without it, Nagle's algorithm against the client's delayed ACK
                // holds each small response ~40 ms (a pull then waits on that).
                let _ = socket.set_nodelay(true);
                let service = service.clone();
                tokio::spawn(async move {
                    let _ =
                        ConnBuilder::new(TokioExecutor::new()).serve_connection(TokioIo::new(socket), service).await;
                });
            }
        });
        S3Server { addr, root: root.to_path_buf(), _rt: rt }
    }

    /// The variables a client of this server sets (a fixed region: s3s ignores it).
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", format!("http://{}", self.addr)),
            ("AWS_ALLOW_HTTP", "true".into()),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.into()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.into()),
            ("AWS_REGION", "us-east-1".into()),
        ]
    }
}
