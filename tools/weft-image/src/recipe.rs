//! Recipe files: the options of one `weft-image pack`, one per line, so a build can be
//! recorded next to its archive and replayed (`weft-image pack --recipe F --out X`).
//!
//! Each non-empty line not starting with `#` is one option, `--name value` (split at
//! the first space only, so values may contain spaces) or `--name=value` or `--flag`.

use std::path::Path;

/// The recipe cannot be read or holds something that is not an option.
#[derive(Debug, thiserror::Error)]
pub enum RecipeError {
    /// Reading failed.
    #[error("reading recipe {0}: {1}")]
    Io(String, std::io::Error),
    /// A line does not start with `--`.
    #[error("recipe {file} line {line}: {text:?} is not an option (`--name value`)")]
    NotAnOption {
        /// The file.
        file: String,
        /// 1-based line number.
        line: usize,
        /// The line.
        text: String,
    },
    /// Options that belong on the command line, not in a recipe.
    #[error("recipe {0} must not contain {1} (give it on the command line)")]
    Forbidden(String, &'static str),
}

/// Splits recipe text into command-line arguments.
pub fn parse(file: &str, text: &str) -> Result<Vec<String>, RecipeError> {
    let mut args = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if !line.starts_with("--") {
            return Err(RecipeError::NotAnOption {
                file: file.to_string(),
                line: i + 1,
                text: line.to_string(),
            });
        }
        let name = line.split([' ', '=']).next().unwrap_or_default();
        for forbidden in ["--recipe", "--out"] {
            if name == forbidden {
                return Err(RecipeError::Forbidden(file.to_string(), forbidden));
            }
        }
        match line.split_once(' ') {
            Some((flag, value)) if !flag.contains('=') => {
                args.push(flag.to_string());
                args.push(value.trim_start().to_string());
            }
            _ => args.push(line.to_string()),
        }
    }
    Ok(args)
}

/// Reads and splits a recipe file.
pub fn load(path: &Path) -> Result<Vec<String>, RecipeError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| RecipeError::Io(name.clone(), e))?;
    parse(&name, &text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_become_arguments() {
        let text = "# pause\n--ref weft.local/pause:3.10\n\n--add /tmp/pause=/pause:0755\n--env MSG=hello world\n--label=a=b\n--no-default-path\n";
        assert_eq!(
            parse("r", text).unwrap(),
            [
                "--ref",
                "weft.local/pause:3.10",
                "--add",
                "/tmp/pause=/pause:0755",
                "--env",
                "MSG=hello world",
                "--label=a=b",
                "--no-default-path"
            ]
        );
    }

    #[test]
    fn rejects_non_options_and_out() {
        assert!(matches!(
            parse("r", "--ref x\nstray\n"),
            Err(RecipeError::NotAnOption { line: 2, .. })
        ));
        assert!(matches!(
            parse("r", "--out x.tar\n"),
            Err(RecipeError::Forbidden(_, "--out"))
        ));
        assert!(matches!(
            parse("r", "--recipe=y\n"),
            Err(RecipeError::Forbidden(_, "--recipe"))
        ));
    }
}
