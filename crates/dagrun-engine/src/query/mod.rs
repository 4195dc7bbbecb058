//! Read-only views of a pipeline and its store: the graph, artifacts, SQL, metrics.

pub mod dag;
pub mod exp;
pub mod metrics;
pub mod show;
pub mod sql;
