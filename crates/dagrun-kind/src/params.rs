//! Checking a stage's params against its param struct and validating their values,
//! with defaults filled in: the engine calls this when a pipeline loads, so a bad
//! value is reported at its YAML line before any stage runs.

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

impl ParamError {
    /// A bad value of param `key`.
    pub fn at(key: &str, message: impl Into<String>) -> ParamError {
        ParamError { key: Some(key.to_string()), message: message.into() }
    }
}

/// A kind's param struct: serde gives the shape and the defaults, `validate` the
/// rules types cannot say (ranges, names, agreement between params).
pub trait Params: DeserializeOwned + Serialize {
    fn validate(&self) -> Result<(), ParamError> {
        Ok(())
    }
}

/// `Err` naming `key` unless `ok`.
pub fn ensure(ok: bool, key: &str, message: impl FnOnce() -> String) -> Result<(), ParamError> {
    if ok { Ok(()) } else { Err(ParamError::at(key, message())) }
}

/// `key` must be at least 1.
pub fn positive_int(key: &str, value: u64) -> Result<(), ParamError> {
    ensure(value >= 1, key, || format!("must be at least 1, not {value}"))
}

/// `key` must be at most `most`.
pub fn at_most(key: &str, value: u64, most: u64) -> Result<(), ParamError> {
    ensure(value <= most, key, || format!("must be at most {most}, not {value}"))
}

/// `key` must be a finite number above 0.
pub fn positive(key: &str, value: f64) -> Result<(), ParamError> {
    ensure(value.is_finite() && value > 0.0, key, || format!("must be a number above 0, not {value}"))
}

/// `key` must be a finite number in `lo..=hi`.
pub fn within(key: &str, value: f64, lo: f64, hi: f64) -> Result<(), ParamError> {
    ensure(value.is_finite() && (lo..=hi).contains(&value), key, || format!("must lie in [{lo}, {hi}], not {value}"))
}

/// Checks `value` (a JSON object) against `P`, validates it and returns it with every
/// default filled in.
///
/// Each key is first tried on its own (every field of a param struct has a default),
/// so an ill-typed value is reported against its key instead of against the whole map.
pub fn check<P: Params>(value: serde_json::Value) -> Result<serde_json::Value, ParamError> {
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
    typed.validate()?;
    serde_json::to_value(typed).map_err(|e| ParamError { key: None, message: e.to_string() })
}

/// Reads already-checked params into the kind's struct.
pub fn typed<P: Params>(value: &serde_json::Value) -> Result<P, crate::StageError> {
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
    impl Params for P {
        fn validate(&self) -> Result<(), ParamError> {
            positive_int("ratio", self.ratio.into())
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

    #[test]
    fn validates_values_after_types() {
        let e = check::<P>(json!({"ratio": 0})).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("ratio"));
        assert_eq!(e.message, "must be at least 1, not 0");
    }

    #[test]
    fn number_rules_reject_nan_and_bounds() {
        assert!(positive("lr", f64::NAN).is_err());
        assert!(positive("lr", 0.0).is_err());
        assert!(positive("lr", 1e-9).is_ok());
        assert!(within("p", 1.0, 0.0, 1.0).is_ok());
        assert_eq!(within("p", 1.5, 0.0, 1.0).unwrap_err().message, "must lie in [0, 1], not 1.5");
    }
}
