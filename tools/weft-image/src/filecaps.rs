//! File capabilities (`setcap cap_net_bind_service=+ep /coredns`), as upstream images
//! carry them: the `security.capability` extended attribute of a file, encoded as the
//! kernel's `vfs_cap_data` revision 2 (permitted set, effective bit on) and written into
//! the layer as a PAX `SCHILY.xattr.security.capability` record, which containerd's and
//! Docker's unpackers turn back into the attribute. A non-root image user then gets the
//! capabilities at `execve` without running as root (e.g. CoreDNS binding port 53 as 65532).

use std::str::FromStr;

/// The PAX record name the attribute travels under.
pub const PAX_KEY: &str = "SCHILY.xattr.security.capability";

/// Linux capability names (without `cap_`), indexed by number (`linux/capability.h`).
const NAMES: [&str; 41] = [
    "chown",
    "dac_override",
    "dac_read_search",
    "fowner",
    "fsetid",
    "kill",
    "setgid",
    "setuid",
    "setpcap",
    "linux_immutable",
    "net_bind_service",
    "net_broadcast",
    "net_admin",
    "net_raw",
    "ipc_lock",
    "ipc_owner",
    "sys_module",
    "sys_rawio",
    "sys_chroot",
    "sys_ptrace",
    "sys_pacct",
    "sys_admin",
    "sys_boot",
    "sys_nice",
    "sys_resource",
    "sys_time",
    "sys_tty_config",
    "mknod",
    "lease",
    "audit_write",
    "audit_control",
    "setfcap",
    "mac_override",
    "mac_admin",
    "syslog",
    "wake_alarm",
    "block_suspend",
    "audit_read",
    "perfmon",
    "bpf",
    "checkpoint_restore",
];

/// `VFS_CAP_REVISION_2 | VFS_CAP_FLAGS_EFFECTIVE`.
const MAGIC_REV2_EFFECTIVE: u32 = 0x0200_0001;

/// `--file-cap <image-path>=<cap>[,<cap>…]`: capability names as `setcap` spells them
/// (`cap_net_bind_service`, case-insensitive), granted permitted and effective (`+ep`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileCapSpec {
    /// Absolute path of the file in the image.
    pub path: String,
    /// Capability bit mask (bit n = capability number n).
    pub mask: u64,
}

/// A `--file-cap` that does not parse.
#[derive(Debug, thiserror::Error)]
#[error("invalid --file-cap {spec:?}: {why}")]
pub struct FileCapError {
    spec: String,
    why: String,
}

/// The number of capability `name` (`cap_net_bind_service` or `net_bind_service`).
pub fn number(name: &str) -> Option<u32> {
    let lower = name.to_ascii_lowercase();
    let bare = lower.strip_prefix("cap_").unwrap_or(&lower);
    NAMES
        .iter()
        .position(|n| *n == bare)
        .and_then(|i| u32::try_from(i).ok())
}

impl FromStr for FileCapSpec {
    type Err = FileCapError;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let bad = |why: String| FileCapError {
            spec: spec.to_string(),
            why,
        };
        let (path, caps) = spec
            .split_once('=')
            .ok_or_else(|| bad("expected <image-path>=<cap>[,<cap>…]".into()))?;
        if !path.starts_with('/') {
            return Err(bad("the image path must be absolute".into()));
        }
        let mut mask = 0u64;
        for name in caps.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let n = number(name).ok_or_else(|| bad(format!("unknown capability {name:?}")))?;
            mask |= 1u64 << n;
        }
        if mask == 0 {
            return Err(bad("no capability named".into()));
        }
        Ok(Self {
            path: path.to_string(),
            mask,
        })
    }
}

/// The attribute's value: `vfs_cap_data` revision 2, little-endian — magic, then
/// `(permitted, inheritable)` for the low and the high 32 capabilities.
pub fn vfs_cap_data(mask: u64) -> [u8; 20] {
    let mut out = [0u8; 20];
    let words = [
        MAGIC_REV2_EFFECTIVE,
        (mask & 0xffff_ffff) as u32,
        0,
        (mask >> 32) as u32,
        0,
    ];
    for (chunk, w) in out.chunks_exact_mut(4).zip(words) {
        chunk.copy_from_slice(&w.to_le_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_setcap_names() {
        let s: FileCapSpec = "/coredns=cap_net_bind_service".parse().unwrap();
        assert_eq!(s.path, "/coredns");
        assert_eq!(s.mask, 1 << 10);
        let s: FileCapSpec = "/x=CAP_NET_RAW, net_admin".parse().unwrap();
        assert_eq!(s.mask, (1 << 13) | (1 << 12));
        assert_eq!(number("cap_checkpoint_restore"), Some(40));
        for bad in ["coredns=cap_net_raw", "/x", "/x=", "/x=cap_flying"] {
            assert!(bad.parse::<FileCapSpec>().is_err(), "{bad}");
        }
    }

    #[test]
    fn encodes_what_setcap_writes() {
        // `setcap cap_net_bind_service=+ep f; getfattr -n security.capability -e hex f`
        // prints 0x0100000200040000000000000000000000000000 (rev 2 | effective, bit 10).
        let hex: String = vfs_cap_data(1 << 10).iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "0100000200040000000000000000000000000000");
        let high = vfs_cap_data(1 << 40);
        assert_eq!(&high[12..16], &[0, 1, 0, 0]);
    }
}
