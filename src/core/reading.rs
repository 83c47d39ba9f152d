//! The `sensor:reading` event as dashboards receive it. One struct, serialised once per emit by
//! socketioxide and shared (as `Arc`) between the emit and the per-unit "latest" cache.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Serialize, Serializer};
use std::sync::Arc;

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

/// RFC 3339 in UTC with milliseconds, like JavaScript's `Date.toISOString()`.
pub fn rfc3339_millis<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Millis, true))
}

pub fn now_rfc3339() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
}
