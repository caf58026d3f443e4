//! Writing a data volume the way the kubelet's atomic writer does: the files live in a
//! timestamped `..<ts>` directory, `..data` is a symlink to it swapped with one rename, and
//! the user-visible entries are symlinks through `..data` — so a process never sees a half
//! updated volume.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path};

/// Relative path → (content, mode).
pub type Files = BTreeMap<String, (Vec<u8>, u32)>;

const DATA: &str = "..data";
const DATA_TMP: &str = "..data_tmp";

fn invalid(msg: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidInput, msg)
}

/// A volume file path must be relative, without `..` components, and not start with `..`.
pub fn valid_path(p: &str) -> bool {
    !p.is_empty()
        && !p.starts_with("..")
        && Path::new(p)
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
}

fn current(dir: &Path) -> Option<Files> {
    let data = dir.join(DATA);
    let mut out = Files::new();
    fn walk(base: &Path, rel: &Path, out: &mut Files) -> std::io::Result<()> {
        for entry in std::fs::read_dir(base.join(rel))? {
            let entry = entry?;
            let rel = rel.join(entry.file_name());
            let meta = entry.metadata()?;
            if meta.is_dir() {
                walk(base, &rel, out)?;
            } else {
                let content = std::fs::read(base.join(&rel))?;
                out.insert(
                    rel.to_string_lossy().into_owned(),
                    (content, meta.permissions().mode() & 0o7777),
                );
            }
        }
        Ok(())
    }
    walk(&data, Path::new(""), &mut out).ok()?;
    Some(out)
}

/// Makes `dir` hold exactly `files` (owned by `owner` if given). Returns whether anything
/// changed.
pub fn write(dir: &Path, files: &Files, owner: Option<(u32, u32)>) -> std::io::Result<bool> {
    for p in files.keys() {
        if !valid_path(p) {
            return Err(invalid(format!("invalid volume file path {p:?}")));
        }
    }
    std::fs::create_dir_all(dir)?;
    if current(dir).as_ref() == Some(files) {
        return Ok(false);
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let ts_name = format!("..{nanos}");
    let ts = dir.join(&ts_name);
    std::fs::create_dir(&ts)?;
    for (rel, (content, mode)) in files {
        let path = ts.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, content)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(*mode))?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(&path, Some(uid), Some(gid))?;
        }
    }
    let old_target = std::fs::read_link(dir.join(DATA)).ok();
    let tmp = dir.join(DATA_TMP);
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(&ts_name, &tmp)?;
    std::fs::rename(&tmp, dir.join(DATA))?;

    let tops: BTreeSet<String> = files
        .keys()
        .filter_map(|p| Path::new(p).components().next())
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    for top in &tops {
        let link = dir.join(top);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(Path::new(DATA).join(top), &link)?;
        }
    }
    for entry in std::fs::read_dir(dir)?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let is_link = entry.file_type().map(|t| t.is_symlink()).unwrap_or(false);
        if !name.starts_with("..") && is_link && !tops.contains(&name) {
            std::fs::remove_file(entry.path())?;
        }
    }
    if let Some(old) = old_target
        && old != Path::new(&ts_name)
    {
        let _ = std::fs::remove_dir_all(dir.join(old));
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(entries: &[(&str, &str, u32)]) -> Files {
        entries
            .iter()
            .map(|(p, c, m)| (p.to_string(), (c.as_bytes().to_vec(), *m)))
            .collect()
    }

    #[test]
    fn writes_swaps_and_prunes() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        assert!(
            write(
                d,
                &files(&[("token", "t1", 0o600), ("sub/ca.crt", "ca", 0o644)]),
                None
            )
            .unwrap()
        );
        assert_eq!(std::fs::read_to_string(d.join("token")).unwrap(), "t1");
        assert_eq!(std::fs::read_to_string(d.join("sub/ca.crt")).unwrap(), "ca");
        assert_eq!(
            std::fs::metadata(d.join("token")).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let first = std::fs::read_link(d.join("..data")).unwrap();

        assert!(
            !write(
                d,
                &files(&[("token", "t1", 0o600), ("sub/ca.crt", "ca", 0o644)]),
                None
            )
            .unwrap(),
            "unchanged"
        );
        assert!(write(d, &files(&[("token", "t2", 0o600)]), None).unwrap());
        assert_eq!(std::fs::read_to_string(d.join("token")).unwrap(), "t2");
        assert!(
            std::fs::symlink_metadata(d.join("sub")).is_err(),
            "removed key pruned"
        );
        assert!(!d.join(first).exists(), "old generation removed");
        let entries: Vec<_> = std::fs::read_dir(d)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(entries.len(), 3, "..data, ..<ts>, token: {entries:?}");
    }

    #[test]
    fn rejects_escaping_paths() {
        let dir = tempfile::tempdir().unwrap();
        for bad in ["../x", "..x", "/abs", "a/../b", ""] {
            assert!(!valid_path(bad), "{bad}");
            assert!(
                write(dir.path(), &files(&[(bad, "x", 0o644)]), None).is_err(),
                "{bad}"
            );
        }
        assert!(valid_path("a/b.txt"));
    }
}
