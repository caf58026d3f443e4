//! Go-style durations (`250ms`, `1.5s`, `1m30s`) as users write them in weft
//! policies. The text is kept as written (objects read back unchanged); the CRD
//! schema rejects malformed values with a message naming the field.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::sync::LazyLock;

/// Pattern enforced by the CRD schema (and by [`GoDuration::to_millis`]).
pub const DURATION_PATTERN: &str = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$";

// The pattern is a constant that is covered by unit tests, so compiling it cannot fail.
#[allow(clippy::expect_used)]
static PATTERN: LazyLock<regex::Regex> =
    LazyLock::new(|| regex::Regex::new(DURATION_PATTERN).expect("DURATION_PATTERN is a valid regex"));

/// A duration in Go syntax limited to `ms`, `s`, `m` and `h` units.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct GoDuration(pub String);

/// The duration text does not match [`DURATION_PATTERN`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {0:?}: expected e.g. 250ms, 2s, 1m30s")]
pub struct DurationError(pub String);

impl GoDuration {
    /// Whole milliseconds (fractions of a millisecond are dropped).
    pub fn to_millis(&self) -> Result<u64, DurationError> {
        let bad = || DurationError(self.0.clone());
        let text = self.0.as_str();
        if !PATTERN.is_match(text) {
            return Err(bad());
        }
        let mut total = 0f64;
        let mut rest = text;
        while !rest.is_empty() {
            let num_len = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .ok_or_else(bad)?;
            if num_len == 0 {
                return Err(bad());
            }
            let value: f64 = rest[..num_len].parse().map_err(|_| bad())?;
            rest = &rest[num_len..];
            let (unit_ms, unit_len) = if rest.starts_with("ms") {
                (1.0, 2)
            } else if rest.starts_with('s') {
                (1000.0, 1)
            } else if rest.starts_with('m') {
                (60_000.0, 1)
            } else if rest.starts_with('h') {
                (3_600_000.0, 1)
            } else {
                return Err(bad());
            };
            total += value * unit_ms;
            rest = &rest[unit_len..];
        }
        if !total.is_finite() || total > u64::MAX as f64 {
            return Err(bad());
        }
        Ok(total as u64)
    }
}

impl From<&str> for GoDuration {
    fn from(s: &str) -> Self {
        Self(s.to_string())
    }
}

impl JsonSchema for GoDuration {
    fn schema_name() -> Cow<'static, str> {
        "GoDuration".into()
    }
    fn inline_schema() -> bool {
        true
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": DURATION_PATTERN,
            "maxLength": 32,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_durations() {
        for (text, ms) in [
            ("250ms", 250),
            ("2s", 2000),
            ("1m30s", 90_000),
            ("1.5s", 1500),
            ("1h", 3_600_000),
        ] {
            assert_eq!(GoDuration::from(text).to_millis(), Ok(ms), "{text}");
        }
    }

    #[test]
    fn rejects_malformed() {
        let pattern = regex::Regex::new(DURATION_PATTERN).unwrap();
        for text in ["", "abc", "5", "-1s", "1d", "s", "1.s5"] {
            assert!(GoDuration::from(text).to_millis().is_err(), "{text}");
            assert!(!pattern.is_match(text), "{text}");
        }
    }
}
