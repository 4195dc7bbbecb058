//! `dagrun sql`: DataFusion over the newest Parquet artifacts, each registered as
//! table `<stage>_<output>`.

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion::prelude::{ParquetReadOptions, SessionContext};

use crate::Error;
use crate::store::Store;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlFormat {
    Table,
    Csv,
    Json,
}

/// Tables `sql` can see: (name, path of the newest Parquet output).
pub fn tables(store: &Store) -> Vec<(String, std::path::PathBuf)> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir(store.latest()) else {
        return out;
    };
    let mut stages: Vec<String> = dir.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    stages.sort();
    for stage in stages {
        if let Some(r) = store.latest_record(&stage) {
            for (name, o) in r.outputs.iter().filter(|(_, o)| o.ext == "parquet") {
                let table = format!("{stage}_{name}").replace('-', "_");
                out.push((table, store.latest_output(&stage, name, &o.ext)));
            }
        }
    }
    out
}

/// Runs `query` and renders the result.
pub fn run(store: &Store, query: &str, format: SqlFormat) -> Result<String, Error> {
    let failed = |e: datafusion::error::DataFusionError| Error::Usage(format!("sql: {e}"));
    let rt = tokio::runtime::Builder::new_current_thread().build().map_err(Error::io(&store.root))?;
    let batches: Vec<RecordBatch> = rt.block_on(async {
        let ctx = SessionContext::new();
        for (name, path) in tables(store) {
            ctx.register_parquet(&name, &path.to_string_lossy(), ParquetReadOptions::default())
                .await
                .map_err(failed)?;
        }
        ctx.sql(query).await.map_err(failed)?.collect().await.map_err(failed)
    })?;
    let arrow = |e: datafusion::arrow::error::ArrowError| Error::Usage(format!("sql: {e}"));
    match format {
        SqlFormat::Table => Ok(format!("{}\n", pretty_format_batches(&batches).map_err(arrow)?)),
        SqlFormat::Csv => {
            let mut buf = Vec::new();
            {
                let mut w = datafusion::arrow::csv::Writer::new(&mut buf);
                for b in &batches {
                    w.write(b).map_err(arrow)?;
                }
            }
            Ok(String::from_utf8_lossy(&buf).into_owned())
        }
        SqlFormat::Json => {
            let mut w = datafusion::arrow::json::ArrayWriter::new(Vec::new());
            for b in &batches {
                w.write(b).map_err(arrow)?;
            }
            w.finish().map_err(arrow)?;
            Ok(format!("{}\n", String::from_utf8_lossy(&w.into_inner())))
        }
    }
}
