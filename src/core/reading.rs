//! The `sensor:reading` event as dashboards receive it. One struct, serialised once per emit by
//! socketioxide and shared (as `Arc`) between the emit and the per-unit "latest" cache. Also
//! the `unit:door` event and the door state a reading carries. In cluster mode these also come
//! back from Redis (the shared history, the event stream), hence `Deserialize`.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};

/// Wire form of a mapped reading (see docs/protocol.md).
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SensorReading {
    /// Unique per reading: `{epoch}-{unitId}-{seq}`.
    pub id: String,
    /// Per unit, starts at 1 for each `epoch`, only grows.
    pub seq: u64,
    pub unit_id: Arc<str>,
    pub site_id: Arc<str>,
    pub organization_id: Arc<str>,
    pub device_id: Arc<str>,
    pub temperature: f64,
    pub humidity: Option<f64>,
    pub battery: Option<f64>,
    pub signal_strength: Option<f64>,
    #[serde(serialize_with = "rfc3339_millis")]
    pub recorded_at: DateTime<Utc>,
    #[serde(serialize_with = "rfc3339_millis")]
    pub received_at: DateTime<Utc>,
    /// The decoder (format) name.
    pub source: &'static str,
    /// Other numeric measurements by name (`{}` when none).
    #[serde(serialize_with = "extra_object")]
    pub extra: Extra,
    /// A broker's retained copy, handed out because sensorcast subscribed: the sensor's last
    /// value, not a sign that it is alive now. Sent only when true (`retained: true`).
    #[serde(skip_serializing_if = "is_false")]
    pub retained: bool,
    /// The unit's door when the reading was emitted; left out until a door contact of the unit
    /// has reported (so readings of units without one are as they always were).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub door: Option<DoorState>,
}

/// [`SensorReading`] as it is read back (cluster mode keeps readings in Redis): owned text
/// where the struct has a `&'static str`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReadingIn {
    id: String,
    seq: u64,
    unit_id: Arc<str>,
    site_id: Arc<str>,
    organization_id: Arc<str>,
    device_id: Arc<str>,
    temperature: f64,
    humidity: Option<f64>,
    battery: Option<f64>,
    signal_strength: Option<f64>,
    recorded_at: DateTime<Utc>,
    received_at: DateTime<Utc>,
    source: String,
    #[serde(deserialize_with = "extra_from_object")]
    extra: Extra,
    #[serde(default)]
    retained: bool,
    #[serde(default)]
    door: Option<DoorState>,
}

impl<'de> Deserialize<'de> for SensorReading {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        ReadingIn::deserialize(d).map(SensorReading::from)
    }
}

impl From<ReadingIn> for SensorReading {
    fn from(r: ReadingIn) -> Self {
        SensorReading {
            id: r.id,
            seq: r.seq,
            unit_id: r.unit_id,
            site_id: r.site_id,
            organization_id: r.organization_id,
            device_id: r.device_id,
            temperature: r.temperature,
            humidity: r.humidity,
            battery: r.battery,
            signal_strength: r.signal_strength,
            recorded_at: r.recorded_at,
            received_at: r.received_at,
            source: static_name(r.source),
            extra: r.extra,
            retained: r.retained,
            door: r.door,
        }
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl SensorReading {
    /// When this reading shows the sensor was alive: on receipt for a live reading; for a
    /// retained copy its payload's own time when it had one (`recorded_at` differs from
    /// `received_at`), else never.
    pub fn alive_at(&self) -> Option<DateTime<Utc>> {
        match (self.retained, self.recorded_at != self.received_at) {
            (false, _) => Some(self.received_at),
            (true, true) => Some(self.recorded_at.min(self.received_at)),
            (true, false) => None,
        }
    }
}

/// A unit's door as a reading (and `get:latest`) carries it: the contact that decides it, and
/// since when it is in that state.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DoorState {
    pub device_id: Arc<str>,
    pub open: bool,
    #[serde(serialize_with = "rfc3339_millis")]
    pub since: DateTime<Utc>,
}

/// The `unit:door` event: one door contact of a unit changed state (see docs/protocol.md).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct UnitDoor {
    pub unit_id: Arc<str>,
    pub site_id: Arc<str>,
    pub organization_id: Arc<str>,
    pub device_id: Arc<str>,
    pub open: bool,
    /// When sensorcast first received the contact in this state.
    #[serde(serialize_with = "rfc3339_millis")]
    pub since: DateTime<Utc>,
    /// When the contact last reported it (its own time when the payload has one).
    #[serde(serialize_with = "rfc3339_millis")]
    pub recorded_at: DateTime<Utc>,
}

impl From<&UnitDoor> for DoorState {
    fn from(d: &UnitDoor) -> Self {
        DoorState {
            device_id: d.device_id.clone(),
            open: d.open,
            since: d.since,
        }
    }
}

/// Extra measurements by name (door, CO2, pressure, power). A `Vec` keeps insertion order and is
/// cheaper than a map for the handful of entries a sensor carries.
pub type Extra = Vec<(String, f64)>;

fn extra_object<S: Serializer>(extra: &Extra, s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut m = s.serialize_map(Some(extra.len()))?;
    for (k, v) in extra {
        m.serialize_entry(k, v)?;
    }
    m.end()
}

fn extra_from_object<'de, D: Deserializer<'de>>(d: D) -> Result<Extra, D::Error> {
    let map = serde_json::Map::<String, serde_json::Value>::deserialize(d)?;
    Ok(map
        .into_iter()
        .filter_map(|(k, v)| Some((k, v.as_f64()?)))
        .collect())
}

/// Names read back as `&'static str` (a reading's `source`). Only the decoders' handful of
/// format names ever come back (from our own Redis entries); past [`MAX_NAMES`] a name is read
/// as `"unknown"` instead of being kept, so a bad entry cannot grow this.
static NAMES: Mutex<Option<HashSet<&'static str>>> = Mutex::new(None);
const MAX_NAMES: usize = 64;

pub fn static_name(name: String) -> &'static str {
    let mut set = NAMES.lock().unwrap_or_else(PoisonError::into_inner);
    let set = set.get_or_insert_with(HashSet::new);
    if let Some(known) = set.get(name.as_str()) {
        return known;
    }
    if set.len() >= MAX_NAMES {
        return "unknown";
    }
    let leaked: &'static str = Box::leak(name.into_boxed_str());
    set.insert(leaked);
    leaked
}

/// RFC 3339 in UTC with milliseconds, like JavaScript's `Date.toISOString()`.
pub fn rfc3339_millis<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Millis, true))
}

pub fn now_rfc3339() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn a_retained_copy_is_marked_and_alive_only_at_its_own_time() {
        let t = |s: i64| Utc.timestamp_opt(1_700_000_000 + s, 0).unwrap();
        let mut r = SensorReading {
            id: "e-u-1".into(),
            seq: 1,
            unit_id: "u".into(),
            site_id: "s".into(),
            organization_id: "o".into(),
            device_id: "d".into(),
            temperature: 4.0,
            humidity: None,
            battery: None,
            signal_strength: None,
            recorded_at: t(0),
            received_at: t(0),
            source: "json",
            extra: Vec::new(),
            retained: false,
            door: None,
        };
        let json = |r: &SensorReading| serde_json::to_value(r).unwrap();
        assert_eq!(
            json(&r).get("retained"),
            None,
            "live readings are not marked"
        );
        assert_eq!(r.alive_at(), Some(t(0)));
        r.retained = true;
        assert_eq!(json(&r)["retained"], true);
        assert_eq!(r.alive_at(), None, "no time of its own");
        r.recorded_at = t(-3600);
        assert_eq!(r.alive_at(), Some(t(-3600)));
        r.recorded_at = t(60);
        assert_eq!(r.alive_at(), Some(t(0)), "a future time counts as receipt");
    }

    /// What cluster mode keeps in Redis reads back as the reading it was.
    #[test]
    fn a_reading_reads_back_from_its_json() {
        let t = Utc.timestamp_millis_opt(1_700_000_000_123).unwrap();
        let r = SensorReading {
            id: "e-u-7".into(),
            seq: 7,
            unit_id: "u".into(),
            site_id: "s".into(),
            organization_id: "o".into(),
            device_id: "d".into(),
            temperature: -18.25,
            humidity: Some(61.0),
            battery: None,
            signal_strength: Some(-70.0),
            recorded_at: t,
            received_at: t,
            source: "ttn-v3",
            extra: vec![("co2".into(), 410.0)],
            retained: true,
            door: Some(DoorState {
                device_id: "c".into(),
                open: true,
                since: t,
            }),
        };
        let json = serde_json::to_string(&r).unwrap();
        let back: SensorReading = serde_json::from_str(&json).unwrap();
        assert_eq!(back, r);
        assert_eq!(serde_json::to_string(&back).unwrap(), json);
    }
}
