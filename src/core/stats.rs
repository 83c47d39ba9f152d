//! Counters for everything the pipeline accepts, rejects or drops, so that nothing is lost
//! silently: each drop has a reason label, and the whole set is served by `/api/stats` and
//! `/health`. Plain atomics; labelled counters live in a small map keyed by `&'static str`s.
//! `/metrics` encodes the same counters at scrape time (`web::metrics`).

use dashmap::DashMap;
use prometheus_client::metrics::histogram::Histogram;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

#[derive(Default)]
pub struct Stats {
    /// MQTT messages handed to the pipeline.
    pub messages: AtomicU64,
    /// Readings with a temperature decoded from them (a message may carry several).
    pub decoded: AtomicU64,
    /// Door states decoded: a door contact's reading, or one that came with a temperature.
    pub door_reports: AtomicU64,
    /// `unit:door` events emitted (a mapped door contact changed state).
    pub door_changes: AtomicU64,
    /// Readings mapped to a unit and emitted.
    pub emitted: AtomicU64,
    /// Readings from sensors the registry does not know.
    pub unmapped: AtomicU64,
    /// Messages on subscribed topics that are not readings (joins, availability...).
    pub ignored: AtomicU64,
    /// Emitted readings that were a broker's retained copy (shown, not taken as the sensor
    /// being alive now).
    pub retained: AtomicU64,
    /// Per-socket deliveries that failed (buffer full or socket closing), by reason.
    deliveries_dropped: DashMap<&'static str, AtomicU64>,
    /// Rejected messages by (format, reason).
    rejected: DashMap<(&'static str, &'static str), AtomicU64>,
    /// Client events refused (malformed arguments, access denied), by reason.
    client_errors: DashMap<&'static str, AtomicU64>,
    pub mqtt_reconnects: AtomicU64,
    /// Times a socket's queue was found full and the socket was marked slow.
    slow_marked: AtomicU64,
    /// Time from MQTT receipt to the reading being handed to its sockets (`/metrics`).
    pub emit_latency: Latency,
    /// Cluster mode: messages published after a takeover because the unit's previous owner
    /// had taken them but not published them.
    pub cluster_replayed: AtomicU64,
}

fn bump<K: Eq + std::hash::Hash>(map: &DashMap<K, AtomicU64>, key: K, n: u64) {
    if let Some(c) = map.get(&key) {
        c.fetch_add(n, Relaxed);
        return;
    }
    map.entry(key).or_default().fetch_add(n, Relaxed);
}

impl Stats {
    pub fn reject(&self, format: &'static str, reason: &'static str) {
        bump(&self.rejected, (format, reason), 1);
    }

    pub fn delivery_dropped(&self, reason: &'static str, n: u64) {
        bump(&self.deliveries_dropped, reason, n);
    }

    pub fn slow_sockets_marked(&self) {
        self.slow_marked.fetch_add(1, Relaxed);
    }

    pub fn dropped_count(&self, reason: &'static str) -> u64 {
        self.deliveries_dropped
            .get(reason)
            .map_or(0, |c| c.load(Relaxed))
    }

    pub fn client_error(&self, reason: &'static str) {
        bump(&self.client_errors, reason, 1);
    }

    pub fn rejected_count(&self, format: &'static str, reason: &'static str) -> u64 {
        self.rejected
            .get(&(format, reason))
            .map_or(0, |c| c.load(Relaxed))
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        let mut rejected: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
        for e in self.rejected.iter() {
            let (format, reason) = *e.key();
            rejected
                .entry(format.to_string())
                .or_default()
                .insert(reason.to_string(), e.value().load(Relaxed));
        }
        let labelled = |m: &DashMap<&'static str, AtomicU64>| {
            m.iter()
                .map(|e| (e.key().to_string(), e.value().load(Relaxed)))
                .collect()
        };
        StatsSnapshot {
            messages: self.messages.load(Relaxed),
            decoded: self.decoded.load(Relaxed),
            door_reports: self.door_reports.load(Relaxed),
            door_changes: self.door_changes.load(Relaxed),
            emitted: self.emitted.load(Relaxed),
            unmapped: self.unmapped.load(Relaxed),
            ignored: self.ignored.load(Relaxed),
            retained: self.retained.load(Relaxed),
            rejected,
            deliveries_dropped: labelled(&self.deliveries_dropped),
            client_errors: labelled(&self.client_errors),
            mqtt_reconnects: self.mqtt_reconnects.load(Relaxed),
            slow_sockets_marked: self.slow_marked.load(Relaxed),
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatsSnapshot {
    pub messages: u64,
    pub decoded: u64,
    pub door_reports: u64,
    pub door_changes: u64,
    pub emitted: u64,
    pub unmapped: u64,
    pub ignored: u64,
    pub retained: u64,
    /// format → reason → count
    pub rejected: BTreeMap<String, BTreeMap<String, u64>>,
    pub deliveries_dropped: BTreeMap<String, u64>,
    pub client_errors: BTreeMap<String, u64>,
    pub mqtt_reconnects: u64,
    pub slow_sockets_marked: u64,
}

/// Upper bounds (seconds) of the receipt-to-emit histogram: 0.1 ms to 1 s. On a Pi an emit to
/// a few sockets takes tens of microseconds; the top buckets catch lock waits and stalls.
pub const LATENCY_BUCKETS: [f64; 13] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];

/// The receipt-to-emit histogram: a prometheus-client [`Histogram`] over [`LATENCY_BUCKETS`]
/// (`le` inclusive, `+Inf` implied). An observation takes one uncontended lock and a scan of
/// 13 bounds; only a scrape competes for that lock.
pub struct Latency(pub Histogram);

impl Default for Latency {
    fn default() -> Self {
        Latency(Histogram::new(LATENCY_BUCKETS))
    }
}

impl Latency {
    pub fn observe(&self, d: Duration) {
        self.0.observe(d.as_secs_f64());
    }
}
