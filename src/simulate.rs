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
//! - one sensor (the last by id, when there are two or more) goes quiet for 3 of every 10
//!   minutes, so the status page shows a stale unit.
//!
//! Which subscription a sensor is published on: a LoRaWAN-style id (16 hex digits) prefers a
//! `ttn-v3` subscription, any other id a `json` one; when the preferred format has no usable
//! subscription, any other that can carry the id is used. The topic is the filter with its
//! wildcards filled in (`v3/+/devices/+/up` → `v3/sim@ttn/devices/eui-…/up`, `sensors/+` →
//! `sensors/<id>`); a sensor no subscription can carry is skipped with a log line.
//!
//! The generator and the payloads are pure functions (unit-tested, including a round trip
//! through the real decoders); MQTT is only at the edge: one rumqttc client, its event loop
//! polled by a task of its own, publishes queued from the round loop.

use chrono::{DateTime, SecondsFormat, Utc};
use rumqttc::{AsyncClient, Event, Outgoing, Packet, QoS};
use serde_json::{json, Map, Value};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::config::{Config, Subscription};
use crate::decode::Format;
use crate::pipeline::topic_matches;
use crate::registry::Registry;

/// Requests the simulator's MQTT client may queue. When full (broker away) readings are
/// dropped, as a real sensor's would be, and the drop is logged.
const REQUEST_CAPACITY: usize = 256;
/// `--once`: how long to wait for the broker to acknowledge every publish.
const ACK_TIMEOUT: Duration = Duration::from_secs(10);
/// The quiet sensor's schedule, in steps: quiet for `QUIET_LEN` steps from `QUIET_START` of
/// every `QUIET_CYCLE` (at 5 s: after 1 minute, for 3 minutes, every 10 minutes).
const QUIET_CYCLE: u64 = 120;
const QUIET_START: u64 = 12;
const QUIET_LEN: u64 = 36;

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

/// The kind of place a unit is, which sets its base temperature and humidity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnitKind {
    Freezer,
    Fridge,
    Room,
}

impl UnitKind {
    /// A guess from the unit's name and id; a fridge when nothing fits.
    pub fn guess(unit_id: &str, unit_name: Option<&str>) -> UnitKind {
        let text = format!("{} {}", unit_name.unwrap_or(""), unit_id).to_lowercase();
        let has = |words: &[&str]| words.iter().any(|w| text.contains(w));
        if has(&["freez", "frozen", "deep-", "ice"]) {
            UnitKind::Freezer
        } else if has(&["fridge", "chill", "cool", "cold", "refrig"]) {
            UnitKind::Fridge
        } else if has(&["room", "office", "ambient", "hall", "store", "lobby", "dry"]) {
            UnitKind::Room
        } else {
            UnitKind::Fridge
        }
    }

    pub fn base_temperature(self) -> f64 {
        match self {
            UnitKind::Freezer => -18.0,
            UnitKind::Fridge => 4.0,
            UnitKind::Room => 21.0,
        }
    }

    fn base_humidity(self) -> f64 {
        match self {
            UnitKind::Freezer => 75.0,
            UnitKind::Fridge => 55.0,
            UnitKind::Room => 40.0,
        }
    }

    /// How far a door opening lifts the reading, at most (°C).
    fn door_peak(self) -> f64 {
        match self {
            UnitKind::Freezer => 8.0,
            UnitKind::Fridge => 5.0,
            UnitKind::Room => 1.5,
        }
    }

    /// How far an excursion climbs, at most (°C).
    fn excursion_peak(self) -> f64 {
        match self {
            UnitKind::Freezer => 15.0,
            UnitKind::Fridge => 10.0,
            UnitKind::Room => 8.0,
        }
    }
}

/// One measurement as a sensor would send it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// °C, two decimals (the resolution of common probes).
    pub temperature: f64,
    /// %RH, one decimal.
    pub humidity: f64,
    /// %, whole.
    pub battery: f64,
    /// dBm, whole.
    pub rssi: f64,
}

/// One sensor's physical state between steps.
#[derive(Debug, Clone)]
pub struct SensorModel {
    pub kind: UnitKind,
    base: f64,
    /// Short-term drift (an AR(1) process around 0).
    drift: f64,
    /// Degrees the door (or its aftermath) adds right now; `door_steps` left while open.
    door: f64,
    door_steps: u32,
    /// Steps into the current excursion and its length and height; `None` when there is none.
    excursion: Option<(u32, u32, f64)>,
    battery: f64,
    rssi: f64,
    step: u64,
    rng: fastrand::Rng,
}

/// Chance per step that a door is opened, and that an excursion starts.
const DOOR_CHANCE: f64 = 0.02;
const EXCURSION_CHANCE: f64 = 0.002;
/// Steps of one compressor cycle, and its amplitude (°C).
const CYCLE_STEPS: f64 = 240.0;
const CYCLE_AMPLITUDE: f64 = 0.4;

impl SensorModel {
    pub fn new(kind: UnitKind, seed: u64) -> SensorModel {
        let mut rng = fastrand::Rng::with_seed(seed);
        SensorModel {
            kind,
            base: kind.base_temperature() + (rng.f64() - 0.5),
            drift: 0.0,
            door: 0.0,
            door_steps: 0,
            excursion: None,
            battery: 60.0 + rng.f64() * 40.0,
            rssi: -100.0 + rng.f64() * 30.0,
            step: 0,
            rng,
        }
    }

    /// Whether an excursion is under way (for logs and tests).
    pub fn in_excursion(&self) -> bool {
        self.excursion.is_some()
    }

    /// Advances one step and returns what the sensor measures now.
    pub fn next_sample(&mut self) -> Sample {
        self.step += 1;
        let kind = self.kind;
        self.drift = self.drift * 0.9 + normal(&mut self.rng) * 0.08;
        if self.door_steps > 0 {
            self.door_steps -= 1;
        } else {
            self.door *= 0.5; // shut: the air cools back down
            if self.rng.f64() < DOOR_CHANCE {
                self.door_steps = self.rng.u32(1..=3);
                self.door = kind.door_peak() * (0.5 + self.rng.f64() * 0.5);
            }
        }
        let excursion = match self.excursion {
            Some((at, len, peak)) if at < len => {
                self.excursion = Some((at + 1, len, peak));
                peak * excursion_shape(at, len)
            }
            _ => {
                self.excursion = None;
                if self.rng.f64() < EXCURSION_CHANCE {
                    let len = self.rng.u32(24..=72);
                    let peak = kind.excursion_peak() * (0.6 + self.rng.f64() * 0.4);
                    self.excursion = Some((0, len, peak));
                }
                0.0
            }
        };
        let cycle = if kind == UnitKind::Room {
            0.0
        } else {
            CYCLE_AMPLITUDE * (std::f64::consts::TAU * self.step as f64 / CYCLE_STEPS).sin()
        };
        let temperature = self.base + self.drift + cycle + self.door + excursion;
        let humidity =
            kind.base_humidity() + self.door * 2.0 + normal(&mut self.rng) * 1.5 - excursion * 0.5;
        self.battery = (self.battery - 0.002).max(1.0);
        Sample {
            temperature: round_to(temperature, 2),
            humidity: round_to(humidity.clamp(0.0, 100.0), 1),
            battery: self.battery.round(),
            rssi: (self.rssi + normal(&mut self.rng) * 2.0).round(),
        }
    }
}

/// 0 → 1 over the first third, holds, back to 0 over the last third.
fn excursion_shape(at: u32, len: u32) -> f64 {
    let third = (len / 3).max(1) as f64;
    let at = at as f64;
    let len = len as f64;
    if at < third {
        at / third
    } else if at > len - third {
        ((len - at) / third).max(0.0)
    } else {
        1.0
    }
}

/// A standard normal variate (Box-Muller).
fn normal(rng: &mut fastrand::Rng) -> f64 {
    let u1 = rng.f64().max(f64::MIN_POSITIVE);
    let u2 = rng.f64();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

fn round_to(v: f64, decimals: i32) -> f64 {
    let f = 10f64.powi(decimals);
    (v * f).round() / f
}

/// Whether the quiet sensor is quiet at `step`.
pub fn is_quiet(step: u64) -> bool {
    (QUIET_START..QUIET_START + QUIET_LEN).contains(&(step % QUIET_CYCLE))
}

/// Where one sensor's readings go.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    pub topic: String,
    pub format: Format,
    pub qos: u8,
    /// `json` with `sensor_id_field`: the id goes in this payload field.
    pub id_field: Option<String>,
}

/// One simulated sensor.
#[derive(Debug, Clone)]
pub struct SimSensor {
    /// The id as the registry keeps it (normalised).
    pub sensor_id: String,
    pub unit_id: String,
    pub route: Route,
    pub model: SensorModel,
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
                out.push(SimSensor {
                    sensor_id: id.to_string(),
                    unit_id: unit.id.to_string(),
                    route,
                    model: SensorModel::new(kind, seed(id, i) ^ run_seed),
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

/// A LoRaWAN DevEUI: 16 hex digits (the registry keeps hex ids normalised, upper-case).
fn is_eui64(id: &str) -> bool {
    id.len() == 16 && id.chars().all(|c| c.is_ascii_hexdigit())
}

/// The subscription (and topic) a sensor is published on; see the module doc.
pub fn route_for(sensor_id: &str, subscriptions: &[Subscription]) -> Option<Route> {
    let preferred = if is_eui64(sensor_id) {
        Format::TtnV3
    } else {
        Format::Json
    };
    let ordered = subscriptions
        .iter()
        .filter(|s| s.format == preferred)
        .chain(subscriptions.iter().filter(|s| s.format != preferred));
    for sub in ordered {
        let Some(topic) = fill_topic(sub, sensor_id) else {
            continue;
        };
        // The service decodes with the first subscription that matches: it must be this one.
        let first = subscriptions
            .iter()
            .find(|s| topic_matches(&s.topic, &topic));
        if first.is_some_and(|f| std::ptr::eq(f, sub)) {
            return Some(Route {
                topic,
                format: sub.format,
                qos: sub.qos,
                id_field: sub.sensor_id_field.clone(),
            });
        }
    }
    None
}

/// A topic matching `sub.topic` on which `sensor_id` is read back as the sensor, or `None`.
#[allow(unreachable_patterns)] // other formats may be added to `Format`
pub fn fill_topic(sub: &Subscription, sensor_id: &str) -> Option<String> {
    let filter = match sub.topic.strip_prefix("$share/") {
        Some(rest) => rest.split_once('/')?.1,
        None => sub.topic.as_str(),
    };
    let levels: Vec<&str> = filter.split('/').collect();
    let topic_safe = !sensor_id.is_empty() && !sensor_id.contains(['/', '+', '#']);
    let filled: Vec<String> = match sub.format {
        Format::TtnV3 => {
            let device = ttn_device_id(sensor_id);
            let topic: Vec<String> = levels
                .iter()
                .enumerate()
                .map(|(i, l)| match *l {
                    "+" if i > 0 && levels[i - 1] == "devices" => device.clone(),
                    "+" => "sim@ttn".to_string(),
                    "#" => "up".to_string(),
                    lit => lit.to_string(),
                })
                .collect();
            // The decoder only reads uplinks.
            if topic.last().map(String::as_str) != Some("up") || !topic_safe {
                return None;
            }
            topic
        }
        Format::Json => {
            let target = match (&sub.sensor_id_field, sub.sensor_id_segment) {
                (Some(_), _) => None,
                (None, seg) => {
                    let seg = i64::from(seg.unwrap_or(-1));
                    let i = if seg < 0 {
                        levels.len() as i64 + seg
                    } else {
                        seg
                    };
                    let i = usize::try_from(i).ok().filter(|i| *i < levels.len())?;
                    if !matches!(levels[i], "+" | "#") || !topic_safe {
                        return None;
                    }
                    Some(i)
                }
            };
            levels
                .iter()
                .enumerate()
                .map(|(i, l)| match *l {
                    "+" | "#" if Some(i) == target => sensor_id.to_string(),
                    "+" | "#" => "sim".to_string(),
                    lit => lit.to_string(),
                })
                .collect()
        }
        _ => return None,
    };
    let topic = filled.join("/");
    topic_matches(filter, &topic).then_some(topic)
}

/// The TTN device id: `eui-<lower hex>` for a DevEUI, else the id itself.
fn ttn_device_id(sensor_id: &str) -> String {
    if is_eui64(sensor_id) {
        format!("eui-{}", sensor_id.to_ascii_lowercase())
    } else {
        sensor_id.to_string()
    }
}

/// The payload a sensor of `route` sends for `sample`, or `None` for a format the simulator
/// does not speak.
#[allow(unreachable_patterns)] // other formats may be added to `Format`
pub fn payload(
    route: &Route,
    sensor_id: &str,
    sample: &Sample,
    now: DateTime<Utc>,
    counter: u64,
) -> Option<Vec<u8>> {
    let value = match route.format {
        Format::TtnV3 => {
            let now = now.to_rfc3339_opts(SecondsFormat::Nanos, true);
            let mut ids = json!({
                "device_id": ttn_device_id(sensor_id),
                "application_ids": { "application_id": "sim" },
            });
            if is_eui64(sensor_id) {
                ids["dev_eui"] = json!(sensor_id);
            }
            json!({
                "end_device_ids": ids,
                "correlation_ids": [format!("sensorcast-simulate:{counter}")],
                "received_at": now,
                "uplink_message": {
                    "f_port": 2,
                    "f_cnt": counter,
                    "decoded_payload": {
                        "temperature": sample.temperature,
                        "humidity": sample.humidity,
                        "battery": sample.battery,
                    },
                    "rx_metadata": [{
                        "gateway_ids": { "gateway_id": "sim-gateway" },
                        "rssi": sample.rssi,
                        "channel_rssi": sample.rssi,
                        "snr": 7.5,
                    }],
                    "received_at": now,
                }
            })
        }
        Format::Json => {
            let mut m = Map::new();
            if let Some(field) = &route.id_field {
                m.insert(field.clone(), json!(sensor_id));
            }
            m.insert("temperature".into(), json!(sample.temperature));
            m.insert("humidity".into(), json!(sample.humidity));
            m.insert("battery".into(), json!(sample.battery));
            // Wi-Fi probes are closer to their access point than LoRa sensors to a gateway.
            m.insert("signalStrength".into(), json!(sample.rssi + 35.0));
            m.insert("ts".into(), json!(now.timestamp_millis()));
            Value::Object(m)
        }
        _ => return None,
    };
    Some(value.to_string().into_bytes())
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
    let quiet = (sensors.len() >= 2).then(|| sensors.len() - 1);
    for (i, s) in sensors.iter().enumerate() {
        info!(
            sensor = %s.sensor_id,
            unit = %s.unit_id,
            kind = ?s.model.kind,
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
    for s in sensors.iter_mut() {
        let Some((topic, qos, bytes)) = next_message(s, 1) else {
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
            let Some((topic, qos, bytes)) = next_message(s, step + 1) else {
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

/// The next reading of `s` as (topic, QoS, payload).
fn next_message(s: &mut SimSensor, counter: u64) -> Option<(String, QoS, Vec<u8>)> {
    let sample = s.model.next_sample();
    let bytes = payload(&s.route, &s.sensor_id, &sample, Utc::now(), counter)?;
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
mod tests {
    use super::*;
    use std::path::Path;

    fn sub(topic: &str, format: Format) -> Subscription {
        Subscription {
            topic: topic.into(),
            format,
            qos: 1,
            sensor_id_segment: None,
            sensor_id_field: None,
        }
    }

    fn default_subs() -> Vec<Subscription> {
        vec![
            sub("v3/+/devices/+/up", Format::TtnV3),
            sub("sensors/+", Format::Json),
        ]
    }

    #[test]
    fn unit_kinds_are_guessed_from_names_and_ids() {
        let g = UnitKind::guess;
        assert_eq!(
            g("unit-walkin-1", Some("Walk-in freezer")),
            UnitKind::Freezer
        );
        assert_eq!(g("unit-fridge-2", Some("Prep fridge")), UnitKind::Fridge);
        assert_eq!(g("x", Some("Cold room")), UnitKind::Fridge);
        assert_eq!(g("server-room", None), UnitKind::Room);
        assert_eq!(g("u1", None), UnitKind::Fridge);
    }

    #[test]
    fn topics_fill_the_wildcards_so_the_service_reads_the_sensor_back() {
        let subs = default_subs();
        let ttn = route_for("AC1F09FFFE01454E", &subs).unwrap();
        assert_eq!(ttn.topic, "v3/sim@ttn/devices/eui-ac1f09fffe01454e/up");
        assert_eq!(ttn.format, Format::TtnV3);
        let json = route_for("kiosk-probe", &subs).unwrap();
        assert_eq!(
            (json.topic.as_str(), json.format),
            ("sensors/kiosk-probe", Format::Json)
        );

        // Without a json subscription a plain id still rides TTN (as device_id).
        let only_ttn = [sub("v3/+/devices/+/up", Format::TtnV3)];
        assert_eq!(
            route_for("kiosk-probe", &only_ttn).unwrap().topic,
            "v3/sim@ttn/devices/kiosk-probe/up"
        );
        // Segment and payload-field ids, `#` and shared subscriptions.
        let mut seg = sub("site/+/probe/+/data", Format::Json);
        seg.sensor_id_segment = Some(1);
        assert_eq!(fill_topic(&seg, "p1").unwrap(), "site/p1/probe/sim/data");
        seg.sensor_id_segment = Some(2);
        assert_eq!(
            fill_topic(&seg, "p1"),
            None,
            "a literal level cannot hold the id"
        );
        let mut field = sub("$share/g/readings/#", Format::Json);
        field.sensor_id_field = Some("device".into());
        assert_eq!(fill_topic(&field, "p1").unwrap(), "readings/sim");
        assert_eq!(
            fill_topic(&sub("v3/#", Format::TtnV3), "AC1F09FFFE01454E").unwrap(),
            "v3/up"
        );
        assert_eq!(
            fill_topic(&sub("sensors/+", Format::Json), "kitchen/fridge"),
            None
        );
        // A topic an earlier subscription of another format would swallow is not used.
        let shadowed = [
            sub("#", Format::Json),
            sub("v3/+/devices/+/up", Format::TtnV3),
        ];
        assert_eq!(
            route_for("AC1F09FFFE01454E", &shadowed).unwrap().format,
            Format::Json
        );
    }

    /// Every payload goes through the real decoder back to the same sensor and values.
    #[test]
    fn payloads_decode_to_the_sample() {
        let mut field = sub("readings/+", Format::Json);
        field.sensor_id_field = Some("device".into());
        let sample = Sample {
            temperature: -18.37,
            humidity: 71.5,
            battery: 88.0,
            rssi: -97.0,
        };
        let now = Utc::now();
        for (s, id) in [
            (sub("v3/+/devices/+/up", Format::TtnV3), "AC1F09FFFE01454E"),
            (sub("v3/+/devices/+/up", Format::TtnV3), "kiosk-probe"),
            (sub("sensors/+", Format::Json), "kiosk-probe"),
            (field, "p-7"),
        ] {
            let route = route_for(id, std::slice::from_ref(&s)).unwrap();
            let bytes = payload(&route, id, &sample, now, 3).unwrap();
            let decoded = crate::decode::decode(&s, &route.topic, &bytes, now, 65536).unwrap();
            let crate::decode::Decoded::Readings(r) = decoded else {
                panic!("{id}: not a reading");
            };
            assert_eq!(r[0].sensor_id, id);
            assert_eq!(r[0].temperature, -18.37);
            assert_eq!(r[0].humidity, Some(71.5));
            assert_eq!(r[0].battery, Some(88.0));
        }
    }

    #[test]
    fn readings_drift_around_the_base_with_spikes_and_excursions() {
        let mut m = SensorModel::new(UnitKind::Fridge, 7);
        let samples: Vec<Sample> = (0..20_000).map(|_| m.next_sample()).collect();
        let temps: Vec<f64> = samples.iter().map(|s| s.temperature).collect();
        let mut sorted = temps.clone();
        sorted.sort_by(f64::total_cmp);
        let median = sorted[sorted.len() / 2];
        assert!((3.0..5.0).contains(&median), "median {median}");
        // Gentle: consecutive readings mostly within a few tenths.
        let calm = temps
            .windows(2)
            .filter(|w| (w[1] - w[0]).abs() < 0.5)
            .count();
        assert!(calm as f64 > 0.8 * temps.len() as f64, "{calm}");
        // Door spikes (a few degrees) and excursions (well above 8 °C) both happen.
        assert!(temps.iter().any(|t| (7.0..9.0).contains(t)));
        assert!(temps.iter().any(|t| *t > 11.0), "an excursion");
        assert!(temps.iter().all(|t| (-5.0..25.0).contains(t)));
        let freezer = SensorModel::new(UnitKind::Freezer, 1).next_sample();
        assert!((-20.0..-15.0).contains(&freezer.temperature), "{freezer:?}");
        assert!(samples.iter().all(|s| (0.0..=100.0).contains(&s.humidity)));
        assert!(samples.iter().all(|s| (1.0..=100.0).contains(&s.battery)));
    }

    #[test]
    fn one_sensor_goes_quiet_for_a_while_but_not_in_the_first_round() {
        assert!(!is_quiet(0));
        let quiet = (0..QUIET_CYCLE).filter(|s| is_quiet(*s)).count() as u64;
        assert_eq!(quiet, QUIET_LEN);
        assert!(is_quiet(QUIET_START) && !is_quiet(QUIET_START + QUIET_LEN));
    }

    #[test]
    fn plan_covers_every_sensor_it_can_and_names_the_rest() {
        let reg = Registry::parse(
            r#"
[[org]]
id = "o"
[[site]]
id = "s"
org = "o"
[[unit]]
id = "u"
site = "s"
name = "Deep freezer"
[[sensor]]
id = "ac-1f-09-ff-fe-01-45-4e"
unit = "u"
[[sensor]]
id = "probe-1"
unit = "u"
[[sensor]]
id = "kitchen/probe"
unit = "u"
"#,
            Path::new("r.toml"),
        )
        .unwrap();
        let (sensors, skipped) = plan(&reg, &[sub("sensors/+", Format::Json)], 42);
        let ids: Vec<_> = sensors.iter().map(|s| s.sensor_id.as_str()).collect();
        assert_eq!(ids, ["AC1F09FFFE01454E", "probe-1"]);
        assert_eq!(sensors[0].model.kind, UnitKind::Freezer);
        assert_eq!(skipped.len(), 1);
        assert!(skipped[0].contains("kitchen/probe"), "{skipped:?}");
    }
}
