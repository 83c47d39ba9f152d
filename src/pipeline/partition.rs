//! Cluster mode in the pipeline (see [`super::shared`]): a reading of a unit this instance owns
//! is prepared here and handed to the cluster, which numbers it and puts it on the stream that
//! every instance delivers from; a reading of a unit owned elsewhere is held for a takeover.
//! Ownership changes are applied here too, by the ingest task, between two messages.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use tracing::{debug, info};

use super::shared::{fingerprint, Change, Held, Outbound};
use super::{report_of, Origin, Pipeline};
use crate::core::registry::Unit;
use crate::decode;

impl Pipeline {
    /// Cluster mode, the cluster reachable: publish (owned unit) or hold (another's).
    pub(super) async fn dispatch_shared(&mut self, reading: decode::Reading, o: &Origin<'_>) {
        let fp = fingerprint(o.topic, o.payload, &reading.sensor_id);
        let Some(unit) = self.hub.unit_of(&reading, o.topic, o.received_at) else {
            let why = "sensor is not in the registry (see /api/sensors/unmapped)";
            return self.rejections.log(Some(&reading.sensor_id), o.topic, why);
        };
        let Some((_, replicas)) = &mut self.cluster else {
            return;
        };
        if !replicas.owns(&unit.id) {
            let held = Held::new(fp, reading, o.topic, o.received_at, o.retained);
            replicas.hold(&unit.id, held);
            return;
        }
        if replicas.already_published(&unit.id, fp) {
            debug!(unit = %unit.id, "published by the unit's previous owner; skipped");
            return;
        }
        self.publish_owned(unit, reading, fp, o.topic, o.received_at, o.retained)
            .await;
    }

    /// A reading of a unit this instance owns: its door state is recorded, it goes to the
    /// cluster (numbered there, delivered from the stream), and the alert engine judges it.
    async fn publish_owned(
        &mut self,
        unit: Arc<Unit>,
        reading: decode::Reading,
        fp: u64,
        topic: &str,
        received_at: chrono::DateTime<chrono::Utc>,
        retained: bool,
    ) {
        let Some((cluster, _)) = &self.cluster else {
            return;
        };
        let (report, own_time, device) = report_of(&reading, received_at);
        let (door, wire) = self.hub.prepare(reading, &unit, received_at, retained);
        let sensor: Arc<str> = match &wire {
            Some(w) => w.device_id.clone(),
            None => device.unwrap_or_default().into(),
        };
        cluster
            .publish(Outbound {
                unit: unit.clone(),
                fp,
                door,
                reading: wire,
            })
            .await;
        self.judge(&unit.id, sensor, report, topic, retained, own_time)
            .await;
    }

    /// Applies an ownership change between two messages (see [`Change`]).
    pub async fn apply(&mut self, change: Change) {
        let Some((cluster, replicas)) = &mut self.cluster else {
            return;
        };
        let cluster = cluster.clone();
        match change {
            Change::Own {
                unit,
                published,
                track,
                last_at,
            } => {
                // The engine takes the unit's state before any reading of it.
                self.alerts.own(unit.clone(), track, last_at).await;
                let replay = replicas.own(&unit, &published);
                if !replay.is_empty() {
                    info!(unit = %unit, readings = replay.len(), "took the unit over: publishing what its previous owner did not");
                }
                self.hub
                    .stats()
                    .cluster_replayed
                    .fetch_add(replay.len() as u64, Relaxed);
                for h in replay {
                    let Some(u) = self.hub.unit_of(&h.reading, &h.topic, h.received_at) else {
                        continue;
                    };
                    self.publish_owned(u, h.reading, h.fp, &h.topic, h.received_at, h.retained)
                        .await;
                }
            }
            Change::Release { unit } => {
                replicas.disown(&unit);
                cluster.release(unit.clone()).await;
                self.alerts.release(unit).await;
            }
            Change::Lost { unit } => {
                replicas.disown(&unit);
                self.alerts.release(unit).await;
            }
            Change::Rejoined => replicas.clear(),
        }
    }

    /// Forgets held messages past the failover window (called now and then by the ingest task).
    pub fn expire_held(&mut self) {
        if let Some((_, replicas)) = &mut self.cluster {
            replicas.expire();
        }
    }
}
