//! Route objects resolved for use by splits and grants: HTTPRouteGroups become
//! proxy [`HttpMatch`]es (regexes checked here, so a bad one is reported on the
//! route group instead of invalidating configs), TCPRoutes become port lists.

use super::report::{Reports, reason};
use crate::api::specs::HttpMatch as ApiHttpMatch;
use crate::operator::state::{ClusterState, Kind};
use std::collections::HashMap;
use weft_proxy_config::HttpMatch;

/// Usable route objects by `(namespace, name)`.
#[derive(Debug, Default)]
pub struct Routes {
    /// HTTPRouteGroup matches (`None` = exists but unusable).
    pub groups: HashMap<(String, String), Option<Vec<HttpMatch>>>,
    /// TCPRoute ports (`None` = exists but unusable).
    pub tcp: HashMap<(String, String), Option<Vec<u16>>>,
}

fn convert(group: &str, m: &ApiHttpMatch) -> Result<HttpMatch, String> {
    // The same anchoring the proxy compiles with: a whole-input match.
    let check = |what: &str, re: &str| {
        weft_proxy_config::compile_full(re)
            .map(|_| ())
            .map_err(|e| format!("match {:?} {what}: {e}", m.name))
    };
    if let Some(p) = &m.path_regex {
        check("pathRegex", p)?;
    }
    let headers = m.headers.as_ref().map(|h| h.merged()).unwrap_or_default();
    for (name, re) in &headers {
        check(&format!("header {name}"), re)?;
    }
    let mut methods: Vec<String> = m
        .methods
        .iter()
        .flatten()
        .map(|s| s.to_ascii_uppercase())
        .collect();
    if let Some(bad) = methods
        .iter()
        .find(|x| x.as_str() != "*" && !x.chars().all(|c| c.is_ascii_uppercase()))
    {
        return Err(format!(
            "match {:?}: method {bad:?} is not a method name or *",
            m.name
        ));
    }
    methods.sort();
    methods.dedup();
    Ok(HttpMatch {
        name: format!("{group}/{}", m.name),
        path_regex: m.path_regex.clone(),
        methods,
        headers,
    })
}

/// Reads every route object, reporting unreadable or invalid ones.
pub fn build(state: &ClusterState, reports: &mut Reports) -> Routes {
    let mut routes = Routes::default();
    for g in &state.route_groups {
        reports.seen(Kind::HttpRouteGroup, &g.namespace, &g.name, g.generation);
        let usable = match &g.spec {
            Err(e) => Err(e.clone()),
            Ok(matches) => matches
                .iter()
                .map(|m| convert(&g.name, m))
                .collect::<Result<Vec<_>, _>>(),
        };
        let usable = usable
            .map_err(|e| {
                reports.rejected(
                    Kind::HttpRouteGroup,
                    &g.namespace,
                    &g.name,
                    reason::INVALID_SPEC,
                    e,
                )
            })
            .ok();
        routes
            .groups
            .insert((g.namespace.clone(), g.name.clone()), usable);
    }
    for r in &state.tcp_routes {
        reports.seen(Kind::TcpRoute, &r.namespace, &r.name, r.generation);
        let usable = match &r.spec {
            Err(e) => {
                reports.rejected(
                    Kind::TcpRoute,
                    &r.namespace,
                    &r.name,
                    reason::INVALID_SPEC,
                    e.clone(),
                );
                None
            }
            Ok(ports) => {
                let mut ports = ports.clone();
                ports.sort();
                ports.dedup();
                Some(ports)
            }
        };
        routes.tcp.insert((r.namespace.clone(), r.name.clone()), usable);
    }
    routes
}
