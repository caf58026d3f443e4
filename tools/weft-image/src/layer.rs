//! One image layer as an in-memory file tree, and its deterministic encoding: a ustar
//! stream with entries sorted by path, one mtime for everything, numeric owners only
//! (no user or group names), and a gzip wrapper with a fixed header.

use std::collections::BTreeMap;
use std::io::Write;

use flate2::{Compression, GzBuilder};

/// Mode of directories created implicitly as parents.
pub const DEFAULT_DIR_MODE: u32 = 0o755;

/// A path inside the image was used inconsistently, or cannot be encoded.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    /// Not absolute, has `..`, `.` or empty components.
    #[error("image path {0:?} must be absolute and normalised (no `.`, `..` or `//`)")]
    BadPath(String),
    /// The same path added twice.
    #[error("{0:?} is added twice")]
    Duplicate(String),
    /// A path is needed as a directory but something else is there.
    #[error("{0:?} is needed as a directory (a parent of another entry) but is not one")]
    NotADirectory(String),
    /// File capabilities on something that is not a regular file of the layer.
    #[error("file capabilities for {0:?}, which is not a regular file of the image")]
    CapsNotAFile(String),
    /// A mode outside 0..=0o7777.
    #[error("mode {0:o} of {1:?} is not a permission mode (0..=7777 octal)")]
    BadMode(u32, String),
    /// The tar encoder refused a header (path or link name too long for ustar).
    #[error("cannot encode {path:?} in a ustar header: {source}")]
    Encode {
        /// The offending entry.
        path: String,
        /// The encoder's reason.
        source: std::io::Error,
    },
}

/// Owner of an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Owner {
    /// Numeric user id.
    pub uid: u64,
    /// Numeric group id.
    pub gid: u64,
}

/// What a path in the layer is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// A regular file.
    File {
        /// Content.
        data: Vec<u8>,
        /// Permission bits.
        mode: u32,
        /// Owner.
        owner: Owner,
    },
    /// A directory.
    Dir {
        /// Permission bits.
        mode: u32,
        /// Owner.
        owner: Owner,
        /// Created only as some entry's parent (an explicit one replaces it).
        implicit: bool,
    },
    /// A symbolic link.
    Symlink {
        /// Link target, verbatim.
        target: String,
    },
}

/// A layer's file tree, keyed by path relative to `/` (`usr/bin/x`).
#[derive(Debug, Clone, Default)]
pub struct Layer {
    entries: BTreeMap<String, Node>,
    /// File capabilities (bit masks) of regular files, by the same keys.
    caps: BTreeMap<String, u64>,
}

/// Normalises `/usr/bin/x` to the tar path `usr/bin/x`; `/` itself is rejected.
pub fn tar_path(image_path: &str) -> Result<String, LayerError> {
    let bad = || LayerError::BadPath(image_path.to_string());
    let rel = image_path.strip_prefix('/').ok_or_else(bad)?;
    let rel = rel.strip_suffix('/').unwrap_or(rel);
    if rel.is_empty() || rel.split('/').any(|c| c.is_empty() || c == "." || c == "..") {
        return Err(bad());
    }
    Ok(rel.to_string())
}

fn check_mode(mode: u32, path: &str) -> Result<(), LayerError> {
    if mode > 0o7777 {
        return Err(LayerError::BadMode(mode, path.to_string()));
    }
    Ok(())
}

impl Layer {
    /// An empty layer.
    pub fn new() -> Self {
        Self::default()
    }

    /// The entries, sorted by path.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &Node)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Sum of the regular files' sizes.
    pub fn content_size(&self) -> u64 {
        self.entries
            .values()
            .map(|n| match n {
                Node::File { data, .. } => data.len() as u64,
                _ => 0,
            })
            .sum()
    }

    fn ensure_parents(&mut self, rel: &str) -> Result<(), LayerError> {
        let mut end = 0;
        while let Some(i) = rel[end..].find('/') {
            let parent = &rel[..end + i];
            match self.entries.get(parent) {
                None => {
                    self.entries.insert(
                        parent.to_string(),
                        Node::Dir {
                            mode: DEFAULT_DIR_MODE,
                            owner: Owner::default(),
                            implicit: true,
                        },
                    );
                }
                Some(Node::Dir { .. }) => {}
                Some(_) => return Err(LayerError::NotADirectory(format!("/{parent}"))),
            }
            end += i + 1;
        }
        Ok(())
    }

    fn insert(&mut self, image_path: &str, node: Node) -> Result<(), LayerError> {
        let rel = tar_path(image_path)?;
        self.ensure_parents(&rel)?;
        match (self.entries.get(&rel), &node) {
            (None, _) => {}
            (Some(Node::Dir { implicit: true, .. }), Node::Dir { .. }) => {}
            (Some(Node::Dir { implicit: true, .. }), _) => {
                return Err(LayerError::NotADirectory(image_path.to_string()));
            }
            (Some(_), _) => return Err(LayerError::Duplicate(image_path.to_string())),
        }
        self.entries.insert(rel, node);
        Ok(())
    }

    /// Adds a regular file.
    pub fn add_file(&mut self, path: &str, data: Vec<u8>, mode: u32, owner: Owner) -> Result<(), LayerError> {
        check_mode(mode, path)?;
        self.insert(path, Node::File { data, mode, owner })
    }

    /// Adds a directory (replacing an implicit parent of the same path).
    pub fn add_dir(&mut self, path: &str, mode: u32, owner: Owner) -> Result<(), LayerError> {
        check_mode(mode, path)?;
        self.insert(
            path,
            Node::Dir {
                mode,
                owner,
                implicit: false,
            },
        )
    }

    /// Makes sure `path` is a directory: adds a default (0755, 0:0) one if absent; an
    /// existing directory, explicit or not, is kept as it is.
    pub fn ensure_dir(&mut self, path: &str) -> Result<(), LayerError> {
        let rel = tar_path(path)?;
        self.ensure_parents(&rel)?;
        match self.entries.get(&rel) {
            Some(Node::Dir { .. }) => Ok(()),
            Some(_) => Err(LayerError::NotADirectory(path.to_string())),
            None => {
                self.entries.insert(
                    rel,
                    Node::Dir {
                        mode: DEFAULT_DIR_MODE,
                        owner: Owner::default(),
                        implicit: true,
                    },
                );
                Ok(())
            }
        }
    }

    /// Grants the regular file `path` (already added) the capabilities `mask`, permitted
    /// and effective (see [`crate::filecaps`]).
    pub fn set_file_caps(&mut self, path: &str, mask: u64) -> Result<(), LayerError> {
        let rel = tar_path(path)?;
        match self.entries.get(&rel) {
            Some(Node::File { .. }) => {
                self.caps.insert(rel, mask);
                Ok(())
            }
            _ => Err(LayerError::CapsNotAFile(path.to_string())),
        }
    }

    /// Adds a symbolic link `path -> target`.
    pub fn add_symlink(&mut self, path: &str, target: &str) -> Result<(), LayerError> {
        self.insert(
            path,
            Node::Symlink {
                target: target.to_string(),
            },
        )
    }

    /// The uncompressed layer: a ustar stream, entries in path order, every mtime
    /// `mtime`, no user/group names, terminated by the two zero blocks.
    pub fn to_tar(&self, mtime: u64) -> Result<Vec<u8>, LayerError> {
        let mut tar = tar::Builder::new(Vec::new());
        for (path, node) in &self.entries {
            let enc = |source| LayerError::Encode {
                path: path.clone(),
                source,
            };
            let mut h = tar::Header::new_ustar();
            h.set_mtime(mtime);
            match node {
                Node::File { data, mode, owner } => {
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_path(path).map_err(enc)?;
                    h.set_mode(*mode);
                    h.set_uid(owner.uid);
                    h.set_gid(owner.gid);
                    h.set_size(data.len() as u64);
                    h.set_cksum();
                    if let Some(mask) = self.caps.get(path) {
                        let value = crate::filecaps::vfs_cap_data(*mask);
                        tar.append_pax_extensions([(crate::filecaps::PAX_KEY, &value[..])])
                            .map_err(enc)?;
                    }
                    tar.append(&h, data.as_slice()).map_err(enc)?;
                }
                Node::Dir { mode, owner, .. } => {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_path(path).map_err(enc)?;
                    h.set_mode(*mode);
                    h.set_uid(owner.uid);
                    h.set_gid(owner.gid);
                    h.set_size(0);
                    h.set_cksum();
                    tar.append(&h, std::io::empty()).map_err(enc)?;
                }
                Node::Symlink { target } => {
                    h.set_entry_type(tar::EntryType::Symlink);
                    h.set_path(path).map_err(enc)?;
                    h.set_link_name(target).map_err(enc)?;
                    h.set_mode(0o777);
                    h.set_uid(0);
                    h.set_gid(0);
                    h.set_size(0);
                    h.set_cksum();
                    tar.append(&h, std::io::empty()).map_err(enc)?;
                }
            }
        }
        tar.into_inner().map_err(|source| LayerError::Encode {
            path: String::new(),
            source,
        })
    }
}

/// Gzip with a fixed header (mtime 0, no file name or comment, OS byte 255 "unknown")
/// at the best compression level: the same input gives the same bytes.
pub fn gzip(data: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut enc = GzBuilder::new()
        .mtime(0)
        .operating_system(255)
        .write(Vec::with_capacity(data.len() / 2), Compression::best());
    enc.write_all(data)?;
    enc.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn sample() -> Layer {
        let mut l = Layer::new();
        l.add_file(
            "/usr/local/bin/app",
            b"#!binary".to_vec(),
            0o755,
            Owner::default(),
        )
        .unwrap();
        l.add_dir("/tmp", 0o1777, Owner::default()).unwrap();
        l.add_symlink("/usr/sbin/iptables-nft-save", "xtables-nft-multi")
            .unwrap();
        l.add_file(
            "/etc/conf",
            b"k=v\n".to_vec(),
            0o600,
            Owner { uid: 2102, gid: 2102 },
        )
        .unwrap();
        l
    }

    #[test]
    fn tar_is_sorted_with_parents_fixed_times_and_numeric_owners() {
        let bytes = sample().to_tar(0).unwrap();
        let mut ar = tar::Archive::new(bytes.as_slice());
        let mut seen = Vec::new();
        for e in ar.entries().unwrap() {
            let mut e = e.unwrap();
            let h = e.header().clone();
            let path = e.path().unwrap().to_string_lossy().into_owned();
            assert_eq!(h.mtime().unwrap(), 0, "{path}");
            assert_eq!(h.username_bytes(), Some(&b""[..]), "{path}");
            assert_eq!(h.groupname_bytes(), Some(&b""[..]), "{path}");
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            seen.push((path, h.entry_type(), h.mode().unwrap(), h.uid().unwrap(), data));
        }
        let paths: Vec<&str> = seen.iter().map(|s| s.0.as_str()).collect();
        assert_eq!(
            paths,
            [
                "etc",
                "etc/conf",
                "tmp",
                "usr",
                "usr/local",
                "usr/local/bin",
                "usr/local/bin/app",
                "usr/sbin",
                "usr/sbin/iptables-nft-save"
            ]
        );
        let tmp = &seen[2];
        assert_eq!((tmp.1, tmp.2), (tar::EntryType::Directory, 0o1777));
        let conf = &seen[1];
        assert_eq!((conf.2, conf.3, conf.4.as_slice()), (0o600, 2102, &b"k=v\n"[..]));
        assert_eq!(seen[8].1, tar::EntryType::Symlink);
        assert_eq!(sample().content_size(), 12);
    }

    #[test]
    fn file_caps_travel_as_a_pax_xattr_record() {
        let mut l = sample();
        l.set_file_caps("/usr/local/bin/app", 1 << 10).unwrap();
        assert!(matches!(
            l.set_file_caps("/tmp", 1),
            Err(LayerError::CapsNotAFile(_))
        ));
        assert!(l.set_file_caps("/missing", 1).is_err());
        let bytes = l.to_tar(0).unwrap();
        let mut ar = tar::Archive::new(bytes.as_slice());
        let mut caps = Vec::new();
        for e in ar.entries().unwrap() {
            let mut e = e.unwrap();
            let path = e.path().unwrap().display().to_string();
            if let Some(exts) = e.pax_extensions().unwrap() {
                for x in exts {
                    let x = x.unwrap();
                    caps.push((
                        path.clone(),
                        x.key().unwrap().to_string(),
                        x.value_bytes().to_vec(),
                    ));
                }
            }
        }
        assert_eq!(
            caps,
            [(
                "usr/local/bin/app".to_string(),
                crate::filecaps::PAX_KEY.to_string(),
                crate::filecaps::vfs_cap_data(1 << 10).to_vec()
            )]
        );
    }

    #[test]
    fn same_tree_same_bytes_whatever_the_insertion_order() {
        let mut other = Layer::new();
        other
            .add_file(
                "/etc/conf",
                b"k=v\n".to_vec(),
                0o600,
                Owner { uid: 2102, gid: 2102 },
            )
            .unwrap();
        other
            .add_symlink("/usr/sbin/iptables-nft-save", "xtables-nft-multi")
            .unwrap();
        other.add_dir("/tmp", 0o1777, Owner::default()).unwrap();
        other
            .add_file(
                "/usr/local/bin/app",
                b"#!binary".to_vec(),
                0o755,
                Owner::default(),
            )
            .unwrap();
        let a = sample().to_tar(0).unwrap();
        assert_eq!(a, other.to_tar(0).unwrap());
        assert_eq!(gzip(&a).unwrap(), gzip(&a).unwrap());
        assert_ne!(a, sample().to_tar(1).unwrap(), "mtime is encoded");
    }

    #[test]
    fn gzip_header_is_fixed_and_round_trips() {
        let z = gzip(b"hello").unwrap();
        // magic, CM=8, FLG=0 (no name/comment/extra), MTIME=0, XFL=2 (best), OS=255
        assert_eq!(&z[..10], &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 2, 255]);
        let mut out = String::new();
        flate2::read::GzDecoder::new(z.as_slice())
            .read_to_string(&mut out)
            .unwrap();
        assert_eq!(out, "hello");
    }

    #[test]
    fn rejects_inconsistent_trees() {
        let mut l = sample();
        assert!(matches!(
            l.add_file("/tmp", vec![], 0o644, Owner::default()),
            Err(LayerError::Duplicate(_))
        ));
        assert!(matches!(
            l.add_file("/etc/conf/x", vec![], 0o644, Owner::default()),
            Err(LayerError::NotADirectory(_))
        ));
        assert!(matches!(
            l.add_file("/usr", vec![], 0o644, Owner::default()),
            Err(LayerError::NotADirectory(_))
        ));
        // an explicit directory replaces the implicit parent
        l.add_dir("/usr/local", 0o700, Owner::default()).unwrap();
        for p in ["usr/x", "/", "/a/../b", "/a//b", "/./a"] {
            assert!(
                matches!(l.add_dir(p, 0o755, Owner::default()), Err(LayerError::BadPath(_))),
                "{p}"
            );
        }
        assert!(matches!(
            l.add_dir("/x", 0o17777, Owner::default()),
            Err(LayerError::BadMode(..))
        ));
        let long = format!("/{}", "a".repeat(300));
        l.add_file(&long, vec![], 0o644, Owner::default()).unwrap();
        assert!(matches!(l.to_tar(0), Err(LayerError::Encode { .. })));
    }
}
