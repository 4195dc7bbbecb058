//! Metric thresholds from `checks:` in the pipeline, e.g. `evaluate.hr@50 >= 0.33`
//! or `evaluate.hr@50 >= baseline.hr@50`; a failed check makes `run` and
//! `metrics --check` exit with code 3.

use std::collections::BTreeMap;
use std::fmt;

#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    Metric(String),
    Number(f64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Ge,
    Gt,
    Le,
    Lt,
    Eq,
}

/// One parsed check.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    pub text: String,
    pub lhs: Operand,
    pub op: Op,
    pub rhs: Operand,
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Parses `lhs OP rhs`; the error says what is expected.
pub fn parse(text: &str) -> Result<Check, String> {
    let ops = [(">=", Op::Ge), ("<=", Op::Le), ("==", Op::Eq), (">", Op::Gt), ("<", Op::Lt)];
    let (at, sym, op) = ops
        .iter()
        .filter_map(|(s, op)| text.find(s).map(|i| (i, *s, *op)))
        .min_by_key(|(i, s, _)| (*i, usize::MAX - s.len()))
        .ok_or_else(|| {
            format!(
                "check `{text}`: expected `<stage>.<metric> >= <number or stage.metric>` (operators >=, >, <=, <, ==)"
            )
        })?;
    let operand = |s: &str| -> Result<Operand, String> {
        let s = s.trim();
        if let Ok(x) = s.parse::<f64>() {
            return Ok(Operand::Number(x));
        }
        match s.split_once('.') {
            Some((stage, metric)) if !stage.is_empty() && !metric.is_empty() && !s.contains(' ') => {
                Ok(Operand::Metric(s.to_string()))
            }
            _ => Err(format!("check `{text}`: `{s}` is neither a number nor `<stage>.<metric>`")),
        }
    };
    Ok(Check { text: text.to_string(), lhs: operand(&text[..at])?, op, rhs: operand(&text[at + sym.len()..])? })
}

impl Check {
    /// Ok when the check holds; Err says how it failed (or which metric is missing).
    pub fn holds(&self, metrics: &BTreeMap<String, f64>) -> Result<(), String> {
        let value = |o: &Operand| match o {
            Operand::Number(x) => Ok(*x),
            Operand::Metric(m) => metrics.get(m).copied().ok_or_else(|| format!("{}: no metric `{m}`", self.text)),
        };
        let (a, b) = (value(&self.lhs)?, value(&self.rhs)?);
        let ok = match self.op {
            Op::Ge => a >= b,
            Op::Gt => a > b,
            Op::Le => a <= b,
            Op::Lt => a < b,
            Op::Eq => a == b,
        };
        if ok { Ok(()) } else { Err(format!("{} ({a:.4} vs {b:.4})", self.text)) }
    }
}

/// Every check that fails, in order.
pub fn failures(checks: &[Check], metrics: &BTreeMap<String, f64>) -> Vec<String> {
    checks.iter().filter_map(|c| c.holds(metrics).err()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_numbers_and_metrics() {
        let c = parse("evaluate.hr@50 >= 0.33").unwrap();
        assert_eq!(c.lhs, Operand::Metric("evaluate.hr@50".into()));
        assert_eq!(c.op, Op::Ge);
        assert_eq!(c.rhs, Operand::Number(0.33));
        let c = parse("evaluate.hr@50>baseline.hr@50").unwrap();
        assert_eq!((c.op, c.rhs), (Op::Gt, Operand::Metric("baseline.hr@50".into())));
        assert!(parse("hr is good").is_err());
        assert!(parse("evaluate.hr@50 >= lots").is_err());
    }

    #[test]
    fn evaluates_against_metrics() {
        let m = BTreeMap::from([("a.x".to_string(), 0.5), ("b.x".to_string(), 0.25)]);
        assert!(parse("a.x >= b.x").unwrap().holds(&m).is_ok());
        assert!(parse("a.x < 0.5").unwrap().holds(&m).unwrap_err().contains("0.5000 vs 0.5000"));
        assert!(parse("c.y > 0").unwrap().holds(&m).unwrap_err().contains("no metric `c.y`"));
    }
}
