//! The one place route regexes are anchored. `pathRegex` and header regexes must
//! match the whole (normalized) path or value, as Envoy's `safe_regex` route
//! matching does; the operator's validation, the config validation and the
//! proxy's matcher all compile through [`compile_full`], so a pattern that is
//! accepted in one place behaves the same in the others.

use regex::Regex;

/// Compiles `re` so that it must match the whole input.
///
/// The pattern must also be valid on its own: wrapping alone would accept an
/// unbalanced pattern such as `a)|(b` (which becomes `^(?:a)|(b)$`, an unanchored
/// alternative) and silently change what it matches.
pub fn compile_full(re: &str) -> Result<Regex, regex::Error> {
    Regex::new(re)?;
    Regex::new(&format!("^(?:{re})$"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn whole_input_must_match() {
        let re = compile_full("/metrics").unwrap();
        assert!(re.is_match("/metrics"));
        assert!(!re.is_match("/metrics-admin"));
        assert!(!re.is_match("/metrics/x"));
        assert!(!re.is_match("/x/metrics"));
        let alt = compile_full("/a|/b").unwrap();
        assert!(alt.is_match("/b"));
        assert!(!alt.is_match("/b/c"));
        assert!(compile_full("/api/.*").unwrap().is_match("/api/v1/x"));
    }

    #[test]
    fn patterns_that_only_compile_when_wrapped_are_refused() {
        assert!(compile_full("/a)|(/b").is_err());
        assert!(compile_full("(?x)/a#").is_err());
    }
}
