//! The topologies under test and how to start them: direct to the backend, one proxy hop, and
//! the two-proxy mTLS mesh hop, each for weft and for Envoy.

use crate::envoy::{self, Filter, Role};
use crate::pki::Pki;
use crate::procs::{Proc, free_addr, free_port, http_status, wait_ready};
use crate::weftmesh;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;
use weft_proxy_config::Protocol;

/// Which proxy implementation a topology uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Peer {
    None,
    Weft,
    Envoy,
}

/// What sits between the load generator and the backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Hop {
    /// Straight to the backend.
    Direct,
    /// One plaintext proxy.
    Plain,
    /// Client-side proxy → mTLS → server-side proxy.
    Mtls,
}

/// One topology: a proxy kind, a hop kind and the worker count of each proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Spec {
    pub peer: Peer,
    pub hop: Hop,
    pub workers: usize,
}

impl Spec {
    /// A short stable name such as `weft-plain-w1`.
    pub fn name(&self) -> String {
        match self.peer {
            Peer::None => "direct".into(),
            Peer::Weft => format!("weft-{}-w{}", hop_name(self.hop), self.workers),
            Peer::Envoy => format!("envoy-{}-c{}", hop_name(self.hop), self.workers),
        }
    }

    /// The same topology with the other proxy (what its ratio is taken against).
    pub fn peer_of(&self) -> Option<Spec> {
        let peer = match self.peer {
            Peer::Weft => Peer::Envoy,
            Peer::Envoy => Peer::Weft,
            Peer::None => return None,
        };
        Some(Spec { peer, ..*self })
    }
}

fn hop_name(h: Hop) -> &'static str {
    match h {
        Hop::Direct => "direct",
        Hop::Plain => "plain",
        Hop::Mtls => "mtls",
    }
}

/// Binaries, certificates and the log directory a run uses.
#[derive(Debug, Clone)]
pub struct Env {
    pub weft_proxy: PathBuf,
    pub envoy: PathBuf,
    pub pki: Pki,
    pub logs: PathBuf,
    /// Why weft's mTLS hop cannot run yet, if it cannot.
    pub weft_mtls_pending: Option<String>,
}

/// A started topology: where to send load and the proxy processes to measure.
#[derive(Debug)]
pub struct Running {
    pub spec: Spec,
    pub entry: SocketAddr,
    pub proxies: Vec<Proc>,
    /// Time from spawn to ready of the first proxy started.
    pub ready: Option<Duration>,
}

const READY_LIMIT: Duration = Duration::from_secs(20);

/// How one weft proxy is wired.
#[derive(Debug, Clone)]
pub enum WeftRole {
    /// `--listen listen --upstream upstream`, synthesized plaintext config.
    Plain {
        listen: SocketAddr,
        upstream: SocketAddr,
    },
    /// `--listen listen --upstream upstream` with a written plaintext config whose one port is
    /// opaque TCP (no protocol detection).
    PlainTcp {
        listen: SocketAddr,
        upstream: SocketAddr,
    },
    /// Client sidecar: `listen` forwards to the server sidecar at `server` over mTLS.
    MeshClient {
        listen: SocketAddr,
        server: SocketAddr,
        protocol: Protocol,
    },
    /// Server sidecar: mTLS on `listen`, the app on 127.0.0.1:`app_port`.
    MeshServer {
        listen: SocketAddr,
        app_port: u16,
        protocol: Protocol,
    },
}

fn weft_config(env: &Env, name: &str, config: &weft_proxy_config::ProxyConfig) -> anyhow::Result<PathBuf> {
    let path = env.logs.join(format!("{name}.json"));
    std::fs::write(&path, config.to_json()?)?;
    Ok(path)
}

/// Starts one weft proxy; returns it with its time to ready.
pub fn start_weft(
    env: &Env,
    name: &str,
    workers: usize,
    role: &WeftRole,
) -> anyhow::Result<(Proc, Duration)> {
    let admin = free_addr()?;
    let mut cmd = Command::new(&env.weft_proxy);
    cmd.args(["run", "--bind", "127.0.0.1"])
        .arg("--workers")
        .arg(workers.to_string())
        .arg("--admin-port")
        .arg(admin.port().to_string())
        .arg("--outbound-port")
        .arg(free_port()?.to_string())
        .arg("--inbound-port")
        .arg(free_port()?.to_string())
        .arg("--drain-grace-s")
        .arg("0")
        .env("RUST_LOG", "warn");
    match role {
        WeftRole::Plain { listen, upstream } => {
            cmd.arg("--listen")
                .arg(listen.to_string())
                .arg("--upstream")
                .arg(upstream.to_string());
        }
        WeftRole::PlainTcp { listen, upstream } => {
            let config = weft_config(env, name, &weftmesh::plain_config(*upstream, Protocol::Tcp))?;
            cmd.arg("--config")
                .arg(config)
                .arg("--listen")
                .arg(listen.to_string())
                .arg("--upstream")
                .arg(upstream.to_string());
        }
        WeftRole::MeshClient {
            listen,
            server,
            protocol,
        } => {
            let config = weft_config(env, name, &weftmesh::client_config(*server, *protocol))?;
            cmd.arg("--config")
                .arg(config)
                .arg("--identity-dir")
                .arg(&env.pki.client_dir);
            cmd.arg("--listen")
                .arg(listen.to_string())
                .arg("--upstream")
                .arg(server.to_string());
        }
        WeftRole::MeshServer {
            listen,
            app_port,
            protocol,
        } => {
            let config = weft_config(env, name, &weftmesh::server_config(*app_port, *protocol))?;
            cmd.arg("--config")
                .arg(config)
                .arg("--identity-dir")
                .arg(&env.pki.server_dir);
            cmd.arg("--inbound-map").arg(format!("{listen}={app_port}"));
        }
    }
    let mut proc = Proc::spawn(name, cmd, &env.logs.join(format!("{name}.log")))?;
    let ready = wait_ready(&mut proc, admin, "/ready", READY_LIMIT)?;
    Ok((proc, ready))
}

/// Starts one Envoy with `role`; returns it with its time to ready.
pub fn start_envoy(
    env: &Env,
    name: &str,
    concurrency: usize,
    role: &Role<'_>,
    filter: Filter,
    listen: SocketAddr,
    upstream: SocketAddr,
) -> anyhow::Result<(Proc, Duration)> {
    let admin = free_addr()?;
    let config = env.logs.join(format!("{name}.yaml"));
    std::fs::write(
        &config,
        envoy::bootstrap_yaml(role, filter, listen, upstream, admin),
    )?;
    let mut cmd = Command::new(&env.envoy);
    cmd.arg("-c")
        .arg(&config)
        .arg("--concurrency")
        .arg(concurrency.to_string())
        .args(["--log-level", "warn", "--disable-hot-restart"]);
    let mut proc = Proc::spawn(name, cmd, &env.logs.join(format!("{name}.log")))?;
    let ready = wait_ready(&mut proc, admin, "/ready", READY_LIMIT)?;
    Ok((proc, ready))
}

/// Guards the mesh topologies: the server-side proxy must refuse a plaintext request, so the
/// load really crosses mutual TLS.
pub fn require_tls(server_side: SocketAddr) -> anyhow::Result<()> {
    match http_status(server_side, "/") {
        Some(200) => anyhow::bail!("server-side proxy at {server_side} answered plaintext HTTP: not mTLS"),
        _ => Ok(()),
    }
}

/// Starts `spec` in front of `backend`.
pub fn start(env: &Env, spec: Spec, backend: SocketAddr) -> anyhow::Result<Running> {
    let name = spec.name();
    let mut proxies = Vec::new();
    let mut ready = None;
    let entry = match (spec.peer, spec.hop) {
        (Peer::None, _) | (_, Hop::Direct) => backend,
        (Peer::Weft, Hop::Plain) => {
            let listen = free_addr()?;
            let role = WeftRole::Plain {
                listen,
                upstream: backend,
            };
            let (p, r) = start_weft(env, &name, spec.workers, &role)?;
            proxies.push(p);
            ready = Some(r);
            listen
        }
        (Peer::Envoy, Hop::Plain) => {
            let listen = free_addr()?;
            let (p, r) = start_envoy(
                env,
                &name,
                spec.workers,
                &Role::Plain,
                Filter::Http,
                listen,
                backend,
            )?;
            proxies.push(p);
            ready = Some(r);
            listen
        }
        (Peer::Weft, Hop::Mtls) => {
            if let Some(why) = &env.weft_mtls_pending {
                anyhow::bail!("{why}");
            }
            let (listen, middle) = (free_addr()?, free_addr()?);
            let server_role = WeftRole::MeshServer {
                listen: middle,
                app_port: backend.port(),
                protocol: Protocol::Detect,
            };
            let (server, _) = start_weft(env, &format!("{name}-server"), spec.workers, &server_role)?;
            let client_role = WeftRole::MeshClient {
                listen,
                server: middle,
                protocol: Protocol::Detect,
            };
            let (client, r) = start_weft(env, &format!("{name}-client"), spec.workers, &client_role)?;
            proxies.push(client);
            proxies.push(server);
            require_tls(middle)?;
            ready = Some(r);
            listen
        }
        (Peer::Envoy, Hop::Mtls) => {
            let (listen, middle) = (free_addr()?, free_addr()?);
            let server_name = format!("{name}-server");
            let (server, _) = start_envoy(
                env,
                &server_name,
                spec.workers,
                &Role::MeshServer(&env.pki),
                Filter::Http,
                middle,
                backend,
            )?;
            let (client, r) = start_envoy(
                env,
                &format!("{name}-client"),
                spec.workers,
                &Role::MeshClient(&env.pki),
                Filter::Http,
                listen,
                middle,
            )?;
            proxies.push(client);
            proxies.push(server);
            require_tls(middle)?;
            ready = Some(r);
            listen
        }
    };
    Ok(Running {
        spec,
        entry,
        proxies,
        ready,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_peers() {
        let w = Spec {
            peer: Peer::Weft,
            hop: Hop::Mtls,
            workers: 1,
        };
        assert_eq!(w.name(), "weft-mtls-w1");
        let e = w.peer_of().unwrap();
        assert_eq!(e.name(), "envoy-mtls-c1");
        assert_eq!(e.peer_of(), Some(w));
        let d = Spec {
            peer: Peer::None,
            hop: Hop::Direct,
            workers: 0,
        };
        assert_eq!(d.name(), "direct");
        assert_eq!(d.peer_of(), None);
    }
}
