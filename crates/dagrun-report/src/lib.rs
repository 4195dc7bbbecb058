//! `dagrun report`: one self-contained HTML page of a pipeline's store — the DAG with
//! each stage's state, the training curves and the metrics against K of the last runs,
//! and the runs side by side as `exp` shows them. Plots are inline SVG drawn with
//! plotters; the page fetches nothing, so it opens from disk in any browser.
//!
//! `gather` reads the store into plain series, `plots` draws them, `page` writes the HTML.

mod gather;
mod page;
mod plots;

use dagrun_engine::Error;
use dagrun_engine::pipeline::Pipeline;
use dagrun_engine::store::Store;
use dagrun_engine::store::content::InputIndex;

/// The report of the last `runs` runs of `p` in `store`, as one HTML document.
pub fn render(p: &Pipeline, store: &Store, runs: usize) -> Result<String, Error> {
    let mut index = InputIndex::load(store.input_index());
    let report = gather::gather(p, store, &mut index, runs)?;
    page::html(&report)
}
