//! Moving bytes: downloads streamed to a file while they are hashed, uploads whole
//! for small files and multipart (parts in parallel) for large ones.

use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;

use futures::StreamExt;
use object_store::path::Path as RemotePath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};

/// Files up to this size go up in one request; larger ones as parts of `PART` bytes
/// (S3 parts must be at least 5 MiB), at most `PARALLEL_PARTS` in flight.
const SINGLE_PUT_MAX: u64 = 16 << 20;
const PART: usize = 8 << 20;
const PARALLEL_PARTS: usize = 4;

/// Streams `loc` into `dest` and returns the blake3 hash of what arrived.
pub(super) async fn download(store: &dyn ObjectStore, loc: &RemotePath, dest: &Path) -> object_store::Result<String> {
    if let Some(dir) = dest.parent() {
        std::fs::create_dir_all(dir).map_err(local)?;
    }
    let mut stream = store.get(loc).await?.into_stream();
    let mut file = std::fs::File::create(dest).map_err(local)?;
    let mut hasher = blake3::Hasher::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        hasher.update(&chunk);
        file.write_all(&chunk).map_err(local)?;
    }
    // No fsync here: `Store::adopt_object` syncs the file before it becomes an object.
    Ok(hasher.finalize().to_hex().to_string())
}

/// Uploads `file` to `loc`; a failed multipart upload is aborted, so no part lingers.
pub(super) async fn upload(store: &Arc<dyn ObjectStore>, loc: &RemotePath, file: &Path) -> object_store::Result<()> {
    let len = std::fs::metadata(file).map_err(local)?.len();
    if len <= SINGLE_PUT_MAX {
        let bytes = std::fs::read(file).map_err(local)?;
        return store.put(loc, PutPayload::from(bytes)).await.map(|_| ());
    }
    let mut writer = WriteMultipart::new_with_chunk_size(store.put_multipart(loc).await?, PART);
    let mut f = std::fs::File::open(file).map_err(local)?;
    let mut buf = vec![0u8; PART];
    loop {
        let n = match f.read(&mut buf) {
            Ok(n) => n,
            Err(e) => {
                let _ = writer.abort().await;
                return Err(local(e));
            }
        };
        if n == 0 {
            break;
        }
        if let Err(e) = writer.wait_for_capacity(PARALLEL_PARTS).await {
            let _ = writer.abort().await;
            return Err(e);
        }
        writer.write(&buf[..n]);
    }
    writer.finish().await.map(|_| ())
}

fn local(e: std::io::Error) -> object_store::Error {
    object_store::Error::Generic { store: "local file", source: Box::new(e) }
}
