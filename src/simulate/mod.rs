//! `sensorcast simulate`: plays every sensor of the registry, publishing realistic readings to
//! the configured broker in the payload format of the subscription that carries it, so a
//! newcomer (and the README's run command) sees live data at once, and a test can drive the
//! whole path from MQTT to Socket.io with sensors sensorcast did not write the payloads for.
//!
//! What a sensor does, per step (one step per `--interval`, 5 s by default):
//! - drifts gently around its unit's base temperature (freezer about -18 °C, fridge about 4 °C,
//!   room about 21 °C, guessed from the unit's name and id; fridge when nothing fits), with a
//!   slow compressor cycle on top;
//! - now and then has its door opened: a spike of a few degrees that decays once it is shut;
//! - rarely has an excursion: minutes of climbing well above its range, then recovery;
//! - one sensor (the last probe by id, when there are two or more) goes quiet for 3 of every 10
//!   minutes, so the status page shows a stale unit.
//!
//! A sensor whose id contains `door` is a door contact instead: it reports only its door state
//! and battery (no temperature), opens for about a minute now and then, and once in a while
//! stays open for 6 to 10 minutes (at 5 s a step), past a `door_open_after` of 5 minutes. The
//! probes of its unit then follow that door instead of opening one at random: they warm while
//! it is open. Every probe also reports a humidity, which a door opening lifts.
//!
//! Which subscription a sensor is published on: a LoRaWAN-style id (16 hex digits) prefers a
//! `ttn-v3` subscription, any other id a `json` one; when the preferred format has no usable
//! subscription, any other that can carry the id is used. The topic is the filter with its
//! wildcards filled in (`v3/+/devices/+/up` → `v3/sim@ttn/devices/eui-…/up`, `sensors/+` →
//! `sensors/<id>`); a sensor no subscription can carry is skipped with a log line.
//!
//! Layout: `model` is the generator and `wire` the routing and payloads, both pure functions
//! (unit-tested, payloads including a round trip through the real decoders); this file is the
//! MQTT edge: one rumqttc client, its event loop polled by a task of its own, publishes queued
//! from the round loop.

mod model;
mod wire;

use chrono::Utc;
use rumqttc::{AsyncClient, Event, Outgoing, Packet, QoS};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::config::Config;
use crate::core::registry::Registry;
use crate::decode::Subscription;

pub use model::{is_quiet, DoorModel, Sample, SensorModel, UnitKind};
pub use wire::{door_payload, fill_topic, payload, route_for, Route};

/// Requests the simulator's MQTT client may queue. When full (broker away) readings are
/// dropped, as a real sensor's would be, and the drop is logged.
const REQUEST_CAPACITY: usize = 256;
/// `--once`: how long to wait for the broker to acknowledge every publish.
const ACK_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum SimulateError {
    #[error("no sensor in the registry can be published on the configured subscriptions")]
    NothingToSimulate,
    #[error("mqtt: {0}")]
    Mqtt(String),
    #[error("the broker did not acknowledge {missing} of {sent} readings within {ACK_TIMEOUT:?}")]
    NotAcknowledged { sent: u64, missing: u64 },
}

/// Command-line options.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Time between two readings of the same sensor.
    pub interval: Duration,
    /// One reading per sensor, then exit (tests, smoke checks).
    pub once: bool,
}

/// One simulated sensor.
#[derive(Debug, Clone)]
pub struct SimSensor {
    /// The id as the registry keeps it (normalised).
    pub sensor_id: String,
    pub unit_id: String,
    pub route: Route,
    pub model: SensorModel,
    /// Set for a door contact (an id with `door` in it): it reports this instead of `model`.
    pub door: Option<DoorModel>,
}

/// The sensors to play, in id order, and one line per sensor that cannot be played. `run_seed`
/// varies the sensors' randomness from run to run (tests fix it).
pub fn plan(
    registry: &Registry,
    subscriptions: &[Subscription],
    run_seed: u64,
) -> (Vec<SimSensor>, Vec<String>) {
    let mut sensors: Vec<_> = registry.sensors().collect();
    sensors.sort_by(|a, b| a.0.cmp(b.0));
    let mut out = Vec::new();
    let mut skipped = Vec::new();
    for (i, (id, unit)) in sensors.into_iter().enumerate() {
        match route_for(id, subscriptions) {
            Some(route) => {
                let kind = UnitKind::guess(&unit.id, unit.name.as_deref());
                let seed = seed(id, i) ^ run_seed;
                let is_door = id.to_ascii_lowercase().contains("door");
                out.push(SimSensor {
                    sensor_id: id.to_string(),
                    unit_id: unit.id.to_string(),
                    route,
                    model: SensorModel::new(kind, seed),
                    door: is_door.then(|| DoorModel::new(seed)),
                });
            }
            None => skipped.push(format!(
                "sensor {id:?}: no configured subscription can carry it (formats simulated: ttn-v3, json)"
            )),
        }
    }
    (out, skipped)
}

fn seed(id: &str, i: usize) -> u64 {
    id.bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64 ^ i as u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        })
}

/// Publishes until `shutdown` (or one round with `--once`).
pub async fn run(
    config: &Config,
    registry: &Registry,
    opts: Options,
    shutdown: CancellationToken,
) -> Result<(), SimulateError> {
    let run_seed = Utc::now().timestamp_nanos_opt().unwrap_or_default() as u64;
    let (mut sensors, skipped) = plan(registry, &config.mqtt.subscriptions, run_seed);
    for s in &skipped {
        warn!("{s}; skipped");
    }
    if sensors.is_empty() {
        return Err(SimulateError::NothingToSimulate);
    }
    let probes: Vec<usize> = (0..sensors.len())
        .filter(|i| sensors[*i].door.is_none())
        .collect();
    let quiet = (probes.len() >= 2).then(|| probes[probes.len() - 1]);
    for (i, s) in sensors.iter().enumerate() {
        info!(
            sensor = %s.sensor_id,
            unit = %s.unit_id,
            kind = ?s.model.kind,
            door_contact = s.door.is_some(),
            topic = %s.route.topic,
            format = s.route.format.name(),
            goes_quiet = quiet == Some(i),
            "simulating"
        );
    }
    let mut mqtt = config.mqtt.clone();
    // Its own session: never the service's client id (the broker would drop one of the two).
    mqtt.client_id = format!("{}-simulate-{}", mqtt.client_id, std::process::id());
    mqtt.clean_session = true;
    let options = crate::ingest::mqtt_options(&mqtt).map_err(SimulateError::Mqtt)?;
    let (client, eventloop) = AsyncClient::new(options, REQUEST_CAPACITY);
    let acks = Arc::new(Acks::default());
    let poll_stop = CancellationToken::new();
    let poller = tokio::spawn(poll(eventloop, acks.clone(), poll_stop.clone()));
    info!(url = %config.mqtt.url, sensors = sensors.len(), interval = ?opts.interval, once = opts.once, "simulator starting");

    let result = if opts.once {
        once(&client, &mut sensors, &acks, &shutdown).await
    } else {
        forever(&client, &mut sensors, quiet, opts.interval, &shutdown).await;
        Ok(())
    };
    // DISCONNECT goes out after everything queued before it.
    if client.try_disconnect().is_ok() {
        let _ = tokio::time::timeout(Duration::from_secs(2), poll_stop.cancelled()).await;
    }
    poll_stop.cancel();
    let _ = poller.await;
    info!("simulator stopped");
    result
}

/// One reading per sensor; returns once the broker acknowledged all of them.
async fn once(
    client: &AsyncClient,
    sensors: &mut [SimSensor],
    acks: &Acks,
    shutdown: &CancellationToken,
) -> Result<(), SimulateError> {
    let mut sent = 0;
    let doors = step_doors(sensors);
    for s in sensors.iter_mut() {
        let Some((topic, qos, bytes)) = next_message(s, 1, &doors) else {
            continue;
        };
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            r = client.publish(topic, qos, false, bytes) => r.map_err(|e| SimulateError::Mqtt(e.to_string()))?,
        }
        sent += 1;
    }
    let all_acked = async {
        while acks.done.load(Relaxed) < sent {
            let notified = acks.changed.notified();
            if acks.done.load(Relaxed) >= sent {
                break;
            }
            notified.await;
        }
    };
    tokio::select! {
        _ = shutdown.cancelled() => Ok(()),
        r = tokio::time::timeout(ACK_TIMEOUT, all_acked) => match r {
            Ok(()) => {
                info!(readings = sent, "one round published and acknowledged");
                Ok(())
            }
            Err(_) => Err(SimulateError::NotAcknowledged {
                sent,
                missing: sent - acks.done.load(Relaxed).min(sent),
            }),
        },
    }
}

/// Every `interval`, one reading per sensor, spread evenly over the interval.
async fn forever(
    client: &AsyncClient,
    sensors: &mut [SimSensor],
    quiet: Option<usize>,
    interval: Duration,
    shutdown: &CancellationToken,
) {
    let mut tick = tokio::time::interval(interval / sensors.len() as u32);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut step: u64 = 0;
    let mut dropped: u64 = 0;
    loop {
        let doors = step_doors(sensors);
        for (i, s) in sensors.iter_mut().enumerate() {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            if quiet == Some(i) {
                let (now, before) = (is_quiet(step), step > 0 && is_quiet(step - 1));
                if now != before {
                    info!(sensor = %s.sensor_id, quiet = now, "quiet sensor {}", if now { "goes silent" } else { "is back" });
                }
                if now {
                    continue;
                }
            }
            let was = s.model.in_excursion();
            let Some((topic, qos, bytes)) = next_message(s, step + 1, &doors) else {
                continue;
            };
            if s.model.in_excursion() != was {
                info!(sensor = %s.sensor_id, excursion = !was, "excursion {}", if was { "over" } else { "starts" });
            }
            debug!(sensor = %s.sensor_id, %topic, "publish");
            if client.try_publish(topic, qos, false, bytes).is_err() {
                dropped += 1;
                if dropped.is_power_of_two() {
                    warn!(dropped, "broker unreachable: readings dropped");
                }
            }
        }
        step += 1;
    }
}

/// Moves every door contact one step; the units that have one, with whether a door is open.
fn step_doors(sensors: &mut [SimSensor]) -> HashMap<String, bool> {
    let mut units: HashMap<String, bool> = HashMap::new();
    for s in sensors.iter_mut() {
        if let Some(door) = &mut s.door {
            let was = door.is_open();
            let open = door.step();
            if open != was {
                debug!(sensor = %s.sensor_id, open, "door {}", if open { "opened" } else { "shut" });
            }
            *units.entry(s.unit_id.clone()).or_default() |= open;
        }
    }
    units
}

/// The next message of `s` as (topic, QoS, payload); `doors` says which units' doors are open.
fn next_message(
    s: &mut SimSensor,
    counter: u64,
    doors: &HashMap<String, bool>,
) -> Option<(String, QoS, Vec<u8>)> {
    let now = Utc::now();
    let bytes = match &s.door {
        Some(door) => {
            let (open, battery) = (door.is_open(), door.battery());
            door_payload(&s.route, &s.sensor_id, open, battery, now, counter)?
        }
        None => {
            if let Some(open) = doors.get(&s.unit_id) {
                s.model.follow_door(*open);
            }
            let sample = s.model.next_sample();
            payload(&s.route, &s.sensor_id, &sample, now, counter)?
        }
    };
    let qos = if s.route.qos == 0 {
        QoS::AtMostOnce
    } else {
        QoS::AtLeastOnce
    };
    Some((s.route.topic.clone(), qos, bytes))
}

/// Publishes the broker has confirmed (PUBACK, or written to the socket for QoS 0).
#[derive(Default)]
struct Acks {
    done: AtomicU64,
    changed: Notify,
}

/// Drives the client's event loop (never awaiting the client itself from here: that deadlocks
/// once its request channel is full). Reconnects with a capped backoff.
async fn poll(mut eventloop: rumqttc::EventLoop, acks: Arc<Acks>, stop: CancellationToken) {
    let mut wait = Duration::from_millis(200);
    let mut connected = false;
    loop {
        let event = tokio::select! {
            _ = stop.cancelled() => return,
            ev = eventloop.poll() => ev,
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                wait = Duration::from_millis(200);
                if !connected {
                    info!("simulator connected to the broker");
                }
                connected = true;
            }
            Ok(Event::Incoming(Packet::PubAck(_))) | Ok(Event::Outgoing(Outgoing::Publish(0))) => {
                acks.done.fetch_add(1, Relaxed);
                acks.changed.notify_waiters();
            }
            Ok(Event::Outgoing(Outgoing::Disconnect)) => {
                stop.cancel();
                return;
            }
            Ok(_) => {}
            Err(e) => {
                if connected {
                    warn!(error = %e, "simulator lost the broker; retrying");
                } else {
                    debug!(error = %e, "simulator cannot reach the broker; retrying");
                }
                connected = false;
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(wait) => {}
                }
                wait = (wait * 2).min(Duration::from_secs(10));
            }
        }
    }
}

#[cfg(test)]
mod tests;
