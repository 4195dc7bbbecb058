//! `dagrun show STAGE[.OUTPUT]`: where an artifact is, its schema, row count and
//! first rows, and a DuckDB line to open it.

use std::fmt::Write;
use std::fs::File;

use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::Error;
use crate::store::{Store, StoreError};

/// Describes the newest outputs of `target` (`stage` or `stage.output`).
pub fn show(store: &Store, target: &str, rows: usize) -> Result<String, Error> {
    let (stage, only) = match target.split_once('.') {
        Some((s, o)) => (s, Some(o)),
        None => (target, None),
    };
    let record = store.latest_record(stage).ok_or_else(|| StoreError::NeverRun(stage.to_string()))?;
    if let Some(o) = only
        && !record.outputs.contains_key(o)
    {
        let known: Vec<&str> = record.outputs.keys().map(String::as_str).collect();
        return Err(StoreError::NotFound(format!(
            "stage `{stage}` has no output `{o}`; its outputs: {}",
            known.join(", ")
        ))
        .into());
    }
    let mut out = String::new();
    for (name, o) in record.outputs.iter().filter(|(n, _)| only.is_none_or(|x| x == n.as_str())) {
        let path = store.latest_output(stage, name, &o.ext);
        let _ = writeln!(out, "{stage}.{name}");
        let _ = writeln!(out, "  path    {}", path.display());
        let _ = writeln!(out, "  object  {}", store.object_path(&o.hash, &o.ext).display());
        let _ = writeln!(out, "  bytes   {}", o.bytes);
        if o.ext == "parquet" {
            describe_parquet(&mut out, &path, rows)?;
            let _ = writeln!(out, "  duckdb -c \"SELECT * FROM '{}' LIMIT 10\"", path.display());
        } else if o.ext == "json" {
            let text = std::fs::read_to_string(&path).map_err(Error::io(&path))?;
            for line in text.lines().take(rows.max(1) * 4) {
                let _ = writeln!(out, "  {line}");
            }
        }
        out.push('\n');
    }
    Ok(out)
}

fn describe_parquet(out: &mut String, path: &std::path::Path, rows: usize) -> Result<(), Error> {
    let bad = |e: datafusion::parquet::errors::ParquetError| Error::Io {
        path: path.display().to_string(),
        source: std::io::Error::other(e.to_string()),
    };
    let file = File::open(path).map_err(Error::io(path))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(bad)?;
    let total = builder.metadata().file_metadata().num_rows();
    let schema = builder.schema().clone();
    let _ = writeln!(out, "  rows    {total}");
    let _ = writeln!(out, "  schema");
    for f in schema.fields() {
        let _ =
            writeln!(out, "    {:<20} {}{}", f.name(), f.data_type(), if f.is_nullable() { "" } else { " not null" });
    }
    if rows > 0 {
        let reader = builder.with_limit(rows).with_batch_size(rows).build().map_err(bad)?;
        let batches: Vec<_> = reader.collect::<Result<_, _>>().map_err(|e| Error::Io {
            path: path.display().to_string(),
            source: std::io::Error::other(e.to_string()),
        })?;
        let table = pretty_format_batches(&batches).map(|t| t.to_string()).unwrap_or_default();
        for line in table.lines() {
            let _ = writeln!(out, "  {line}");
        }
    }
    Ok(())
}
