//! The engine's view of a stage kind: one from the stages catalog, or its own `cmd`.

use dagrun_stages::KindSpec;

/// A kind a pipeline stage can have.
#[derive(Clone, Copy)]
pub enum Kind {
    Builtin(&'static KindSpec),
    /// An external command with declared inputs and outputs (see `cmd.rs`).
    Cmd,
}

impl Kind {
    pub fn lookup(name: &str) -> Option<Kind> {
        if name == "cmd" {
            return Some(Kind::Cmd);
        }
        dagrun_stages::kind(name).map(Kind::Builtin)
    }

    pub fn name(&self) -> &'static str {
        match self {
            Kind::Builtin(k) => k.name,
            Kind::Cmd => "cmd",
        }
    }

    /// Every kind name a pipeline may use, for "expected one of" messages.
    pub fn all_names() -> Vec<&'static str> {
        let mut names: Vec<_> = dagrun_stages::catalog().iter().map(|k| k.name).collect();
        names.push("cmd");
        names
    }
}
