//! The machine-readable results of a run (written as JSON) and the derived comparisons:
//! ratios to Envoy and the goals.

use crate::load::Percentiles;
use crate::procstat::Machine;
use crate::tcp::suite::TcpResult;
use crate::topology::{Hop, Peer, Spec};
use serde::{Deserialize, Serialize};

/// Closed-loop throughput of one topology.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Saturation {
    /// `wrk`, `rust` (the built-in closed loop) or `h2load`.
    pub tool: String,
    pub rps: f64,
    pub requests: u64,
    pub errors: u64,
    /// Proxy CPU (all proxies of the topology) per request, µs.
    pub cpu_us_per_req: Option<f64>,
}

/// Latency at one fixed rate (histograms merged over rounds).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fixed {
    pub rate: u32,
    /// From each request's scheduled send time (coordinated-omission corrected).
    pub latency: Percentiles,
    /// From the actual send time (uncorrected), for reference.
    pub service: Percentiles,
    /// p99 of each round (ms) and their median: the median is robust to a round that a
    /// neighbour's burst on the shared machine spoiled, so the goals use it.
    pub p99_rounds_ms: Vec<f64>,
    pub p99_median_ms: f64,
    pub errors: u64,
    pub achieved_rps: f64,
    pub cpu_us_per_req: Option<f64>,
}

/// Time from spawn to a 200 on `/ready`, over several starts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ready {
    pub starts: usize,
    pub median_ms: f64,
    pub max_ms: f64,
}

/// Everything measured for one topology.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopologyResult {
    pub name: String,
    pub spec: Spec,
    /// Set when the topology could not run; the reason.
    pub pending: Option<String>,
    pub saturation: Option<Saturation>,
    pub h2: Option<Saturation>,
    pub fixed: Vec<Fixed>,
    /// Largest RSS of one proxy right after ready, kB.
    pub idle_rss_kb: Option<u64>,
    /// Largest peak RSS (VmHWM) of one proxy after all load, kB.
    pub peak_rss_kb: Option<u64>,
    /// Anonymous (heap/stack) part of one proxy's RSS after all load, kB; the rest of RSS is
    /// file-backed (mostly the binary's own code pages).
    pub rss_anon_kb: Option<u64>,
    pub ready: Option<Ready>,
}

impl TopologyResult {
    pub fn new(spec: Spec) -> Self {
        Self {
            name: spec.name(),
            spec,
            pending: None,
            saturation: None,
            h2: None,
            fixed: Vec::new(),
            idle_rss_kb: None,
            peak_rss_kb: None,
            rss_anon_kb: None,
            ready: None,
        }
    }

    pub fn at(&self, rate: u32) -> Option<&Fixed> {
        self.fixed.iter().find(|f| f.rate == rate)
    }
}

/// How the run was configured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunConfig {
    pub rounds: usize,
    pub saturation_secs: u64,
    pub fixed_secs: u64,
    pub rates: Vec<u32>,
    pub fixed_connections: usize,
    pub saturation_connections: usize,
    pub saturation_tool: String,
    pub envoy_version: String,
    /// Per-round bounds of the TCP bulk runs.
    #[serde(default)]
    pub tcp_secs: u64,
    #[serde(default)]
    pub tcp_mb: u64,
    #[serde(default)]
    pub tcp_connections: usize,
}

/// A whole run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub command: String,
    pub unix_time: u64,
    pub machine: Machine,
    pub config: RunConfig,
    pub results: Vec<TopologyResult>,
    /// TCP bulk throughput (empty when skipped).
    #[serde(default)]
    pub tcp: Vec<TcpResult>,
}

impl Report {
    /// The TCP result of the same topology with Envoy (for weft) or itself (for Envoy).
    pub fn tcp_envoy_of<'a>(&'a self, r: &'a TcpResult) -> Option<&'a TcpResult> {
        let want = match r.spec.peer {
            Peer::Weft => r.spec.peer_of()?,
            Peer::Envoy => r.spec,
            Peer::None => return None,
        };
        self.tcp.iter().find(|t| t.spec == want && t.pending.is_none())
    }

    pub fn get(&self, spec: Spec) -> Option<&TopologyResult> {
        self.results
            .iter()
            .find(|r| r.spec == spec && r.pending.is_none())
    }

    fn direct(&self) -> Option<&TopologyResult> {
        self.results.iter().find(|r| r.spec.peer == Peer::None)
    }

    /// The result of the same topology with Envoy (for weft) or weft (for Envoy).
    pub fn envoy_of<'a>(&'a self, r: &'a TopologyResult) -> Option<&'a TopologyResult> {
        match r.spec.peer {
            Peer::Weft => self.get(r.spec.peer_of()?),
            Peer::Envoy => Some(r),
            Peer::None => None,
        }
    }

    /// Median-of-rounds p99 at `rate` minus the direct path's (the latency the proxies add), ms.
    pub fn added_p99(&self, r: &TopologyResult, rate: u32) -> Option<f64> {
        Some(r.at(rate)?.p99_median_ms - self.direct()?.at(rate)?.p99_median_ms)
    }
}

impl Report {
    /// Per round: (weft's added p99) ÷ (Envoy's added p99), each against that round's direct p99.
    /// Rounds where Envoy added nothing measurable (≤ 0, i.e. noise) are left out.
    pub fn added_p99_ratio_rounds(
        &self,
        weft: &TopologyResult,
        envoy: &TopologyResult,
        rate: u32,
    ) -> Vec<f64> {
        let (Some(w), Some(e), Some(d)) = (
            weft.at(rate),
            envoy.at(rate),
            self.direct().and_then(|d| d.at(rate)),
        ) else {
            return Vec::new();
        };
        let rounds = w
            .p99_rounds_ms
            .len()
            .min(e.p99_rounds_ms.len())
            .min(d.p99_rounds_ms.len());
        (0..rounds)
            .filter_map(|i| {
                let base = d.p99_rounds_ms[i];
                ratio(Some(w.p99_rounds_ms[i] - base), Some(e.p99_rounds_ms[i] - base))
            })
            .collect()
    }
}

/// `a / b` when both exist and b is positive.
pub fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

/// One goal from the issue and where weft stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Goal {
    pub goal: String,
    pub weft: Option<f64>,
    pub envoy: Option<f64>,
    /// Unit of `weft` and `envoy`.
    pub value_unit: String,
    /// The value compared against the target (a ratio or an absolute value).
    pub measured: Option<f64>,
    /// Unit of `measured`.
    pub unit: String,
    pub met: Option<bool>,
    /// For the latency goals: in how many of the interleaved rounds the goal held, of how many
    /// rounds could be compared. `met` is then Some only when all rounds agree.
    pub rounds_met: Option<(usize, usize)>,
}

fn spec(peer: Peer, hop: Hop) -> Spec {
    Spec {
        peer,
        hop,
        workers: 1,
    }
}

/// Evaluates the goals against a report.
pub fn goals(rep: &Report) -> Vec<Goal> {
    let mut out = Vec::new();
    for (hop, label) in [(Hop::Plain, "plaintext hop"), (Hop::Mtls, "mTLS mesh hop")] {
        let w = rep.get(spec(Peer::Weft, hop));
        let e = rep.get(spec(Peer::Envoy, hop));
        let sat = |r: Option<&TopologyResult>| r.and_then(|r| r.saturation.as_ref()).map(|s| s.rps);
        let m = ratio(sat(w), sat(e));
        out.push(Goal {
            goal: format!("saturation throughput, 1 worker, {label}: ≥ 1.5× Envoy"),
            weft: sat(w),
            envoy: sat(e),
            value_unit: "req/s".into(),
            measured: m,
            unit: "× Envoy".into(),
            met: m.map(|m| m >= 1.5),
            rounds_met: None,
        });
        let add = |r: Option<&TopologyResult>| r.and_then(|r| rep.added_p99(r, 1000));
        let m = ratio(add(w), add(e));
        let per_round = match (w, e) {
            (Some(w), Some(e)) => rep.added_p99_ratio_rounds(w, e, 1000),
            _ => Vec::new(),
        };
        let held = per_round.iter().filter(|r| **r <= 0.5).count();
        let rounds_met = (!per_round.is_empty()).then_some((held, per_round.len()));
        let met = match rounds_met {
            Some((h, n)) if h == n => Some(true),
            Some((0, _)) => Some(false),
            _ => None,
        };
        out.push(Goal {
            goal: format!("added p99 at 1,000 req/s, {label}: ≤ 0.5× Envoy"),
            weft: add(w),
            envoy: add(e),
            value_unit: "ms".into(),
            measured: m,
            unit: "× Envoy".into(),
            met,
            rounds_met,
        });
    }
    let weft: Vec<&TopologyResult> = rep
        .results
        .iter()
        .filter(|r| r.spec.peer == Peer::Weft && r.pending.is_none())
        .collect();
    let envoy: Vec<&TopologyResult> = rep
        .results
        .iter()
        .filter(|r| r.spec.peer == Peer::Envoy)
        .collect();
    let max_mb = |rs: &[&TopologyResult], f: fn(&TopologyResult) -> Option<u64>| {
        rs.iter().filter_map(|r| f(r)).max().map(|kb| kb as f64 / 1024.0)
    };
    let abs_goal = |goal: &str, w: Option<f64>, e: Option<f64>, unit: &str, limit: f64| Goal {
        goal: goal.into(),
        weft: w,
        envoy: e,
        value_unit: unit.into(),
        measured: w,
        unit: unit.into(),
        met: w.map(|v| v < limit),
        rounds_met: None,
    };
    out.push(abs_goal(
        "sidecar RSS under load ≤ 15 MB",
        max_mb(&weft, |r| r.peak_rss_kb),
        max_mb(&envoy, |r| r.peak_rss_kb),
        "MB",
        15.0,
    ));
    out.push(abs_goal(
        "sidecar RSS idle ≤ 8 MB",
        max_mb(&weft, |r| r.idle_rss_kb),
        max_mb(&envoy, |r| r.idle_rss_kb),
        "MB",
        8.0,
    ));
    let ready = |rs: &[&TopologyResult]| {
        rs.iter()
            .filter_map(|r| r.ready.as_ref().map(|x| x.median_ms))
            .reduce(f64::max)
    };
    out.push(abs_goal(
        "ready < 50 ms after start",
        ready(&weft),
        ready(&envoy),
        "ms",
        50.0,
    ));
    out
}
