//! The hub in cluster mode (see the module doc of [`super`]): the epoch as the cluster says,
//! readings prepared by a unit's owner and numbered by Redis, events taken back from the
//! stream under the unit's lock, numbering alone while degraded, and resume from the shared
//! history.

use chrono::{DateTime, Utc};
use std::sync::Arc;

use super::{prepare, Hub, SharedHistory};
use crate::core::reading::{SensorReading, UnitDoor};
use crate::core::registry::Unit;
use crate::decode::Reading;

impl Hub {
    /// Puts `epoch` in force (cluster mode). Returns whether it changed.
    pub fn set_epoch(&self, epoch: &str) -> bool {
        let mut e = self.0.epoch.write().expect("epoch lock");
        if &**e == epoch {
            return false;
        }
        *e = epoch.into();
        true
    }

    /// Attaches the cluster's shared history (once, at start in cluster mode).
    pub fn set_shared(&self, shared: Arc<dyn SharedHistory>) {
        let _ = self.0.shared.set(shared);
    }

    /// What the shared history keeps of `unit` after `after` (cluster mode; `None` without
    /// one, or when it cannot tell): `(readings, through)`.
    pub async fn stored_after(
        &self,
        unit: &Unit,
        after: u64,
    ) -> Option<(Vec<Arc<SensorReading>>, u64)> {
        let shared = self.0.shared.get()?.clone();
        shared.readings_after(&unit.id, after).await
    }

    /// Whether memory alone can serve a resume of `unit` from `after`.
    pub fn in_memory_after(&self, unit: &Arc<str>, after: u64) -> bool {
        let feed = self.feed(unit);
        let feed = feed.lock().expect("unit feed lock");
        feed.after(after, self.0.history).is_some()
    }

    /// Cluster mode, on the instance that owns `unit`: records the reading's door state and
    /// returns the door change (if any) and the reading's wire form (if it has a temperature)
    /// with `seq` 0 and no `id`: Redis numbers it (see the module doc).
    pub fn prepare(
        &self,
        reading: Reading,
        unit: &Arc<Unit>,
        received_at: DateTime<Utc>,
        retained: bool,
    ) -> (Option<UnitDoor>, Option<SensorReading>) {
        let feed = self.feed(&unit.id);
        let mut feed = feed.lock().expect("unit feed lock");
        prepare(&mut feed, unit, reading, received_at, retained)
    }

    /// Cluster mode: a numbered reading from the event stream. Kept as the unit's latest and
    /// in its history, and handed to `emit` under the unit's lock (see the module doc).
    /// One numbered before its unit moved to another owner is counted but neither kept nor
    /// emitted.
    pub fn relay_reading(&self, wire: Arc<SensorReading>, emit: impl FnOnce(&Arc<SensorReading>)) {
        let feed = self.feed(&wire.unit_id);
        let mut feed = feed.lock().expect("unit feed lock");
        feed.seq = feed.seq.max(wire.seq);
        if !self.is_current_owner(&wire) {
            return;
        }
        self.keep(&mut feed, &wire);
        feed.unsure = false;
        emit(&wire);
    }

    /// Cluster mode: the stream reader lost entries it never read (trimmed). Any unit may have
    /// had readings among them: until each unit's next reading, resumes are not served from
    /// memory (`recovered: false`); after it, a resume across the hole is served from the
    /// shared history or not at all (see [`super::UnitFeed::after`]).
    pub fn mark_unsure(&self) {
        let units: Vec<Arc<str>> = self.registry().units().map(|u| u.id.clone()).collect();
        for unit in units {
            self.feed(&unit).lock().expect("unit feed lock").unsure = true;
        }
    }

    /// Cluster mode: a door change from the event stream, handed to `emit` under the unit's
    /// lock. Recorded unless this instance owns the unit (`owner`): the owner recorded it when
    /// it prepared the reading, and may be ahead of the stream.
    pub fn relay_door(&self, door: &UnitDoor, owner: bool, emit: impl FnOnce()) {
        let feed = self.feed(&door.unit_id);
        let mut feed = feed.lock().expect("unit feed lock");
        if !owner {
            feed.doors.apply(door);
        }
        emit();
    }

    /// Cluster mode, degraded: a prepared reading (see [`Hub::prepare`]) that could not reach
    /// Redis, numbered here under this instance's epoch, kept, and handed to `emit` under the
    /// unit's lock.
    pub fn number_alone(&self, mut wire: SensorReading, emit: impl FnOnce(&Arc<SensorReading>)) {
        let feed = self.feed(&wire.unit_id);
        let mut feed = feed.lock().expect("unit feed lock");
        feed.seq += 1;
        wire.seq = feed.seq;
        wire.id = format!("{}-{}-{}", self.epoch(), wire.unit_id, feed.seq);
        let wire = Arc::new(wire);
        self.keep(&mut feed, &wire);
        emit(&wire);
    }

    /// Each unit's last `seq` in this process (cluster mode: what a rejoin must not go below).
    pub fn seqs(&self) -> Vec<(Arc<str>, u64)> {
        let feeds: Vec<_> = self
            .0
            .units
            .iter()
            .map(|e| (e.key().clone(), e.value().clone()))
            .collect();
        feeds
            .into_iter()
            .map(|(u, f)| {
                let seq = f.lock().expect("unit feed lock").seq;
                (u, seq)
            })
            .filter(|(_, s)| *s > 0)
            .collect()
    }

    /// Cluster mode: the unit's latest reading as Redis keeps it, at start (memory knows none).
    /// A reading stored under another organization or site than the unit's now (it moved) is
    /// not served: only its `seq` counts.
    pub fn restore_latest(&self, wire: Arc<SensorReading>) {
        let feed = self.feed(&wire.unit_id);
        let mut feed = feed.lock().expect("unit feed lock");
        feed.seq = feed.seq.max(wire.seq);
        if feed.latest.is_none() && self.is_current_owner(&wire) {
            feed.latest = Some(wire);
        }
    }

    /// Whether `r` was numbered under the organization and site its unit has in the registry
    /// in force (false after a reload moved the unit, or for a unit no longer there).
    pub fn is_current_owner(&self, r: &SensorReading) -> bool {
        self.registry()
            .unit(&r.unit_id)
            .is_some_and(|u| u.org == r.organization_id && u.site == r.site_id)
    }
}
