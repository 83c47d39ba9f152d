//! The Things Stack v3 uplinks (`v3/{app}@{tenant}/devices/{device}/up`). The device is its
//! `dev_eui` (normalised hex); values come from `uplink_message.decoded_payload`, which only
//! exists when the application has a payload formatter. TTS omits fields whose value is 0, "" or
//! false, so every field is optional here.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::fields::{self, number, ranged};
use super::{sensor_id, DecodeError, Decoded, Format, Reading};

#[derive(Deserialize)]
struct Uplink {
    #[serde(default)]
    end_device_ids: DeviceIds,
    uplink_message: Option<UplinkMessage>,
    received_at: Option<String>,
}

#[derive(Deserialize, Default)]
struct DeviceIds {
    dev_eui: Option<String>,
    device_id: Option<String>,
}

#[derive(Deserialize)]
struct UplinkMessage {
    decoded_payload: Option<Map<String, Value>>,
    #[serde(default)]
    rx_metadata: Vec<RxMetadata>,
    received_at: Option<String>,
}

#[derive(Deserialize)]
struct RxMetadata {
    rssi: Option<f64>,
    channel_rssi: Option<f64>,
}

/// Aliases seen in common payload formatters, in order of preference.
const TEMPERATURE_C: &[&str] = &[
    "temperature",
    "temperature_c",
    "TempC_SHT",
    "TempC_DS",
    "temp",
    "TempC",
];
const TEMPERATURE_F: &[&str] = &["temperature_f", "TempF"];
const HUMIDITY: &[&str] = &["humidity", "Hum_SHT", "rh", "relative_humidity"];
const BATTERY: &[&str] = &["battery", "battery_percent", "batteryLevel", "BatP"];

pub fn decode(
    topic: &str,
    payload: &[u8],
    received_at: DateTime<Utc>,
) -> Result<Decoded, DecodeError> {
    if !topic.ends_with("/up") {
        // joins, downlink acks and the like share the subscription but are not readings.
        return Ok(Decoded::Ignored("not an uplink"));
    }
    let uplink: Uplink = serde_json::from_slice(payload).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => DecodeError::Malformed(format!("ttn-v3 uplink: {e}")),
        _ => DecodeError::NotJson(e.to_string()),
    })?;
    let ids = &uplink.end_device_ids;
    let raw_id = ids
        .dev_eui
        .as_deref()
        .or(ids.device_id.as_deref())
        .ok_or(DecodeError::NoSensorId("end_device_ids has no dev_eui"))?;
    let sensor = sensor_id(raw_id)?;
    let msg = uplink.uplink_message.ok_or(DecodeError::NoDecodedPayload)?;
    let decoded = msg
        .decoded_payload
        .as_ref()
        .ok_or(DecodeError::NoDecodedPayload)?;
    let pick = |names: &[&str]| names.iter().find_map(|n| decoded.get(*n));

    let temperature = match number("temperature", pick(TEMPERATURE_C))? {
        Some(c) => c,
        None => match number("temperature_f", pick(TEMPERATURE_F))? {
            Some(f) => fields::fahrenheit_to_celsius(f),
            None => return Err(DecodeError::NoTemperature),
        },
    };
    let recorded_at = match msg.received_at.or(uplink.received_at) {
        Some(t) => fields::parse_timestamp(&Value::String(t))?,
        None => received_at,
    };
    Ok(Decoded::Readings(vec![Reading {
        sensor_id: sensor,
        temperature: fields::check_temperature(temperature)?,
        humidity: ranged("humidity", pick(HUMIDITY), fields::HUMIDITY)?,
        battery: ranged("battery", pick(BATTERY), fields::BATTERY)?,
        signal_strength: best_rssi(&msg.rx_metadata),
        recorded_at,
        extra: Vec::new(),
        source: Format::TtnV3,
    }]))
}

/// The best (highest) RSSI over all gateways, preferring `channel_rssi` where a gateway has it.
fn best_rssi(rx: &[RxMetadata]) -> Option<f64> {
    rx.iter()
        .filter_map(|g| g.channel_rssi.or(g.rssi))
        .filter(|r| r.is_finite())
        .reduce(f64::max)
}
