//! Checking a stage's params against its param struct, with defaults filled in.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// A param that does not fit the kind's param struct.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct ParamError {
    /// The offending key, when one can be named.
    pub key: Option<String>,
    pub message: String,
}

/// Checks `value` (a JSON object) against `P` and returns it with every default filled in.
///
/// Each key is first tried on its own (every field of a param struct has a default),
/// so an ill-typed value is reported against its key instead of against the whole map.
pub fn check<P: DeserializeOwned + Serialize>(value: serde_json::Value) -> Result<serde_json::Value, ParamError> {
    let serde_json::Value::Object(map) = value else {
        return Err(ParamError { key: None, message: "params must be a mapping".into() });
    };
    for (k, v) in &map {
        let single = serde_json::Value::Object([(k.clone(), v.clone())].into_iter().collect());
        if let Err(e) = serde_json::from_value::<P>(single) {
            return Err(ParamError { key: Some(k.clone()), message: strip_position(&e.to_string()) });
        }
    }
    let typed: P = serde_json::from_value(serde_json::Value::Object(map))
        .map_err(|e| ParamError { key: None, message: strip_position(&e.to_string()) })?;
    serde_json::to_value(typed).map_err(|e| ParamError { key: None, message: e.to_string() })
}

/// Reads already-checked params into the kind's struct.
pub fn typed<P: DeserializeOwned>(value: &serde_json::Value) -> Result<P, crate::StageError> {
    P::deserialize(value).map_err(|e| crate::StageError::Failed(format!("params: {e}")))
}

/// serde_json appends " at line 1 column 2" for positions inside its own text, which
/// mean nothing to a user who wrote YAML.
fn strip_position(message: &str) -> String {
    match message.find(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::json;

    #[derive(Serialize, Deserialize)]
    #[serde(deny_unknown_fields, default)]
    struct P {
        ratio: u32,
        name: String,
    }
    impl Default for P {
        fn default() -> Self {
            P { ratio: 5, name: "x".into() }
        }
    }

    #[test]
    fn fills_defaults() {
        assert_eq!(check::<P>(json!({})).unwrap(), json!({"ratio": 5, "name": "x"}));
        assert_eq!(check::<P>(json!({"ratio": 5})).unwrap(), check::<P>(json!({})).unwrap());
    }

    #[test]
    fn names_the_ill_typed_key() {
        let e = check::<P>(json!({"name": "y", "ratio": "many"})).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("ratio"));
        assert!(e.message.contains("invalid type"), "{}", e.message);
    }

    #[test]
    fn names_the_unknown_key() {
        let e = check::<P>(json!({"ratoi": 1})).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("ratoi"));
        assert!(e.message.contains("unknown field `ratoi`"), "{}", e.message);
    }
}
