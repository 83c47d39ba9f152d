//! The pipeline: one MQTT message in, decoded, mapped, counted, emitted. It is what the MQTT task
//! calls for each publish; emitting happens before the message is acknowledged to the broker,
//! so a QoS 1 reading is either on its way to sockets or will be redelivered.
//!
//! - [`hub`]: per-unit `seq`, latest reading and history, the epoch; `unmapped`: the bounded
//!   list of sensors that publish but are not registered; `doors`: each unit's door contacts.
//! - [`topics`]: which subscription a topic belongs to, and the bounded form of long text.
//! - [`rejections`]: which rejections are also logged (bounded in lines, bytes and memory).
//! - [`shared`]: the interface to a cluster of instances (cluster mode); `partition`: what the
//!   pipeline does with a message in cluster mode (publish, hold, or deliver alone).
//!
//! The pipeline is owned by the MQTT task alone (it is not `Clone` and takes `&mut self`), so
//! the decoders' memory and the rejection log need no locks.

mod doors;
pub mod hub;
mod partition;
pub mod rejections;
pub mod shared;
pub mod stored;
pub mod topics;
mod unmapped;

use chrono::Utc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;
use tracing::debug;

use crate::alerts::{Alerts, Report};
use crate::decode::{self, DecodeState, Decoded, Message, Subscription, MAX_TOPIC_BYTES};
use crate::delivery::{to_json, Batcher, Fanout, Kind, Payload};
use hub::{Accepted, Emit, Hub};
use rejections::RejectionLog;
use shared::{fingerprint, Publish, Replicas};
use topics::topic_matches;

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
    rejections: RejectionLog,
    /// Cluster mode: the cluster and this instance's share of the units.
    cluster: Option<(Arc<dyn Publish>, Replicas)>,
}

/// Where one decoded reading came from, for [`Pipeline::dispatch`].
struct Origin<'a> {
    topic: &'a str,
    payload: &'a [u8],
    received_at: chrono::DateTime<Utc>,
    received: Instant,
    retained: bool,
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
            rejections: RejectionLog::default(),
            cluster: None,
        };
        p.set_subscriptions(subscriptions);
        p
    }

    /// Cluster mode: readings of units this instance owns go to `cluster`, the others are held
    /// (see [`shared`]).
    pub fn attach_cluster(&mut self, cluster: Arc<dyn Publish>, replicas: Replicas) {
        self.cluster = Some((cluster, replicas));
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

    /// Handles one MQTT publish end to end. `retained`: the broker's retained copy, sent
    /// because we subscribed (MQTT sets the flag only then; messages queued for our session
    /// while we were away arrive unflagged): shown as the latest value, but no sign that the
    /// sensor is alive now (see [`Pipeline::dispatch`]).
    pub async fn handle(&mut self, topic: &str, payload: &[u8], retained: bool) {
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
            self.rejections
                .log(None, topic, "no subscription matches the topic");
            return;
        };
        if topic.len() > MAX_TOPIC_BYTES {
            // Before anything keeps or logs (a part of) it: a topic is the publisher's to size.
            stats.reject(route.sub.format.name(), "topic_too_long");
            let why = format!(
                "topic of {} bytes is over the {MAX_TOPIC_BYTES}-byte limit",
                topic.len()
            );
            self.rejections.log(None, topic, &why);
            return;
        }
        let received_at = Utc::now();
        let format = route.sub.format;
        let msg = Message {
            topic,
            payload,
            received_at,
        };
        let decoded = decode::decode(&route.sub, &mut route.state, msg, self.max_payload);
        match decoded {
            Ok(Decoded::Readings(readings)) => {
                for reading in readings {
                    if reading.temperature.is_some() {
                        stats.decoded.fetch_add(1, Relaxed);
                    }
                    if reading.door_open.is_some() {
                        stats.door_reports.fetch_add(1, Relaxed);
                    }
                    let origin = Origin {
                        topic,
                        payload,
                        received_at,
                        received,
                        retained,
                    };
                    self.dispatch(reading, &origin).await;
                }
            }
            // A retained availability report is taken as it is: it is the broker's record of
            // the device's state by design (a last will), and "online" alone never ends an
            // offline alert, so a retained one cannot make a dead sensor look alive.
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
                self.rejections.log(None, topic, &e.to_string());
            }
        }
    }

    /// A message the framing guard discarded unread because it was over the framing limit
    /// (`mqtt.max_packet_size`): counted as `too_large` under its subscription's format, like a
    /// payload over `limits.max_payload_bytes`, and logged once a minute per topic.
    pub fn reject_oversize(&mut self, topic: &str, payload_size: u64, packet_limit: usize) {
        let stats = self.hub.stats_handle();
        stats.messages.fetch_add(1, Relaxed);
        let format = self
            .routes
            .iter()
            .find(|r| topic_matches(&r.sub.topic, topic))
            .map_or("none", |r| r.sub.format.name());
        stats.reject(format, "too_large");
        let why = format!(
            "message with a {payload_size}-byte payload is over mqtt.max_packet_size ({packet_limit} bytes): discarded unread"
        );
        self.rejections.log(None, topic, &why);
    }

    /// A decoded reading: in cluster mode see [`Pipeline::dispatch_shared`]; otherwise (and in
    /// cluster mode while the cluster cannot be reached) numbered and delivered here.
    async fn dispatch(&mut self, reading: decode::Reading, o: &Origin<'_>) {
        match &self.cluster {
            Some((cluster, _)) if !cluster.alone() => self.dispatch_shared(reading, o).await,
            Some((cluster, _)) => {
                if cluster.deliver_alone(fingerprint(o.topic, o.payload, &reading.sensor_id)) {
                    self.dispatch_local(reading, o.topic, o.received_at, o.received, o.retained)
                        .await
                }
            }
            None => {
                self.dispatch_local(reading, o.topic, o.received_at, o.received, o.retained)
                    .await
            }
        }
    }

    /// Numbers, keeps and emits a decoded reading, then hands it to the alert engine: a live
    /// one as of now; a retained copy as of its payload's own time when it has one, and not at
    /// all when it has none (it cannot say when the sensor was alive).
    async fn dispatch_local(
        &mut self,
        reading: decode::Reading,
        topic: &str,
        received_at: chrono::DateTime<Utc>,
        received: Instant,
        retained: bool,
    ) {
        let fanout = &self.fanout;
        let (report, own_time, device) = report_of(&reading, received_at);
        // Broadcast while the unit's lock is held, so that a resuming subscriber sees it
        // exactly once (hub.rs). A door change goes to the same rooms as the readings.
        let accepted = self.hub.accept(
            reading,
            topic,
            received_at,
            retained,
            |out, unit| match out {
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
            },
        );
        match accepted {
            Accepted::Unmapped(sensor) => self.rejections.log(
                Some(&sensor),
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
                self.judge(&unit.id, sensor, report, topic, retained, own_time)
                    .await;
            }
        }
    }

    /// Hands what a reading said about its unit to the alert engine: a live one as of now, a
    /// retained copy as of its own time when it has one, and not at all when it has none.
    async fn judge(
        &self,
        unit: &Arc<str>,
        sensor: Arc<str>,
        report: Report,
        topic: &str,
        retained: bool,
        own_time: Option<chrono::DateTime<Utc>>,
    ) {
        // Waits when the engine's queue is full (see alerts::INPUT_QUEUE): holding ingest
        // back is better than an alert judged without this reading.
        if !retained {
            self.alerts.report(unit.clone(), sensor, report).await;
        } else {
            self.hub.stats().retained.fetch_add(1, Relaxed);
            debug!(unit = %unit, topic, timestamped = own_time.is_some(), "retained copy: shown, not taken as the sensor alive now");
            if let Some(at) = own_time {
                self.alerts
                    .retained_report(unit.clone(), sensor, report, at)
                    .await;
            }
        }
    }
}

/// What a reading tells the alert engine, its own time when it is a retained copy with a time
/// of its own, and the sensor of a door contact's reading (which emits no `sensor:reading` to
/// take the device id from).
fn report_of(
    reading: &decode::Reading,
    received_at: chrono::DateTime<Utc>,
) -> (Report, Option<chrono::DateTime<Utc>>, Option<String>) {
    let report = Report {
        temperature: reading.temperature,
        humidity: reading.humidity,
        battery: reading.battery,
        door_open: reading.door_open,
    };
    // A retained copy shows the sensor alive only at its payload's own time, if it has one
    // (decoders give `recorded_at = received_at` when the payload has no time).
    let own_time =
        (reading.recorded_at != received_at).then(|| reading.recorded_at.min(received_at));
    let device = reading
        .temperature
        .is_none()
        .then(|| reading.sensor_id.clone());
    (report, own_time, device)
}
