//! From a container of the stored pod spec to a [`LaunchSpec`]: program (via the image
//! table), bind mounts (volumes at their `mountPath`, plus the pod's `/etc/hosts` and
//! `/etc/resolv.conf`), user/group and capabilities from the security contexts.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, Pod};

use super::launch::{Bind, LaunchSpec, capability_number};

/// The capabilities container runtimes grant root containers by default (containerd's set).
pub const DEFAULT_CAPABILITIES: [&str; 14] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "FSETID",
    "FOWNER",
    "MKNOD",
    "NET_RAW",
    "SETGID",
    "SETUID",
    "SETFCAP",
    "SETPCAP",
    "NET_BIND_SERVICE",
    "SYS_CHROOT",
    "KILL",
    "AUDIT_WRITE",
];

/// (uid, gid) of a container: container security context over the pod's.
pub fn user(pod: &Pod, container: &Container) -> (Option<u32>, Option<u32>) {
    let psc = pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
    let csc = container.security_context.as_ref();
    let as_u32 = |v: Option<i64>| v.and_then(|v| u32::try_from(v).ok());
    let uid = as_u32(
        csc.and_then(|c| c.run_as_user)
            .or(psc.and_then(|p| p.run_as_user)),
    );
    let gid = as_u32(
        csc.and_then(|c| c.run_as_group)
            .or(psc.and_then(|p| p.run_as_group)),
    );
    (uid, gid)
}

/// The bounding set: `None` (all) when privileged; empty for non-root users (like
/// Kubernetes without ambient capabilities); otherwise the default set minus `drop`
/// (`ALL` clears it) plus `add`.
pub fn capabilities(container: &Container, uid: Option<u32>) -> Option<Vec<u32>> {
    let sc = container.security_context.as_ref();
    if sc.and_then(|s| s.privileged) == Some(true) {
        return None;
    }
    if uid.unwrap_or(0) != 0 {
        return Some(Vec::new());
    }
    let caps = sc.and_then(|s| s.capabilities.as_ref());
    let drop: Vec<String> = caps.and_then(|c| c.drop.clone()).unwrap_or_default();
    let drop_all = drop.iter().any(|d| d.eq_ignore_ascii_case("ALL"));
    let mut keep: Vec<u32> = if drop_all {
        Vec::new()
    } else {
        let dropped: Vec<u32> = drop.iter().filter_map(|d| capability_number(d)).collect();
        DEFAULT_CAPABILITIES
            .iter()
            .filter_map(|c| capability_number(c))
            .filter(|c| !dropped.contains(c))
            .collect()
    };
    for add in caps.and_then(|c| c.add.clone()).unwrap_or_default() {
        if add.eq_ignore_ascii_case("ALL") {
            return None;
        }
        if let Some(n) = capability_number(&add)
            && !keep.contains(&n)
        {
            keep.push(n);
        }
    }
    keep.sort_unstable();
    Some(keep)
}

/// The bind mounts of `container`: each volumeMount (with `subPath`) over the volume's host
/// path, then the pod's `/etc/hosts` and `/etc/resolv.conf` unless the container mounts them.
pub fn binds(
    container: &Container,
    volumes: &HashMap<String, PathBuf>,
    etc_dir: &Path,
) -> Result<Vec<Bind>, String> {
    let mut out = Vec::new();
    for m in container.volume_mounts.iter().flatten() {
        let base = volumes
            .get(&m.name)
            .ok_or_else(|| format!("volume {:?} is not available", m.name))?;
        let source = match m.sub_path.as_deref().filter(|s| !s.is_empty()) {
            Some(sub) if super::atomic_writer::valid_path(sub) => base.join(sub),
            Some(sub) => return Err(format!("invalid subPath {sub:?}")),
            None => base.clone(),
        };
        out.push(Bind {
            source,
            target: PathBuf::from(&m.mount_path),
            read_only: m.read_only.unwrap_or(false),
        });
    }
    for f in ["hosts", "resolv.conf"] {
        let target = Path::new("/etc").join(f);
        if !out.iter().any(|b| b.target == target) {
            out.push(Bind {
                source: etc_dir.join(f),
                target,
                read_only: false,
            });
        }
    }
    Ok(out)
}

/// Assembles the launch spec.
#[allow(clippy::too_many_arguments)]
pub fn launch_spec(
    pod: &Pod,
    container: &Container,
    argv: Vec<String>,
    env: Vec<(String, String)>,
    binds: Vec<Bind>,
    netns: PathBuf,
    log: PathBuf,
) -> LaunchSpec {
    let (uid, gid) = user(pod, container);
    let sc = container.security_context.as_ref();
    LaunchSpec {
        capabilities: capabilities(container, uid),
        no_new_privs: sc.and_then(|s| s.allow_privilege_escalation) == Some(false),
        working_dir: container.working_dir.as_ref().map(PathBuf::from),
        argv,
        env,
        netns,
        binds,
        uid,
        gid,
        log,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(v: serde_json::Value) -> Container {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn capabilities_follow_kubernetes_rules() {
        let init = container(serde_json::json!({"name": "i", "securityContext": {
            "runAsUser": 0, "capabilities": {"add": ["NET_ADMIN", "NET_RAW"], "drop": ["ALL"]}}}));
        assert_eq!(capabilities(&init, Some(0)), Some(vec![12, 13]));
        let proxy = container(
            serde_json::json!({"name": "p", "securityContext": {"capabilities": {"drop": ["ALL"]}}}),
        );
        assert_eq!(capabilities(&proxy, Some(2102)), Some(vec![]));
        let plain = container(serde_json::json!({"name": "c"}));
        let caps = capabilities(&plain, None).unwrap();
        assert_eq!(caps.len(), DEFAULT_CAPABILITIES.len());
        assert!(!caps.contains(&12), "NET_ADMIN is not a default capability");
        let privileged = container(serde_json::json!({"name": "c", "securityContext": {"privileged": true}}));
        assert_eq!(capabilities(&privileged, None), None);
    }

    #[test]
    fn user_prefers_the_container_context() {
        let pod: Pod = serde_json::from_value(serde_json::json!({"metadata": {}, "spec": {"containers": [],
            "securityContext": {"runAsUser": 1000, "runAsGroup": 3000}}}))
        .unwrap();
        let c = container(serde_json::json!({"name": "c", "securityContext": {"runAsUser": 2102}}));
        assert_eq!(user(&pod, &c), (Some(2102), Some(3000)));
    }

    #[test]
    fn binds_map_volume_mounts_and_pod_etc_files() {
        let c = container(serde_json::json!({"name": "c", "volumeMounts": [
            {"name": "cfg", "mountPath": "/etc/weft", "readOnly": true},
            {"name": "cfg", "mountPath": "/one", "subPath": "a.txt"}]}));
        let vols: HashMap<String, PathBuf> =
            [("cfg".to_string(), PathBuf::from("/pods/u/volumes/cfg"))].into();
        let b = binds(&c, &vols, Path::new("/etc/netns/x")).unwrap();
        assert_eq!(
            b[0],
            Bind {
                source: "/pods/u/volumes/cfg".into(),
                target: "/etc/weft".into(),
                read_only: true
            }
        );
        assert_eq!(b[1].source, PathBuf::from("/pods/u/volumes/cfg/a.txt"));
        assert_eq!(b[2].target, PathBuf::from("/etc/hosts"));
        assert_eq!(b[3].source, PathBuf::from("/etc/netns/x/resolv.conf"));
        let bad = container(
            serde_json::json!({"name": "c", "volumeMounts": [{"name": "nope", "mountPath": "/x"}]}),
        );
        assert!(binds(&bad, &vols, Path::new("/e")).is_err());
    }
}
