//! The archives `make images` built, read without a container runtime: what is in each
//! image (static binaries on an empty base, non-root users, no shell in the proxy, the
//! Debian iptables files with their versions as labels, no build paths in the binaries),
//! and that packing the same inputs again gives the same bytes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use weft_image::inspect::{Archive, FileEntry};

const VERSION: &str = env!("CARGO_PKG_VERSION");
const SHELLS: [&str; 7] = ["sh", "bash", "dash", "ash", "zsh", "busybox", "toybox"];

fn files(name: &str) -> (Archive, Vec<FileEntry>) {
    let cat = support::catalog();
    let a = Archive::open(&cat.images[name].archive).unwrap();
    let f = a.files().unwrap();
    (a, f)
}

fn file_data(archive: &Archive, path: &str) -> Vec<u8> {
    use std::io::Read;
    let s = archive.summary().unwrap();
    let gz = archive.blob(&s.layers[0].digest).unwrap();
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(gz));
    for e in tar.entries().unwrap() {
        let mut e = e.unwrap();
        if format!("/{}", e.path().unwrap().display()) == path {
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            return data;
        }
    }
    panic!("{path} not in the image");
}

/// Whether an ELF file has a PT_INTERP program header (is dynamically linked).
fn has_interpreter(elf: &[u8]) -> bool {
    assert_eq!(&elf[..5], b"\x7fELF\x02", "not a 64-bit ELF file");
    let u16_at = |o: usize| u16::from_le_bytes([elf[o], elf[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(elf[0x20..0x28].try_into().unwrap()) as usize;
    let (phentsize, phnum) = (u16_at(0x36), u16_at(0x38));
    (0..phnum).any(|i| {
        let o = phoff + i * phentsize;
        u32::from_le_bytes(elf[o..o + 4].try_into().unwrap()) == 3
    })
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn catalog_matches_the_archives() {
    let cat = support::catalog();
    for (name, e) in &cat.images {
        let s = Archive::open(&e.archive).unwrap().summary().unwrap();
        assert_eq!(s.reference, format!("docker.io/weft/{name}:{VERSION}"));
        assert_eq!(s.ref_name, VERSION);
        assert_eq!(s.repo_tags, [format!("weft/{name}:{VERSION}")]);
        assert_eq!(
            (&s.manifest_digest, &s.config_digest),
            (&e.manifest_digest, &e.config_digest)
        );
        assert_eq!(
            s.archive_sha256, e.archive_sha256,
            "{name}: archive changed since make images"
        );
        if std::env::var_os("WEFT_IMAGES_JSON").is_none() {
            // make images' stable names point at the catalogued archives.
            let link = support::repo_root().join(format!("target/images/{name}.tar"));
            assert_eq!(
                std::fs::canonicalize(link).unwrap(),
                std::fs::canonicalize(&e.archive).unwrap()
            );
        }
    }
}

#[test]
fn images_are_static_binaries_run_as_non_root() {
    let want = [
        ("controller", "weft-controller", "65532:65532"),
        ("proxy", "weft-proxy", "2102:2102"),
        ("demo-app", "weft-demo-app", "65532:65532"),
    ];
    let root = support::repo_root();
    let cargo_home =
        std::env::var("CARGO_HOME").unwrap_or_else(|_| format!("{}/.cargo", std::env::var("HOME").unwrap()));
    for (name, bin, user) in want {
        let (archive, files) = files(name);
        let cfg = archive.summary().unwrap().config.config;
        let path = format!("/usr/local/bin/{bin}");
        assert_eq!(cfg.entrypoint, std::slice::from_ref(&path), "{name}");
        assert_eq!(cfg.user.as_deref(), Some(user), "{name}");
        assert!(
            cfg.env
                .iter()
                .any(|e| e.starts_with("PATH=") && e.contains("/usr/local/bin")),
            "{name}"
        );
        assert_eq!(cfg.labels["org.opencontainers.image.version"], VERSION);
        let entry = files.iter().find(|f| f.path == path).unwrap();
        assert_eq!(
            (entry.kind, entry.mode, entry.uid, entry.gid),
            ("file", 0o755, 0, 0),
            "{name}"
        );
        let elf = file_data(&archive, &path);
        assert!(!has_interpreter(&elf), "{name}: {bin} is dynamically linked");
        for leak in [root.to_string_lossy().as_bytes(), cargo_home.as_bytes()] {
            assert!(
                !contains(&elf, leak),
                "{name}: {bin} contains the build path {}",
                String::from_utf8_lossy(leak)
            );
        }
        assert!(
            files.iter().all(|f| f.uid == 0 && f.gid == 0),
            "{name}: every entry is owned by 0:0"
        );
        if name != "proxy" {
            let kinds: Vec<_> = files
                .iter()
                .filter(|f| f.kind == "file")
                .map(|f| f.path.as_str())
                .collect();
            assert_eq!(kinds, [path.as_str()], "{name}: the binary is the only file");
        }
    }
}

#[test]
fn proxy_carries_debian_iptables_and_no_shell() {
    let (archive, files) = files("proxy");
    let by_path: BTreeMap<&str, &FileEntry> = files.iter().map(|f| (f.path.as_str(), f)).collect();
    for f in &files {
        let base = f.path.rsplit('/').next().unwrap();
        assert!(!SHELLS.contains(&base), "proxy image has a shell: {}", f.path);
    }
    assert!(!by_path.contains_key("/bin"), "no /bin at all");
    for v in ["iptables", "ip6tables"] {
        for b in ["nft", "legacy"] {
            for s in ["", "-save", "-restore"] {
                let p = format!("/usr/sbin/{v}-{b}{s}");
                let e = by_path.get(p.as_str()).unwrap_or_else(|| panic!("{p} missing"));
                assert_eq!(
                    e.link.as_deref(),
                    Some(format!("xtables-{b}-multi").as_str()),
                    "{p}"
                );
            }
        }
    }
    for p in [
        "/usr/sbin/xtables-nft-multi",
        "/usr/sbin/xtables-legacy-multi",
        "/lib64/ld-linux-x86-64.so.2",
        "/lib/x86_64-linux-gnu/libc.so.6",
        "/usr/lib/x86_64-linux-gnu/libxtables.so.12",
        "/usr/lib/x86_64-linux-gnu/libnftnl.so.11",
        "/usr/lib/x86_64-linux-gnu/libmnl.so.0",
        "/usr/lib/x86_64-linux-gnu/libip4tc.so.2",
        "/usr/lib/x86_64-linux-gnu/libip6tc.so.2",
        "/usr/lib/x86_64-linux-gnu/xtables/libxt_REDIRECT.so",
        "/usr/lib/x86_64-linux-gnu/xtables/libxt_owner.so",
        "/usr/lib/x86_64-linux-gnu/xtables/libxt_multiport.so",
        "/usr/share/doc/iptables/copyright",
    ] {
        assert_eq!(by_path.get(p).map(|f| f.kind), Some("file"), "{p}");
    }
    assert_eq!(by_path["/tmp"].mode, 0o1777);
    let pins =
        std::fs::read_to_string(support::repo_root().join("tools/images/debian-packages.txt")).unwrap();
    let labels = archive.summary().unwrap().config.config.labels;
    let mut pinned = 0;
    for line in pins
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
    {
        let mut it = line.split_whitespace();
        let (pkg, ver) = (it.next().unwrap(), it.next().unwrap());
        assert_eq!(
            labels.get(&format!("dev.weft.debian.{pkg}")).map(String::as_str),
            Some(ver),
            "{pkg}"
        );
        pinned += 1;
    }
    assert!(pinned >= 8, "expected the iptables package set, got {pinned}");
}

#[test]
fn packing_the_same_inputs_again_gives_identical_bytes() {
    let cat = support::catalog();
    let dir = tempfile::tempdir().unwrap();
    for (name, e) in &cat.images {
        let recipe = e
            .recipe
            .as_ref()
            .unwrap_or_else(|| panic!("{name}: no recipe beside the archive"));
        let out = dir.path().join(format!("{name}.tar"));
        let res = support::run(
            Command::new(env!("CARGO_BIN_EXE_weft-image"))
                .arg("pack")
                .arg("--recipe")
                .arg(recipe)
                .arg("--out")
                .arg(&out),
            Duration::from_secs(300),
        );
        assert!(res.ok, "{name}: {}", res.text());
        let again = Archive::open(&out).unwrap().summary().unwrap();
        assert_eq!(again.manifest_digest, e.manifest_digest, "{name}");
        assert_eq!(
            again.archive_sha256, e.archive_sha256,
            "{name}: archive bytes differ"
        );
    }
}

#[test]
fn skopeo_reads_both_transports() {
    let cat = support::catalog();
    let dir = tempfile::tempdir().unwrap();
    for (name, e) in &cat.images {
        let archive = e.archive.display().to_string();
        let oci: serde_json::Value = serde_json::from_str(&support::must(
            "skopeo",
            &["inspect", &format!("oci-archive:{archive}")],
        ))
        .unwrap();
        assert_eq!(oci["Digest"], e.manifest_digest.as_str(), "{name}");
        assert_eq!(oci["Labels"]["org.opencontainers.image.version"], VERSION);
        let docker: serde_json::Value = serde_json::from_str(&support::must(
            "skopeo",
            &["inspect", &format!("docker-archive:{archive}")],
        ))
        .unwrap();
        let diff_id = &Archive::open(&e.archive).unwrap().summary().unwrap().layers[0].diff_id;
        assert_eq!(
            docker["Layers"],
            serde_json::json!([diff_id]),
            "{name}: docker-archive layer"
        );
        assert_eq!(docker["Architecture"], "amd64");
        // Full copies read every blob, out of both transports.
        let layout = dir.path().join(name);
        let oci_dest = format!("oci:{}:from-oci", layout.display());
        support::must(
            "skopeo",
            &[
                "copy",
                "--quiet",
                "--preserve-digests",
                &format!("oci-archive:{archive}"),
                &oci_dest,
            ],
        );
        let docker_dest = format!("oci:{}:from-docker", layout.display());
        support::must(
            "skopeo",
            &[
                "copy",
                "--quiet",
                &format!("docker-archive:{archive}"),
                &docker_dest,
            ],
        );
        let copied: serde_json::Value =
            serde_json::from_str(&support::must("skopeo", &["inspect", &oci_dest])).unwrap();
        assert_eq!(
            copied["Digest"],
            e.manifest_digest.as_str(),
            "{name}: oci-archive copy kept the digest"
        );
    }
}
