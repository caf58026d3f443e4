//! Names the agent derives: network namespace and host-side veth names from a pod UID, and
//! the image → binary table (an "image" here is just a name for a locally built binary).

use std::path::{Path, PathBuf};

/// Prefix of every pod network namespace the agent creates.
pub const NETNS_PREFIX: &str = "weft-pod-";
/// Prefix of every host-side veth the agent creates.
pub const VETH_PREFIX: &str = "wv";

fn uid_hex(uid: &str, len: usize) -> String {
    uid.chars()
        .filter(char::is_ascii_hexdigit)
        .map(|c| c.to_ascii_lowercase())
        .take(len)
        .collect()
}

/// The network namespace of the pod with this UID (`weft-pod-<first 12 hex digits>`).
pub fn netns_name(uid: &str) -> String {
    format!("{NETNS_PREFIX}{}", uid_hex(uid, 12))
}

/// The host end of the pod's veth (`wv<first 12 hex digits>`, within IFNAMSIZ).
pub fn veth_name(uid: &str) -> String {
    format!("{VETH_PREFIX}{}", uid_hex(uid, 12))
}

/// The image → binary table: `weft/proxy:*` → `weft-proxy`, `weft/controller:*` →
/// `weft-controller`, `weft/demo-app:*` → `weft-demo-app`. A registry host prefix
/// (`registry.local/weft/proxy:dev`), a tag and a digest are ignored.
pub const IMAGE_TABLE: [(&str, &str); 3] = [
    ("weft/proxy", "weft-proxy"),
    ("weft/controller", "weft-controller"),
    ("weft/demo-app", "weft-demo-app"),
];

/// The repository part of an image reference: no registry host, tag or digest.
pub fn image_repository(image: &str) -> &str {
    let no_digest = image.split('@').next().unwrap_or(image);
    // A tag is a ':' after the last '/'.
    let last_slash = no_digest.rfind('/').map_or(0, |i| i + 1);
    let no_tag = match no_digest[last_slash..].find(':') {
        Some(i) => &no_digest[..last_slash + i],
        None => no_digest,
    };
    match no_tag.split_once('/') {
        Some((host, rest)) if host.contains('.') || host.contains(':') || host == "localhost" => rest,
        _ => no_tag,
    }
}

/// The binary name an image maps to, if any.
pub fn binary_for_image(image: &str) -> Option<&'static str> {
    let repo = image_repository(image);
    IMAGE_TABLE.iter().find(|(r, _)| *r == repo).map(|(_, bin)| *bin)
}

/// Why a container's program could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProgramError {
    /// The image is not in [`IMAGE_TABLE`].
    #[error(
        "image {0:?} is not in the node agent's image table (weft/proxy, weft/controller, weft/demo-app)"
    )]
    UnknownImage(String),
    /// `command` names a different program than the image's binary.
    #[error(
        "command {command:?} does not run the image's binary {binary:?} (the agent only runs mapped binaries)"
    )]
    ForeignCommand {
        /// The command's program.
        command: String,
        /// The image's binary.
        binary: String,
    },
}

/// The argv of a container: the image's binary from `bin_dir` as the entrypoint; `command`
/// may replace it only by naming the same binary (by name or any path ending in it);
/// `args` follow.
pub fn container_argv(
    bin_dir: &Path,
    image: &str,
    command: &[String],
    args: &[String],
) -> Result<Vec<String>, ProgramError> {
    let binary = binary_for_image(image).ok_or_else(|| ProgramError::UnknownImage(image.to_string()))?;
    let program: PathBuf = bin_dir.join(binary);
    let mut argv = vec![program.display().to_string()];
    if let Some((first, rest)) = command.split_first() {
        let name = Path::new(first)
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("");
        if name != binary {
            return Err(ProgramError::ForeignCommand {
                command: first.clone(),
                binary: binary.into(),
            });
        }
        argv.extend(rest.iter().cloned());
    }
    argv.extend(args.iter().cloned());
    Ok(argv)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_kernel_limits_and_are_stable() {
        let uid = "3F2504E0-4F89-11D3-9A0C-0305E82C3301";
        assert_eq!(netns_name(uid), "weft-pod-3f2504e04f89");
        assert_eq!(veth_name(uid), "wv3f2504e04f89");
        assert!(veth_name(uid).len() <= 15);
    }

    #[test]
    fn images_map_to_binaries() {
        assert_eq!(
            image_repository("registry.local:5000/weft/proxy:dev"),
            "weft/proxy"
        );
        assert_eq!(image_repository("weft/proxy@sha256:abcd"), "weft/proxy");
        assert_eq!(image_repository("localhost/weft/demo-app"), "weft/demo-app");
        assert_eq!(binary_for_image("weft/proxy:0.1.0"), Some("weft-proxy"));
        assert_eq!(
            binary_for_image("ghcr.io/weft/controller:1"),
            Some("weft-controller")
        );
        assert_eq!(binary_for_image("weft/demo-app:latest"), Some("weft-demo-app"));
        assert_eq!(binary_for_image("nginx:1.27"), None);
        assert_eq!(binary_for_image("evil/weft/proxy:1"), None);
    }

    #[test]
    fn command_may_only_name_the_same_binary() {
        let bin = Path::new("/t/debug");
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            container_argv(bin, "weft/proxy:1", &s(&["weft-proxy"]), &s(&["init", "--x"])).unwrap(),
            s(&["/t/debug/weft-proxy", "init", "--x"])
        );
        assert_eq!(
            container_argv(
                bin,
                "weft/demo-app:1",
                &s(&["/usr/bin/weft-demo-app", "--a"]),
                &s(&["--b"])
            )
            .unwrap(),
            s(&["/t/debug/weft-demo-app", "--a", "--b"])
        );
        assert_eq!(
            container_argv(bin, "weft/demo-app:1", &[], &[]).unwrap(),
            s(&["/t/debug/weft-demo-app"])
        );
        assert!(matches!(
            container_argv(bin, "weft/demo-app:1", &s(&["sh", "-c", "x"]), &[]),
            Err(ProgramError::ForeignCommand { .. })
        ));
        assert!(matches!(
            container_argv(bin, "busybox", &[], &[]),
            Err(ProgramError::UnknownImage(_))
        ));
    }
}
