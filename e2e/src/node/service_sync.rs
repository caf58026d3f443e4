//! Keeps the Service table current: watches Services and EndpointSlices (all namespaces),
//! rebuilds the table on change, applies the nat rules when they differ, and publishes the
//! table so pod workers rewrite their `/etc/hosts`.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::runtime::{WatchStreamExt, reflector, watcher};
use tokio::sync::watch;

use super::Ctx;
use super::cmd::{args, run_with_stdin};
use super::services::{ServiceTable, build_table, render_nat};

/// Runs until aborted.
pub(crate) async fn run(ctx: Arc<Ctx>, publish: watch::Sender<Arc<ServiceTable>>) {
    let (svc_store, svc_writer) = reflector::store::<Service>();
    let (eps_store, eps_writer) = reflector::store::<EndpointSlice>();
    let cfg = watcher::Config::default();
    let svc_stream = reflector(
        svc_writer,
        watcher(Api::<Service>::all(ctx.client.clone()), cfg.clone()),
    )
    .default_backoff()
    .map(|r| r.map(|_| ()).map_err(|e| e.to_string()))
    .boxed();
    let eps_stream = reflector(
        eps_writer,
        watcher(Api::<EndpointSlice>::all(ctx.client.clone()), cfg),
    )
    .default_backoff()
    .map(|r| r.map(|_| ()).map_err(|e| e.to_string()))
    .boxed();
    let mut events = futures::stream::select(svc_stream, eps_stream);
    let mut chains = BTreeSet::new();
    let mut applied = String::new();
    loop {
        match events.next().await {
            None => return,
            Some(Err(e)) => {
                tracing::warn!(error = %e, "service watch error");
                continue;
            }
            Some(Ok(())) => {}
        }
        // Debounce: let a burst of events land before rebuilding.
        tokio::time::sleep(Duration::from_millis(50)).await;
        while let Some(Some(_)) = futures::FutureExt::now_or_never(events.next()) {}
        let services: Vec<Service> = svc_store.state().iter().map(|s| (**s).clone()).collect();
        let slices: Vec<EndpointSlice> = eps_store.state().iter().map(|s| (**s).clone()).collect();
        let table = build_table(&services, &slices, ctx.api_backend);
        let (payload, new_chains) = render_nat(&table, &chains);
        if payload != applied {
            match run_with_stdin("iptables-restore", &args(&["-w", "--noflush"]), &payload).await {
                Ok(_) => {
                    tracing::debug!(services = table.len(), "service rules applied");
                    chains = new_chains;
                    applied = payload;
                }
                Err(e) => tracing::warn!(error = %e, "applying service rules failed"),
            }
        }
        if **publish.borrow() != table {
            let _ = publish.send(Arc::new(table));
        }
    }
}
