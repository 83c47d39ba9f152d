//! The generic `json` format: a flat object with `temperature`, `humidity`, `battery`,
//! `signalStrength` and a timestamp under `ts`, `timestamp` or `time`. The sensor id comes from a
//! topic segment (the last by default) or a payload field, as the subscription says.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::fields::{self, number, ranged};
use super::{sensor_id, DecodeError, Decoded, Format, Reading};
use crate::config::Subscription;

pub fn decode(
    sub: &Subscription,
    topic: &str,
    payload: &[u8],
    received_at: DateTime<Utc>,
) -> Result<Decoded, DecodeError> {
    let obj = fields::json_object(payload)?;
    let sensor = match &sub.sensor_id_field {
        Some(field) => match obj.get(field) {
            Some(Value::String(s)) => sensor_id(s)?,
            Some(Value::Number(n)) => sensor_id(&n.to_string())?,
            _ => return Err(DecodeError::NoSensorId("payload field missing")),
        },
        None => sensor_id(topic_segment(topic, sub.sensor_id_segment.unwrap_or(-1))?)?,
    };
    let temperature = number("temperature", obj.get("temperature"))?
        .ok_or(DecodeError::NoTemperature)
        .and_then(fields::check_temperature)?;
    let recorded_at = match ["ts", "timestamp", "time"].iter().find_map(|k| obj.get(*k)) {
        Some(v) => fields::parse_timestamp(v)?,
        None => received_at,
    };
    Ok(Decoded::Readings(vec![Reading {
        sensor_id: sensor,
        temperature,
        humidity: ranged("humidity", obj.get("humidity"), fields::HUMIDITY)?,
        battery: ranged("battery", obj.get("battery"), fields::BATTERY)?,
        signal_strength: ranged(
            "signalStrength",
            obj.get("signalStrength").or_else(|| obj.get("rssi")),
            fields::SIGNAL,
        )?,
        recorded_at,
        extra: Vec::new(),
        source: Format::Json,
    }]))
}

/// The topic level at `index` (negative counts from the end: -1 is the last).
fn topic_segment(topic: &str, index: i32) -> Result<&str, DecodeError> {
    let levels: Vec<&str> = topic.split('/').collect();
    let i = if index < 0 {
        levels.len() as i64 + index as i64
    } else {
        index as i64
    };
    usize::try_from(i)
        .ok()
        .and_then(|i| levels.get(i))
        .filter(|s| !s.is_empty())
        .copied()
        .ok_or(DecodeError::NoSensorId("topic has no such segment"))
}
