//! Watches the pods bound to this node and runs one [`Worker`](super::worker::Worker) per
//! pod UID: new pods start a worker, updates (e.g. a deletion timestamp) are handed to it,
//! and pods that vanish are torn down. On agent shutdown every worker stops its pod.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::DeleteParams;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::Ctx;
use super::worker::Worker;

fn uid(pod: &Pod) -> String {
    pod.metadata.uid.clone().unwrap_or_default()
}

fn terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

/// Runs until `shutdown` flips, then waits for every worker to finish.
pub(crate) async fn run(ctx: Arc<Ctx>, mut shutdown: watch::Receiver<bool>) {
    let api: Api<Pod> = Api::all(ctx.client.clone());
    let cfg = watcher::Config::default().fields(&format!("spec.nodeName={}", ctx.config.node_name));
    let mut stream = watcher::watcher(api, cfg).default_backoff().boxed();
    let mut workers: HashMap<String, watch::Sender<Option<Pod>>> = HashMap::new();
    let mut running = JoinSet::new();
    let mut seen_in_init: HashSet<String> = HashSet::new();
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            Some(done) = running.join_next(), if !running.is_empty() => {
                if let Ok(uid) = done {
                    workers.remove(&uid);
                }
            }
            ev = stream.next() => match ev {
                None => break,
                Some(Err(e)) => tracing::warn!(error = %e, "pod watch error"),
                Some(Ok(Event::Init)) => seen_in_init.clear(),
                Some(Ok(Event::InitApply(pod))) => {
                    seen_in_init.insert(uid(&pod));
                    dispatch(&ctx, pod, &mut workers, &mut running, &shutdown).await;
                }
                Some(Ok(Event::InitDone)) => {
                    for (uid, tx) in &workers {
                        if !seen_in_init.contains(uid) {
                            let _ = tx.send(None);
                        }
                    }
                }
                Some(Ok(Event::Apply(pod))) => dispatch(&ctx, pod, &mut workers, &mut running, &shutdown).await,
                Some(Ok(Event::Delete(pod))) => {
                    if let Some(tx) = workers.get(&uid(&pod)) {
                        let _ = tx.send(None);
                    }
                }
            },
        }
    }
    // Workers see the shutdown flag themselves; wait for their cleanup.
    while running.join_next().await.is_some() {}
}

async fn dispatch(
    ctx: &Arc<Ctx>,
    pod: Pod,
    workers: &mut HashMap<String, watch::Sender<Option<Pod>>>,
    running: &mut JoinSet<String>,
    shutdown: &watch::Receiver<bool>,
) {
    let id = uid(&pod);
    if let Some(tx) = workers.get(&id) {
        let _ = tx.send(Some(pod));
        return;
    }
    if pod.metadata.deletion_timestamp.is_some() || terminal(&pod) {
        // Never started here (or finished before this agent ran): nothing to stop.
        if pod.metadata.deletion_timestamp.is_some() {
            release(ctx, &pod).await;
        }
        return;
    }
    let (tx, rx) = watch::channel(Some(pod.clone()));
    workers.insert(id.clone(), tx);
    let worker = Worker::new(ctx.clone(), pod);
    let shutdown = shutdown.clone();
    running.spawn(async move {
        worker.run(rx, shutdown).await;
        id
    });
}

/// Deletes the pod object for good (grace 0, guarded by its UID) once it is cleaned up.
pub(crate) async fn release(ctx: &Ctx, pod: &Pod) {
    let (Some(ns), Some(name)) = (pod.metadata.namespace.as_deref(), pod.metadata.name.as_deref()) else {
        return;
    };
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    let params = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(kube::api::Preconditions {
            uid: pod.metadata.uid.clone(),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match api.delete(name, &params).await {
        Ok(_) => tracing::info!(pod = %name, namespace = %ns, "pod released"),
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
        Err(e) => tracing::warn!(error = %e, pod = %name, "releasing pod failed"),
    }
}
