//! The remote tier: a copy of the store's `objects/`, `records/` and `runs/` in an
//! object store (S3, GCS, Azure, or a shared disk through `file://`), so that CI
//! and teammates reuse each other's stages.
//!
//! Publishing keeps the local store's rule: objects first, the record last, and the
//! record with `PutMode::Create`, so the first writer of a key wins and a record
//! never names an object that is not there. Downloads are verified by blake3 before
//! they enter the local store; a corrupt remote object is reported and never used.
//!
//! `open` reads where and who from the URL and the variables object_store's
//! builders read (`AWS_*`, `GOOGLE_*`, `AZURE_*`); `transfer` moves the bytes.

mod transfer;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as RemotePath;
use object_store::{BackoffConfig, ObjectStore, ObjectStoreExt, PutMode, PutPayload, RetryConfig};

use crate::store::{Record, RunLog, Store};

/// A remote that cannot be used: the message names the remote and the operation.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RemoteError {
    #[error("--remote {url}: {why}")]
    BadUrl { url: String, why: String },
    #[error("remote {url}: {op} failed: {message}")]
    Failed { url: String, op: String, message: String },
    #[error("remote {url}: {path} is corrupt (its content hashes to {got}); not used")]
    Corrupt { url: String, path: String, got: String },
}

/// What publishing a record found on the remote.
#[derive(Debug, PartialEq, Eq)]
pub enum Published {
    /// This record is now the remote's.
    New,
    /// The remote had the key already, with the same outputs.
    Same,
    /// The remote had the key with other bytes for these outputs: the stage is not
    /// deterministic (or, like a training log with timings, some output is not meant to be).
    Differs(Vec<String>),
}

/// An opened remote. Its calls block on its own runtime, so worker threads use it
/// as they use the local store.
pub struct Remote {
    /// The URL as given, and as shown to people (no user, password or query).
    given: String,
    url: String,
    /// The prefix inside the bucket, without slashes at its ends ("" for none).
    prefix: String,
    /// Built on first use: a run with nothing to look up pays nothing for it (the
    /// cloud clients load TLS roots, the runtime starts threads: ~5 ms).
    client: OnceLock<Result<Client, RemoteError>>,
    /// Set after the first failure: the rest of the run goes on without the remote.
    off: AtomicBool,
    /// Objects found corrupt on download: a push uploads them again.
    corrupt: Mutex<BTreeSet<String>>,
    /// Values of credential variables, blanked out of every message.
    secrets: Vec<String>,
}

struct Client {
    store: Arc<dyn ObjectStore>,
    rt: tokio::runtime::Runtime,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Remote({})", self.url)
    }
}

/// Transient failures (connection refused, 5xx, timeouts) are retried this often,
/// with exponential backoff from 100 ms, before the remote counts as unreachable;
/// object_store's default (10 retries over up to 3 minutes) would hang a run whose
/// remote is down for a minute before it goes on locally.
const RETRIES: usize = 3;
const RETRY_TIMEOUT: Duration = Duration::from_secs(30);

impl Remote {
    /// Opens `url` (`s3://bucket/prefix`, `gs://…`, `az://container/prefix`,
    /// `file:///path`): checks its scheme, makes no request and builds no client yet.
    pub fn open(url: &str) -> Result<Remote, RemoteError> {
        let shown = shown_url(url);
        let bad = |why: String| RemoteError::BadUrl { url: shown.clone(), why };
        let (scheme, rest) =
            url.split_once("://").ok_or_else(|| bad("expected s3://, gs://, az:// or file:// and a path".into()))?;
        let prefix = match scheme {
            "file" => "",
            "s3" | "s3a" | "gs" | "az" => bucket_prefix(rest),
            other => return Err(bad(format!("unknown scheme `{other}`: expected s3, gs, az or file"))),
        };
        Ok(Remote {
            given: url.to_string(),
            prefix: prefix.trim_matches('/').to_string(),
            url: shown,
            client: OnceLock::new(),
            off: AtomicBool::new(false),
            corrupt: Mutex::new(BTreeSet::new()),
            secrets: secrets_from_env(),
        })
    }

    fn client(&self) -> Result<&Client, RemoteError> {
        self.client.get_or_init(|| self.build()).as_ref().map_err(|e| {
            self.off.store(true, Ordering::Relaxed);
            e.clone()
        })
    }

    /// The object store client of the URL, configured from the environment.
    fn build(&self) -> Result<Client, RemoteError> {
        let bad = |why: String| RemoteError::BadUrl { url: self.url.clone(), why: self.scrub(why) };
        let (scheme, rest) = self.given.split_once("://").unwrap_or(("", ""));
        let url = self.given.as_str();
        let retry =
            RetryConfig { backoff: BackoffConfig::default(), max_retries: RETRIES, retry_timeout: RETRY_TIMEOUT };
        let store: object_store::Result<Arc<dyn ObjectStore>> = match scheme {
            "file" => std::fs::create_dir_all(rest)
                .map_err(|e| bad(format!("cannot create {rest}: {e}")))
                .map(|_| LocalFileSystem::new_with_prefix(rest).map(|s| Arc::new(s) as _))?,
            "gs" => {
                GoogleCloudStorageBuilder::from_env().with_url(url).with_retry(retry).build().map(|s| Arc::new(s) as _)
            }
            "az" => MicrosoftAzureBuilder::from_env().with_url(url).with_retry(retry).build().map(|s| Arc::new(s) as _),
            _ => AmazonS3Builder::from_env().with_url(url).with_retry(retry).build().map(|s| Arc::new(s) as _),
        };
        let store = store.map_err(|e| bad(e.to_string()))?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| bad(format!("cannot start its client: {e}")))?;
        Ok(Client { store, rt })
    }

    /// The URL as messages show it.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// False once a call failed: the rest of the run does not wait on a broken remote.
    pub fn usable(&self) -> bool {
        !self.off.load(Ordering::Relaxed)
    }

    /// One cheap request that fails when the remote is unreachable, refuses the
    /// credentials or has no such bucket (a missing key does not count).
    pub fn check(&self) -> Result<(), RemoteError> {
        let c = self.client()?;
        let prefix = self.path("records");
        c.rt.block_on(c.store.list_with_delimiter(Some(&prefix)))
            .map(|_| ())
            .map_err(|e| self.fail("listing records/", e))
    }

    /// The remote's record of `key`, if it has one.
    pub fn record(&self, key: &str) -> Result<Option<Record>, RemoteError> {
        let c = self.client()?;
        let rel = format!("records/{key}.json");
        let got = c.rt.block_on(async { c.store.get(&self.path(&rel)).await?.bytes().await });
        match got {
            // A record filed under another key is as unusable as one that does not parse.
            Ok(bytes) => match serde_json::from_slice::<Record>(&bytes) {
                Ok(r) if r.key == key => Ok(Some(r)),
                _ => Err(self.corrupt_record(&rel)),
            },
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.fail(&format!("reading {rel}"), e)),
        }
    }

    /// True when the remote has a record of `key`.
    pub fn has_record(&self, key: &str) -> Result<bool, RemoteError> {
        let c = self.client()?;
        let rel = format!("records/{key}.json");
        match c.rt.block_on(c.store.head(&self.path(&rel))) {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(self.fail(&format!("looking up {rel}"), e)),
        }
    }

    /// Downloads the objects of `record` the local store lacks, each verified by
    /// its hash before it is moved into `objects/`.
    pub fn fetch(&self, record: &Record, store: &Store) -> Result<(), RemoteError> {
        let c = self.client()?;
        for out in record.outputs.values() {
            if store.object_path(&out.hash, &out.ext).is_file() {
                continue;
            }
            let rel = object_rel(&out.hash, &out.ext);
            // Unique: two stages of a run may pull the same object at once.
            let tmp = crate::store::tmp_path(&store.tmp(), &format!("pull-{}.{}", out.hash, out.ext));
            let got =
                c.rt.block_on(transfer::download(c.store.as_ref(), &self.path(&rel), &tmp))
                    .map_err(|e| self.fail(&format!("downloading {rel}"), e));
            let hash = match got {
                Ok(hash) => hash,
                Err(e) => {
                    let _ = std::fs::remove_file(&tmp);
                    return Err(e);
                }
            };
            if hash != out.hash {
                let _ = std::fs::remove_file(&tmp);
                self.lock_corrupt().insert(out.hash.clone());
                return Err(RemoteError::Corrupt { url: self.url.clone(), path: rel, got: hash });
            }
            store.adopt_object(&tmp, &out.hash, &out.ext).map_err(|e| self.fail(&format!("storing {rel}"), e))?;
        }
        Ok(())
    }

    /// Uploads the objects of `record` the remote lacks, then the record, unless the
    /// remote has a usable record of that key already (the first writer wins).
    pub fn publish(&self, record: &Record, store: &Store) -> Result<Published, RemoteError> {
        let c = self.client()?;
        for out in record.outputs.values() {
            let rel = object_rel(&out.hash, &out.ext);
            let loc = self.path(&rel);
            let stale = self.lock_corrupt().contains(&out.hash);
            let present = match c.rt.block_on(c.store.head(&loc)) {
                Ok(meta) => meta.size == out.bytes && !stale,
                Err(object_store::Error::NotFound { .. }) => false,
                Err(e) => return Err(self.fail(&format!("looking up {rel}"), e)),
            };
            if !present {
                let file = store.object_path(&out.hash, &out.ext);
                c.rt.block_on(transfer::upload(&c.store, &loc, &file))
                    .map_err(|e| self.fail(&format!("uploading {rel}"), e))?;
                self.lock_corrupt().remove(&out.hash);
            }
        }
        let rel = format!("records/{}.json", record.key);
        let json = serde_json::to_vec_pretty(record).map_err(|e| self.fail(&format!("encoding {rel}"), e))?;
        let payload = PutPayload::from(json);
        let put = c.rt.block_on(c.store.put_opts(&self.path(&rel), payload.clone(), PutMode::Create.into()));
        match put {
            Ok(_) => Ok(Published::New),
            Err(object_store::Error::AlreadyExists { .. }) => {
                let theirs = match self.record(&record.key) {
                    Ok(Some(theirs)) => theirs,
                    // Unreadable, or filed under another key: no one can use it, so
                    // this record replaces it (its objects are all up by now).
                    Ok(None) | Err(RemoteError::Corrupt { .. }) => {
                        c.rt.block_on(c.store.put(&self.path(&rel), payload))
                            .map_err(|e| self.fail(&format!("replacing {rel}"), e))?;
                        return Ok(Published::New);
                    }
                    Err(e) => return Err(e),
                };
                let differ: Vec<String> = record
                    .outputs
                    .iter()
                    .filter(|(name, o)| theirs.outputs.get(*name).is_none_or(|t| t.hash != o.hash))
                    .map(|(name, _)| name.clone())
                    .collect();
                Ok(if differ.is_empty() { Published::Same } else { Published::Differs(differ) })
            }
            Err(e) => Err(self.fail(&format!("publishing {rel}"), e)),
        }
    }

    /// Uploads a run log (run ids are unique, so it overwrites nothing of another run).
    pub fn publish_run(&self, run: &RunLog) -> Result<(), RemoteError> {
        let rel = format!("runs/{}.json", run.id);
        let json = serde_json::to_vec_pretty(run).map_err(|e| self.fail(&format!("encoding {rel}"), e))?;
        let c = self.client()?;
        c.rt.block_on(c.store.put(&self.path(&rel), PutPayload::from(json)))
            .map(|_| ())
            .map_err(|e| self.fail(&format!("uploading {rel}"), e))
    }

    fn path(&self, rel: &str) -> RemotePath {
        if self.prefix.is_empty() { RemotePath::from(rel) } else { RemotePath::from(format!("{}/{rel}", self.prefix)) }
    }

    fn lock_corrupt(&self) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
        self.corrupt.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn corrupt_record(&self, rel: &str) -> RemoteError {
        RemoteError::Corrupt { url: self.url.clone(), path: rel.to_string(), got: "no readable record".into() }
    }

    /// `message` with every credential value blanked out.
    fn scrub(&self, mut message: String) -> String {
        for s in &self.secrets {
            message = message.replace(s.as_str(), "***");
        }
        message
    }

    /// A failed call: the remote is off for the rest of the run, and the message has
    /// a hint for the usual causes and no secret.
    fn fail(&self, op: &str, e: impl std::fmt::Display) -> RemoteError {
        self.off.store(true, Ordering::Relaxed);
        let mut message = self.scrub(e.to_string());
        if let Some(h) = hint(&message) {
            message.push_str("; ");
            message.push_str(h);
        }
        RemoteError::Failed { url: self.url.clone(), op: op.to_string(), message }
    }
}

/// `objects/ab/abcdef….ext`, the local store's layout.
fn object_rel(hash: &str, ext: &str) -> String {
    format!("objects/{}/{hash}.{ext}", &hash[..2])
}

/// The path after the bucket in `bucket/prefix…`.
fn bucket_prefix(rest: &str) -> &str {
    rest.split_once('/').map(|(_, p)| p).unwrap_or("")
}

/// `url` without a user, password or query string, which may hold credentials.
fn shown_url(url: &str) -> String {
    let url = url.split(['?', '#']).next().unwrap_or(url);
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_once('/').map(|(a, p)| (a, Some(p))).unwrap_or((rest, None));
            let host = authority.rsplit_once('@').map(|(_, h)| h).unwrap_or(authority);
            match path {
                Some(p) => format!("{scheme}://{host}/{p}"),
                None => format!("{scheme}://{host}"),
            }
        }
        None => url.to_string(),
    }
}

/// The values of the credential variables the cloud builders read.
fn secrets_from_env() -> Vec<String> {
    let credential = |name: &str| {
        ["AWS_", "GOOGLE_", "AZURE_"].iter().any(|p| name.starts_with(p))
            && ["KEY", "SECRET", "TOKEN", "PASSWORD", "SAS", "CREDENTIAL"].iter().any(|w| name.contains(w))
    };
    let mut secrets: Vec<String> =
        std::env::vars().filter(|(k, v)| credential(k) && v.len() >= 4).map(|(_, v)| v).collect();
    // Longest first, so a secret that contains another is blanked whole.
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    secrets
}

/// What to check, for the failures people meet first.
fn hint(message: &str) -> Option<&'static str> {
    let m = message.to_ascii_lowercase();
    if m.contains("nosuchbucket") || m.contains("bucket does not exist") || m.contains("containernotfound") {
        Some("does the bucket exist?")
    } else if status(&m, "403") || m.contains("signaturedoesnotmatch") || m.contains("invalidaccesskeyid") {
        Some("check the credentials (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, or the GCS / Azure ones)")
    } else if m.contains("error sending request") || m.contains("connect") || m.contains("timed out") {
        Some("is the remote reachable (AWS_ENDPOINT_URL, the network)?")
    } else {
        None
    }
}

/// Whether the HTTP status `code` stands in `m` as a number of its own, not inside
/// another one such as the duration `612.403972ms`.
fn status(m: &str, code: &str) -> bool {
    m.match_indices(code).any(|(at, _)| {
        let number = |c: char| c.is_ascii_digit() || c == '.';
        !m[..at].ends_with(number) && !m[at + code.len()..].starts_with(number)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: an unreachable endpoint's message, whose retry time read
    /// `612.403972ms`, was taken for a 403 and told the user to check the credentials.
    #[test]
    fn a_status_code_inside_a_duration_is_no_status() {
        let unreachable = "error performing get http://127.0.0.1:45621/cache in 612.403972ms, after 3 retries - http error: error sending request";
        assert_eq!(hint(unreachable), Some("is the remote reachable (AWS_ENDPOINT_URL, the network)?"));
        let forbidden = "client error (forbidden) with status 403: <code>accessdenied</code>";
        assert_eq!(
            hint(forbidden),
            Some("check the credentials (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, or the GCS / Azure ones)")
        );
    }

    #[test]
    fn shown_urls_hide_users_and_queries() {
        assert_eq!(shown_url("s3://bucket/ci/cache"), "s3://bucket/ci/cache");
        assert_eq!(shown_url("az://user:pw@container/p?sv=secret"), "az://container/p");
        assert_eq!(shown_url("gs://bucket"), "gs://bucket");
        assert_eq!(shown_url("file:///mnt/cache"), "file:///mnt/cache");
    }

    #[test]
    fn prefixes_follow_the_bucket() {
        assert_eq!(bucket_prefix("bucket/ci/cache"), "ci/cache");
        assert_eq!(bucket_prefix("bucket"), "");
    }

    #[test]
    fn unknown_schemes_are_refused_before_any_request() {
        let e = Remote::open("ftp://host/x").unwrap_err().to_string();
        assert!(e.contains("unknown scheme `ftp`"), "{e}");
        let e = Remote::open("bucket/x").unwrap_err().to_string();
        assert!(e.contains("expected s3://"), "{e}");
    }
}
