//! The pipeline's side of cluster mode: the narrow interface a cluster of instances sharing one
//! feed implements (the cluster layer, on Redis; see docs/scaling.md), and the per-unit
//! bookkeeping that is the pipeline's own.
//!
//! Every instance receives every MQTT message (its own client id, its own persistent session),
//! and units are partitioned over the live instances. For a unit it owns, an instance prepares
//! each reading and hands it to the cluster ([`Publish::publish`]), which numbers it and puts it
//! on the event stream every instance delivers from. For a unit it does not own, it keeps the
//! reading for a while ([`Replicas::hold`]): when an owner dies, the instance that takes the
//! unit over publishes, once, what the dead owner took but never published, by finding the
//! owner's last published readings (their fingerprints) among what it holds ([`Replicas::own`]).
//! While the cluster cannot be reached ([`Publish::alone`]) every instance numbers and delivers
//! on its own, as a single box does.
//!
//! Ownership changes ([`Change`]) are applied by the ingest task between two messages, so a
//! unit's readings are either held or published, never both and never neither.

use chrono::{DateTime, Utc};
use dashmap::DashSet;
use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::core::reading::{SensorReading, UnitDoor};
use crate::core::registry::Unit;
use crate::decode::Reading;

/// A boxed future, for the trait objects below.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Readings kept in the shared history, for resumes memory cannot serve.
pub trait SharedHistory: Send + Sync {
    /// `unit`'s readings after `after` (oldest first) and the newest `seq` the answer accounts
    /// for; `None` when the history cannot be read.
    fn readings_after<'a>(
        &'a self,
        unit: &'a str,
        after: u64,
    ) -> BoxFuture<'a, Option<(Vec<Arc<SensorReading>>, u64)>>;
}

/// What the owner of a unit hands to the cluster for one reading, in arrival order.
pub struct Outbound {
    pub unit: Arc<Unit>,
    /// The message's fingerprint (see [`fingerprint`]).
    pub fp: u64,
    /// The door change the reading made, if any.
    pub door: Option<UnitDoor>,
    /// The reading without `seq` and `id` (none for a door contact's report).
    pub reading: Option<SensorReading>,
}

/// The cluster, as the pipeline sees it.
pub trait Publish: Send + Sync {
    /// True while the cluster cannot be reached: number and deliver locally.
    fn alone(&self) -> bool;
    /// Queues a reading for the stream; waits while the queue is full.
    fn publish(&self, out: Outbound) -> BoxFuture<'_, ()>;
    /// Gives `unit` up, after everything queued before.
    fn release(&self, unit: Arc<str>) -> BoxFuture<'_, ()>;
    /// A message about to be delivered here while alone: `false` when the stream delivered it
    /// already (ingest may be behind the stream when the cluster goes away); otherwise it is
    /// remembered, so that the stream does not deliver it again after a rejoin.
    fn deliver_alone(&self, fp: u64) -> bool;
}

/// An ownership change, decided by the cluster, applied by the ingest task.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// This instance owns `unit` now. `published`: the fingerprints of the unit's last
    /// published messages, oldest first; `track`: the alert state its last owner committed;
    /// `last_at`: when its last reading was received.
    Own {
        unit: Arc<str>,
        published: Vec<u64>,
        track: Option<String>,
        last_at: Option<DateTime<Utc>>,
    },
    /// Another instance should own `unit`: stop, then release it.
    Release { unit: Arc<str> },
    /// `unit` was taken over by another instance (this one was fenced out): stop.
    Lost { unit: Arc<str> },
    /// Back from degraded mode: what is held from before was published by its owner or
    /// delivered here alone, so it is forgotten.
    Rejoined,
}

/// A message of a unit this instance does not own, kept for a takeover.
pub struct Held {
    pub fp: u64,
    pub reading: Reading,
    pub topic: Arc<str>,
    pub received_at: DateTime<Utc>,
    pub retained: bool,
    kept: Instant,
}

/// The units this instance owns (read by the stream reader too) and what it holds of the
/// others. Owned by the ingest task.
pub struct Replicas {
    owned: Arc<DashSet<Arc<str>>>,
    held: HashMap<Arc<str>, VecDeque<Held>>,
    /// After a takeover: fingerprints already published by the previous owner that this
    /// instance has not received yet, skipped once each until `until`.
    skip: HashMap<Arc<str>, (HashSet<u64>, Instant)>,
    window: Duration,
    max_held: usize,
}

impl Replicas {
    /// `window`: how long a message of another instance's unit is kept (it must cover the
    /// failover: the time to notice a dead owner and take its units); `max_held`: at most
    /// this many per unit.
    pub fn new(window: Duration, max_held: usize) -> Self {
        Replicas {
            owned: Arc::default(),
            held: HashMap::new(),
            skip: HashMap::new(),
            window,
            max_held: max_held.max(1),
        }
    }

    /// The owned set, for readers on other tasks.
    pub fn owned(&self) -> Arc<DashSet<Arc<str>>> {
        self.owned.clone()
    }

    pub fn owns(&self, unit: &str) -> bool {
        self.owned.contains(unit)
    }

    /// Keeps a message of a unit owned elsewhere.
    pub fn hold(&mut self, unit: &Arc<str>, mut held: Held) {
        let now = Instant::now();
        held.kept = now;
        let q = self.held.entry(unit.clone()).or_default();
        while q.len() >= self.max_held
            || q.front()
                .is_some_and(|h| now.duration_since(h.kept) > self.window)
        {
            q.pop_front();
        }
        q.push_back(held);
    }

    /// Forgets what is held past the window, for every unit (a unit that went quiet).
    pub fn expire(&mut self) {
        let now = Instant::now();
        let window = self.window;
        self.held.retain(|_, q| {
            while q
                .front()
                .is_some_and(|h| now.duration_since(h.kept) > window)
            {
                q.pop_front();
            }
            !q.is_empty()
        });
        self.skip.retain(|_, (_, until)| *until > now);
    }

    /// This instance owns `unit` from now on. Returns what it must publish, once: what it
    /// holds after the last message the previous owner published (`published`, oldest first),
    /// less anything the previous owner did publish. What was published but has not reached
    /// this instance yet is skipped when it comes ([`Replicas::already_published`]).
    pub fn own(&mut self, unit: &Arc<str>, published: &[u64]) -> Vec<Held> {
        self.owned.insert(unit.clone());
        let held = self.held.remove(unit).unwrap_or_default();
        let mut done: HashSet<u64> = published.iter().copied().collect();
        // The newest held message the previous owner published: everything before it was
        // published too (or is older than anything it kept a fingerprint of).
        let start = held
            .iter()
            .rposition(|h| done.contains(&h.fp))
            .map_or(0, |i| i + 1);
        let mut replay = Vec::new();
        for (i, h) in held.into_iter().enumerate() {
            // Before the alignment point everything was published; after it, what the
            // previous owner published out of order is still left out.
            if i >= start && !done.remove(&h.fp) {
                replay.push(h);
            } else if i < start {
                done.remove(&h.fp);
            }
        }
        if !done.is_empty() {
            self.skip
                .insert(unit.clone(), (done, Instant::now() + self.window));
        }
        replay
    }

    /// After a takeover: whether this message was published by the previous owner (each
    /// fingerprint is skipped once).
    pub fn already_published(&mut self, unit: &str, fp: u64) -> bool {
        let Some((fps, until)) = self.skip.get_mut(unit) else {
            return false;
        };
        if *until < Instant::now() {
            self.skip.remove(unit);
            return false;
        }
        fps.remove(&fp)
    }

    /// This instance no longer owns `unit`.
    pub fn disown(&mut self, unit: &str) {
        self.owned.remove(unit);
        self.skip.remove(unit);
    }

    /// Forgets everything held and skipped (see [`Change::Rejoined`]).
    pub fn clear(&mut self) {
        self.held.clear();
        self.skip.clear();
    }

    /// Units with messages held, and how many (health, tests).
    pub fn held_count(&self) -> usize {
        self.held.values().map(VecDeque::len).sum()
    }
}

impl Held {
    pub fn new(
        fp: u64,
        reading: Reading,
        topic: &str,
        received_at: DateTime<Utc>,
        retained: bool,
    ) -> Held {
        Held {
            fp,
            reading,
            topic: topic.into(),
            received_at,
            retained,
            kept: Instant::now(),
        }
    }
}

/// FNV-1a, 64 bits: the same on every instance and every build (std's hasher promises
/// neither), and a few lines.
fn fnv(mut h: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// A message's fingerprint: its topic, payload and the sensor a reading of it names (one
/// message may carry several probes' readings). Every instance computes the same one for the
/// same message.
pub fn fingerprint(topic: &str, payload: &[u8], sensor: &str) -> u64 {
    let h = fnv(0xcbf2_9ce4_8422_2325, topic.as_bytes());
    let h = fnv(h, &[0xff]);
    let h = fnv(h, payload);
    let h = fnv(h, &[0xff]);
    fnv(h, sensor.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::Format;

    fn held(fp: u64) -> Held {
        let reading = Reading {
            sensor_id: "s".into(),
            fallback_sensor_id: None,
            temperature: Some(fp as f64),
            door_open: None,
            humidity: None,
            battery: None,
            signal_strength: None,
            recorded_at: Utc::now(),
            source: Format::Json,
            extra: Vec::new(),
        };
        Held::new(fp, reading, "t", Utc::now(), false)
    }

    fn fps(v: &[Held]) -> Vec<u64> {
        v.iter().map(|h| h.fp).collect()
    }

    /// The takeover publishes what follows the last published message, skips later copies of
    /// what was published, and keeps nothing of a unit it owns.
    #[test]
    fn a_takeover_publishes_what_the_previous_owner_did_not() {
        let u: Arc<str> = "u".into();
        let mut r = Replicas::new(Duration::from_secs(60), 100);
        for fp in 1..=6 {
            r.hold(&u, held(fp));
        }
        // The owner published 3 and 4 (and earlier ones); this instance holds 1..6.
        assert_eq!(fps(&r.own(&u, &[2, 3, 4])), [5, 6]);
        assert!(r.owns("u"));
        assert!(!r.already_published("u", 5));

        // Behind: the owner published 10 and 11, which have not arrived here yet (and 8, older
        // than what it kept fingerprints of, must not come back either).
        let v: Arc<str> = "v".into();
        r.hold(&v, held(8));
        r.hold(&v, held(9));
        assert_eq!(fps(&r.own(&v, &[9, 10, 11])), Vec::<u64>::new());
        assert!(r.already_published("v", 10));
        assert!(r.already_published("v", 11));
        assert!(!r.already_published("v", 11), "skipped once");
        assert!(!r.already_published("v", 12));

        // Nothing published yet: everything held is published.
        let w: Arc<str> = "w".into();
        r.hold(&w, held(20));
        r.hold(&w, held(21));
        assert_eq!(fps(&r.own(&w, &[])), [20, 21]);
        r.disown("w");
        assert!(!r.owns("w"));
    }

    #[test]
    fn held_messages_are_bounded() {
        let u: Arc<str> = "u".into();
        let mut r = Replicas::new(Duration::from_secs(60), 3);
        for fp in 1..=5 {
            r.hold(&u, held(fp));
        }
        assert_eq!(r.held_count(), 3);
        assert_eq!(fps(&r.own(&u, &[])), [3, 4, 5]);
    }

    #[test]
    fn fingerprints_tell_messages_and_probes_apart() {
        let a = fingerprint("t/1", b"{\"t\":1}", "x");
        assert_eq!(a, fingerprint("t/1", b"{\"t\":1}", "x"));
        assert_ne!(a, fingerprint("t/1", b"{\"t\":1}", "y"));
        assert_ne!(a, fingerprint("t/2", b"{\"t\":1}", "x"));
        assert_ne!(a, fingerprint("t/1", b"{\"t\":2}", "x"));
    }
}
