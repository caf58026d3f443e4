//! The TCP throughput suite: direct, one plaintext proxy hop, and the two-proxy mTLS hop, for
//! weft (ports declared opaque TCP) and Envoy (`tcp_proxy`, TLS between the two Envoys), all at
//! one worker. Rounds are interleaved and rotate the order like the HTTP suite.

use super::{Bulk, Sink};
use crate::envoy::{Filter, Role};
use crate::procs::{Proc, free_addr};
use crate::procstat;
use crate::suite::median;
use crate::topology::{self, Env, Hop, Peer, Spec, WeftRole, require_tls};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::time::Duration;
use weft_proxy_config::Protocol;

/// Knobs of the TCP runs.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub rounds: usize,
    pub bulk: Bulk,
}

/// Bulk throughput of one topology.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TcpResult {
    pub name: String,
    pub spec: Spec,
    /// Set when the topology could not run; the reason.
    pub pending: Option<String>,
    /// MB/s (10^6 bytes/s) received by the sink in each round.
    pub rounds_mb_per_s: Vec<f64>,
    /// Median of the rounds.
    pub mb_per_s: Option<f64>,
    /// Bytes the sink received over all rounds.
    pub bytes: u64,
    /// CPU (utime+stime) of all proxies of the topology per GB (10^9 bytes) moved, ms.
    pub cpu_ms_per_gb: Option<f64>,
    /// Largest peak RSS (VmHWM) of one proxy after the runs, kB.
    pub peak_rss_kb: Option<u64>,
}

/// The name of a TCP topology, e.g. `tcp-weft-mtls-w1`.
pub fn name(spec: Spec) -> String {
    format!("tcp-{}", spec.name())
}

/// The topologies the TCP runs cover.
pub fn specs() -> Vec<Spec> {
    let s = |peer, hop, workers| Spec { peer, hop, workers };
    vec![
        s(Peer::None, Hop::Direct, 0),
        s(Peer::Weft, Hop::Plain, 1),
        s(Peer::Envoy, Hop::Plain, 1),
        s(Peer::Weft, Hop::Mtls, 1),
        s(Peer::Envoy, Hop::Mtls, 1),
    ]
}

/// Starts `spec` as an opaque-TCP topology in front of `sink`; returns the entry address and
/// the proxies.
fn start(env: &Env, spec: Spec, sink: SocketAddr) -> anyhow::Result<(SocketAddr, Vec<Proc>)> {
    let n = name(spec);
    let w = spec.workers;
    match (spec.peer, spec.hop) {
        (Peer::None, _) | (_, Hop::Direct) => Ok((sink, Vec::new())),
        (Peer::Weft, Hop::Plain) => {
            let listen = free_addr()?;
            let role = WeftRole::PlainTcp {
                listen,
                upstream: sink,
            };
            Ok((listen, vec![topology::start_weft(env, &n, w, &role)?.0]))
        }
        (Peer::Envoy, Hop::Plain) => {
            let listen = free_addr()?;
            let p = topology::start_envoy(env, &n, w, &Role::Plain, Filter::Tcp, listen, sink)?;
            Ok((listen, vec![p.0]))
        }
        (Peer::Weft, Hop::Mtls) => {
            if let Some(why) = &env.weft_mtls_pending {
                anyhow::bail!("{why}");
            }
            let (listen, middle) = (free_addr()?, free_addr()?);
            let server = WeftRole::MeshServer {
                listen: middle,
                app_port: sink.port(),
                protocol: Protocol::Tcp,
            };
            let server = topology::start_weft(env, &format!("{n}-server"), w, &server)?.0;
            let client = WeftRole::MeshClient {
                listen,
                server: middle,
                protocol: Protocol::Tcp,
            };
            let client = topology::start_weft(env, &format!("{n}-client"), w, &client)?.0;
            require_tls(middle)?;
            Ok((listen, vec![client, server]))
        }
        (Peer::Envoy, Hop::Mtls) => {
            let (listen, middle) = (free_addr()?, free_addr()?);
            let server = Role::MeshServer(&env.pki);
            let server =
                topology::start_envoy(env, &format!("{n}-server"), w, &server, Filter::Tcp, middle, sink)?;
            let client = Role::MeshClient(&env.pki);
            let client = topology::start_envoy(
                env,
                &format!("{n}-client"),
                w,
                &client,
                Filter::Tcp,
                listen,
                middle,
            )?;
            require_tls(middle)?;
            Ok((listen, vec![client.0, server.0]))
        }
    }
}

fn cpu(procs: &[Proc]) -> Duration {
    procs.iter().filter_map(|p| procstat::cpu(p.pid()).ok()).sum()
}

struct Slot {
    result: TcpResult,
    running: Option<(SocketAddr, Vec<Proc>)>,
    cpu: Duration,
}

/// Runs the TCP suite for the `specs` (each started fresh, stopped at the end).
pub fn run(env: &Env, o: Options, specs: &[Spec], sink: &Sink) -> Vec<TcpResult> {
    let mut slots: Vec<Slot> = specs
        .iter()
        .map(|&spec| {
            let mut result = TcpResult {
                name: name(spec),
                spec,
                pending: None,
                rounds_mb_per_s: Vec::new(),
                mb_per_s: None,
                bytes: 0,
                cpu_ms_per_gb: None,
                peak_rss_kb: None,
            };
            let running = start(env, spec, sink.addr())
                .map_err(|e| {
                    tracing::warn!(topology = %result.name, error = %e, "TCP topology not run");
                    result.pending = Some(format!("{e:#}"));
                })
                .ok();
            Slot {
                result,
                running,
                cpu: Duration::ZERO,
            }
        })
        .collect();
    let warm = Bulk {
        duration: Duration::from_millis(300),
        ..o.bulk
    };
    for round in 0..o.rounds.max(1) {
        let n = slots.len();
        for i in (0..n).map(|i| (i + round) % n) {
            let slot = &mut slots[i];
            let Some((entry, procs)) = &slot.running else {
                continue;
            };
            if round == 0 {
                let _ = super::run(sink, *entry, warm);
            }
            let c0 = cpu(procs);
            match super::run(sink, *entry, o.bulk) {
                Ok(s) => {
                    slot.cpu += cpu(procs).saturating_sub(c0);
                    slot.result.bytes += s.received;
                    slot.result.rounds_mb_per_s.push(s.mb_per_s());
                    tracing::info!(topology = %slot.result.name, round, mb_per_s = s.mb_per_s().round(),
                        sent = s.sent, received = s.received, "tcp bulk");
                }
                Err(e) => tracing::warn!(topology = %slot.result.name, round, error = %e, "tcp bulk failed"),
            }
        }
    }
    slots.into_iter().map(finish).collect()
}

fn finish(slot: Slot) -> TcpResult {
    let mut r = slot.result;
    if !r.rounds_mb_per_s.is_empty() {
        r.mb_per_s = Some(median(&r.rounds_mb_per_s));
    }
    if let Some((_, procs)) = &slot.running
        && !procs.is_empty()
    {
        r.cpu_ms_per_gb = cpu_per_gb(slot.cpu, r.bytes);
        r.peak_rss_kb = procs
            .iter()
            .filter_map(|p| procstat::rss_kb(p.pid(), "VmHWM").ok())
            .max();
    }
    r
}

/// Proxy CPU per GB (10^9 bytes) moved, ms.
fn cpu_per_gb(cpu: Duration, bytes: u64) -> Option<f64> {
    (bytes > 0).then(|| cpu.as_secs_f64() * 1e3 / (bytes as f64 / 1e9))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_cpu_per_gb() {
        let names: Vec<String> = specs().into_iter().map(name).collect();
        assert_eq!(names[0], "tcp-direct");
        assert!(names.contains(&"tcp-envoy-mtls-c1".to_string()), "{names:?}");
        assert_eq!(cpu_per_gb(Duration::from_millis(500), 2_000_000_000), Some(250.0));
        assert_eq!(cpu_per_gb(Duration::from_millis(500), 0), None);
    }
}
