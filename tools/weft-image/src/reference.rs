//! Image references (`weft/proxy:0.1.0`, `weft.local/pause:3.10`) and the two spellings
//! the archive needs: the fully qualified name containerd stores
//! (`docker.io/weft/proxy:0.1.0`) and the familiar one Docker's `RepoTags` use
//! (`weft/proxy:0.1.0`), normalised the way Docker and the kubelet do.

use std::fmt;

/// Registry assumed for references without one (Docker's rule).
pub const DEFAULT_DOMAIN: &str = "docker.io";

/// Why a reference was rejected.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RefError {
    /// Empty or otherwise malformed.
    #[error("invalid image reference {0:?}: {1}")]
    Invalid(String, &'static str),
}

/// A tagged image reference, normalised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    domain: String,
    path: String,
    tag: String,
}

fn valid_component(c: &str) -> bool {
    !c.is_empty()
        && c.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        && c.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
}

fn valid_tag(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 128
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        && t.bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
}

impl ImageRef {
    /// Parses `[domain/]path[:tag]`; the tag defaults to `latest`. Digest references
    /// (`@sha256:…`) are rejected: an archive names what it contains by tag.
    pub fn parse(s: &str) -> Result<Self, RefError> {
        let bad = |why| RefError::Invalid(s.to_string(), why);
        if s.contains('@') {
            return Err(bad("digest references are not supported, use a tag"));
        }
        let (name, tag) = match s.rsplit_once(':') {
            Some((n, t)) if !t.contains('/') => (n, t),
            _ => (s, "latest"),
        };
        if !valid_tag(tag) {
            return Err(bad("invalid tag"));
        }
        let (domain, path) = match name.split_once('/') {
            Some((first, rest)) if first.contains('.') || first.contains(':') || first == "localhost" => {
                (first.to_string(), rest.to_string())
            }
            _ => (DEFAULT_DOMAIN.to_string(), name.to_string()),
        };
        let path = if domain == DEFAULT_DOMAIN && !path.contains('/') {
            format!("library/{path}")
        } else {
            path
        };
        if domain.is_empty() || !path.split('/').all(valid_component) {
            return Err(bad("each path component must be lowercase [a-z0-9._-]"));
        }
        Ok(ImageRef {
            domain,
            path,
            tag: tag.to_string(),
        })
    }

    /// The tag (`0.1.0`): the value of `org.opencontainers.image.ref.name`.
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// Fully qualified `domain/path:tag`, as containerd and the kubelet name images.
    pub fn qualified(&self) -> String {
        format!("{}/{}:{}", self.domain, self.path, self.tag)
    }

    /// Docker's familiar form for `RepoTags`: `docker.io/` and `library/` elided.
    pub fn familiar(&self) -> String {
        if self.domain == DEFAULT_DOMAIN {
            let path = self.path.strip_prefix("library/").unwrap_or(&self.path);
            format!("{path}:{}", self.tag)
        } else {
            self.qualified()
        }
    }

    /// `domain/path` without the tag.
    pub fn repository(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.qualified())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_hub_names_are_qualified_and_familiar() {
        let r = ImageRef::parse("weft/proxy:0.1.0").unwrap();
        assert_eq!(r.qualified(), "docker.io/weft/proxy:0.1.0");
        assert_eq!(r.familiar(), "weft/proxy:0.1.0");
        assert_eq!(r.tag(), "0.1.0");
        let lib = ImageRef::parse("busybox").unwrap();
        assert_eq!(lib.qualified(), "docker.io/library/busybox:latest");
        assert_eq!(lib.familiar(), "busybox:latest");
        assert_eq!(
            ImageRef::parse("docker.io/weft/proxy:0.1.0").unwrap(),
            ImageRef::parse("weft/proxy:0.1.0").unwrap()
        );
    }

    #[test]
    fn other_registries_stay_qualified() {
        let r = ImageRef::parse("weft.local/pause:3.10").unwrap();
        assert_eq!(r.qualified(), "weft.local/pause:3.10");
        assert_eq!(r.familiar(), "weft.local/pause:3.10");
        let port = ImageRef::parse("127.0.0.1:5000/weft/proxy:dev").unwrap();
        assert_eq!(port.repository(), "127.0.0.1:5000/weft/proxy");
        assert_eq!(port.tag(), "dev");
        let local = ImageRef::parse("localhost/x").unwrap();
        assert_eq!(local.qualified(), "localhost/x:latest");
    }

    #[test]
    fn rejects_malformed_references() {
        for bad in [
            "",
            "Weft/Proxy:1",
            "weft/proxy@sha256:00",
            "weft//proxy:1",
            "weft/proxy:",
            "a:-x",
        ] {
            assert!(ImageRef::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
