//! The data-plane suite: starts every topology, runs the scenarios interleaved (each scenario
//! visits every topology before the next scenario starts, rounds rotate the order), samples proxy
//! CPU and memory around each load, and measures time to ready.

use crate::external;
use crate::load::{self, Percentiles, RunStats, fixed::FixedRate};
use crate::procs::Proc;
use crate::procstat;
use crate::report::{Fixed, Ready, Saturation, TopologyResult};
use crate::topology::{self, Env, Hop, Peer, Running, Spec};
use std::net::SocketAddr;
use std::time::Duration;

/// Which tool drives the saturation runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SatTool {
    Wrk,
    Rust,
}

/// Knobs of a suite run.
#[derive(Debug, Clone)]
pub struct Options {
    pub rounds: usize,
    pub warmup: Duration,
    pub saturation: Duration,
    pub fixed: Duration,
    pub rates: Vec<u32>,
    pub fixed_connections: usize,
    pub saturation_connections: usize,
    pub generator_threads: usize,
    pub sat_tool: SatTool,
    pub h2: bool,
    pub ready_starts: usize,
    pub timeout: Duration,
}

/// Accumulated numbers of one topology over the rounds.
#[derive(Debug)]
struct Acc {
    result: TopologyResult,
    running: Option<Running>,
    sat: (u64, u64, Duration, f64),
    h2: (u64, u64, Duration, f64),
    /// Per rate: merged stats, proxy CPU, and each round's p99 (ms).
    fixed: Vec<(u32, RunStats, Duration, Vec<f64>)>,
}

fn cpu(procs: &[Proc]) -> Option<Duration> {
    procs.iter().map(|p| procstat::cpu(p.pid()).ok()).sum()
}

fn max_rss(procs: &[Proc], field: &str) -> Option<u64> {
    procs
        .iter()
        .filter_map(|p| procstat::rss_kb(p.pid(), field).ok())
        .max()
}

fn per_req(cpu: Duration, requests: u64, measured: bool) -> Option<f64> {
    (measured && requests > 0).then(|| cpu.as_secs_f64() * 1e6 / requests as f64)
}

/// The median of `v` (mean of the middle two for an even count).
pub fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// The topologies a full run covers.
pub fn default_specs() -> Vec<Spec> {
    let s = |peer, hop, workers| Spec { peer, hop, workers };
    vec![
        s(Peer::None, Hop::Direct, 0),
        s(Peer::Weft, Hop::Plain, 1),
        s(Peer::Envoy, Hop::Plain, 1),
        s(Peer::Weft, Hop::Mtls, 1),
        s(Peer::Envoy, Hop::Mtls, 1),
        s(Peer::Weft, Hop::Plain, 2),
        s(Peer::Envoy, Hop::Plain, 2),
    ]
}

fn saturate(rt: &tokio::runtime::Runtime, o: &Options, target: SocketAddr, d: Duration) -> (u64, u64, f64) {
    match o.sat_tool {
        SatTool::Wrk => match external::wrk(target, o.generator_threads, o.saturation_connections, d) {
            Ok(t) => (t.requests, t.errors, t.rps),
            Err(e) => {
                tracing::warn!(error = %e, %target, "wrk failed");
                (0, 1, 0.0)
            }
        },
        SatTool::Rust => {
            match rt.block_on(load::closed::run(target, o.saturation_connections, d, o.timeout)) {
                Ok(s) => (s.ok, s.errors, s.rps()),
                Err(e) => {
                    tracing::warn!(error = %e, %target, "closed loop failed");
                    (0, 1, 0.0)
                }
            }
        }
    }
}

fn round(rt: &tokio::runtime::Runtime, o: &Options, accs: &mut [Acc], round: usize) {
    let n = accs.len();
    let order: Vec<usize> = (0..n).map(|i| (i + round) % n).collect();
    for &i in &order {
        let Some(run) = &accs[i].running else { continue };
        let (entry, name) = (run.entry, run.spec.name());
        let _ = saturate(rt, o, entry, o.warmup);
        let c0 = cpu(&run.proxies);
        let (req, err, rps) = saturate(rt, o, entry, o.saturation);
        let c1 = cpu(&run.proxies);
        tracing::info!(topology = %name, round, rps = rps.round(), errors = err, "saturation");
        let a = &mut accs[i];
        a.sat.0 += req;
        a.sat.1 += err;
        a.sat.2 += c1.zip(c0).map_or(Duration::ZERO, |(a, b)| a.saturating_sub(b));
        a.sat.3 += rps;
    }
    for &rate in &o.rates {
        for &i in &order {
            let Some(run) = &accs[i].running else { continue };
            // Latency is compared at one worker; the 2-worker rows are for throughput (time bound).
            if run.spec.workers > 1 {
                continue;
            }
            let cfg = FixedRate {
                rate,
                duration: o.fixed,
                connections: o.fixed_connections,
                timeout: o.timeout,
                grace: Duration::from_secs(2),
            };
            let c0 = cpu(&run.proxies);
            let stats = rt.block_on(load::fixed::run(run.entry, cfg));
            let c1 = cpu(&run.proxies);
            let used = c1.zip(c0).map_or(Duration::ZERO, |(a, b)| a.saturating_sub(b));
            let name = run.spec.name();
            match stats {
                Ok(s) => {
                    let p = Percentiles::of(&s.latency);
                    tracing::info!(topology = %name, round, rate, p50_ms = p.p50_ms, p99_ms = p.p99_ms,
                        errors = s.errors, "fixed rate");
                    let slot = accs[i].fixed.iter_mut().find(|(r, ..)| *r == rate);
                    match slot {
                        Some((_, acc, c, p99s)) => {
                            acc.merge(&s);
                            *c += used;
                            p99s.push(p.p99_ms);
                        }
                        None => accs[i].fixed.push((rate, s, used, vec![p.p99_ms])),
                    }
                }
                Err(e) => tracing::warn!(topology = %name, rate, error = %e, "fixed-rate run failed"),
            }
        }
    }
    if o.h2 {
        for &i in &order {
            let Some(run) = &accs[i].running else { continue };
            let c0 = cpu(&run.proxies);
            let t = external::h2load(run.entry, 4, 16, o.saturation);
            let c1 = cpu(&run.proxies);
            let a = &mut accs[i];
            match t {
                Ok(t) => {
                    a.h2.0 += t.requests;
                    a.h2.1 += t.errors;
                    a.h2.2 += c1.zip(c0).map_or(Duration::ZERO, |(a, b)| a.saturating_sub(b));
                    a.h2.3 += t.rps;
                }
                Err(e) => tracing::warn!(topology = %a.result.name, error = %e, "h2load failed"),
            }
        }
    }
}

fn finish(o: &Options, acc: Acc) -> TopologyResult {
    let mut r = acc.result;
    let rounds = o.rounds.max(1) as f64;
    let measured = acc.running.as_ref().is_some_and(|x| !x.proxies.is_empty());
    let sat_tool = match o.sat_tool {
        SatTool::Wrk => "wrk",
        SatTool::Rust => "rust",
    };
    if acc.sat.0 > 0 {
        r.saturation = Some(Saturation {
            tool: sat_tool.into(),
            rps: acc.sat.3 / rounds,
            requests: acc.sat.0,
            errors: acc.sat.1,
            cpu_us_per_req: per_req(acc.sat.2, acc.sat.0, measured),
        });
    }
    if acc.h2.0 > 0 {
        r.h2 = Some(Saturation {
            tool: "h2load".into(),
            rps: acc.h2.3 / rounds,
            requests: acc.h2.0,
            errors: acc.h2.1,
            cpu_us_per_req: per_req(acc.h2.2, acc.h2.0, measured),
        });
    }
    for (rate, s, c, p99s) in &acc.fixed {
        r.fixed.push(Fixed {
            p99_rounds_ms: p99s.clone(),
            p99_median_ms: median(p99s),
            rate: *rate,
            latency: Percentiles::of(&s.latency),
            service: Percentiles::of(&s.service),
            errors: s.errors,
            achieved_rps: s.rps(),
            cpu_us_per_req: per_req(*c, s.ok, measured),
        });
    }
    if let Some(run) = &acc.running {
        r.peak_rss_kb = max_rss(&run.proxies, "VmHWM");
        r.rss_anon_kb = max_rss(&run.proxies, "RssAnon");
    }
    r
}

/// Starts `spec`'s first proxy `starts` times and summarizes its time to ready.
fn time_to_ready(env: &Env, spec: Spec, backend: SocketAddr, starts: usize) -> anyhow::Result<Ready> {
    let mut times = Vec::new();
    for i in 0..starts {
        let name = format!("{}-ready{i}", spec.name());
        let listen = crate::procs::free_addr()?;
        let (_proc, t) = match spec.peer {
            Peer::Weft => {
                let role = topology::WeftRole::Plain {
                    listen,
                    upstream: backend,
                };
                topology::start_weft(env, &name, spec.workers, &role)?
            }
            _ => topology::start_envoy(
                env,
                &name,
                spec.workers,
                &crate::envoy::Role::Plain,
                crate::envoy::Filter::Http,
                listen,
                backend,
            )?,
        };
        times.push(t.as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    Ok(Ready {
        starts: times.len(),
        median_ms: times.get(times.len() / 2).copied().unwrap_or(0.0),
        max_ms: times.last().copied().unwrap_or(0.0),
    })
}

/// Runs the whole suite against `backend`.
pub fn run(
    env: &Env,
    o: &Options,
    specs: &[Spec],
    backend: SocketAddr,
) -> anyhow::Result<Vec<TopologyResult>> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(o.generator_threads.max(1))
        .enable_all()
        .build()?;
    let mut accs = Vec::new();
    for &spec in specs {
        let mut result = TopologyResult::new(spec);
        let running = match topology::start(env, spec, backend) {
            Ok(run) => {
                std::thread::sleep(Duration::from_millis(200));
                result.idle_rss_kb = max_rss(&run.proxies, "VmRSS");
                result.ready = run.ready.map(|d| {
                    let ms = d.as_secs_f64() * 1000.0;
                    Ready {
                        starts: 1,
                        median_ms: ms,
                        max_ms: ms,
                    }
                });
                Some(run)
            }
            Err(e) => {
                tracing::warn!(topology = %result.name, error = %e, "topology not run");
                result.pending = Some(format!("{e:#}"));
                None
            }
        };
        accs.push(Acc {
            result,
            running,
            sat: Default::default(),
            h2: Default::default(),
            fixed: Vec::new(),
        });
    }
    for i in 0..o.rounds.max(1) {
        tracing::info!(round = i, "round");
        round(&rt, o, &mut accs, i);
    }
    let mut results: Vec<TopologyResult> = accs.into_iter().map(|a| finish(o, a)).collect();
    for r in results
        .iter_mut()
        .filter(|r| r.pending.is_none() && r.spec.hop == Hop::Plain)
    {
        match time_to_ready(env, r.spec, backend, o.ready_starts) {
            Ok(ready) => r.ready = Some(ready),
            Err(e) => tracing::warn!(topology = %r.name, error = %e, "time to ready failed"),
        }
    }
    Ok(results)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_odd_even_empty() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0]), 2.5);
        assert_eq!(median(&[]), 0.0);
    }

    #[test]
    fn cpu_per_request() {
        assert_eq!(per_req(Duration::from_millis(30), 1000, true), Some(30.0));
        assert_eq!(per_req(Duration::from_millis(30), 1000, false), None);
        assert_eq!(per_req(Duration::from_millis(30), 0, true), None);
    }
}
