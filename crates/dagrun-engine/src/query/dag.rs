//! `dagrun dag`: the graph as indented text, Mermaid or Graphviz DOT.

use std::fmt::Write;

use crate::pipeline::{Pipeline, Source};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DagFormat {
    Text,
    Mermaid,
    Dot,
}

/// Renders the pipeline's graph; edges are labelled with the output they carry.
pub fn render(p: &Pipeline, format: DagFormat) -> String {
    let mut out = String::new();
    match format {
        DagFormat::Text => {
            for s in &p.stages {
                match &s.description {
                    Some(d) => writeln!(out, "{} ({}): {d}", s.name, s.kind.name()),
                    None => writeln!(out, "{} ({})", s.name, s.kind.name()),
                }
                .ok();
                for (input, source) in &s.inputs {
                    let _ = writeln!(out, "  <- {input}: {source}");
                }
            }
        }
        DagFormat::Mermaid => {
            out.push_str("flowchart TD\n");
            for s in &p.stages {
                let _ = writeln!(out, "    {}[\"{} ({})\"]", node_id(&s.name), s.name, s.kind.name());
            }
            for s in &p.stages {
                for (input, source) in &s.inputs {
                    if let Source::Stage { stage, output } = source {
                        let _ = writeln!(out, "    {} -->|{output} as {input}| {}", node_id(stage), node_id(&s.name));
                    }
                }
            }
        }
        DagFormat::Dot => {
            out.push_str("digraph pipeline {\n    rankdir=TB;\n");
            for s in &p.stages {
                let _ = writeln!(out, "    \"{}\" [label=\"{}\\n({})\"];", s.name, s.name, s.kind.name());
            }
            for s in &p.stages {
                for (input, source) in &s.inputs {
                    if let Source::Stage { stage, output } = source {
                        let _ = writeln!(out, "    \"{stage}\" -> \"{}\" [label=\"{output} as {input}\"];", s.name);
                    }
                }
            }
            out.push_str("}\n");
        }
    }
    out
}

/// Mermaid ids cannot hold `-`.
fn node_id(stage: &str) -> String {
    stage.replace('-', "_")
}
