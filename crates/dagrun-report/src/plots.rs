//! The report's pictures as SVG strings, drawn with plotters' SVG backend: line
//! charts of series, and the DAG as boxes in columns by depth.

use plotters::prelude::*;

use crate::gather::{Node, Series};
use dagrun_engine::exec::freshness::State;

type Drawn = Result<String, String>;

fn fail(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// The colour of the `i`-th series, for the chart and for its legend (which the page
/// writes under the chart as text: a legend inside the plot hides the lines).
pub fn color(i: usize) -> RGBAColor {
    Palette99::pick(i).to_rgba()
}

/// A line chart over a whole-number x (epochs, K): one line with dots per series,
/// in `color(i)`.
pub fn line_chart(title: &str, (x_desc, y_desc): (&str, &str), series: &[Series]) -> Drawn {
    let whole = |s: &Series| -> Vec<(i64, f64)> { s.points.iter().map(|&(x, y)| (x.round() as i64, y)).collect() };
    let lines: Vec<Vec<(i64, f64)>> = series.iter().map(whole).collect();
    let (x0, x1) = span(lines.iter().flatten().map(|p| p.0 as f64));
    let (x0, x1) = (x0.floor() as i64, x1.ceil() as i64);
    let (y0, y1) = span(lines.iter().flatten().map(|p| p.1));
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (540, 330)).into_drawing_area();
        root.fill(&WHITE).map_err(fail)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(fail)?;
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc(y_desc)
            .x_labels(((x1 - x0 + 1) as usize).min(10))
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(fail)?;
        for (i, line) in lines.iter().enumerate() {
            let color = color(i);
            chart.draw_series(LineSeries::new(line.iter().copied(), color.stroke_width(2))).map_err(fail)?;
            chart.draw_series(line.iter().map(|&p| Circle::new(p, 3, color.filled()))).map_err(fail)?;
        }
        root.present().map_err(fail)?;
    }
    Ok(svg)
}

/// The range of `values` with a margin, never empty (one point, or a flat line).
fn span(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let pad = if hi > lo { (hi - lo) * 0.05 } else { lo.abs().max(1.0) * 0.05 };
    (lo - pad, hi + pad)
}

const BOX: (i32, i32) = (230, 68);
const GAP: (i32, i32) = (24, 30);

/// The DAG: a row per depth (sources on top), a box per stage coloured by its
/// state with its kind, duration and rows, and an arrow per dependency.
pub fn dag(nodes: &[Node]) -> Drawn {
    let depth = depths(nodes);
    let mut column_of = vec![0i32; nodes.len()];
    let mut in_row = vec![0i32; depth.iter().max().map_or(1, |d| d + 1)];
    for (i, &d) in depth.iter().enumerate() {
        column_of[i] = in_row[d];
        in_row[d] += 1;
    }
    let at = |i: usize| (20 + column_of[i] * (BOX.0 + GAP.0), 20 + depth[i] as i32 * (BOX.1 + GAP.1));
    let width = 40 + in_row.iter().max().copied().unwrap_or(1) * (BOX.0 + GAP.0) - GAP.0;
    let height = 40 + in_row.len() as i32 * (BOX.1 + GAP.1) - GAP.1;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (width as u32, height as u32)).into_drawing_area();
        root.fill(&WHITE).map_err(fail)?;
        for (i, n) in nodes.iter().enumerate() {
            for &u in &n.upstream {
                let ((ux, uy), (x, y)) = (at(u), at(i));
                let (from, to) = ((ux + BOX.0 / 2, uy + BOX.1), (x + BOX.0 / 2, y));
                root.draw(&PathElement::new(vec![from, to], BLACK.mix(0.45).stroke_width(2))).map_err(fail)?;
                root.draw(&Polygon::new(arrow_head(from, to), BLACK.mix(0.45).filled())).map_err(fail)?;
            }
        }
        for (i, n) in nodes.iter().enumerate() {
            draw_node(&root, at(i), n)?;
        }
        root.present().map_err(fail)?;
    }
    Ok(svg)
}

fn draw_node<DB: DrawingBackend>(
    root: &DrawingArea<DB, plotters::coord::Shift>,
    (x, y): (i32, i32),
    n: &Node,
) -> Result<(), String>
where
    DB::ErrorType: 'static,
{
    let fill = match n.status.state {
        State::Fresh => RGBColor(0xd9, 0xf2, 0xdc),
        State::Stale => RGBColor(0xfd, 0xe7, 0xc4),
        State::New => RGBColor(0xe8, 0xe8, 0xe8),
    };
    root.draw(&Rectangle::new([(x, y), (x + BOX.0, y + BOX.1)], fill.filled())).map_err(fail)?;
    root.draw(&Rectangle::new([(x, y), (x + BOX.0, y + BOX.1)], BLACK.mix(0.5).stroke_width(1))).map_err(fail)?;
    let duration = n.duration_s.map(|s| format!(" · {s:.2}s")).unwrap_or_default();
    let rows: Vec<String> = n.rows.iter().map(|(o, r)| format!("{o}={r}")).collect();
    let lines = [
        (n.name.clone(), ("sans-serif", 15).into_font().style(FontStyle::Bold)),
        (format!("{} · {}{duration}", n.kind, n.status.state), ("sans-serif", 12).into_font()),
        (shorten(&rows.join(" "), 36), ("sans-serif", 12).into_font()),
    ];
    for (k, (text, font)) in lines.into_iter().enumerate() {
        root.draw(&Text::new(text, (x + 8, y + 8 + k as i32 * 21), font)).map_err(fail)?;
    }
    Ok(())
}

/// A triangle at `to` pointing along `from` → `to`.
fn arrow_head(from: (i32, i32), to: (i32, i32)) -> Vec<(i32, i32)> {
    let (dx, dy) = ((to.0 - from.0) as f64, (to.1 - from.1) as f64);
    let len = dx.hypot(dy).max(1.0);
    let (ux, uy) = (dx / len, dy / len);
    let back = |side: f64| {
        let (bx, by) = (to.0 as f64 - 10.0 * ux + side * 5.0 * uy, to.1 as f64 - 10.0 * uy - side * 5.0 * ux);
        (bx.round() as i32, by.round() as i32)
    };
    vec![to, back(1.0), back(-1.0)]
}

fn shorten(text: &str, chars: usize) -> String {
    if text.chars().count() <= chars {
        return text.to_string();
    }
    text.chars().take(chars - 1).chain(['…']).collect()
}

/// Each stage's row: 0 for sources, else one more than its deepest upstream. A
/// pipeline's stages come upstream-first, so one pass in order settles every depth.
fn depths(nodes: &[Node]) -> Vec<usize> {
    let mut depth = vec![0usize; nodes.len()];
    for (i, n) in nodes.iter().enumerate() {
        depth[i] = n.upstream.iter().map(|&u| depth[u] + 1).max().unwrap_or(0);
    }
    depth
}
