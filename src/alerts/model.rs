//! The alert engine's vocabulary: unit states, alert types and severities, the open [`Alert`]
//! record (what `get:alerts` returns and what the state file keeps), and the wire payloads of
//! every event the engine emits. Field names are the protocol's (camelCase); see
//! docs/protocol.md and docs/alerts.md.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

use crate::core::reading::rfc3339_millis;

/// The state a unit is shown in. `Offline` wins over the temperature state while it lasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnitState {
    Ok,
    Excursion,
    Alarm,
    Restoring,
    Offline,
}

impl UnitState {
    pub fn name(self) -> &'static str {
        match self {
            UnitState::Ok => "ok",
            UnitState::Excursion => "excursion",
            UnitState::Alarm => "alarm",
            UnitState::Restoring => "restoring",
            UnitState::Offline => "offline",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertType {
    TemperatureExcursion,
    MonitoringInterrupted,
    LowBattery,
    DoorOpen,
    HumidityExcursion,
}

impl AlertType {
    pub const ALL: [AlertType; 5] = [
        AlertType::TemperatureExcursion,
        AlertType::MonitoringInterrupted,
        AlertType::LowBattery,
        AlertType::DoorOpen,
        AlertType::HumidityExcursion,
    ];
    pub fn name(self) -> &'static str {
        match self {
            AlertType::TemperatureExcursion => "temperature_excursion",
            AlertType::MonitoringInterrupted => "monitoring_interrupted",
            AlertType::LowBattery => "low_battery",
            AlertType::DoorOpen => "door_open",
            AlertType::HumidityExcursion => "humidity_excursion",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub const ALL: [Severity; 3] = [Severity::Info, Severity::Warning, Severity::Critical];
    pub fn name(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// Which limit a value crossed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    Min,
    Max,
}

/// An open alert: the `alert:triggered` fields plus what happened to it since. At most one per
/// (unit, type) is open; resolving removes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    pub alert_id: String,
    pub unit_id: Arc<str>,
    pub site_id: Arc<str>,
    pub organization_id: Arc<str>,
    pub alert_type: AlertType,
    pub severity: Severity,
    pub message: String,
    /// The value that crossed the threshold (°C, %RH, battery %, or for door_open the seconds
    /// the door had been open); `null` for monitoring_interrupted.
    pub value: Option<f64>,
    pub threshold: Option<f64>,
    pub threshold_violated: Option<Side>,
    #[serde(with = "millis")]
    pub triggered_at: DateTime<Utc>,
    /// How many times it was escalated (0: never; 1: warning → critical).
    pub escalation_level: u32,
    #[serde(with = "opt_millis", default)]
    pub escalated_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub acknowledged_by: Option<String>,
    #[serde(with = "opt_millis", default)]
    pub acknowledged_at: Option<DateTime<Utc>>,
    /// What the person who acknowledged it wrote (the corrective action); `null` when none.
    #[serde(default)]
    pub acknowledged_comment: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AlertTriggered {
    pub alert_id: String,
    pub unit_id: Arc<str>,
    pub site_id: Arc<str>,
    pub organization_id: Arc<str>,
    pub alert_type: AlertType,
    pub severity: Severity,
    pub message: String,
    pub value: Option<f64>,
    pub threshold: Option<f64>,
    pub threshold_violated: Option<Side>,
    #[serde(serialize_with = "rfc3339_millis")]
    pub triggered_at: DateTime<Utc>,
}

impl From<&Alert> for AlertTriggered {
    fn from(a: &Alert) -> Self {
        AlertTriggered {
            alert_id: a.alert_id.clone(),
            unit_id: a.unit_id.clone(),
            site_id: a.site_id.clone(),
            organization_id: a.organization_id.clone(),
            alert_type: a.alert_type,
            severity: a.severity,
            message: a.message.clone(),
            value: a.value,
            threshold: a.threshold,
            threshold_violated: a.threshold_violated,
            triggered_at: a.triggered_at,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AlertEscalated {
    pub alert_id: String,
    pub unit_id: Arc<str>,
    pub severity: Severity,
    pub escalation_level: u32,
    #[serde(serialize_with = "rfc3339_millis")]
    pub escalated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AlertResolved {
    pub alert_id: String,
    pub unit_id: Arc<str>,
    #[serde(serialize_with = "rfc3339_millis")]
    pub resolved_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AlertAcknowledged {
    pub alert_id: String,
    pub unit_id: Arc<str>,
    pub acknowledged_by: String,
    #[serde(serialize_with = "rfc3339_millis")]
    pub acknowledged_at: DateTime<Utc>,
    /// `null` when the acknowledgement came without a comment.
    pub acknowledged_comment: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UnitStateChanged {
    pub unit_id: Arc<str>,
    pub site_id: Arc<str>,
    pub organization_id: Arc<str>,
    pub previous_state: UnitState,
    pub new_state: UnitState,
    #[serde(serialize_with = "rfc3339_millis")]
    pub timestamp: DateTime<Utc>,
    pub reason: String,
}

/// One thing the engine tells the world. Each goes to the rooms of its unit's organization
/// (see [`crate::core::rooms::org_event_rooms`]) and to every webhook.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    StateChanged(UnitStateChanged),
    Triggered(AlertTriggered),
    Escalated(AlertEscalated),
    Resolved(AlertResolved),
    Acknowledged(AlertAcknowledged),
}

/// Where an event is routed: the unit and the organization and site it belongs to.
pub struct Place<'a> {
    pub org: &'a str,
    pub site: &'a str,
    pub unit: &'a str,
}

impl Event {
    /// The Socket.io event name.
    pub fn name(&self) -> &'static str {
        match self {
            Event::StateChanged(_) => "unit:state:changed",
            Event::Triggered(_) => "alert:triggered",
            Event::Escalated(_) => "alert:escalated",
            Event::Resolved(_) => "alert:resolved",
            Event::Acknowledged(_) => "alert:acknowledged",
        }
    }

    pub fn unit_id(&self) -> &Arc<str> {
        match self {
            Event::StateChanged(e) => &e.unit_id,
            Event::Triggered(e) => &e.unit_id,
            Event::Escalated(e) => &e.unit_id,
            Event::Resolved(e) => &e.unit_id,
            Event::Acknowledged(e) => &e.unit_id,
        }
    }

    /// The payload as JSON (serialising these plain structs cannot fail).
    pub fn payload(&self) -> serde_json::Value {
        let v = match self {
            Event::StateChanged(e) => serde_json::to_value(e),
            Event::Triggered(e) => serde_json::to_value(e),
            Event::Escalated(e) => serde_json::to_value(e),
            Event::Resolved(e) => serde_json::to_value(e),
            Event::Acknowledged(e) => serde_json::to_value(e),
        };
        v.unwrap_or(serde_json::Value::Null)
    }
}

/// A new alert id: a ULID (26 characters of Crockford base32, 48 bits of milliseconds then 80
/// random bits), so ids sort by creation time and stay unique across restarts without any
/// counter on disk. The random part comes from `rng` (seeded in tests), not ulid's own source.
pub fn new_alert_id(at: DateTime<Utc>, rng: &mut fastrand::Rng) -> String {
    let millis = u64::try_from(at.timestamp_millis()).unwrap_or(0);
    let random = u128::from(rng.u64(..)) << 16 | u128::from(rng.u16(..));
    ulid::Ulid::from_parts(millis, random).to_string()
}

/// RFC 3339 with milliseconds, both ways (the state file and `get:alerts`).
pub(crate) mod millis {
    use chrono::{DateTime, SecondsFormat, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Millis, true))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let s = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&s)
            .map(|t| t.with_timezone(&Utc))
            .map_err(serde::de::Error::custom)
    }
}

pub(crate) mod opt_millis {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => super::millis::serialize(t, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(s) => DateTime::parse_from_rfc3339(&s)
                .map(|t| Some(t.with_timezone(&Utc)))
                .map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn alert_ids_sort_by_time_and_differ() {
        let mut rng = fastrand::Rng::with_seed(7);
        let t = |ms| Utc.timestamp_millis_opt(ms).unwrap();
        let a = new_alert_id(t(1_700_000_000_000), &mut rng);
        let b = new_alert_id(t(1_700_000_000_000), &mut rng);
        let c = new_alert_id(t(1_700_000_000_001), &mut rng);
        assert_eq!(a.len(), 26);
        assert_ne!(a, b);
        assert!(a[..10] == b[..10] && c > a && c > b, "{a} {b} {c}");
        // A real ULID: it decodes back to the time it was made at.
        let decoded = ulid::Ulid::from_string(&a).unwrap();
        assert_eq!(decoded.timestamp_ms(), 1_700_000_000_000);
    }
}
