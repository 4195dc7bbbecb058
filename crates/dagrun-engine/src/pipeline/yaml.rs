//! The shape of `pipeline.yaml` as serde reads it, every value with its place in the
//! file; `load` turns it into a checked pipeline.

use std::fmt;

use serde::Deserialize;
use serde::de::{MapAccess, Visitor};
use serde_saphyr::Spanned;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPipeline {
    pub stages: Spanned<Ordered<Spanned<String>, RawStage>>,
    #[serde(default)]
    pub checks: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStage {
    pub kind: Spanned<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub inputs: Ordered<Spanned<String>, Spanned<String>>,
    #[serde(default)]
    pub params: Ordered<Spanned<String>, Spanned<serde_json::Value>>,
    /// Only for `cmd`: the files it writes, e.g. `[model.json, scores.parquet]`.
    #[serde(default)]
    pub outputs: Option<Spanned<Vec<Spanned<String>>>>,
    /// Only for `cmd`: the shell command.
    #[serde(default)]
    pub run: Option<Spanned<String>>,
}

/// A YAML mapping kept in the order it was written (duplicate keys are rejected
/// by the parser before they get here).
pub(super) struct Ordered<K, V>(pub Vec<(K, V)>);

impl<K, V> Default for Ordered<K, V> {
    fn default() -> Self {
        Ordered(Vec::new())
    }
}

impl<'de, K: Deserialize<'de>, V: Deserialize<'de>> Deserialize<'de> for Ordered<K, V> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V2<K, V>(std::marker::PhantomData<(K, V)>);
        impl<'de, K: Deserialize<'de>, V: Deserialize<'de>> Visitor<'de> for V2<K, V> {
            type Value = Ordered<K, V>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a mapping")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    out.push(entry);
                }
                Ok(Ordered(out))
            }
        }
        d.deserialize_map(V2(std::marker::PhantomData))
    }
}

/// serde-saphyr's messages carry their own position suffix; ours is the prefix.
pub(super) fn yaml_message(msg: &str) -> String {
    let msg = msg.trim();
    if let Some(key) = msg.strip_prefix("duplicate mapping key: ") {
        let key = key.split(", set DuplicateKeyPolicy").next().unwrap_or(key);
        return format!("`{key}` appears twice in one mapping (stage names and keys must be unique)");
    }
    let msg = match msg.rfind(" at line ") {
        Some(i) => &msg[..i],
        None => msg,
    };
    msg.to_string()
}
