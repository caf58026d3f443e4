//! Gateway listeners' HTTP routes, compiled with the routing table from
//! [`weft_proxy_config::GatewayConfig`], and the Gateway API selection rules:
//! the listener on a port whose hostname matches the request's host most
//! specifically ([`select_listener`]), then among its route entries the group
//! with the most specific hostname matching the host, first matching entry in
//! order ([`ListenerRoutes::find`]). Entries reuse the GAMMA machinery
//! ([`super::gamma`]); backends are addressed directly (metrics name the
//! backend service port as the authority).

use super::gamma::{GammaEntry, RouteRequest, RuleBackends};
use super::table::{Backend, Builder};
use crate::metrics::{HttpMetrics, labels};
use std::collections::HashMap;
use std::sync::Arc;
use weft_proxy_config::GatewayListener;
use weft_proxy_config::gateway::{hostname_matches, hostname_rank};

/// One compiled route entry of a listener.
#[derive(Debug)]
struct HostEntry {
    /// Lower-case hostnames; empty = every hostname the listener takes.
    hostnames: Vec<String>,
    entry: GammaEntry,
}

impl HostEntry {
    /// The rank of the most specific hostname matching `host`; `None` when none does.
    fn rank(&self, host: &str) -> Option<(u8, usize)> {
        if self.hostnames.is_empty() {
            return Some(hostname_rank(None));
        }
        self.hostnames
            .iter()
            .filter(|h| hostname_matches(h, host))
            .map(|h| hostname_rank(Some(h)))
            .max()
    }
}

/// One compiled stream route (TCPRoute / TLSRoute rule) of a listener.
#[derive(Debug)]
pub struct StreamEntry {
    /// `<kind>/<namespace>/<name>/<rule>`.
    pub source: Arc<str>,
    /// Lower-case SNI hostnames; empty = any.
    hostnames: Vec<String>,
    rule: RuleBackends,
}

impl StreamEntry {
    /// The next backend by weight; `None` when none resolves.
    pub fn pick(&self) -> Option<Arc<Backend>> {
        self.rule.pick().and_then(|t| t.backend.clone())
    }

    fn rank(&self, sni: Option<&str>) -> Option<(u8, usize)> {
        if self.hostnames.is_empty() {
            return Some(hostname_rank(None));
        }
        let sni = sni?;
        self.hostnames
            .iter()
            .filter(|h| hostname_matches(h, sni))
            .map(|h| hostname_rank(Some(h)))
            .max()
    }
}

/// The routes of one gateway listener (HTTP entries, or stream routes).
#[derive(Debug)]
pub struct ListenerRoutes {
    pub name: Arc<str>,
    pub port: u16,
    /// Requests the gateway answers itself (`404`, redirects, `500`).
    pub http_metrics: Arc<HttpMetrics>,
    entries: Vec<HostEntry>,
    streams: Vec<StreamEntry>,
}

impl ListenerRoutes {
    /// The entry for `req` with host `host` (lower-case, no port): among the
    /// entries whose hostnames match most specifically, the first whose match holds.
    pub fn find(&self, host: &str, req: &RouteRequest<'_>) -> Option<&GammaEntry> {
        let ranked: Vec<_> = self
            .entries
            .iter()
            .filter_map(|e| e.rank(host).map(|r| (r, e)))
            .collect();
        let best = ranked.iter().map(|(r, _)| *r).max()?;
        ranked
            .into_iter()
            .filter(|(r, _)| *r == best)
            .map(|(_, e)| &e.entry)
            .find(|e| e.holds(req))
    }

    /// The stream route for a connection with SNI `sni` (lower-case; `None`
    /// for TCP): the one whose hostname matches most specifically, first in order.
    pub fn find_stream(&self, sni: Option<&str>) -> Option<&StreamEntry> {
        let mut best: Option<((u8, usize), &StreamEntry)> = None;
        for s in &self.streams {
            if let Some(r) = s.rank(sni)
                && best.is_none_or(|(b, _)| r > b)
            {
                best = Some((r, s));
            }
        }
        best.map(|(_, s)| s)
    }

    /// Number of entries (for logs and tests).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the listener has no route entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// The listener among `listeners` (those of one port) whose hostname matches
/// `host` most specifically; `None` when none matches.
pub fn select_listener<'l>(
    listeners: impl IntoIterator<Item = &'l GatewayListener>,
    host: &str,
) -> Option<&'l GatewayListener> {
    listeners
        .into_iter()
        .filter(|l| l.hostname.as_deref().is_none_or(|h| hostname_matches(h, host)))
        .max_by_key(|l| hostname_rank(l.hostname.as_deref()))
}

impl<'a> Builder<'a> {
    /// The compiled routes of every gateway listener, by listener name.
    pub(super) fn gateway(&mut self) -> HashMap<String, Arc<ListenerRoutes>> {
        let Some(gw) = self.cfg.gateway.as_ref() else {
            return HashMap::new();
        };
        let mut out = HashMap::new();
        for l in &gw.listeners {
            let mut rules: HashMap<&'a str, Arc<RuleBackends>> = HashMap::new();
            let mut entries = Vec::with_capacity(l.routes.len());
            for r in &l.routes {
                let e = &r.entry;
                let rule = match rules.get(e.source.as_str()) {
                    Some(rule) => Arc::clone(rule),
                    None => {
                        let rule = Arc::new(self.rule_backends(None, e));
                        rules.insert(e.source.as_str(), Arc::clone(&rule));
                        rule
                    }
                };
                entries.push(HostEntry {
                    hostnames: r.hostnames.iter().map(|h| h.to_ascii_lowercase()).collect(),
                    entry: self.gamma_entry(e, rule),
                });
            }
            let streams = l
                .streams
                .iter()
                .map(|s| StreamEntry {
                    source: Arc::from(s.source.as_str()),
                    hostnames: s.hostnames.iter().map(|h| h.to_ascii_lowercase()).collect(),
                    rule: self.backends_of(None, &s.source, &s.backends),
                })
                .collect();
            let port = l.port.to_string();
            let metrics = self.metrics.http(labels(&[
                ("direction", "outbound"),
                ("gateway_listener", &l.name),
                ("gateway_port", &port),
            ]));
            tracing::debug!(listener = %l.name, port = l.port, entries = entries.len(), "gateway routes compiled");
            out.insert(
                l.name.clone(),
                Arc::new(ListenerRoutes {
                    name: Arc::from(l.name.as_str()),
                    port: l.port,
                    http_metrics: metrics,
                    entries,
                    streams,
                }),
            );
        }
        out
    }
}

#[cfg(test)]
#[path = "gateway_tests.rs"]
mod tests;
