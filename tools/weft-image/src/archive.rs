//! Writes an [`Image`] as one tar that is both an OCI image layout (`oci-layout`,
//! `index.json`, `blobs/sha256/…`) and a Docker archive (`manifest.json` pointing into
//! the same blobs), the format `docker save` writes since Docker 25. Entries sorted,
//! one mtime, owner 0:0, files 0644, directories 0755.

use std::io::Write;
use std::path::Path;

use crate::image::Image;
use crate::oci::blob_path;

/// The archive's entries in write order: `(path, Some(bytes))` for files, `None` for dirs.
fn entries(img: &Image) -> Vec<(String, Option<&[u8]>)> {
    let mut out: Vec<(String, Option<&[u8]>)> = vec![("blobs".into(), None), ("blobs/sha256".into(), None)];
    out.extend(img.blobs.iter().map(|(d, b)| (blob_path(d), Some(b.as_slice()))));
    out.push(("index.json".into(), Some(&img.index_json)));
    out.push(("manifest.json".into(), Some(&img.docker_manifest_json)));
    out.push(("oci-layout".into(), Some(&img.oci_layout)));
    out
}

/// Writes the archive to `w`.
pub fn write<W: Write>(img: &Image, mtime: u64, w: W) -> std::io::Result<W> {
    let mut tar = tar::Builder::new(w);
    for (path, data) in entries(img) {
        let mut h = tar::Header::new_ustar();
        h.set_path(&path)?;
        h.set_mtime(mtime);
        h.set_uid(0);
        h.set_gid(0);
        match data {
            Some(bytes) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0o644);
                h.set_size(bytes.len() as u64);
                h.set_cksum();
                tar.append(&h, bytes)?;
            }
            None => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                h.set_size(0);
                h.set_cksum();
                tar.append(&h, std::io::empty())?;
            }
        }
    }
    tar.into_inner()
}

/// Writes the archive to `path` atomically (a temporary sibling renamed into place).
pub fn write_file(img: &Image, mtime: u64, path: &Path) -> std::io::Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let file = std::fs::File::create(&tmp)?;
        let mut out = write(img, mtime, std::io::BufWriter::new(file))?;
        out.flush()?;
        out.get_ref().sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::{ImageSpec, build};
    use crate::layer::{Layer, Owner};
    use crate::oci::RunConfig;
    use crate::reference::ImageRef;

    fn image() -> Image {
        let mut l = Layer::new();
        l.add_file("/pause", b"ELF".to_vec(), 0o755, Owner::default())
            .unwrap();
        let spec = ImageSpec {
            reference: ImageRef::parse("weft.local/pause:3.10").unwrap(),
            run: RunConfig {
                entrypoint: vec!["/pause".into()],
                ..Default::default()
            },
            epoch: 0,
            architecture: "amd64".into(),
        };
        build(&spec, &l).unwrap()
    }

    #[test]
    fn layout_entries_in_order_with_fixed_metadata() {
        let bytes = write(&image(), 0, Vec::new()).unwrap();
        let mut ar = tar::Archive::new(bytes.as_slice());
        let mut names = Vec::new();
        for e in ar.entries().unwrap() {
            let e = e.unwrap();
            let h = e.header();
            assert_eq!(
                (h.mtime().unwrap(), h.uid().unwrap(), h.gid().unwrap()),
                (0, 0, 0)
            );
            assert_eq!(h.username_bytes(), Some(&b""[..]));
            names.push(e.path().unwrap().to_string_lossy().into_owned());
        }
        assert_eq!(names[..2], ["blobs", "blobs/sha256"]);
        assert_eq!(names[5..], ["index.json", "manifest.json", "oci-layout"]);
        assert!(names[2..5].windows(2).all(|w| w[0] < w[1]));
        assert_eq!(bytes, write(&image(), 0, Vec::new()).unwrap());
    }

    #[test]
    fn write_file_is_atomic_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("pause.tar");
        write_file(&image(), 0, &out).unwrap();
        assert_eq!(
            std::fs::read(&out).unwrap(),
            write(&image(), 0, Vec::new()).unwrap()
        );
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["pause.tar"]);
        assert!(write_file(&image(), 0, &dir.path().join("missing/x.tar")).is_err());
    }
}
