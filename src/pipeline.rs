//! The pipeline: one MQTT message in, decoded, mapped, counted, emitted. It is what the MQTT task
//! calls for each publish; emitting happens before the message is acknowledged to the broker,
//! so a QoS 1 reading is either on its way to sockets or will be redelivered.

use chrono::Utc;
use dashmap::DashMap;
use socketioxide::{BroadcastError, SocketIo};
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};
use tracing::{debug, warn};

use crate::alerts::Alerts;
use crate::batch::Batcher;
use crate::config::Subscription;
use crate::decode::{self, Decoded};
use crate::fanout::{to_json, Fanout, Kind};
use crate::hub::{Accepted, Hub};
use crate::route;

/// How often the same sensor (or topic) may log a rejection.
const LOG_EVERY: Duration = Duration::from_secs(60);
/// Above this many remembered log keys the memory is cleared (bounds it against id floods).
const LOG_KEYS_MAX: usize = 10_000;

#[derive(Clone)]
pub struct Pipeline {
    hub: Hub,
    io: SocketIo,
    fanout: Fanout,
    batcher: Option<Batcher>,
    /// Replaced on reload (the MQTT task also re-subscribes).
    subscriptions: std::sync::Arc<std::sync::RwLock<std::sync::Arc<[Subscription]>>>,
    max_payload: usize,
    last_logged: std::sync::Arc<DashMap<String, Instant>>,
    /// The alert engine, fed after each emit (none in pipelines built without it).
    alerts: Option<Alerts>,
}

impl Pipeline {
    pub fn new(
        hub: Hub,
        io: SocketIo,
        fanout: Fanout,
        batcher: Option<Batcher>,
        subscriptions: Vec<Subscription>,
        max_payload: usize,
    ) -> Self {
        Pipeline {
            hub,
            io,
            fanout,
            batcher,
            subscriptions: std::sync::Arc::new(std::sync::RwLock::new(subscriptions.into())),
            max_payload,
            last_logged: Default::default(),
            alerts: None,
        }
    }

    pub fn subscriptions(&self) -> std::sync::Arc<[Subscription]> {
        self.subscriptions
            .read()
            .expect("subscriptions lock")
            .clone()
    }

    pub fn set_subscriptions(&self, subscriptions: std::sync::Arc<[Subscription]>) {
        *self.subscriptions.write().expect("subscriptions lock") = subscriptions;
    }

    /// Feeds every mapped reading and availability report to the alert engine.
    pub fn with_alerts(mut self, alerts: Alerts) -> Self {
        self.alerts = Some(alerts);
        self
    }

    /// Counts a lost broker connection (shown in `/api/stats`).
    pub fn count_reconnect(&self) {
        self.hub.stats().mqtt_reconnects.fetch_add(1, Relaxed);
    }

    /// Handles one MQTT publish end to end.
    pub async fn handle(&self, topic: &str, payload: &[u8]) {
        // MQTT receipt, for the receipt-to-emit histogram (`/metrics`).
        let received = Instant::now();
        let stats = self.hub.stats();
        stats.messages.fetch_add(1, Relaxed);
        let subscriptions = self.subscriptions();
        let Some(sub) = subscriptions
            .iter()
            .find(|s| topic_matches(&s.topic, topic))
        else {
            stats.reject("none", "no_subscription");
            self.log_rejection(topic, topic, "no subscription matches the topic");
            return;
        };
        let received_at = Utc::now();
        // The state guard is a temporary of this statement: released before any `.await` below.
        let decoded = decode::decode(
            sub,
            &mut sub.decode_state(),
            topic,
            payload,
            received_at,
            self.max_payload,
        );
        match decoded {
            Ok(Decoded::Readings(readings)) => {
                for reading in readings {
                    stats.decoded.fetch_add(1, Relaxed);
                    self.dispatch(reading, topic, received_at, received).await;
                }
            }
            Ok(Decoded::Availability { sensor_id, online }) => {
                stats.ignored.fetch_add(1, Relaxed);
                let known = self.hub.set_availability(&sensor_id, online, received_at);
                debug!(topic, sensor_id, online, known, "availability");
                if let Some(alerts) = &self.alerts {
                    if let Some(unit) = route::route(&self.hub.registry(), &sensor_id) {
                        alerts
                            .availability(unit.id.clone(), &sensor_id, online)
                            .await;
                    }
                }
            }
            Ok(Decoded::Ignored(why)) => {
                stats.ignored.fetch_add(1, Relaxed);
                debug!(topic, why, "message ignored");
            }
            Err(e) => {
                stats.reject(sub.format.name(), e.reason());
                self.log_rejection(topic, topic, &e.to_string());
            }
        }
    }

    async fn dispatch(
        &self,
        reading: decode::Reading,
        topic: &str,
        received_at: chrono::DateTime<Utc>,
        received: Instant,
    ) {
        let sensor = reading.sensor_id.clone();
        // Serialised once, delivered to each socket while the unit's lock is held, so that a
        // resuming subscriber sees it exactly once (hub.rs).
        let accepted = self.hub.accept(reading, topic, received_at, |wire, unit| {
            let json = to_json(&**wire);
            self.fanout.deliver(
                route::reading_rooms(unit),
                "sensor:reading",
                &json,
                Kind::Reading(&unit.id),
            );
        });
        match accepted {
            Accepted::Unmapped => self.log_rejection(
                &sensor,
                topic,
                "sensor is not in the registry (see /api/sensors/unmapped)",
            ),
            Accepted::Mapped(wire, unit) => {
                // Handed to every socket (or its slow queue) by now.
                let stats = self.hub.stats();
                stats.emit_latency.observe(received.elapsed());
                stats.emitted.fetch_add(1, Relaxed);
                if let Some(b) = &self.batcher {
                    b.push(&unit, &wire);
                }
                // Waits when the engine's queue is full (see alerts::INPUT_QUEUE): holding
                // ingest back is better than an alert judged without this reading.
                if let Some(alerts) = &self.alerts {
                    alerts.reading(&wire).await;
                }
            }
        }
    }

    /// Emits one event to the union of `rooms`, serialised once, delivered once per socket.
    /// Per-socket failures (a full buffer, a closing socket) are counted, never retried here.
    pub async fn emit<T: serde::Serialize + ?Sized>(
        &self,
        event: &str,
        rooms: Vec<String>,
        data: &T,
    ) {
        emit_to_rooms(&self.io, self.hub.stats(), event, rooms, data).await
    }

    fn log_rejection(&self, key: &str, topic: &str, why: &str) {
        let now = Instant::now();
        if self.last_logged.len() > LOG_KEYS_MAX {
            self.last_logged.clear();
        }
        let mut last = self
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

/// Broadcast helper shared by readings and (later) alerts.
pub async fn emit_to_rooms<T: serde::Serialize + ?Sized>(
    io: &SocketIo,
    stats: &crate::stats::Stats,
    event: &str,
    rooms: Vec<String>,
    data: &T,
) {
    // After io.close() the default namespace is gone; `io.to` would panic, `io.of` says None.
    let Some(ns) = io.of("/") else {
        stats.delivery_dropped("shutting_down", 1);
        return;
    };
    if let Err(e) = ns.to(rooms).emit(event, data).await {
        match e {
            BroadcastError::Socket(errors) => {
                for err in errors {
                    let reason = match err {
                        socketioxide::SocketError::InternalChannelFull => "buffer_full",
                        socketioxide::SocketError::Closed => "socket_closed",
                    };
                    stats.delivery_dropped(reason, 1);
                }
            }
            other => {
                stats.delivery_dropped("broadcast_error", 1);
                warn!(event, error = %other, "broadcast failed");
            }
        }
    }
}

/// MQTT topic matching with `+` and `#` wildcards; a `$share/<group>/` prefix is ignored.
pub fn topic_matches(filter: &str, topic: &str) -> bool {
    let filter = match filter.strip_prefix("$share/") {
        Some(rest) => rest.split_once('/').map_or("", |(_, f)| f),
        None => filter,
    };
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::topic_matches;

    #[test]
    fn wildcards_match_like_a_broker() {
        assert!(topic_matches(
            "v3/+/devices/+/up",
            "v3/app@ttn/devices/d1/up"
        ));
        assert!(!topic_matches(
            "v3/+/devices/+/up",
            "v3/app@ttn/devices/d1/join"
        ));
        assert!(topic_matches("sensors/#", "sensors/a/b"));
        assert!(topic_matches("sensors/#", "sensors"));
        assert!(!topic_matches("sensors/+", "sensors/a/b"));
        assert!(topic_matches("$share/g/sensors/+", "sensors/a"));
        assert!(topic_matches("a/b", "a/b"));
        assert!(!topic_matches("a/b", "a/bc"));
    }
}
