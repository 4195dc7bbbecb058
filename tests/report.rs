//! `dagrun report`: one self-contained HTML page, through the real binary; and the
//! page rendered by headless Chromium (`#[ignore]`d: .ci/run includes it where
//! `chromium` is on the PATH).

mod common;

use std::process::Command;

use common::Project;

/// A project whose store holds two runs of the shipped pipeline (a sweep of the
/// number of epochs), and the report of it.
fn reported() -> (Project, String) {
    let p = Project::shipped("pipeline.yaml");
    let r = p.dagrun(&["run", "-S", "train.epochs=2,3"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let r = p.dagrun(&["report", "-o", "out/report.html"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(r.stdout, "wrote out/report.html\n");
    let html = p.read("out/report.html");
    (p, html)
}

#[test]
fn the_report_is_one_page_with_the_dag_curves_metrics_and_runs() {
    let (_p, html) = reported();
    assert!(html.starts_with("<!DOCTYPE html>") && html.ends_with("</body></html>\n"));
    // The DAG, a loss chart, and one chart per `name@K` family the stages report.
    assert!(html.matches("<svg").count() >= 4, "{}", html.len());
    for text in ["loss per epoch (train.log)", "hr@K", "ndcg@K", ">evaluate<", ">baseline<", ">youtube_dnn<"] {
        assert!(html.contains(text), "the page shows {text}");
    }
    // One loss line per run; the baseline, shared by both runs, is one line named alone.
    for label in ["train · train.epochs=2", "train · train.epochs=3", "evaluate · train.epochs=3"] {
        assert!(html.contains(label), "legend {label:?}");
    }
    assert!(!html.contains("baseline · "), "the shared baseline is one line, named alone");
    // The runs table: two rows, the swept param as a column.
    assert!(html.contains("<th>train.epochs</th>"), "runs table header");
    let runs = html.split("<h2>Runs</h2>").nth(1).expect("a runs section");
    assert_eq!(runs.matches("<tr><td>").count(), 2, "two run rows");
    // Self-contained: nothing a browser would fetch.
    for fetch in ["<script", "<link", "src=", "href=", "@import", "url("] {
        assert!(!html.contains(fetch), "the page has no {fetch}");
    }
    let urls: Vec<&str> = html.match_indices("http").map(|(i, _)| &html[i..i + 26]).collect();
    assert!(urls.iter().all(|u| *u == "http://www.w3.org/2000/svg"), "only the SVG namespace: {urls:?}");
}

#[test]
fn report_without_runs_says_so() {
    let p = Project::shipped("pipeline.yaml");
    let r = p.dagrun(&["report"]);
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("no run of pipeline.yaml"), "{}", r.stderr);
    assert!(!p.path().join("report.html").exists(), "nothing written");
}

#[test]
#[ignore = "needs chromium (.ci/run includes it when chromium is on the PATH)"]
fn report_renders_in_chromium() {
    let (p, _) = reported();
    let shot = p.path().join("shot.png");
    let out = Command::new("chromium")
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0", "--hide-scrollbars"])
        .arg(format!("--screenshot={}", shot.display()))
        .arg("--window-size=1200,1600")
        .arg(format!("file://{}", p.path().join("out/report.html").display()))
        .output()
        .expect("chromium is on the PATH");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // The page's own messages (console, failed loads) are logged as CONSOLE lines.
    let log = String::from_utf8_lossy(&out.stderr);
    let page_errors: Vec<&str> =
        log.lines().filter(|l| l.contains("CONSOLE") || l.contains("Failed to load resource")).collect();
    assert!(page_errors.is_empty(), "{page_errors:?}");

    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&shot).expect("a screenshot")));
    let mut reader = decoder.read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut pixels).unwrap();
    assert_eq!((info.width, info.height), (1200, 1600));
    let px = info.color_type.samples();
    let rgb: Vec<&[u8]> = pixels[..info.buffer_size()].chunks(px).map(|c| &c[..3]).collect();
    let inked = rgb.iter().filter(|c| c.iter().any(|&v| v < 200)).count();
    let green = rgb.iter().filter(|c| **c == [0xd9, 0xf2, 0xdc]).count();
    assert!(inked * 100 > rgb.len(), "more than 1% of the page is ink: {inked} of {}", rgb.len());
    assert!(green > 10_000, "the fresh stages' boxes are drawn: {green} pixels");
}
