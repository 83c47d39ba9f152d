//! What the plain server knows and sends: the scenario's sensor → unit → site → org mapping
//! (the Node reference's `mapping.json`, written by the loadgen for both), and the
//! `sensor:reading` event in sensorcast's JSON shape (`src/core/reading.rs`: same fields, same
//! order, same formatting), so its websocket frames are the size of sensorcast's.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;

/// One unit of the mapping, with its two reading rooms built once.
pub struct Unit {
    pub id: Arc<str>,
    pub site: Arc<str>,
    pub org: Arc<str>,
    /// `org:{org}:unit:{unit}` and `org:{org}:site:{site}` (leaked: built once per unit, then
    /// handed to every broadcast without an allocation, as sensorcast does).
    pub rooms: [&'static str; 2],
}

/// The mapping, shared by the MQTT task and the socket handlers.
pub struct Mapping {
    /// Sensor id → index in `units`.
    sensors: HashMap<String, usize>,
    units: Vec<Unit>,
    unit_index: HashMap<Arc<str>, usize>,
}

#[derive(Deserialize)]
struct MappingFile {
    sensors: HashMap<String, SensorEntry>,
}

#[derive(Deserialize)]
struct SensorEntry {
    unit: String,
    site: String,
    org: String,
}

pub fn unit_room(org: &str, unit: &str) -> String {
    format!("org:{org}:unit:{unit}")
}

pub fn site_room(org: &str, site: &str) -> String {
    format!("org:{org}:site:{site}")
}

impl Mapping {
    /// Parses `{"sensors": {"s0": {"unit": "u0", "site": "st0", "org": "o0"}, ...}}`.
    pub fn parse(json: &str) -> anyhow::Result<Mapping> {
        let file: MappingFile = serde_json::from_str(json)?;
        let mut m = Mapping {
            sensors: HashMap::new(),
            units: Vec::new(),
            unit_index: HashMap::new(),
        };
        let mut entries: Vec<_> = file.sensors.into_iter().collect();
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        for (sensor, e) in entries {
            let i = match m.unit_index.get(e.unit.as_str()) {
                Some(&i) => {
                    let u = &m.units[i];
                    anyhow::ensure!(
                        *u.site == *e.site && *u.org == *e.org,
                        "unit {} is mapped to two sites or organizations",
                        e.unit
                    );
                    i
                }
                None => {
                    let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
                    let unit = Unit {
                        rooms: [
                            leak(unit_room(&e.org, &e.unit)),
                            leak(site_room(&e.org, &e.site)),
                        ],
                        id: e.unit.into(),
                        site: e.site.into(),
                        org: e.org.into(),
                    };
                    m.unit_index.insert(unit.id.clone(), m.units.len());
                    m.units.push(unit);
                    m.units.len() - 1
                }
            };
            m.sensors.insert(sensor, i);
        }
        Ok(m)
    }

    pub fn unit(&self, id: &str) -> Option<&Unit> {
        self.unit_index.get(id).map(|&i| &self.units[i])
    }

    pub fn units(&self) -> usize {
        self.units.len()
    }
}

/// The wire form of a reading: sensorcast's `SensorReading`, field for field.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Reading<'a> {
    /// `{epoch}-{unitId}-{seq}`, like sensorcast's.
    pub id: String,
    /// Per unit, from 1.
    pub seq: u64,
    pub unit_id: &'a str,
    pub site_id: &'a str,
    pub organization_id: &'a str,
    pub device_id: &'a str,
    pub temperature: f64,
    pub humidity: Option<f64>,
    pub battery: Option<f64>,
    pub signal_strength: Option<f64>,
    pub recorded_at: String,
    pub received_at: String,
    /// The decoder's name in sensorcast (the bench subscription is `format = "json"`).
    pub source: &'static str,
    /// Other numeric fields of the payload; the bench payload has none (`{}`).
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// The generic JSON payload the loadgen publishes.
#[derive(Deserialize)]
struct Payload {
    temperature: f64,
    humidity: Option<f64>,
    battery: Option<f64>,
    #[serde(rename = "signalStrength", alias = "rssi")]
    signal_strength: Option<f64>,
    ts: Option<f64>,
}

/// RFC 3339 in UTC with milliseconds (JavaScript's `toISOString`), as sensorcast prints it.
fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Epoch seconds, or milliseconds above 1e11 (sensorcast's rule).
fn epoch_to_time(epoch: f64) -> Option<DateTime<Utc>> {
    let ms = if epoch >= 1e11 { epoch } else { epoch * 1000.0 };
    DateTime::from_timestamp_millis(ms.round() as i64)
}

/// Maps MQTT readings to their unit and numbers them per unit.
pub struct Feed {
    pub mapping: Arc<Mapping>,
    epoch: String,
    seqs: Vec<u64>,
}

impl Feed {
    pub fn new(mapping: Arc<Mapping>, started: DateTime<Utc>) -> Feed {
        Feed {
            seqs: vec![0; mapping.units()],
            epoch: format!("{:x}", started.timestamp_millis()),
            mapping,
        }
    }

    /// The reading of one publish on `.../<sensor>`, and the rooms it goes to; `None` for an
    /// unknown sensor or a payload without a numeric temperature.
    pub fn accept(
        &mut self,
        topic: &str,
        payload: &[u8],
        received_at: DateTime<Utc>,
    ) -> Option<([&'static str; 2], Reading<'_>)> {
        let sensor = topic.rsplit('/').next()?;
        let (sensor, &i) = self.mapping.sensors.get_key_value(sensor)?;
        let p: Payload = serde_json::from_slice(payload).ok()?;
        let unit = &self.mapping.units[i];
        self.seqs[i] += 1;
        let seq = self.seqs[i];
        let reading = Reading {
            id: format!("{}-{}-{seq}", self.epoch, unit.id),
            seq,
            unit_id: &unit.id,
            site_id: &unit.site,
            organization_id: &unit.org,
            device_id: sensor,
            temperature: p.temperature,
            humidity: p.humidity,
            battery: p.battery,
            signal_strength: p.signal_strength,
            recorded_at: rfc3339(p.ts.and_then(epoch_to_time).unwrap_or(received_at)),
            received_at: rfc3339(received_at),
            source: "json",
            extra: serde_json::Map::new(),
        };
        Some((unit.rooms, reading))
    }
}

/// `mqtt://host:port` (or `host:port`) → host and port (1883 when absent).
pub fn broker_addr(url: &str) -> Option<(String, u16)> {
    let rest = url.strip_prefix("mqtt://").unwrap_or(url);
    let rest = rest.split('/').next()?;
    match rest.rsplit_once(':') {
        Some((host, port)) => Some((host.to_string(), port.parse().ok()?)),
        None if !rest.is_empty() => Some((rest.to_string(), 1883)),
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAPPING: &str = r#"{"sensors":{
        "s0":{"unit":"u0","site":"st0","org":"o0"},
        "s1":{"unit":"u1","site":"st1","org":"o0"},
        "s2":{"unit":"u0","site":"st0","org":"o0"}}}"#;

    #[test]
    fn mapping_builds_units_and_rooms_once() {
        let m = Mapping::parse(MAPPING).unwrap();
        assert_eq!(m.units(), 2);
        let u0 = m.unit("u0").unwrap();
        assert_eq!(&*u0.org, "o0");
        assert_eq!(u0.rooms, ["org:o0:unit:u0", "org:o0:site:st0"]);
        assert!(m.unit("u9").is_none());
        let twice = r#"{"sensors":{"s0":{"unit":"u0","site":"st0","org":"o0"},
            "s1":{"unit":"u0","site":"st1","org":"o0"}}}"#;
        assert!(Mapping::parse(twice).is_err());
    }

    #[test]
    fn reading_has_sensorcasts_shape_and_passes_the_temperature_through() {
        let mut feed = Feed::new(
            Arc::new(Mapping::parse(MAPPING).unwrap()),
            DateTime::from_timestamp_millis(0x019a_0000_0000).unwrap(),
        );
        let at = DateTime::from_timestamp_millis(1_764_000_000_123).unwrap();
        // What the loadgen publishes: seq 12345 encoded in the temperature.
        let payload =
            br#"{"temperature": 20.0012345, "humidity": 50.0, "battery": 90, "ts": 1764000000000}"#;
        let (rooms, r) = feed.accept("bench/s2", payload, at).unwrap();
        assert_eq!(rooms, ["org:o0:unit:u0", "org:o0:site:st0"]);
        let json = serde_json::to_string(&r).unwrap();
        drop(r);
        assert_eq!(
            json,
            r#"{"id":"19a00000000-u0-1","seq":1,"unitId":"u0","siteId":"st0","organizationId":"o0","deviceId":"s2","temperature":20.0012345,"humidity":50.0,"battery":90.0,"signalStrength":null,"recordedAt":"2025-11-24T16:00:00.000Z","receivedAt":"2025-11-24T16:00:00.123Z","source":"json","extra":{}}"#
        );
        // The unit's seq grows per unit, not per sensor.
        let (_, r) = feed.accept("bench/s0", payload, at).unwrap();
        assert_eq!((r.seq, r.id.as_str()), (2, "19a00000000-u0-2"));
        let (_, r) = feed.accept("bench/s1", payload, at).unwrap();
        assert_eq!(r.seq, 1);
        // Unknown sensor, or no temperature: nothing to send.
        assert!(feed.accept("bench/s9", payload, at).is_none());
        assert!(feed.accept("bench/s0", br#"{"humidity":1}"#, at).is_none());
        // No `ts`: recorded when received.
        let (_, r) = feed
            .accept("bench/s0", br#"{"temperature":4}"#, at)
            .unwrap();
        assert_eq!(r.recorded_at, r.received_at);
    }

    #[test]
    fn broker_urls() {
        assert_eq!(
            broker_addr("mqtt://127.0.0.1:41883"),
            Some(("127.0.0.1".into(), 41883))
        );
        assert_eq!(broker_addr("localhost"), Some(("localhost".into(), 1883)));
        assert_eq!(broker_addr("mqtt://h:x"), None);
        assert_eq!(broker_addr(""), None);
    }
}
