//! The cache key: a stage execution's fingerprint (kind, code, params, input
//! content hashes, outputs, store format) and its canonical hash. A pure function of
//! the checked pipeline and the input hashes; the store keeps records by it.

pub mod fingerprint;

pub use fingerprint::{Fingerprint, STORE_FORMAT};
