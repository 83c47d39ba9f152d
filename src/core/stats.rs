//! Counters for everything the pipeline accepts, rejects or drops, so that nothing is lost
//! silently: each drop has a reason label, and the whole set is served by `/api/stats` and
//! `/health`. Plain atomics; labelled counters live in a small map keyed by `&'static str`s.

use dashmap::DashMap;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

#[derive(Default)]
pub struct Stats {
    /// MQTT messages handed to the pipeline.
    pub messages: AtomicU64,
    /// Readings decoded from them (a message may carry several).
    pub decoded: AtomicU64,
    /// Readings mapped to a unit and emitted.
    pub emitted: AtomicU64,
    /// Readings from sensors the registry does not know.
    pub unmapped: AtomicU64,
    /// Messages on subscribed topics that are not readings (joins, availability...).
    pub ignored: AtomicU64,
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
    pub emit_latency: Histogram,
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
            emitted: self.emitted.load(Relaxed),
            unmapped: self.unmapped.load(Relaxed),
            ignored: self.ignored.load(Relaxed),
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
    pub emitted: u64,
    pub unmapped: u64,
    pub ignored: u64,
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

/// A fixed-bucket histogram of durations. `observe` is two relaxed atomic adds; a scrape reads
/// the buckets one by one, so a scrape racing an observation may see the sum and the buckets
/// one observation apart (Prometheus tolerates that).
pub struct Histogram {
    bounds_ns: [u64; LATENCY_BUCKETS.len()],
    /// Per bucket (not cumulative); the last one is `+Inf`.
    counts: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    sum_ns: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            bounds_ns: LATENCY_BUCKETS.map(|s| (s * 1e9) as u64),
            counts: Default::default(),
            sum_ns: AtomicU64::new(0),
        }
    }
}

/// What a scrape reads from a [`Histogram`]: cumulative counts per bound, the sum and count.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// `(upper bound in seconds, observations <= bound)`, ending with `(+Inf, count)`.
    pub buckets: Vec<(f64, u64)>,
    pub sum_seconds: f64,
    pub count: u64,
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        // `le` is inclusive: the first bound >= the value.
        let i = self.bounds_ns.partition_point(|b| *b < ns);
        self.counts[i].fetch_add(1, Relaxed);
        self.sum_ns.fetch_add(ns, Relaxed);
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut total = 0;
        let mut buckets = Vec::with_capacity(self.counts.len());
        for (i, c) in self.counts.iter().enumerate() {
            total += c.load(Relaxed);
            let bound = LATENCY_BUCKETS.get(i).copied().unwrap_or(f64::INFINITY);
            buckets.push((bound, total));
        }
        HistogramSnapshot {
            buckets,
            sum_seconds: self.sum_ns.load(Relaxed) as f64 / 1e9,
            count: total,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_inclusive_and_cumulative() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(100)); // exactly the first bound
        h.observe(Duration::from_micros(101));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(5)); // beyond every bound
        let s = h.snapshot();
        assert_eq!(s.count, 4);
        assert_eq!(s.buckets[0], (0.0001, 1));
        assert_eq!(s.buckets[1], (0.00025, 2));
        assert_eq!(s.buckets[5], (0.005, 3));
        assert_eq!(s.buckets[12], (1.0, 3));
        assert_eq!(*s.buckets.last().unwrap(), (f64::INFINITY, 4));
        assert!((s.sum_seconds - 5.003201).abs() < 1e-9, "{}", s.sum_seconds);
    }
}
