//! FreshTrack-style batching (compatibility mode, off by default): besides each
//! `sensor:reading`, every `realtime.batch_interval` each unit that had readings gets one
//! `sensor:readings:batch { unitId, readings, count }` in the same rooms. The pending batch is
//! flushed on shutdown, never dropped; a unit's batch is capped (oldest dropped, counted).

use serde::Serialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

use super::{to_json, Fanout, Kind, Payload};
use crate::core::reading::SensorReading;
use crate::core::registry::Unit;
use crate::core::stats::Stats;

#[derive(Clone)]
pub struct Batcher(Arc<Inner>);

struct Inner {
    fanout: Fanout,
    stats: Arc<Stats>,
    interval: Duration,
    max_readings: usize,
    pending: Mutex<HashMap<Arc<str>, PendingBatch>>,
}

/// A unit and its readings since the last flush.
type PendingBatch = (Arc<Unit>, Vec<Arc<SensorReading>>);

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Batch<'a> {
    unit_id: &'a str,
    readings: &'a [Arc<SensorReading>],
    count: usize,
}

impl Batcher {
    pub fn new(fanout: Fanout, stats: Arc<Stats>, interval: Duration, max_readings: usize) -> Self {
        Batcher(Arc::new(Inner {
            fanout,
            stats,
            interval,
            max_readings: max_readings.max(1),
            pending: Mutex::new(HashMap::new()),
        }))
    }

    pub fn push(&self, unit: &Arc<Unit>, reading: &Arc<SensorReading>) {
        let mut pending = self.0.pending.lock().expect("batch lock");
        let (_, list) = pending
            .entry(unit.id.clone())
            .or_insert_with(|| (unit.clone(), Vec::new()));
        if list.len() >= self.0.max_readings {
            list.remove(0);
            self.0.stats.delivery_dropped("batch_overflow", 1);
        }
        list.push(reading.clone());
    }

    /// Emits every pending batch now.
    pub fn flush(&self) {
        let batches = std::mem::take(&mut *self.0.pending.lock().expect("batch lock"));
        for (_, (unit, readings)) in batches {
            let json = Payload::Event(to_json(&Batch {
                unit_id: &unit.id,
                readings: &readings,
                count: readings.len(),
            }));
            self.0.fanout.deliver(
                unit.rooms.readings(),
                "sensor:readings:batch",
                &json,
                Kind::Event,
            );
        }
    }

    /// Flushes every interval until `stop`, then once more.
    pub async fn run(self, stop: CancellationToken) {
        let mut tick = tokio::time::interval(self.0.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tick.tick() => self.flush(),
            }
        }
        self.flush();
    }
}
