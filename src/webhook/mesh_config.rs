//! Keeps the injector's [`InjectConfig`] in step with the cluster's MeshConfig
//! `default` (proxy image, resources, log level). Every replica follows it, leader
//! or not, because every replica serves admissions.

use super::config::InjectConfig;
use super::server::SharedConfig;
use crate::api::mesh::{MESH_CONFIG_NAME, MeshConfig};
use futures::StreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};

/// Watches MeshConfig `default` and updates `shared` on every change; a deleted
/// MeshConfig restores the defaults. Returns when the watch stream ends.
pub async fn follow(client: Client, shared: SharedConfig) {
    let api: Api<MeshConfig> = Api::all(client);
    let cfg = watcher::Config::default().fields(&format!("metadata.name={MESH_CONFIG_NAME}"));
    let mut events = watcher::watcher(api, cfg).boxed();
    while let Some(event) = events.next().await {
        match event {
            Ok(Event::Apply(mc) | Event::InitApply(mc)) => {
                shared.set(InjectConfig::from(&mc.spec));
                tracing::info!(image = %shared.get().proxy_image, "injector follows MeshConfig");
            }
            Ok(Event::Delete(_)) => {
                shared.set(InjectConfig::default());
                tracing::info!("MeshConfig deleted: injector uses defaults");
            }
            Ok(Event::Init | Event::InitDone) => {}
            // The watcher retries by itself; log and keep the last config.
            Err(error) => tracing::warn!(%error, "MeshConfig watch error"),
        }
    }
}
