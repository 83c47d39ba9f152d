//! The ledger matches every delivery to its publish. Each published reading gets a sequence
//! number, encoded in its temperature (`20 + seq * 1e-7` °C, printed with 7 decimals, which both
//! servers pass through unchanged as a JSON number); the ledger keeps the instant each `seq` was
//! handed to the MQTT client and counts how many sockets received it. Latency is then measured
//! with microsecond precision on one clock (the payload's `ts` in epoch milliseconds is sent
//! too, as the reference payload has it, but is too coarse for sub-millisecond percentiles).

use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

pub const T_BASE: f64 = 20.0;
pub const T_STEP: f64 = 1e-7;
/// The alert scenario's hot readings: `HOT_BASE + seq * T_STEP` °C (above every unit's
/// `temp_max` of 30 °C, which the seq-encoded 20 °C readings never reach).
pub const HOT_BASE: f64 = 40.0;

pub fn temperature_for(seq: u64) -> String {
    format!("{:.7}", T_BASE + seq as f64 * T_STEP)
}

pub fn seq_of(temperature: f64) -> Option<u64> {
    let s = ((temperature - T_BASE) / T_STEP).round();
    (s >= 0.0).then_some(s as u64)
}

pub struct Ledger {
    base: Instant,
    /// ns since `base` + 1 when the reading was published; 0 = not (yet) published.
    sent: Box<[AtomicU64]>,
    /// Deliveries of each seq, all sockets together.
    got: Box<[AtomicU16]>,
    /// (seq, latency µs) of every delivery, drained per phase.
    samples: Mutex<Vec<(u32, u32)>>,
}

impl Ledger {
    pub fn new(capacity: usize) -> Ledger {
        Ledger {
            base: Instant::now(),
            sent: (0..capacity).map(|_| AtomicU64::new(0)).collect(),
            got: (0..capacity).map(|_| AtomicU16::new(0)).collect(),
            samples: Mutex::new(Vec::with_capacity(1 << 20)),
        }
    }

    pub fn capacity(&self) -> u64 {
        self.sent.len() as u64
    }

    pub fn mark_sent(&self, seq: u64) {
        let ns = self.base.elapsed().as_nanos() as u64 + 1;
        self.sent[seq as usize].store(ns, Ordering::Release);
    }

    /// Records one delivery of `seq` received now; false if the seq is unknown.
    pub fn delivered(&self, seq: u64) -> bool {
        let Some(sent) = self.sent.get(seq as usize) else {
            return false;
        };
        let sent = sent.load(Ordering::Acquire);
        if sent == 0 {
            return false;
        }
        let now = self.base.elapsed().as_nanos() as u64 + 1;
        let us = (now.saturating_sub(sent) / 1000).min(u32::MAX as u64) as u32;
        self.got[seq as usize].fetch_add(1, Ordering::Relaxed);
        self.samples
            .lock()
            .expect("ledger lock")
            .push((seq as u32, us));
        true
    }

    /// µs since `seq` was published, without counting a delivery (alert events); `None` if the
    /// seq is unknown or was not published yet.
    pub fn since_sent_us(&self, seq: u64) -> Option<f64> {
        let sent = self.sent.get(seq as usize)?.load(Ordering::Acquire);
        if sent == 0 {
            return None;
        }
        let now = self.base.elapsed().as_nanos() as u64 + 1;
        Some(now.saturating_sub(sent) as f64 / 1000.0)
    }

    /// Deliveries of seqs in `lo..hi`.
    pub fn delivered_in(&self, lo: u64, hi: u64) -> u64 {
        self.got[lo as usize..hi as usize]
            .iter()
            .map(|g| g.load(Ordering::Relaxed) as u64)
            .sum()
    }

    /// Takes the latencies (µs) recorded so far for seqs in `lo..hi` (others are discarded).
    pub fn take_latencies(&self, lo: u64, hi: u64) -> Vec<u32> {
        let all = std::mem::take(&mut *self.samples.lock().expect("ledger lock"));
        all.into_iter()
            .filter(|(s, _)| (*s as u64) >= lo && (*s as u64) < hi)
            .map(|(_, us)| us)
            .collect()
    }
}

/// Latency percentiles, milliseconds.
#[derive(Debug, Clone, Copy, Default)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

pub fn percentiles(mut us: Vec<u32>) -> Percentiles {
    if us.is_empty() {
        return Percentiles::default();
    }
    us.sort_unstable();
    let at = |q: f64| {
        let i = ((us.len() as f64 * q).ceil() as usize).clamp(1, us.len()) - 1;
        us[i] as f64 / 1000.0
    };
    Percentiles {
        p50: at(0.50),
        p90: at(0.90),
        p99: at(0.99),
        p999: at(0.999),
        max: *us.last().unwrap() as f64 / 1000.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seq_round_trips_through_the_printed_temperature() {
        for seq in [0u64, 1, 2, 999_999, 12_345_678, 1_000_000_000] {
            let t: f64 = temperature_for(seq).parse().unwrap();
            // What a server does: parse, then print the shortest form (ryu / JS) and parse again.
            let reprinted: f64 = serde_json::to_string(&t).unwrap().parse().unwrap();
            assert_eq!(seq_of(reprinted), Some(seq));
        }
    }

    #[test]
    fn percentiles_of_a_known_set() {
        let p = percentiles((1..=1000).collect());
        assert_eq!(p.p50, 0.5);
        assert_eq!(p.p99, 0.99);
        assert_eq!(p.max, 1.0);
    }
}
