//! The pipeline: one MQTT message in, decoded, mapped, counted, emitted. It is what the MQTT task
//! calls for each publish; emitting happens before the message is acknowledged to the broker,
//! so a QoS 1 reading is either on its way to sockets or will be redelivered.
//!
//! - [`hub`]: per-unit `seq`, latest reading and history, the unmapped-sensor list, the epoch;
//!   `doors`: each unit's door contacts.
//! - [`topics`]: which subscription a topic belongs to.
//!
//! The pipeline is owned by the MQTT task alone (it is not `Clone` and takes `&mut self`), so
//! the decoders' memory and the rejection log need no locks.

mod doors;
pub mod hub;
pub mod topics;

use chrono::Utc;
use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;

use std::time::{Duration, Instant};
use tracing::{debug, warn};

use crate::alerts::{Alerts, Report};
use crate::decode::{self, DecodeState, Decoded, Subscription};
use crate::delivery::{to_json, Batcher, Fanout, Kind, Payload};
use hub::{Accepted, Emit, Hub};
use topics::topic_matches;

/// How often the same sensor (or topic) may log a rejection.
const LOG_EVERY: Duration = Duration::from_secs(60);
/// Above this many remembered log keys the memory is cleared (bounds it against id floods).
const LOG_KEYS_MAX: usize = 10_000;

/// A subscription with the decoder memory that belongs to it (Shelly's last status per device).
struct Route {
    sub: Subscription,
    state: DecodeState,
}

pub struct Pipeline {
    hub: Hub,
    fanout: Fanout,
    batcher: Option<Batcher>,
    alerts: Alerts,
    routes: Vec<Route>,
    max_payload: usize,
    last_logged: HashMap<String, Instant>,
}

impl Pipeline {
    pub fn new(
        hub: Hub,
        fanout: Fanout,
        batcher: Option<Batcher>,
        alerts: Alerts,
        subscriptions: &[Subscription],
        max_payload: usize,
    ) -> Self {
        let mut p = Pipeline {
            hub,
            fanout,
            batcher,
            alerts,
            routes: Vec::new(),
            max_payload,
            last_logged: HashMap::new(),
        };
        p.set_subscriptions(subscriptions);
        p
    }

    /// A reloaded subscription list. A subscription that is still there unchanged keeps its
    /// decoder memory; a new or changed one starts with none.
    pub fn set_subscriptions(&mut self, subscriptions: &[Subscription]) {
        let mut old = std::mem::take(&mut self.routes);
        self.routes = subscriptions
            .iter()
            .map(|sub| {
                let state = old
                    .iter()
                    .position(|r| r.sub == *sub)
                    .map(|i| old.swap_remove(i).state)
                    .unwrap_or_default();
                Route {
                    sub: sub.clone(),
                    state,
                }
            })
            .collect();
    }

    /// Counts a lost broker connection (shown in `/api/stats`).
    pub fn count_reconnect(&self) {
        self.hub.stats().mqtt_reconnects.fetch_add(1, Relaxed);
    }

    /// Handles one MQTT publish end to end.
    pub async fn handle(&mut self, topic: &str, payload: &[u8]) {
        // MQTT receipt, for the receipt-to-emit histogram (`/metrics`).
        let received = Instant::now();
        let stats = self.hub.stats_handle();
        stats.messages.fetch_add(1, Relaxed);
        let Some(route) = self
            .routes
            .iter_mut()
            .find(|r| topic_matches(&r.sub.topic, topic))
        else {
            stats.reject("none", "no_subscription");
            self.log_rejection(topic, topic, "no subscription matches the topic");
            return;
        };
        let received_at = Utc::now();
        let format = route.sub.format;
        let decoded = decode::decode(
            &route.sub,
            &mut route.state,
            topic,
            payload,
            received_at,
            self.max_payload,
        );
        match decoded {
            Ok(Decoded::Readings(readings)) => {
                for reading in readings {
                    if reading.temperature.is_some() {
                        stats.decoded.fetch_add(1, Relaxed);
                    }
                    if reading.door_open.is_some() {
                        stats.door_reports.fetch_add(1, Relaxed);
                    }
                    self.dispatch(reading, topic, received_at, received).await;
                }
            }
            Ok(Decoded::Availability { sensor_id, online }) => {
                stats.ignored.fetch_add(1, Relaxed);
                let known = self.hub.set_availability(&sensor_id, online, received_at);
                debug!(topic, sensor_id, online, known, "availability");
                let unit = self.hub.registry().unit_for_key(&sensor_id).cloned();
                if let Some(unit) = unit {
                    self.alerts
                        .availability(unit.id.clone(), &sensor_id, online)
                        .await;
                }
            }
            Ok(Decoded::Ignored(why)) => {
                stats.ignored.fetch_add(1, Relaxed);
                debug!(topic, why, "message ignored");
            }
            Err(e) => {
                stats.reject(format.name(), e.reason());
                self.log_rejection(topic, topic, &e.to_string());
            }
        }
    }

    async fn dispatch(
        &mut self,
        reading: decode::Reading,
        topic: &str,
        received_at: chrono::DateTime<Utc>,
        received: Instant,
    ) {
        let fanout = &self.fanout;
        let report = Report {
            temperature: reading.temperature,
            humidity: reading.humidity,
            battery: reading.battery,
            door_open: reading.door_open,
        };
        // A door contact's reading emits no `sensor:reading` to take the device id from.
        let device = reading
            .temperature
            .is_none()
            .then(|| reading.sensor_id.clone());
        // Broadcast while the unit's lock is held, so that a resuming subscriber sees it
        // exactly once (hub.rs). A door change goes to the same rooms as the readings.
        let accepted = self
            .hub
            .accept(reading, topic, received_at, |out, unit| match out {
                Emit::Reading(wire) => fanout.deliver(
                    unit.rooms.readings(),
                    "sensor:reading",
                    &Payload::Reading(wire.clone()),
                    Kind::Reading(&unit.id),
                ),
                Emit::Door(door) => fanout.deliver(
                    unit.rooms.readings(),
                    "unit:door",
                    &Payload::Event(to_json(door)),
                    Kind::Event,
                ),
            });
        match accepted {
            Accepted::Unmapped(sensor) => self.log_rejection(
                &sensor,
                topic,
                "sensor is not in the registry (see /api/sensors/unmapped)",
            ),
            Accepted::Mapped {
                reading,
                unit,
                door_changed,
            } => {
                // Handed to every socket (or its slow queue) by now.
                let stats = self.hub.stats();
                if door_changed {
                    stats.door_changes.fetch_add(1, Relaxed);
                }
                let sensor = match &reading {
                    Some(wire) => {
                        stats.emit_latency.observe(received.elapsed());
                        stats.emitted.fetch_add(1, Relaxed);
                        if let Some(b) = &self.batcher {
                            b.push(&unit, wire);
                        }
                        wire.device_id.clone()
                    }
                    None => device.unwrap_or_default().into(),
                };
                // Waits when the engine's queue is full (see alerts::INPUT_QUEUE): holding
                // ingest back is better than an alert judged without this reading.
                self.alerts.report(unit.id.clone(), sensor, report).await;
            }
        }
    }

    fn log_rejection(&mut self, key: &str, topic: &str, why: &str) {
        let now = Instant::now();
        if self.last_logged.len() > LOG_KEYS_MAX {
            self.last_logged.clear();
        }
        let last = self
            .last_logged
            .entry(key.to_string())
            .or_insert(now - LOG_EVERY * 2);
        if now.duration_since(*last) >= LOG_EVERY {
            *last = now;
            warn!(
                key,
                topic,
                reason = why,
                "reading rejected (logged once a minute per sensor)"
            );
        }
    }
}
