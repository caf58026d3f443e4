//! Tests of the report comparisons (ratios, goals) and the markdown section.

use super::*;
use crate::load::Percentiles;
use crate::procstat::Machine;
use crate::report::{Fixed, Ready, Report, RunConfig, Saturation, TopologyResult};
use crate::topology::{Hop, Peer, Spec};

fn lat(p99: f64) -> Percentiles {
    Percentiles {
        count: 1000,
        p50_ms: p99 / 4.0,
        p90_ms: p99 / 2.0,
        p99_ms: p99,
        p999_ms: p99 * 2.0,
        max_ms: p99 * 3.0,
    }
}

fn topo(peer: Peer, hop: Hop, rps: f64, p99: f64, rss_mb: u64, ready_ms: f64) -> TopologyResult {
    let mut r = TopologyResult::new(Spec {
        peer,
        hop,
        workers: if peer == Peer::None { 0 } else { 1 },
    });
    r.saturation = Some(Saturation {
        tool: "wrk".into(),
        rps,
        requests: 1000,
        errors: 0,
        cpu_us_per_req: Some(30.0),
    });
    r.fixed.push(Fixed {
        rate: 1000,
        latency: lat(p99),
        service: lat(p99),
        p99_rounds_ms: vec![p99, p99],
        p99_median_ms: p99,
        errors: 0,
        achieved_rps: 1000.0,
        cpu_us_per_req: Some(50.0),
    });
    if peer != Peer::None {
        r.peak_rss_kb = Some(rss_mb * 1024);
        r.idle_rss_kb = Some(rss_mb * 1024 / 2);
        r.ready = Some(Ready {
            starts: 3,
            median_ms: ready_ms,
            max_ms: ready_ms,
        });
    }
    r
}

fn report() -> Report {
    let mut pending = TopologyResult::new(Spec {
        peer: Peer::Weft,
        hop: Hop::Mtls,
        workers: 1,
    });
    pending.pending = Some("no mTLS yet".into());
    Report {
        command: "make bench".into(),
        unix_time: 0,
        machine: Machine {
            nproc: 2,
            cpu_model: "Test CPU".into(),
            kernel: "6.1".into(),
            loadavg_at_start: 0.5,
        },
        config: RunConfig {
            rounds: 2,
            saturation_secs: 4,
            fixed_secs: 5,
            rates: vec![1000],
            fixed_connections: 16,
            saturation_connections: 16,
            saturation_tool: "wrk".into(),
            envoy_version: "1.40.0".into(),
            tcp_secs: 3,
            tcp_mb: 4000,
            tcp_connections: 1,
        },
        results: vec![
            topo(Peer::None, Hop::Direct, 80_000.0, 0.3, 0, 0.0),
            topo(Peer::Weft, Hop::Plain, 30_000.0, 0.5, 8, 10.0),
            topo(Peer::Envoy, Hop::Plain, 15_000.0, 0.9, 66, 150.0),
            pending,
            topo(Peer::Envoy, Hop::Mtls, 5_000.0, 1.3, 67, 90.0),
        ],
        tcp: Vec::new(),
    }
}

#[test]
fn goals_compare_weft_to_envoy() {
    let rep = report();
    let g = goals(&rep);
    // Plain hop: throughput 2.0× (met), added p99 0.2 / 0.6 = 0.33× (met).
    assert_eq!(g[0].met, Some(true));
    assert!((g[0].measured.unwrap() - 2.0).abs() < 1e-9);
    assert!((g[1].measured.unwrap() - 0.2 / 0.6).abs() < 1e-9);
    assert_eq!(g[1].met, Some(true));
    // mTLS hop: weft pending, so not measured.
    assert_eq!(g[2].met, None);
    assert_eq!(g[3].met, None);
    // RSS 8 MB under load (met), idle 4 MB (met), ready 10 ms (met).
    assert_eq!(
        (g[4].met, g[5].met, g[6].met),
        (Some(true), Some(true), Some(true))
    );
    assert_eq!(g[4].envoy, Some(67.0));
}

#[test]
fn latency_goal_needs_every_round_to_agree() {
    let mut rep = report();
    // Direct p99 per round 0.3; Envoy adds 0.6 each round; weft adds 0.2, then 0.5 (> 0.3 allowed).
    rep.results[0].fixed[0].p99_rounds_ms = vec![0.3, 0.3];
    rep.results[2].fixed[0].p99_rounds_ms = vec![0.9, 0.9];
    rep.results[1].fixed[0].p99_rounds_ms = vec![0.5, 0.8];
    let g = goals(&rep);
    assert_eq!(g[1].rounds_met, Some((1, 2)));
    assert_eq!(g[1].met, None);
    assert!(render(&rep).contains("inconclusive: held in 1 of 2 rounds"));
    rep.results[1].fixed[0].p99_rounds_ms = vec![0.8, 0.8];
    let g = goals(&rep);
    assert_eq!((g[1].met, g[1].rounds_met), (Some(false), Some((0, 2))));
}

#[test]
fn goals_report_misses() {
    let mut rep = report();
    rep.results[1].saturation.as_mut().unwrap().rps = 16_000.0;
    rep.results[1].peak_rss_kb = Some(20 * 1024);
    let g = goals(&rep);
    assert_eq!(g[0].met, Some(false));
    assert_eq!(g[4].met, Some(false));
}

#[test]
fn section_has_ratios_pending_and_machine() {
    let md = render(&report());
    assert!(md.contains("2 CPUs, Test CPU, kernel 6.1"), "{md}");
    assert!(md.contains("`make bench`"));
    // weft row: 30000 req/s, 2.00× Envoy.
    assert!(md.contains("| weft-plain-w1 | 30000 | 2.00× |"), "{md}");
    assert!(md.contains("| envoy-plain-c1 | 15000 | 1.00× |"), "{md}");
    assert!(md.contains("| weft-mtls-w1 | pending: no mTLS yet"), "{md}");
    assert!(md.contains("**missed**") || md.contains("| met |"));
}

#[test]
fn splice_appends_then_replaces_in_place() {
    let doc = "# Benchmarks\n\n## Operator\n\nnumbers\n";
    let once = splice(doc, "## Data plane\n\nv1\n");
    assert!(once.starts_with(doc.trim_end()));
    assert!(once.contains("v1") && once.contains(BEGIN) && once.contains(END));
    let with_tail = format!("{once}\n## Notes (hand-written)\n");
    let twice = splice(&with_tail, "## Data plane\n\nv2\n");
    assert!(twice.contains("v2") && !twice.contains("v1"));
    assert!(twice.contains("## Operator") && twice.contains("## Notes (hand-written)"));
    assert_eq!(twice.matches(BEGIN).count(), 1);
    assert!(splice("", "x").starts_with("# Benchmarks"));
}

#[test]
fn tcp_table_has_ratio_to_envoy() {
    use crate::tcp::suite::TcpResult;
    let t = |peer, hop, mbps: f64| TcpResult {
        name: crate::tcp::suite::name(Spec {
            peer,
            hop,
            workers: 1,
        }),
        spec: Spec {
            peer,
            hop,
            workers: 1,
        },
        pending: None,
        rounds_mb_per_s: vec![mbps],
        mb_per_s: Some(mbps),
        bytes: 1,
        cpu_ms_per_gb: Some(100.0),
        peak_rss_kb: Some(2048),
    };
    let mut rep = report();
    rep.tcp = vec![
        t(Peer::Weft, Hop::Mtls, 1500.0),
        t(Peer::Envoy, Hop::Mtls, 1000.0),
    ];
    let md = render(&rep);
    assert!(
        md.contains("| tcp-weft-mtls-w1 | 1500 | 1.50× | 1500 | 100 | 1.00× | 2.0 | 1.00× |"),
        "{md}"
    );
    assert!(md.contains("| tcp-envoy-mtls-c1 | 1000 | 1.00× |"), "{md}");
}
