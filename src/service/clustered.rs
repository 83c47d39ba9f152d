//! Cluster mode's part of the wiring: the pipeline's share of the units, the cluster handle,
//! and its stage, started (first contact with Redis included) before ingest.

use std::sync::Arc;
use tokio::sync::mpsc;

use super::stage::Stage;
use super::RunError;
use crate::cluster::{self, Cluster, ClusterConfig};
use crate::core::health::MqttHealth;
use crate::pipeline::shared::{Change, Replicas};
use crate::pipeline::Pipeline;

/// Builds and starts the cluster; `pipeline` gets its share of the units. Returns the cluster,
/// its stage (stopped after the alert engine) and the ownership changes for ingest.
pub(super) async fn start(
    cc: &ClusterConfig,
    mut parts: cluster::Parts,
    pipeline: &mut Pipeline,
    mqtt: &Arc<MqttHealth>,
) -> Result<(Cluster, Stage, mpsc::Receiver<Change>), RunError> {
    let replicas = Replicas::new(cc.held_window(), cc.max_held);
    parts.owned = replicas.owned();
    let (cluster, changes) = Cluster::new(cc, parts)?;
    pipeline.attach_cluster(Arc::new(cluster.clone()), replicas);
    let stage = Stage::new("cluster");
    let mqtt = mqtt.clone();
    let ready = Box::new(move || mqtt.ready());
    cluster.start(ready, &stage.tracker(), stage.token()).await;
    Ok((cluster, stage, changes))
}
