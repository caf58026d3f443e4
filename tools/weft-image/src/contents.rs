//! What goes into the layer, as given on the command line (`--add`, `--tree`, `--dir`,
//! `--symlink`), and how host files become layer entries: content read from the host,
//! mode normalised to 0755 (any execute bit) or 0644 unless given, owner 0:0 unless
//! given — so the host's umask, owners and timestamps never reach the image.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::layer::{Layer, LayerError, Owner};

/// A malformed spec, or a host file that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum ContentsError {
    /// The spec string does not parse.
    #[error("invalid {flag} {spec:?}: {why}")]
    Spec {
        /// Which flag.
        flag: &'static str,
        /// The spec.
        spec: String,
        /// Why.
        why: &'static str,
    },
    /// Reading the host failed.
    #[error("reading {0}: {1}")]
    Io(PathBuf, std::io::Error),
    /// The tree has a file type that cannot be put in a layer.
    #[error("{0}: only regular files, directories and symlinks can be added")]
    Unsupported(PathBuf),
    /// The layer rejected the entry.
    #[error(transparent)]
    Layer(#[from] LayerError),
}

/// `<image-path>[:<octal-mode>[:<uid>:<gid>]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Absolute path in the image.
    pub path: String,
    /// Explicit mode.
    pub mode: Option<u32>,
    /// Explicit owner.
    pub owner: Option<Owner>,
}

fn parse_target(flag: &'static str, spec: &str, s: &str) -> Result<Target, ContentsError> {
    let bad = |why| ContentsError::Spec {
        flag,
        spec: spec.to_string(),
        why,
    };
    let mut parts = s.split(':');
    let path = parts.next().unwrap_or_default().to_string();
    if !path.starts_with('/') {
        return Err(bad("the image path must be absolute"));
    }
    let rest: Vec<&str> = parts.collect();
    let mode = match rest.first() {
        Some(m) => Some(u32::from_str_radix(m, 8).map_err(|_| bad("mode must be octal, e.g. 0755"))?),
        None => None,
    };
    let owner = match rest.as_slice() {
        [] | [_] => None,
        [_, uid, gid] => Some(Owner {
            uid: uid.parse().map_err(|_| bad("uid must be a number"))?,
            gid: gid.parse().map_err(|_| bad("gid must be a number"))?,
        }),
        _ => return Err(bad("expected <path>[:<mode>[:<uid>:<gid>]]")),
    };
    Ok(Target { path, mode, owner })
}

/// `--add <host-path>=<image-path>[:<mode>[:<uid>:<gid>]]`: one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddSpec {
    /// File on the host (symlinks followed).
    pub host: PathBuf,
    /// Where it goes.
    pub target: Target,
}

impl FromStr for AddSpec {
    type Err = ContentsError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (host, target) = s.split_once('=').ok_or(ContentsError::Spec {
            flag: "--add",
            spec: s.to_string(),
            why: "expected <host-path>=<image-path>[:<mode>]",
        })?;
        Ok(AddSpec {
            host: PathBuf::from(host),
            target: parse_target("--add", s, target)?,
        })
    }
}

/// `--tree <host-dir>=<image-dir>`: a directory tree, recursively.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeSpec {
    /// Directory on the host.
    pub host: PathBuf,
    /// Where its contents go (`/` for the root).
    pub image_dir: String,
}

impl FromStr for TreeSpec {
    type Err = ContentsError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |why| ContentsError::Spec {
            flag: "--tree",
            spec: s.to_string(),
            why,
        };
        let (host, dir) = s.split_once('=').ok_or(bad("expected <host-dir>=<image-dir>"))?;
        if !dir.starts_with('/') {
            return Err(bad("the image directory must be absolute"));
        }
        Ok(TreeSpec {
            host: PathBuf::from(host),
            image_dir: dir.trim_end_matches('/').to_string(),
        })
    }
}

/// `--dir <image-path>[:<mode>[:<uid>:<gid>]]`: an (empty) directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirSpec(pub Target);

impl FromStr for DirSpec {
    type Err = ContentsError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_target("--dir", s, s).map(DirSpec)
    }
}

/// `--symlink <image-path>=<target>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SymlinkSpec {
    /// The link.
    pub path: String,
    /// What it points to, verbatim.
    pub target: String,
}

impl FromStr for SymlinkSpec {
    type Err = ContentsError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once('=') {
            Some((path, target)) if path.starts_with('/') && !target.is_empty() => Ok(SymlinkSpec {
                path: path.to_string(),
                target: target.to_string(),
            }),
            _ => Err(ContentsError::Spec {
                flag: "--symlink",
                spec: s.to_string(),
                why: "expected </absolute/image-path>=<target>",
            }),
        }
    }
}

/// Everything to put in the layer.
#[derive(Debug, Clone, Default)]
pub struct Contents {
    /// `--add`.
    pub files: Vec<AddSpec>,
    /// `--tree`.
    pub trees: Vec<TreeSpec>,
    /// `--dir`.
    pub dirs: Vec<DirSpec>,
    /// `--symlink`.
    pub symlinks: Vec<SymlinkSpec>,
    /// `--file-cap` (applied to files added by the flags above).
    pub file_caps: Vec<crate::filecaps::FileCapSpec>,
}

/// 0755 when any execute bit is set, else 0644.
pub fn normalised_mode(host_mode: u32) -> u32 {
    if host_mode & 0o111 != 0 { 0o755 } else { 0o644 }
}

fn read(path: &Path) -> Result<(Vec<u8>, u32), ContentsError> {
    let io = |e| ContentsError::Io(path.to_path_buf(), e);
    let meta = std::fs::metadata(path).map_err(io)?;
    if !meta.is_file() {
        return Err(ContentsError::Unsupported(path.to_path_buf()));
    }
    Ok((std::fs::read(path).map_err(io)?, meta.permissions().mode()))
}

fn join(dir: &str, name: &str) -> String {
    format!("{dir}/{name}")
}

fn add_tree(layer: &mut Layer, host: &Path, image_dir: &str) -> Result<(), ContentsError> {
    let io = |e| ContentsError::Io(host.to_path_buf(), e);
    let mut children: Vec<_> = std::fs::read_dir(host)
        .map_err(io)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(io)?;
    children.sort();
    for child in children {
        let name = child
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let image_path = join(image_dir, &name);
        let meta = std::fs::symlink_metadata(&child).map_err(|e| ContentsError::Io(child.clone(), e))?;
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&child).map_err(|e| ContentsError::Io(child.clone(), e))?;
            layer.add_symlink(&image_path, &target.to_string_lossy())?;
        } else if meta.is_dir() {
            layer.ensure_dir(&image_path)?;
            add_tree(layer, &child, &image_path)?;
        } else if meta.is_file() {
            let (data, mode) = read(&child)?;
            layer.add_file(&image_path, data, normalised_mode(mode), Owner::default())?;
        } else {
            return Err(ContentsError::Unsupported(child));
        }
    }
    Ok(())
}

impl Contents {
    /// Reads the host files and builds the layer. Order of the flags does not matter:
    /// the layer is sorted, and an explicit `--dir` wins over a parent made implicitly.
    pub fn to_layer(&self) -> Result<Layer, ContentsError> {
        let mut layer = Layer::new();
        for DirSpec(t) in &self.dirs {
            layer.add_dir(&t.path, t.mode.unwrap_or(0o755), t.owner.unwrap_or_default())?;
        }
        for f in &self.files {
            let (data, host_mode) = read(&f.host)?;
            let mode = f.target.mode.unwrap_or_else(|| normalised_mode(host_mode));
            layer.add_file(&f.target.path, data, mode, f.target.owner.unwrap_or_default())?;
        }
        for s in &self.symlinks {
            layer.add_symlink(&s.path, &s.target)?;
        }
        for t in &self.trees {
            add_tree(&mut layer, &t.host, &t.image_dir)?;
        }
        for c in &self.file_caps {
            layer.set_file_caps(&c.path, c.mask)?;
        }
        Ok(layer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layer::Node;

    #[test]
    fn parses_specs() {
        let a: AddSpec = "target/x/weft-proxy=/usr/local/bin/weft-proxy:0750:0:2102"
            .parse()
            .unwrap();
        assert_eq!(a.host, PathBuf::from("target/x/weft-proxy"));
        assert_eq!(a.target.path, "/usr/local/bin/weft-proxy");
        assert_eq!(a.target.mode, Some(0o750));
        assert_eq!(a.target.owner, Some(Owner { uid: 0, gid: 2102 }));
        let plain: AddSpec = "p=/pause".parse().unwrap();
        assert_eq!((plain.target.mode, plain.target.owner), (None, None));
        let d: DirSpec = "/tmp:1777".parse().unwrap();
        assert_eq!(d.0.mode, Some(0o1777));
        let s: SymlinkSpec = "/usr/sbin/iptables-nft-save=xtables-nft-multi".parse().unwrap();
        assert_eq!(s.target, "xtables-nft-multi");
        let t: TreeSpec = "stage=/".parse().unwrap();
        assert_eq!(t.image_dir, "");
        for bad in ["x", "x=rel/path", "x=/a:99", "x=/a:0755:1", "x=/a:0755:u:g"] {
            assert!(bad.parse::<AddSpec>().is_err(), "{bad}");
        }
        assert!("rel".parse::<DirSpec>().is_err());
        assert!("/a=".parse::<SymlinkSpec>().is_err());
        assert!("s=rel".parse::<TreeSpec>().is_err());
    }

    #[test]
    fn host_files_become_normalised_entries() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("stage/usr/sbin")).unwrap();
        std::fs::write(root.join("stage/usr/sbin/multi"), b"bin").unwrap();
        std::fs::set_permissions(
            root.join("stage/usr/sbin/multi"),
            std::fs::Permissions::from_mode(0o700),
        )
        .unwrap();
        std::os::unix::fs::symlink("multi", root.join("stage/usr/sbin/save")).unwrap();
        std::fs::write(root.join("app"), b"app").unwrap();
        std::fs::set_permissions(root.join("app"), std::fs::Permissions::from_mode(0o664)).unwrap();
        let contents = Contents {
            files: vec![
                format!("{}=/usr/local/bin/app", root.join("app").display())
                    .parse()
                    .unwrap(),
            ],
            trees: vec![format!("{}=/", root.join("stage").display()).parse().unwrap()],
            dirs: vec!["/tmp:1777".parse().unwrap(), "/usr:0711".parse().unwrap()],
            symlinks: vec!["/bin=usr/bin".parse().unwrap()],
            file_caps: Vec::new(),
        };
        let layer = contents.to_layer().unwrap();
        let got: Vec<(&str, &Node)> = layer.entries().collect();
        let find = |p: &str| {
            got.iter()
                .find(|(k, _)| *k == p)
                .map(|(_, n)| (*n).clone())
                .unwrap()
        };
        assert!(matches!(find("usr/sbin/multi"), Node::File { mode: 0o755, .. }));
        assert!(matches!(
            find("usr/local/bin/app"),
            Node::File { mode: 0o644, .. }
        ));
        assert!(matches!(find("usr/sbin/save"), Node::Symlink { target } if target == "multi"));
        assert!(matches!(
            find("usr"),
            Node::Dir {
                mode: 0o711,
                implicit: false,
                ..
            }
        ));
        assert!(matches!(find("tmp"), Node::Dir { mode: 0o1777, .. }));
        assert!(matches!(find("bin"), Node::Symlink { .. }));

        let missing = Contents {
            files: vec!["/nonexistent/weft=/x".parse().unwrap()],
            ..Default::default()
        };
        assert!(matches!(missing.to_layer(), Err(ContentsError::Io(..))));
    }
}
