//! SMI v1alpha1 TrafficSplit weights: Kubernetes quantities (`"500m"`, `"1"`,
//! `"10"`) or plain integers. [`Weight`] keeps exactly what was stored so an object
//! reads back unchanged; [`Weight::millis`] normalises it for the proxy.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;

/// Regex for a non-negative decimal/binary-SI quantity (no sign other than `+`).
pub const QUANTITY_PATTERN: &str =
    r"^\+?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+]?[0-9]+|[munkMGTPE]|[KMGTPE]i)?$";

/// An int-or-string weight, stored as given.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Weight {
    /// A JSON integer (`5`).
    Int(i64),
    /// A quantity string (`"500m"`, `"5"`).
    Quantity(String),
}

/// The weight is negative, not a quantity, or too large.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid weight {0}: expected a non-negative integer or quantity such as \"500m\"")]
pub struct WeightError(pub String);

impl Weight {
    /// The weight in milli-units (`"500m"` → 500, `5` → 5000), rounded up like
    /// Kubernetes' `MilliValue`.
    pub fn millis(&self) -> Result<u64, WeightError> {
        match self {
            Weight::Int(n) => u64::try_from(*n)
                .ok()
                .and_then(|n| n.checked_mul(1000))
                .ok_or_else(|| WeightError(n.to_string())),
            Weight::Quantity(s) => quantity_millis(s).ok_or_else(|| WeightError(format!("{s:?}"))),
        }
    }
}

fn quantity_millis(text: &str) -> Option<u64> {
    let s = text.strip_prefix('+').unwrap_or(text);
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(split);
    if number.is_empty() || number == "." {
        return None;
    }
    let value: f64 = number.parse().ok()?;
    let scale: f64 = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        exp if exp.starts_with(['e', 'E']) => {
            let digits = exp[1..].strip_prefix('+').unwrap_or(&exp[1..]);
            if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
                return None;
            }
            10f64.powi(digits.parse::<i32>().ok()?)
        }
        _ => return None,
    };
    let millis = (value * scale * 1000.0).ceil();
    (millis.is_finite() && millis <= u64::MAX as f64).then_some(millis as u64)
}

impl JsonSchema for Weight {
    fn schema_name() -> Cow<'static, str> {
        "QuantityWeight".into()
    }
    fn inline_schema() -> bool {
        true
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "x-kubernetes-int-or-string": true,
            "maxLength": 32,
            "description": "Relative weight: a non-negative integer or a Kubernetes quantity such as \"500m\".",
            "x-kubernetes-validations": [{
                "rule": format!("type(self) == int ? self >= 0 : self.matches('{}')", QUANTITY_PATTERN.replace('\\', "\\\\")),
                "message": "weight must be a non-negative integer or quantity (e.g. 5, \"1\", \"500m\")",
            }],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_quantities_and_ints() {
        let cases = [
            (Weight::Quantity("500m".into()), 500),
            (Weight::Quantity("1".into()), 1000),
            (Weight::Quantity("100".into()), 100_000),
            (Weight::Quantity("10m".into()), 10),
            (Weight::Quantity("1.5".into()), 1500),
            (Weight::Quantity("1k".into()), 1_000_000),
            (Weight::Quantity("1e2".into()), 100_000),
            (Weight::Quantity("1Ki".into()), 1_024_000),
            (Weight::Int(5), 5000),
            (Weight::Int(0), 0),
        ];
        for (w, want) in cases {
            assert_eq!(w.millis(), Ok(want), "{w:?}");
        }
    }

    #[test]
    fn rejects_negative_and_garbage() {
        for w in [
            Weight::Int(-1),
            Weight::Quantity("-5".into()),
            Weight::Quantity("abc".into()),
            Weight::Quantity("1x".into()),
        ] {
            assert!(w.millis().is_err(), "{w:?}");
        }
    }

    #[test]
    fn keeps_stored_shape() {
        let ints: Vec<Weight> = serde_json::from_str(r#"[5, "5", "500m"]"#).unwrap();
        assert_eq!(
            ints,
            vec![
                Weight::Int(5),
                Weight::Quantity("5".into()),
                Weight::Quantity("500m".into())
            ]
        );
        assert_eq!(serde_json::to_string(&ints).unwrap(), r#"[5,"5","500m"]"#);
    }

    #[test]
    fn schema_pattern_agrees_with_parser() {
        let re = regex::Regex::new(QUANTITY_PATTERN).unwrap();
        for s in ["500m", "1", "+2", "1.5", "1e3", "2Ki", ".5"] {
            assert!(re.is_match(s) && quantity_millis(s).is_some(), "{s}");
        }
        for s in ["-1", "abc", "1x", ""] {
            assert!(!re.is_match(s) && quantity_millis(s).is_none(), "{s}");
        }
    }
}
