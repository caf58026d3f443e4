//! The archives in a real (throwaway) containerd: `ctr images import` names each image
//! `docker.io/weft/<name>:<version>` from the archive alone, and `ctr run` runs them —
//! the proxy by its bare command name (as the webhook does), its `init` both as a
//! dry run and for real (as root with NET_ADMIN, in the container's own network
//! namespace, with the image's own iptables-nft and iptables-legacy), the controller's
//! `--help`, and the demo app serving through its entrypoint. Needs root.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use support::containerd::Containerd;
use weft_controller::webhook::InjectConfig;
use weft_controller::webhook::containers::init_container;
use weft_controller::webhook::exclusions::Exclusions;

const VERSION: &str = env!("CARGO_PKG_VERSION");

fn reference(name: &str) -> String {
    format!("docker.io/weft/{name}:{VERSION}")
}

/// The init container exactly as the webhook injects it: command and args.
fn init_argv() -> Vec<String> {
    let ex = Exclusions {
        inbound_ports: "8081".into(),
        outbound_ports: String::new(),
        outbound_cidrs: "198.19.7.0/24".into(),
    };
    let c = init_container(&InjectConfig::default(), &ex);
    let mut argv = c.command.unwrap();
    assert_eq!(
        argv,
        ["weft-proxy"],
        "the webhook runs the proxy by its bare name"
    );
    argv.extend(c.args.unwrap());
    argv
}

fn run_args<'a>(image: &'a str, id: &'a str, argv: &'a [String]) -> Vec<&'a str> {
    let mut a = vec!["run", "--rm", image, id];
    a.extend(argv.iter().map(String::as_str));
    a
}

#[test]
fn images_import_and_run_in_containerd() {
    if !support::is_root() {
        support::skip("images_import_and_run_in_containerd", "not running as root");
        return;
    }
    let cat = support::catalog();
    let ctrd = Containerd::start();
    for (name, e) in &cat.images {
        let out = ctrd.must(&["images", "import", &e.archive.display().to_string()]);
        assert!(out.contains(&reference(name)), "import named it: {out}");
    }
    let listed = ctrd.must(&["images", "ls"]);
    for (name, e) in &cat.images {
        let line = listed
            .lines()
            .find(|l| l.starts_with(&format!("{} ", reference(name))));
        let line = line.unwrap_or_else(|| panic!("{} not listed:\n{listed}", reference(name)));
        assert!(line.contains(&e.manifest_digest), "{line}");
    }

    let proxy = reference("proxy");
    let version = ctrd.must(&run_args(
        &proxy,
        "proxy-version",
        &["weft-proxy".into(), "--version".into()],
    ));
    assert_eq!(version.trim(), format!("weft-proxy {VERSION}"));

    let mut dry = init_argv();
    dry.push("--dry-run".into());
    let rules = ctrd.must(&run_args(&proxy, "proxy-init-dry-run", &dry));
    for want in [
        "-j REDIRECT --to-ports 15006",
        "-j REDIRECT --to-ports 15001",
        "--uid-owner 2102",
        "8081",
        "198.19.7.0/24",
    ] {
        assert!(rules.contains(want), "dry run lacks {want:?}:\n{rules}");
    }

    let sh = ctrd.ctr(&["run", "--rm", &proxy, "proxy-sh", "/bin/sh", "-c", "true"]);
    assert!(!sh.ok, "/bin/sh ran in the proxy image: {}", sh.text());
    assert!(sh.stderr.contains("no such file or directory"), "{}", sh.text());

    // For real: the image's files as the init container's root filesystem, run as root
    // (the webhook's runAsUser: 0) with NET_ADMIN and the image's PATH, in a fresh
    // network namespace (no --net-host), once per iptables backend the image carries,
    // IPv4 and IPv6.
    let image_path = weft_image::inspect::Archive::open(&cat.images["proxy"].archive)
        .unwrap()
        .summary()
        .unwrap()
        .config
        .config
        .env
        .into_iter()
        .find(|e| e.starts_with("PATH="))
        .unwrap();
    let rootfs = ctrd.dir().join("proxy-rootfs");
    std::fs::create_dir(&rootfs).unwrap();
    let rootfs_s = rootfs.display().to_string();
    ctrd.must(&["images", "mount", "--rw", &proxy, &rootfs_s]);
    for backend in ["nft", "legacy"] {
        let mut argv = init_argv();
        argv.extend([format!("--backend={backend}"), "--ipv6=on".into()]);
        let id = format!("proxy-init-{backend}");
        let mut args = vec![
            "run",
            "--rm",
            "--rootfs",
            "--env",
            &image_path,
            "--cap-add",
            "CAP_NET_ADMIN",
            &rootfs_s,
            &id,
        ];
        args.extend(argv.iter().map(String::as_str));
        let out = ctrd.ctr(&args);
        assert!(out.ok, "init with {backend} failed: {}", out.text());
        assert!(
            out.stderr.contains(&format!("backend=\"{backend}\"")),
            "{}",
            out.text()
        );
        for family in ["ipv4", "ipv6"] {
            let line = out
                .stderr
                .lines()
                .find(|l| l.contains("redirection installed") && l.contains(family));
            assert!(
                line.is_some(),
                "{backend}: no {family} rules installed: {}",
                out.text()
            );
        }
    }
    ctrd.must(&["images", "unmount", "--rm", &rootfs_s]);

    let controller = reference("controller");
    let help = ctrd.must(&[
        "run",
        "--rm",
        &controller,
        "controller-help",
        "weft-controller",
        "--help",
    ]);
    assert!(help.contains("weft control plane"), "{help}");

    // The demo app through its entrypoint alone, configured by env as the Bookinfo
    // manifests do; host network so the test reaches it on 127.0.0.1. Its /call
    // resolves `localhost` through the host's /etc/hosts (ctr binds it with --net-host):
    // glibc's NSS works in the static binary.
    let port = support::free_port();
    let demo = reference("demo-app");
    let (env_port, env_addr) = (
        format!("HTTP_PORT={port}"),
        "LISTEN_ADDRESS=127.0.0.1".to_string(),
    );
    let env_svc = "SERVICE=images-test".to_string();
    ctrd.must(&[
        "run",
        "-d",
        "--net-host",
        "--env",
        &env_port,
        "--env",
        &env_addr,
        "--env",
        &env_svc,
        &demo,
        "demo-app",
    ]);
    let resp = support::http_ok(port, "/", Duration::from_secs(20))
        .unwrap_or_else(|last| panic!("demo app did not answer on {port}: {last}\n{}", ctrd.log()));
    assert!(resp.contains("images-test"), "{resp}");
    let call = format!("/call?url=http%3A%2F%2Flocalhost%3A{port}%2Fstatus%2F200");
    let called = support::http_ok(port, &call, Duration::from_secs(10))
        .unwrap_or_else(|last| panic!("demo app /call by name failed: {last}"));
    assert!(called.contains("\"path\":\"/status/200\""), "{called}");
    ctrd.must(&["tasks", "kill", "-s", "SIGTERM", "demo-app"]);
}

/// What a failing test leaves behind — a running task, its shim, an image mount — is
/// gone once the guard drops (as it does while a failed assertion unwinds).
#[test]
fn teardown_leaves_no_process_mount_cgroup_or_directory() {
    if !support::is_root() {
        support::skip(
            "teardown_leaves_no_process_mount_cgroup_or_directory",
            "not running as root",
        );
        return;
    }
    let cat = support::catalog();
    let ctrd = Containerd::start();
    ctrd.must(&[
        "images",
        "import",
        &cat.images["demo-app"].archive.display().to_string(),
    ]);
    let demo = reference("demo-app");
    ctrd.must(&["run", "-d", &demo, "left-running"]);
    let mnt = ctrd.dir().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    ctrd.must(&["images", "mount", &demo, &mnt.display().to_string()]);
    let (pid, dir, socket) = (ctrd.pid(), ctrd.dir().to_path_buf(), ctrd.socket.clone());
    let namespace = ctrd.namespace.clone();
    assert!(
        !support::containerd::cgroups(&namespace).is_empty(),
        "the task has cgroups"
    );
    assert!(
        !support::containerd::shims(&socket).is_empty(),
        "the task has a shim"
    );
    assert!(
        !support::containerd::mounts_under(&dir).is_empty(),
        "the image is mounted"
    );
    drop(ctrd);
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "containerd {pid} still runs"
    );
    assert_eq!(
        support::containerd::shims(&socket),
        Vec::<i32>::new(),
        "shims left"
    );
    assert_eq!(
        support::containerd::mounts_under(&dir),
        Vec::<String>::new(),
        "mounts left"
    );
    assert!(!dir.exists(), "{} left", dir.display());
    assert_eq!(
        support::containerd::cgroups(&namespace),
        Vec::<std::path::PathBuf>::new(),
        "cgroups left"
    );
}
