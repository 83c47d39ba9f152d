//! The hub: the state every reading passes through between decoding and emitting. It owns the
//! registry in force, each unit's `seq` counter, latest reading and door contacts' states, the
//! service `epoch`, and the bounded list of sensors that publish but are not registered
//! (`unmapped.rs`). Cheap to clone (one `Arc`).
//!
//! In cluster mode (`shared.rs`) a reading is numbered by Redis instead: the instance that owns
//! the unit [`Hub::prepare`]s it (door state, the wire form without `seq`), and every instance,
//! the owner too, takes the numbered result back from the event stream with
//! [`Hub::relay_reading`], under the same lock, so resume works the same way. While Redis is
//! unreachable every instance numbers locally again ([`Hub::accept`]), under an epoch of its
//! own, continuing from the last `seq` it knew so that no connected client sees one go back.
//!
//! Readings enter from the single MQTT task, so per-unit `seq` order is publish order. Each unit
//! has its own lock, held while a reading is numbered, kept in the unit's history and emitted:
//! a subscribe that takes the same lock to join a room and replay history therefore sees every
//! reading exactly once, either in the replay or live, never both and never neither. A door
//! contact's change is emitted (`unit:door`) under the same lock, so a subscribe ack's door
//! state is never older than the events the socket gets after it.
//!
//! Over 400 lines: The hub's lock discipline is the product's exactly-once guarantee: kept in one
//! file so it can be checked in one reading (cluster parts are in hub_shared.rs).

use chrono::{DateTime, Utc};
use dashmap::DashMap;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, RwLock};

use super::doors::Doors;
use super::shared::SharedHistory;
use super::unmapped::Unmapped;

#[path = "hub_shared.rs"]
mod shared;
pub use super::unmapped::UnmappedSensor;
use crate::core::reading::{DoorState, SensorReading, UnitDoor};
use crate::core::registry::{Registry, Unit};
use crate::core::stats::Stats;
use crate::decode::Reading;
use crate::storage::{Restored, Store};

#[derive(Clone)]
pub struct Hub(Arc<Inner>);

struct Inner {
    registry: RwLock<Arc<Registry>>,
    units: DashMap<Arc<str>, Arc<Mutex<UnitFeed>>>,
    history: HistoryLimits,
    /// Last availability report per sensor id (online?, when), for the alert engine.
    availability: DashMap<String, (bool, DateTime<Utc>)>,
    unmapped: Mutex<Unmapped>,
    /// Replaced when the cluster's epoch is learnt or changes, or while degraded.
    epoch: RwLock<Arc<str>>,
    stats: Arc<Stats>,
    /// Where resumes memory cannot serve are answered from: the cluster's shared history, or
    /// on a single box the history store.
    shared: std::sync::OnceLock<Arc<dyn SharedHistory>>,
    /// The history store every numbered reading is handed to (none when storage is off).
    archive: std::sync::OnceLock<Store>,
}

/// How much recent history each unit keeps for resuming subscribers.
#[derive(Debug, Clone, Copy)]
pub struct HistoryLimits {
    pub max_readings: usize,
    pub max_age: std::time::Duration,
    /// With a history store that answers resumes: how long memory keeps readings while the
    /// store keeps up (it only bridges what is not committed yet); `max_age` otherwise.
    pub bridge: Option<std::time::Duration>,
}

/// One unit's numbered readings: the counter, the latest, and a bounded recent history; and
/// the last state of each of its door contacts (at most one entry per sensor the registry
/// maps to the unit, since only mapped readings get here).
#[derive(Default)]
pub struct UnitFeed {
    seq: u64,
    latest: Option<Arc<SensorReading>>,
    history: VecDeque<Arc<SensorReading>>,
    doors: Doors,
    /// After a crash: `(c, f)`: the store had seqs up to `c` and numbering went on after `f`;
    /// no reading has a seq in between, so a resume from anywhere in `c..=f` starts at `f`.
    gap: Option<(u64, u64)>,
    /// Cluster mode: the stream reader lost entries (trimmed before it read them), so memory
    /// may lack readings this unit had, at its end too: no resume is served from memory until
    /// the unit's next reading arrives (a hole before it shows as a seq that skips).
    unsure: bool,
}

impl UnitFeed {
    pub fn latest(&self) -> Option<&Arc<SensorReading>> {
        self.latest.as_ref()
    }

    /// The latest reading as JSON with `door` set to the unit's door now (it may have changed
    /// since the reading was emitted), for `get:latest` and subscribe acks.
    pub fn latest_json(&self) -> Option<serde_json::Value> {
        let mut v = serde_json::to_value(self.latest.as_deref()?).ok()?;
        if let Some(d) = self.door() {
            v["door"] = serde_json::to_value(DoorState::from(d)).ok()?;
        }
        Some(v)
    }

    /// The unit's door: open while any contact is (the one open longest), else the contact
    /// that closed last; `None` until a contact has reported.
    pub fn door(&self) -> Option<&UnitDoor> {
        self.doors.current()
    }

    /// Each door contact's last state.
    pub fn doors(&self) -> &[UnitDoor] {
        self.doors.all()
    }

    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Readings after `seq` in order, or `None` when history no longer reaches back to `seq`
    /// (some readings in between are gone).
    pub fn after(&self, seq: u64, limits: HistoryLimits) -> Option<Vec<Arc<SensorReading>>> {
        if self.unsure {
            return None;
        }
        let seq = match self.gap {
            Some((c, f)) if (c..=f).contains(&seq) => f,
            _ => seq,
        };
        if seq >= self.seq {
            return Some(Vec::new());
        }
        let cutoff = Utc::now() - chrono::Duration::from_std(limits.max_age).unwrap_or_default();
        let kept: Vec<_> = self
            .history
            .iter()
            .filter(|r| r.seq > seq && r.received_at >= cutoff)
            .cloned()
            .collect();
        let complete = kept.first().is_some_and(|r| r.seq == seq + 1)
            && kept.windows(2).all(|w| self.next(w[0].seq, w[1].seq));
        complete.then_some(kept)
    }

    /// Whether `b` follows `a` with nothing missing: consecutive, or across a crash's gap (no
    /// reading has a seq inside it). Anything else is a hole (cluster mode: stream entries this
    /// instance never read).
    fn next(&self, a: u64, b: u64) -> bool {
        b == a + 1 || self.gap.is_some_and(|(c, f)| a == c && b == f + 1)
    }

    /// [`UnitFeed::after`], or when memory does not reach back that far, what the shared
    /// history gave (`(readings, through)`, read before this lock was taken) followed by
    /// memory.
    pub fn after_with(
        &self,
        seq: u64,
        stored: Option<&(Vec<Arc<SensorReading>>, u64)>,
        limits: HistoryLimits,
    ) -> Option<Vec<Arc<SensorReading>>> {
        if self.unsure {
            return None;
        }
        if let Some(v) = self.after(seq, limits) {
            return Some(v);
        }
        let (kept, through) = stored?;
        let mut v: Vec<_> = kept
            .iter()
            .filter(|r| r.seq > seq && r.seq <= self.seq)
            .cloned()
            .collect();
        if *through < self.seq {
            v.extend(self.after(*through, limits)?);
        }
        let complete = v.first().is_some_and(|r| r.seq == seq + 1)
            && v.windows(2).all(|w| self.next(w[0].seq, w[1].seq));
        complete.then_some(v)
    }

    /// Forgets what the unit said under its previous owner; `seq` goes on.
    fn start_over(&mut self) {
        self.latest = None;
        self.history.clear();
        self.doors = Doors::default();
        // A crash's gap spoke for the old owner's numbers: a resume from before the move must
        // not be mapped past it and told it missed nothing.
        self.gap = None;
    }

    /// Keeps `reading` as the latest and in the recent history: at most `max_readings`, none
    /// older than `max_age` before it (a resume would not use them: [`UnitFeed::after`]).
    fn push(&mut self, reading: Arc<SensorReading>, limits: HistoryLimits) {
        if limits.max_readings > 0 {
            if self.history.len() >= limits.max_readings {
                self.history.pop_front();
            }
            let age = chrono::Duration::from_std(limits.max_age).unwrap_or(chrono::Duration::MAX);
            if let Some(cutoff) = reading.received_at.checked_sub_signed(age) {
                while self.history.front().is_some_and(|r| r.received_at < cutoff) {
                    self.history.pop_front();
                }
            }
            self.history.push_back(reading.clone());
        }
        self.latest = Some(reading);
    }
}

/// What happened to one decoded reading.
pub enum Accepted {
    /// Mapped to `unit`. `reading`: the `sensor:reading` emitted (none for a door contact's
    /// reading, which has no temperature); `door_changed`: a `unit:door` was emitted.
    Mapped {
        reading: Option<Arc<SensorReading>>,
        unit: Arc<Unit>,
        door_changed: bool,
    },
    /// The sensor (this id) is not in the registry; it was recorded in the unmapped list.
    Unmapped(String),
}

/// What [`Hub::accept`] hands to its `emit`, in this order, under the unit's lock.
pub enum Emit<'a> {
    /// A door contact changed state.
    Door(&'a UnitDoor),
    Reading(&'a Arc<SensorReading>),
}

impl Hub {
    pub fn new(registry: Registry, unmapped_capacity: usize, history: HistoryLimits) -> Hub {
        Hub(Arc::new(Inner {
            registry: RwLock::new(Arc::new(registry)),
            units: DashMap::new(),
            history,
            availability: DashMap::new(),
            unmapped: Mutex::new(Unmapped::new(unmapped_capacity)),
            epoch: RwLock::new(new_epoch("").into()),
            stats: Arc::new(Stats::default()),
            shared: std::sync::OnceLock::new(),
            archive: std::sync::OnceLock::new(),
        }))
    }

    /// Changes whenever history cannot be trusted (each start of the service; in cluster
    /// mode, when Redis lost the shared state, and while this instance is degraded).
    pub fn epoch(&self) -> Arc<str> {
        self.0.epoch.read().expect("epoch lock").clone()
    }

    pub fn stats(&self) -> &Stats {
        &self.0.stats
    }

    /// A shared handle on the counters, for components that outlive a borrow of the hub.
    pub fn stats_handle(&self) -> Arc<Stats> {
        self.0.stats.clone()
    }

    pub fn registry(&self) -> Arc<Registry> {
        self.0.registry.read().expect("registry lock").clone()
    }

    /// Puts a new registry in force and forgets the feeds of units it no longer has, and the
    /// door contacts that no longer belong to their unit. A unit moved to another site or
    /// organization starts a new feed: its latest reading, history and door states belonged to
    /// the old owner and are dropped; its `seq` keeps counting, so no number is used twice and
    /// a resume from before the move is answered `recovered: false`. Returns the previous one.
    pub fn set_registry(&self, registry: Arc<Registry>) -> Arc<Registry> {
        let old = std::mem::replace(
            &mut *self.0.registry.write().expect("registry lock"),
            registry.clone(),
        );
        self.0.units.retain(|id, feed| {
            let Some(unit) = registry.unit(id) else {
                return false;
            };
            let mut feed = feed.lock().expect("unit feed lock");
            let moved = old
                .unit(id)
                .is_some_and(|was| was.org != unit.org || was.site != unit.site);
            if moved {
                feed.start_over();
            } else {
                feed.doors.retain_mapped(&registry, id);
            }
            true
        });
        old
    }

    /// Keeps a numbered reading in its unit's memory and hands it to the history store.
    fn keep(&self, feed: &mut UnitFeed, wire: &Arc<SensorReading>) {
        let mut limits = self.0.history;
        if let Some(store) = self.0.archive.get() {
            if let Some(bridge) = limits.bridge.filter(|_| store.keeping_up()) {
                limits.max_age = limits.max_age.min(bridge);
            }
            store.record(wire.clone());
        }
        feed.push(wire.clone(), limits);
    }

    /// Hands every reading numbered from now on to `store` (once, at start).
    pub fn set_archive(&self, store: Store) {
        let _ = self.0.archive.set(store);
    }

    /// A single box at start: continues the stored epoch and each unit's `seq` (past a gap
    /// after a crash), and shows each unit's last stored reading as its latest, unless the
    /// unit has moved to another organization or site since.
    pub fn restore(&self, restored: &Restored) {
        if let Some(epoch) = &restored.epoch {
            *self.0.epoch.write().expect("epoch lock") = epoch.as_str().into();
        }
        let registry = self.registry();
        let stored: std::collections::HashMap<&str, u64> = restored
            .latest
            .iter()
            .filter(|r| {
                restored
                    .epoch
                    .as_deref()
                    .is_some_and(|e| r.id.starts_with(&format!("{e}-")))
            })
            .map(|r| (&*r.unit_id, r.seq))
            .collect();
        for (unit, seq) in &restored.seqs {
            let Some(u) = registry.unit(unit) else {
                continue;
            };
            let feed = self.feed(&u.id);
            let mut feed = feed.lock().expect("unit feed lock");
            feed.seq = *seq;
            let committed = stored.get(unit.as_str()).copied().unwrap_or(0);
            if !restored.clean && *seq > committed {
                feed.gap = Some((committed, *seq));
            }
        }
        for r in &restored.latest {
            let Some(u) = registry.unit(&r.unit_id) else {
                continue;
            };
            if u.site != r.site_id || u.org != r.organization_id {
                continue;
            }
            let feed = self.feed(&u.id);
            feed.lock().expect("unit feed lock").latest = Some(Arc::new(r.clone()));
        }
    }

    pub fn history_limits(&self) -> HistoryLimits {
        self.0.history
    }

    /// The unit's feed (created on first use), to lock.
    pub fn feed(&self, unit_id: &Arc<str>) -> Arc<Mutex<UnitFeed>> {
        if let Some(f) = self.0.units.get(unit_id) {
            return f.clone();
        }
        self.0.units.entry(unit_id.clone()).or_default().clone()
    }

    /// Maps a reading to its unit; records its door state (emitting `unit:door` on a change);
    /// if it has a temperature, gives it the unit's next `seq`, keeps it in the unit's history
    /// and emits it. `emit` is called while the unit's lock is held (see the module doc).
    /// `retained`: the broker's retained copy (marked so on the wire).
    pub fn accept(
        &self,
        reading: Reading,
        topic: &str,
        received_at: DateTime<Utc>,
        retained: bool,
        mut emit: impl FnMut(Emit<'_>, &Arc<Unit>),
    ) -> Accepted {
        let Some(unit) = self.unit_of(&reading, topic, received_at) else {
            return Accepted::Unmapped(reading.sensor_id);
        };
        let feed = self.feed(&unit.id);
        let mut feed = feed.lock().expect("unit feed lock");
        let epoch = self.epoch();
        let (change, wire) = prepare(&mut feed, &unit, reading, received_at, retained);
        if let Some(door) = &change {
            emit(Emit::Door(door), &unit);
        }
        let wire = wire.map(|mut wire| {
            feed.seq += 1;
            wire.seq = feed.seq;
            wire.id = format!("{epoch}-{}-{}", unit.id, feed.seq);
            let wire = Arc::new(wire);
            self.keep(&mut feed, &wire);
            emit(Emit::Reading(&wire), &unit);
            wire
        });
        drop(feed);
        Accepted::Mapped {
            reading: wire,
            unit,
            door_changed: change.is_some(),
        }
    }

    /// The unit `reading` belongs to; an unregistered sensor is counted and recorded in the
    /// unmapped list (`None`).
    pub fn unit_of(
        &self,
        reading: &Reading,
        topic: &str,
        received_at: DateTime<Utc>,
    ) -> Option<Arc<Unit>> {
        let registry = self.registry();
        // A multi-probe device (Tasmota) may be registered as a whole: try its device id too.
        // Decoders give normalised ids: looked up as they are.
        let unit = registry
            .unit_for_key(&reading.sensor_id)
            .or_else(|| registry.unit_for_key(reading.fallback_sensor_id.as_deref()?))
            .cloned();
        if unit.is_none() {
            self.0
                .stats
                .unmapped
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.0.unmapped.lock().expect("unmapped lock").record(
                &reading.sensor_id,
                topic,
                reading.source.name(),
                received_at,
            );
        }
        unit
    }

    /// Records a device's own online/offline report. Unknown sensors are not remembered.
    pub fn set_availability(&self, sensor_id: &str, online: bool, at: DateTime<Utc>) -> bool {
        let known = self.registry().unit_for_key(sensor_id).is_some();
        if known {
            self.0
                .availability
                .insert(sensor_id.to_string(), (online, at));
        }
        known
    }

    pub fn availability(&self, sensor_id: &str) -> Option<(bool, DateTime<Utc>)> {
        self.0.availability.get(sensor_id).map(|e| *e)
    }

    /// The unit's last reading, if any arrived since the service started.
    pub fn latest(&self, unit_id: &str) -> Option<Arc<SensorReading>> {
        let feed = self.0.units.get(unit_id)?.clone();
        let latest = feed.lock().expect("unit feed lock").latest.clone();
        latest
    }

    /// `get:latest`: the unit's last reading with its door now (see [`UnitFeed::latest_json`]).
    pub fn latest_json(&self, unit_id: &str) -> Option<serde_json::Value> {
        let feed = self.0.units.get(unit_id)?.clone();
        let latest = feed.lock().expect("unit feed lock").latest_json();
        latest
    }

    /// The unit's door now (see [`UnitFeed::door`]).
    pub fn door(&self, unit_id: &str) -> Option<UnitDoor> {
        let feed = self.0.units.get(unit_id)?.clone();
        let door = feed.lock().expect("unit feed lock").door().cloned();
        door
    }

    /// Door contacts open right now, over every unit (a scan: for `/metrics` and `/health`).
    pub fn doors_open(&self) -> usize {
        let feeds: Vec<_> = self.0.units.iter().map(|e| e.value().clone()).collect();
        feeds
            .iter()
            .map(|f| {
                let feed = f.lock().expect("unit feed lock");
                feed.doors.open_count()
            })
            .sum()
    }

    pub fn unmapped(&self) -> Vec<UnmappedSensor> {
        self.0.unmapped.lock().expect("unmapped lock").list()
    }
}

/// A new epoch: the time in hex, and `suffix` (a node id while degraded) when not empty.
pub fn new_epoch(suffix: &str) -> String {
    let t = format!("{:x}", Utc::now().timestamp_millis());
    if suffix.is_empty() {
        t
    } else {
        format!("{t}.{suffix}")
    }
}

/// Records the reading's door state (the change, if any) and builds its wire form (if it has
/// a temperature) without `seq` and `id`, under the unit's lock.
fn prepare(
    feed: &mut UnitFeed,
    unit: &Arc<Unit>,
    reading: Reading,
    received_at: DateTime<Utc>,
    retained: bool,
) -> (Option<UnitDoor>, Option<SensorReading>) {
    let device: Arc<str> = reading.sensor_id.into();
    let change = reading.door_open.and_then(|open| {
        feed.doors
            .set(unit, &device, open, received_at, reading.recorded_at)
    });
    let wire = reading.temperature.map(|temperature| SensorReading {
        id: String::new(),
        seq: 0,
        unit_id: unit.id.clone(),
        site_id: unit.site.clone(),
        organization_id: unit.org.clone(),
        device_id: device,
        temperature,
        humidity: reading.humidity,
        battery: reading.battery,
        signal_strength: reading.signal_strength,
        recorded_at: reading.recorded_at,
        received_at,
        source: reading.source.name(),
        extra: reading.extra,
        retained,
        door: feed.door().map(DoorState::from),
    });
    (change, wire)
}

#[cfg(test)]
#[path = "hub_tests.rs"]
mod tests;
