//! Request path normalization for authorization and route matching, in the
//! spirit of Envoy's `normalize_path`, `merge_slashes` and
//! `path_with_escaped_slashes_action: REJECT_REQUEST`:
//!
//! 1. percent-escapes of unreserved characters (`A-Z a-z 0-9 - . _ ~`) are
//!    decoded (`%2E` is a dot, `%61` is `a`), other escapes are kept with
//!    upper-case hex (`%3b` → `%3B`);
//! 2. `%2F`, `%5C` (encoded `/` and `\`) and a raw `\` are refused, as is a `%`
//!    not followed by two hex digits: no single reading of such a path exists;
//! 3. runs of `/` are merged into one;
//! 4. `.` and `..` segments are removed (RFC 3986 §5.2.4; `..` stops at the root).
//!
//! The inbound sidecar in `accessMode: smi` forwards the normalized path, so the
//! application serves exactly the path that was authorized.

use std::borrow::Cow;

/// Why a path cannot be normalized (answered with 400).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// A `%` not followed by two hex digits.
    #[error("malformed percent-encoding in the request path")]
    BadEscape,
    /// `%2F`, `%5C` or a raw backslash.
    #[error("encoded slash or backslash in the request path")]
    EscapedSlash,
}

fn hex(b: u8) -> Result<u8, PathError> {
    match b {
        b'0'..=b'9' => Ok(b - b'0'),
        b'a'..=b'f' => Ok(b - b'a' + 10),
        b'A'..=b'F' => Ok(b - b'A' + 10),
        _ => Err(PathError::BadEscape),
    }
}

fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Steps 1 and 2: decode unreserved escapes, refuse escaped slashes.
fn decode(path: &str) -> Result<Cow<'_, str>, PathError> {
    let bytes = path.as_bytes();
    if !bytes.iter().any(|b| matches!(b, b'%' | b'\\')) {
        return Ok(Cow::Borrowed(path));
    }
    const UPPER: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'%' => {
                let (Some(&h), Some(&l)) = (bytes.get(i + 1), bytes.get(i + 2)) else {
                    return Err(PathError::BadEscape);
                };
                let v = (hex(h)? << 4) | hex(l)?;
                match v {
                    b'/' | b'\\' => return Err(PathError::EscapedSlash),
                    v if unreserved(v) => out.push(v),
                    v => out.extend([b'%', UPPER[usize::from(v >> 4)], UPPER[usize::from(v & 0xf)]]),
                }
                i += 3;
            }
            b'\\' => return Err(PathError::EscapedSlash),
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    // Only ASCII was inserted, at ASCII positions: still UTF-8.
    String::from_utf8(out)
        .map(Cow::Owned)
        .map_err(|_| PathError::BadEscape)
}

/// Steps 3 and 4 on a decoded path that starts with `/`.
fn collapse(path: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    let mut trailing = false;
    for seg in path.split('/').skip(1) {
        trailing = true;
        match seg {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => {
                segments.push(s);
                trailing = false;
            }
        }
    }
    let mut out = String::with_capacity(path.len());
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    if trailing || segments.is_empty() {
        out.push('/');
    }
    out
}

/// The normalized form of a request path. A path that does not start with `/`
/// (`*` of `OPTIONS *`, the empty path of `CONNECT`) is returned unchanged.
pub fn normalize(path: &str) -> Result<Cow<'_, str>, PathError> {
    if !path.starts_with('/') {
        return Ok(Cow::Borrowed(path));
    }
    let decoded = decode(path)?;
    let collapsed = collapse(&decoded);
    Ok(if collapsed == path {
        Cow::Borrowed(path)
    } else {
        Cow::Owned(collapsed)
    })
}

/// Replaces the path of `uri` by its normalized form (query kept).
pub fn normalize_uri(uri: &mut http::Uri) -> Result<(), PathError> {
    let Cow::Owned(path) = normalize(uri.path())? else {
        return Ok(());
    };
    let pq = match uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path,
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(http::uri::PathAndQuery::try_from(pq).map_err(|_| PathError::BadEscape)?);
    *uri = http::Uri::from_parts(parts).map_err(|_| PathError::BadEscape)?;
    Ok(())
}

#[cfg(test)]
#[path = "path_tests.rs"]
mod tests;
