//! The HTML page around the pictures: inline CSS, inline SVG, tables; no script and
//! nothing fetched, so it renders the same from disk, in CI artifacts or in mail.

use std::fmt::Write;

use dagrun_engine::Error;
use dagrun_engine::query::exp;
use html_escape::encode_text as esc;

use crate::gather::{Report, Series};
use crate::plots;

const STYLE: &str = "body{font-family:sans-serif;margin:24px;color:#222;max-width:1120px}\
h1{font-size:22px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd}\
table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}\
td:first-child,th:first-child{text-align:left}.plots{display:flex;flex-wrap:wrap;gap:12px}\
.muted{color:#777;font-size:13px}figure{margin:0;width:540px}figcaption{font-size:12px;padding:0 12px}\
.key{display:inline-block;margin-right:14px}.key span{display:inline-block;width:18px;height:3px;margin-right:5px;vertical-align:middle}";

pub fn html(r: &Report) -> Result<String, Error> {
    let mut s = String::new();
    let _ = write!(
        s,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>dagrun report: {0}</title>\
         <style>{STYLE}</style></head><body>\n<h1>dagrun report: {0}</h1>\n<p class=\"muted\">the last {1} run(s); \
         green is fresh, orange stale, grey never run</p>\n",
        esc(&r.pipeline),
        r.runs.len()
    );
    s.push_str("<h2>Pipeline</h2>\n<div class=\"plots\">\n");
    s.push_str(&plots::dag(&r.nodes).map_err(drawing_failed)?);
    stage_table(&mut s, r);
    s.push_str("</div>\n");
    if !r.curves.is_empty() {
        s.push_str("\n<h2>Training loss</h2>\n<div class=\"plots\">\n");
        for (table, series) in &r.curves {
            figure(&mut s, plots::line_chart(&format!("loss per epoch ({table})"), ("epoch", "loss"), series), series)?;
        }
        s.push_str("</div>\n");
    }
    if !r.at_k.is_empty() {
        s.push_str("\n<h2>Metrics against K</h2>\n<div class=\"plots\">\n");
        for (name, series) in &r.at_k {
            figure(&mut s, plots::line_chart(&format!("{name}@K"), ("K", name), series), series)?;
        }
        s.push_str("</div>\n");
    }
    s.push_str("\n<h2>Runs</h2>\n");
    runs_table(&mut s, r);
    s.push_str("</body></html>\n");
    Ok(s)
}

/// plotters' error, as the engine's internal error: no input of ours makes it fail.
fn drawing_failed(e: String) -> Error {
    Error::Internal(format!("report: drawing failed: {e}"))
}

/// A chart with its legend under it: a coloured mark and the label of each series.
fn figure(s: &mut String, svg: Result<String, String>, series: &[Series]) -> Result<(), Error> {
    let svg = svg.map_err(drawing_failed)?;
    let _ = write!(s, "<figure>{svg}<figcaption>");
    for (i, line) in series.iter().enumerate() {
        let c = plots::color(i);
        let _ = write!(
            s,
            "<span class=\"key\"><span style=\"background:rgb({},{},{})\"></span>{}</span>",
            c.0,
            c.1,
            c.2,
            esc(&line.label)
        );
    }
    s.push_str("</figcaption></figure>\n");
    Ok(())
}

fn stage_table(s: &mut String, r: &Report) {
    s.push_str(
        "\n<div><table><tr><th>stage</th><th>kind</th><th>state</th><th>seconds</th><th>rows</th><th>why</th></tr>\n",
    );
    for n in &r.nodes {
        let rows: Vec<String> = n.rows.iter().map(|(o, k)| format!("{o}={k}")).collect();
        let _ = writeln!(
            s,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&n.name),
            esc(&n.kind),
            n.status.state,
            n.duration_s.map(|d| format!("{d:.2}")).unwrap_or_default(),
            esc(&rows.join(" ")),
            esc(&n.status.reasons.join("; "))
        );
    }
    s.push_str("</table></div>\n");
}

/// The runs as `exp` lists them (newest first), from the same grid.
fn runs_table(s: &mut String, r: &Report) {
    let (header, cells) = exp::grid(&r.runs);
    s.push_str("<table>\n<tr>");
    for h in &header {
        let _ = write!(s, "<th>{}</th>", esc(h));
    }
    s.push_str("</tr>\n");
    for line in &cells {
        let _ = writeln!(s, "<tr>{}</tr>", line.iter().map(|c| format!("<td>{}</td>", esc(c))).collect::<String>());
    }
    s.push_str("</table>\n");
}
