//! The kinds a pipeline stage can have: one of the catalog the binary hands the
//! engine (the built-in kinds), or the engine's own `cmd`.

use dagrun_kind::KindSpec;

/// The built-in kinds a pipeline may use, besides `cmd`.
#[derive(Clone, Copy)]
pub struct Catalog {
    kinds: &'static [KindSpec],
}

impl Catalog {
    pub const fn new(kinds: &'static [KindSpec]) -> Catalog {
        Catalog { kinds }
    }

    /// The kind called `name`.
    pub fn lookup(&self, name: &str) -> Option<Kind> {
        if name == "cmd" {
            return Some(Kind::Cmd);
        }
        self.kinds.iter().find(|k| k.name == name).map(Kind::Builtin)
    }

    /// Every kind name a pipeline may use, for "known kinds" messages.
    pub fn names(&self) -> Vec<&'static str> {
        let mut names: Vec<_> = self.kinds.iter().map(|k| k.name).collect();
        names.push("cmd");
        names
    }
}

/// A kind a pipeline stage can have.
#[derive(Clone, Copy)]
pub enum Kind {
    Builtin(&'static KindSpec),
    /// An external command with declared inputs and outputs (see `exec::cmd_kind`).
    Cmd,
}

impl Kind {
    pub fn name(&self) -> &'static str {
        match self {
            Kind::Builtin(k) => k.name,
            Kind::Cmd => "cmd",
        }
    }
}
