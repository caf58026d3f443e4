//! Simple counter and gauge families for the policy layer (retries, breakers,
//! outlier ejection, authorization, identity). Handles are created when a
//! config is compiled (never per request), so label sets stay bounded by the
//! config; recording is one relaxed atomic add.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

/// One counter or gauge series.
#[derive(Debug, Default)]
pub struct Series(AtomicI64);

impl Series {
    /// Adds one.
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// Sets a gauge value.
    pub fn set(&self, v: i64) {
        self.0.store(v, Ordering::Relaxed);
    }

    /// Current value.
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Prometheus metric type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
}

#[derive(Debug)]
struct Family {
    help: &'static str,
    kind: Kind,
    series: BTreeMap<String, Arc<Series>>,
}

/// All families, rendered in name order.
#[derive(Debug, Default)]
pub struct Families {
    map: Mutex<BTreeMap<&'static str, Family>>,
}

impl Families {
    /// The series `name{labels}` (created on first use).
    pub fn series(&self, name: &'static str, kind: Kind, help: &'static str, labels: &str) -> Arc<Series> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let fam = map.entry(name).or_insert_with(|| Family {
            help,
            kind,
            series: BTreeMap::new(),
        });
        Arc::clone(fam.series.entry(labels.to_string()).or_default())
    }

    /// Value of `name{labels}` if it exists (tests and admin).
    pub fn value(&self, name: &str, labels: &str) -> Option<i64> {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.get(name)?.series.get(labels).map(|s| s.get())
    }

    /// Appends the text exposition of every family.
    pub fn render(&self, out: &mut String) {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        for (name, fam) in map.iter() {
            let kind = match fam.kind {
                Kind::Counter => "counter",
                Kind::Gauge => "gauge",
            };
            let _ = writeln!(out, "# HELP {name} {}\n# TYPE {name} {kind}", fam.help);
            for (labels, s) in &fam.series {
                let _ = writeln!(out, "{name}{{{labels}}} {}", s.get());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_are_shared_and_rendered() {
        let f = Families::default();
        let a = f.series("x_total", Kind::Counter, "X.", "a=\"1\"");
        a.inc();
        f.series("x_total", Kind::Counter, "X.", "a=\"1\"").inc();
        f.series("g", Kind::Gauge, "G.", "").set(2);
        let mut out = String::new();
        f.render(&mut out);
        assert!(out.contains("# TYPE g gauge\ng{} 2\n"), "{out}");
        assert!(out.contains("x_total{a=\"1\"} 2\n"), "{out}");
        assert_eq!(f.value("x_total", "a=\"1\""), Some(2));
    }
}
