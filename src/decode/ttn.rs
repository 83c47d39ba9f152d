//! The Things Stack v3 uplinks (`v3/{app}@{tenant}/devices/{device}/up`). The device is its
//! `dev_eui` (normalised hex); values come from `uplink_message.decoded_payload`, which only
//! exists when the application has a payload formatter. TTS omits fields whose value is 0, "" or
//! false, so every field is optional here. A battery voltage (V, or mV when >= 100) becomes a
//! percentage only through the subscription's `battery_curve`; other numeric fields of the
//! decoded payload are kept in `extra`.
//!
//! A door state comes from `fields.door` (a path inside `decoded_payload`), else the first of
//! `door_open`, `open`, `DOOR_OPEN_STATUS` (Dragino LDS02), `magnet_status` (Milesight,
//! `"open"`/`"close"`) that holds one (`true`/`1`: open),
//! else `contact` (`true`: closed). A door sensor's uplink without a temperature is a door
//! contact's reading.
//!
//! The envelope is parsed into borrowed structs: unknown parts (correlation ids, settings,
//! locations) are skipped by the parser without being built, and ids and times are not copied.

use serde::Deserialize;
use serde_json::{Map, Value};
use std::borrow::Cow;

use super::fields::{self, number, ranged};
use super::options::Options;
use super::{sensor_id, DecodeError, Decoded, Format, Message, Reading};

#[derive(Deserialize)]
struct Uplink<'a> {
    #[serde(default, borrow)]
    end_device_ids: DeviceIds<'a>,
    #[serde(borrow)]
    uplink_message: Option<UplinkMessage<'a>>,
    #[serde(borrow)]
    received_at: Option<Cow<'a, str>>,
}

#[derive(Deserialize, Default)]
struct DeviceIds<'a> {
    #[serde(borrow)]
    dev_eui: Option<Cow<'a, str>>,
    #[serde(borrow)]
    device_id: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct UplinkMessage<'a> {
    decoded_payload: Option<Map<String, Value>>,
    #[serde(default)]
    rx_metadata: Vec<RxMetadata>,
    #[serde(borrow)]
    received_at: Option<Cow<'a, str>>,
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
const BATTERY_VOLTAGE: &[&str] = &["battery_voltage", "BatV", "batV", "battery_v", "vbat"];
/// Door states, `true`/`1` being open; `contact` (`true`: closed) is tried after them.
const DOOR_OPEN: &[&str] = &["door_open", "open", "DOOR_OPEN_STATUS", "magnet_status"];

pub fn decode(opts: &Options, msg: Message) -> Result<Decoded, DecodeError> {
    let (topic, payload, received_at) = (msg.topic, msg.payload, msg.received_at);
    if !topic.ends_with("/up") {
        // joins, downlink acks and the like share the subscription but are not readings.
        return Ok(Decoded::Ignored("not an uplink"));
    }
    fields::check_depth(payload)?;
    let uplink: Uplink = serde_json::from_slice(payload).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => fields::malformed("ttn-v3 uplink", &e),
        _ => fields::not_json(&e),
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
    // The first alias present, as (name, value).
    let pick = |names: &[&'static str]| names.iter().find_map(|n| decoded.get(*n).map(|v| (*n, v)));
    let mut used: [Option<&str>; 4] = [None; 4];

    let mut temperature = match pick(TEMPERATURE_C) {
        Some((name, v)) => {
            used[0] = Some(name);
            number("temperature", Some(v))?
        }
        None => None,
    };
    if temperature.is_none() {
        if let Some((name, v)) = pick(TEMPERATURE_F) {
            used[0] = Some(name);
            temperature = number("temperature_f", Some(v))?.map(fields::fahrenheit_to_celsius);
        }
    }
    let temperature = temperature.map(fields::check_temperature).transpose()?;
    let door_open = match &opts.fields.door {
        Some(path) => fields::door_state("door", path.get_in(decoded), false)?,
        None => DOOR_OPEN
            .iter()
            .map(|n| (*n, false))
            .chain([("contact", true)])
            .find_map(|(n, contact)| fields::door_state("door", decoded.get(n), contact).ok()?),
    };
    if temperature.is_none() && door_open.is_none() {
        return Err(DecodeError::NoTemperature);
    }
    let humidity = pick(HUMIDITY);
    used[1] = humidity.map(|(n, _)| n);
    let humidity = ranged("humidity", humidity.map(|(_, v)| v), fields::HUMIDITY)?;
    let battery_field = pick(BATTERY);
    used[2] = battery_field.map(|(n, _)| n);
    let mut battery = ranged("battery", battery_field.map(|(_, v)| v), fields::BATTERY)?;
    if let (None, Some(curve)) = (battery, &opts.battery_curve) {
        if let Some((name, v)) = pick(BATTERY_VOLTAGE) {
            if let Some(volts) = ranged("battery_voltage", Some(v), (0.0, 100_000.0))? {
                let volts = if volts >= 100.0 {
                    volts / 1000.0
                } else {
                    volts
                };
                battery = Some(curve.percent(volts));
                used[3] = Some(name);
            }
        }
    }
    let recorded_at = match msg.received_at.as_deref().or(uplink.received_at.as_deref()) {
        Some(t) => fields::parse_timestamp_str(t)?,
        None => received_at,
    };
    let mut extra = Vec::new();
    for (k, v) in decoded {
        if !used.contains(&Some(k.as_str())) {
            fields::push_extra(&mut extra, k, v);
        }
    }
    let signal_strength = best_rssi(&msg.rx_metadata);
    let reading = Reading::new(sensor, Format::TtnV3, recorded_at);
    Ok(Decoded::Readings(vec![Reading {
        signal_strength,
        temperature,
        humidity,
        battery,
        door_open,
        extra,
        ..reading
    }]))
}

/// The best (highest) RSSI over all gateways, preferring `channel_rssi` where a gateway has it.
fn best_rssi(rx: &[RxMetadata]) -> Option<f64> {
    rx.iter()
        .filter_map(|g| g.channel_rssi.or(g.rssi))
        .filter(|r| r.is_finite())
        .reduce(f64::max)
}
