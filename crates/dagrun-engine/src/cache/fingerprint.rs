//! The cache key of a stage execution: one struct holds everything that goes into
//! it, with a canonical encoding whose hashes the tests pin.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::pipeline::{Kind, Stage};

/// Bumped when the store's layout or the meaning of a record changes; part of every key.
pub const STORE_FORMAT: u32 = 1;

/// Everything a stage's outputs depend on. Two executions with equal fingerprints
/// produce the same outputs (up to a stage's own nondeterminism, e.g. a GPU).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fingerprint {
    pub kind: String,
    /// blake3 of the kind's source (built-in kinds) or of the command line (`cmd`).
    pub code: String,
    /// Params with defaults filled in, so writing a default explicitly changes nothing.
    pub params: serde_json::Value,
    /// Input name → content hash of what it reads (never an upstream key: early cutoff).
    pub inputs: BTreeMap<String, String>,
    /// Declared outputs, `name.ext`, in declaration order.
    pub outputs: Vec<String>,
    pub store_format: u32,
}

impl Fingerprint {
    /// Canonical JSON: keys sorted at every depth, no whitespace, numbers as serde_json prints them.
    pub fn canonical(&self) -> String {
        let value = serde_json::to_value(self).expect("a fingerprint is plain JSON");
        let mut out = String::new();
        write_canonical(&value, &mut out);
        out
    }

    /// The cache key: blake3 of the canonical encoding, hex.
    pub fn key(&self) -> String {
        blake3::hash(self.canonical().as_bytes()).to_hex().to_string()
    }

    /// The fingerprint of `stage` given the content hashes of its inputs.
    pub fn of(stage: &Stage, input_hashes: BTreeMap<String, String>) -> Fingerprint {
        Fingerprint {
            kind: stage.kind.name().to_string(),
            code: code_of(stage),
            params: stage.params.clone(),
            inputs: input_hashes,
            outputs: stage.outputs.iter().map(|o| format!("{}.{}", o.name, o.ext)).collect(),
            store_format: STORE_FORMAT,
        }
    }
}

/// The code fingerprint of a stage: the kind's source hash, or a `cmd` stage's command.
fn code_of(stage: &Stage) -> String {
    match stage.kind {
        Kind::Builtin(spec) => spec.fingerprint.to_string(),
        Kind::Cmd => {
            let command = stage.command.as_deref().unwrap_or_default();
            blake3::hash(format!("cmd\0{command}").as_bytes()).to_hex().to_string()
        }
    }
}

fn write_canonical(v: &serde_json::Value, out: &mut String) {
    match v {
        serde_json::Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&serde_json::Value::String(k.clone()).to_string());
                out.push(':');
                write_canonical(&map[k], out);
            }
            out.push('}');
        }
        serde_json::Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fp(params: serde_json::Value, inputs: &[(&str, &str)]) -> Fingerprint {
        Fingerprint {
            kind: "sample".into(),
            code: "c0de".into(),
            params,
            inputs: inputs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            outputs: vec!["train.parquet".into(), "test.parquet".into()],
            store_format: STORE_FORMAT,
        }
    }

    #[test]
    fn canonical_encoding_is_pinned() {
        let f = fp(json!({"neg_ratio": 5, "method": "uniform"}), &[("clicks", "aa"), ("vocab", "bb")]);
        assert_eq!(
            f.canonical(),
            r#"{"code":"c0de","inputs":{"clicks":"aa","vocab":"bb"},"kind":"sample","outputs":["train.parquet","test.parquet"],"params":{"method":"uniform","neg_ratio":5},"store_format":1}"#
        );
        assert_eq!(f.key(), "67182494a9c203e2d63e59f4414e59af904f752b310b1345e452a31f64a4818e");
    }

    #[test]
    fn param_order_does_not_matter() {
        let a = fp(json!({"a": 1, "b": {"y": 2, "x": [3, 1]}}), &[]);
        let b = fp(json!({"b": {"x": [3, 1], "y": 2}, "a": 1}), &[]);
        assert_eq!(a.key(), b.key());
    }

    #[test]
    fn input_order_does_not_matter() {
        let a = fp(json!({}), &[("x", "1"), ("y", "2")]);
        let b = fp(json!({}), &[("y", "2"), ("x", "1")]);
        assert_eq!(a.key(), b.key());
    }

    #[test]
    fn every_field_changes_the_key() {
        let base = fp(json!({"k": 1}), &[("x", "1")]);
        let mut variants = vec![base.clone(); 6];
        variants[0].kind = "train".into();
        variants[1].code = "other".into();
        variants[2].params = json!({"k": 2});
        variants[3].inputs.insert("x".into(), "2".into());
        variants[4].outputs.reverse();
        variants[5].store_format += 1;
        for v in variants {
            assert_ne!(v.key(), base.key(), "{v:?}");
        }
    }

    #[test]
    fn list_order_matters() {
        assert_ne!(fp(json!({"h": [64, 32]}), &[]).key(), fp(json!({"h": [32, 64]}), &[]).key());
    }

    #[test]
    fn integer_and_float_params_differ() {
        // Params are typed by the kind's struct before they get here, so `5` vs `5.0`
        // only differ for free-form `cmd` params, where the command may see the difference.
        assert_ne!(fp(json!({"t": 5}), &[]).key(), fp(json!({"t": 5.0}), &[]).key());
    }
}
