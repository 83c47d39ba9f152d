//! Tasmota telemetry: `tele/<topic>/SENSOR` carries one object per attached sensor
//! (`"DS18B20": {"Temperature": 4.1}`, `"DHT22": {...}`, `"DS18B20-1"`, ...) and `TempUnit`;
//! `tele/<topic>/LWT` says `Online` or `Offline`. A door contact on a switch input reports
//! `"Switch1": "ON"`/`"OFF"` in `SENSOR` and, when it changes, `stat/<topic>/RESULT`
//! `{"Switch1": {"Action": "ON"}}` (or `{"Switch1": "ON"}`); `ON` is an open door unless the
//! subscription says `switch_on = "closed"`. Every other Tasmota topic (`STATE`, `INFO1`,
//! other `stat/...`) is not a reading.
//!
//! Sensor ids: the device is `<topic>` (every level between the prefix and the last, or the
//! subscription's `sensor_id` template). A device with one probe reports as `<topic>`; one with
//! several reports each probe as `<topic>/<SensorName>`, and the first probe (in name order) also
//! carries `<topic>` as its fallback id, so a device registered as a whole keeps one series.
//! The door state is the device's: on the reading of a single probe, else a reading of its
//! own with the id `<topic>` (no temperature), as a device with no probe gives.
//!
//! `Time` is the device's local time with no offset, so it cannot be placed on the time line:
//! `recorded_at` is the receive time (Tasmota publishes as it measures). The chip's own sensor
//! (`ESP32`) is not a probe. `null` values are skipped; a value out of range rejects the message.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::fields::{self, ranged};
use super::options::{Options, SwitchOn, TempUnit};
use super::{sensor_id, DecodeError, Decoded, Format, Message, Reading};

/// Objects that carry a temperature but are not a probe: the ESP32's die temperature.
const NOT_PROBES: &[&str] = &["ESP32"];

pub fn decode(opts: &Options, msg: Message) -> Result<Decoded, DecodeError> {
    match msg.topic.rsplit('/').next() {
        Some("SENSOR") => sensor(opts, msg),
        Some("RESULT") => result(opts, msg),
        Some("LWT") => lwt(opts, msg.topic, msg.payload),
        _ => Ok(Decoded::Ignored(
            "not a tasmota SENSOR, RESULT or LWT message",
        )),
    }
}

/// The door state of a `Switch1` value: `"ON"`/`"OFF"`, or `{"Action": "ON"}`. An action that
/// is no state (`TOGGLE`, `HOLD`) is `None`.
fn switch(opts: &Options, v: Option<&Value>) -> Result<Option<bool>, DecodeError> {
    let word = match v {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) => s.as_str(),
        Some(Value::Object(m)) => match m.get("Action") {
            Some(Value::String(s)) => s.as_str(),
            _ => return Ok(None),
        },
        Some(other) => {
            return Err(DecodeError::NotADoorState {
                field: "Switch1",
                value: fields::short(other),
            })
        }
    };
    let on = match word.trim() {
        w if w.eq_ignore_ascii_case("on") => true,
        w if w.eq_ignore_ascii_case("off") => false,
        _ => return Ok(None),
    };
    Ok(Some(on == (opts.switch_on == SwitchOn::Open)))
}

/// A reading of the device's door alone.
fn door_reading(device: &str, open: bool, at: DateTime<Utc>) -> Result<Reading, DecodeError> {
    Ok(Reading {
        sensor_id: sensor_id(device)?,
        fallback_sensor_id: None,
        temperature: None,
        door_open: Some(open),
        humidity: None,
        battery: None,
        signal_strength: None,
        recorded_at: at,
        extra: Vec::new(),
        source: Format::Tasmota,
    })
}

/// `stat/<topic>/RESULT`: a switch that changed, or the answer to some command (not a reading).
fn result(opts: &Options, msg: Message) -> Result<Decoded, DecodeError> {
    let (topic, payload, received_at) = (msg.topic, msg.payload, msg.received_at);
    let obj = fields::json_object(payload)?;
    let door = switch(opts, obj.get("Switch1"))?;
    door_only(
        opts,
        topic,
        door,
        received_at,
        "RESULT without a Switch1 state",
    )
}

/// The device's door alone as the message's outcome; `Ignored(otherwise)` without one.
fn door_only(
    opts: &Options,
    topic: &str,
    door: Option<bool>,
    at: DateTime<Utc>,
    otherwise: &'static str,
) -> Result<Decoded, DecodeError> {
    match door {
        Some(open) => {
            let device = device_id(opts, topic)?;
            Ok(Decoded::Readings(vec![door_reading(&device, open, at)?]))
        }
        None => Ok(Decoded::Ignored(otherwise)),
    }
}

fn sensor(opts: &Options, msg: Message) -> Result<Decoded, DecodeError> {
    let (topic, payload, received_at) = (msg.topic, msg.payload, msg.received_at);
    let obj = fields::json_object(payload)?;
    let unit = match obj.get("TempUnit") {
        Some(Value::String(u)) if u.eq_ignore_ascii_case("F") => TempUnit::Fahrenheit,
        _ => TempUnit::Celsius,
    };
    // A probe is an object with a `Temperature` key, even when it is null this time: the count
    // decides the id scheme, so it must not change when one probe fails to read.
    let probes: Vec<(&String, &Map<String, Value>)> = obj
        .iter()
        .filter_map(|(name, v)| match v {
            Value::Object(m) if m.contains_key("Temperature") => Some((name, m)),
            _ => None,
        })
        .filter(|(name, _)| !NOT_PROBES.contains(&name.as_str()))
        .collect();
    let door = switch(opts, obj.get("Switch1"))?;
    if probes.is_empty() {
        let otherwise = "no temperature in this SENSOR message";
        return door_only(opts, topic, door, received_at, otherwise);
    }
    let device = device_id(opts, topic)?;
    let several = probes.len() > 1;
    let mut readings = Vec::with_capacity(probes.len());
    for (i, (name, probe)) in probes.into_iter().enumerate() {
        let Some(temperature) = fields::temperature("temperature", probe.get("Temperature"), unit)?
        else {
            continue;
        };
        let (id, fallback) = if several {
            let fallback = if i == 0 {
                Some(sensor_id(&device)?)
            } else {
                None
            };
            (sensor_id(&format!("{device}/{name}"))?, fallback)
        } else {
            (sensor_id(&device)?, None)
        };
        let mut extra = Vec::new();
        for (k, v) in probe {
            if k != "Temperature" && k != "Humidity" {
                fields::push_extra(&mut extra, k, v);
            }
        }
        readings.push(Reading {
            sensor_id: id,
            fallback_sensor_id: fallback,
            temperature: Some(temperature),
            door_open: if several { None } else { door },
            humidity: ranged("humidity", probe.get("Humidity"), fields::HUMIDITY)?,
            battery: None,
            signal_strength: None,
            recorded_at: received_at,
            extra,
            source: Format::Tasmota,
        });
    }
    // The device's door: on its own when the probes report under ids of their own (or none
    // reported this time).
    if let (Some(open), true) = (door, several || readings.is_empty()) {
        readings.push(door_reading(&device, open, received_at)?);
    }
    if readings.is_empty() {
        return Ok(Decoded::Ignored("every probe reported null"));
    }
    Ok(Decoded::Readings(readings))
}

fn lwt(opts: &Options, topic: &str, payload: &[u8]) -> Result<Decoded, DecodeError> {
    let text = String::from_utf8_lossy(payload);
    let online = fields::online_word(&text).ok_or_else(|| {
        DecodeError::Malformed(format!(
            "LWT payload {} is neither Online nor Offline",
            fields::short(&Value::String(text.into_owned()))
        ))
    })?;
    Ok(Decoded::Availability {
        sensor_id: sensor_id(&device_id(opts, topic)?)?,
        online,
    })
}

/// The device's topic: the template's, or every level between the prefix and the last.
fn device_id(opts: &Options, topic: &str) -> Result<String, DecodeError> {
    if let Some(t) = &opts.sensor_id {
        return t.render(topic);
    }
    topic
        .split_once('/')
        .and_then(|(_, rest)| rest.rsplit_once('/'))
        .map(|(device, _)| device)
        .filter(|d| !d.split('/').any(str::is_empty))
        .map(str::to_owned)
        .ok_or(DecodeError::NoSensorId(
            "topic is not <prefix>/<topic>/SENSOR",
        ))
}
