//! Zigbee2MQTT: `<base_topic>/<friendly name>` carries a device's state as one JSON object; the
//! friendly name may itself contain `/`, so the sensor id is everything after the base topic
//! (`zigbee2mqtt` unless the subscription sets `base_topic`, as Zigbee2MQTT's own setting does).
//!
//! `temperature`, `humidity`, `battery` and `linkquality` (as the signal) fill the reading, and
//! `contact` its door state (`false` is an open door: the magnet has left the reed); every
//! other number or boolean (`pressure`, `voltage`, `co2`, `contact` as 1/0...) goes to `extra`.
//! A door contact's state (no temperature) is a reading with only the door.
//! `<name>/availability` (`online`/`offline`, or `{"state": "online"}`) is the device's
//! availability. `bridge/...`, `<name>/set[/...]` and `<name>/get[/...]` are not readings, and
//! neither is the state of a device with neither a temperature nor a contact (a plug, a light):
//! those are ignored rather than rejected, since one subscription carries the whole network.

use serde_json::Value;

use super::fields::{self, ranged};
use super::options::Options;
use super::{sensor_id, DecodeError, Decoded, Format, Message, Reading};

const DEFAULT_BASE: &str = "zigbee2mqtt";
const USED: [&str; 4] = ["temperature", "humidity", "battery", "linkquality"];

pub fn decode(opts: &Options, msg: Message) -> Result<Decoded, DecodeError> {
    let (topic, payload, received_at) = (msg.topic, msg.payload, msg.received_at);
    let base = opts.base_topic.as_deref().unwrap_or(DEFAULT_BASE);
    let name = topic
        .strip_prefix(base)
        .and_then(|rest| rest.strip_prefix('/'))
        .ok_or(DecodeError::NoSensorId("topic is not under the base topic"))?;
    if name == "bridge" || name.starts_with("bridge/") {
        return Ok(Decoded::Ignored("zigbee2mqtt bridge message"));
    }
    let mut levels = name.rsplit('/');
    let last = levels.next().unwrap_or_default();
    let before_last = levels.next();
    if matches!(last, "set" | "get") || matches!(before_last, Some("set" | "get")) {
        return Ok(Decoded::Ignored("zigbee2mqtt command"));
    }
    if let Some(device) = name.strip_suffix("/availability") {
        return availability(device, payload);
    }

    let obj = fields::json_object(payload)?;
    let temperature =
        fields::temperature("temperature", obj.get("temperature"), Default::default())?;
    let door_open = fields::door_state("contact", obj.get("contact"), true)?;
    if temperature.is_none() && door_open.is_none() {
        return Ok(Decoded::Ignored(
            "device state without a temperature or a contact",
        ));
    }
    let mut extra = Vec::new();
    for (k, v) in obj.iter().filter(|(k, _)| !USED.contains(&k.as_str())) {
        fields::push_extra(&mut extra, k, v);
    }
    Ok(Decoded::Readings(vec![Reading {
        sensor_id: sensor_id(name)?,
        fallback_sensor_id: None,
        temperature,
        door_open,
        humidity: ranged("humidity", obj.get("humidity"), fields::HUMIDITY)?,
        battery: ranged("battery", obj.get("battery"), fields::BATTERY)?,
        signal_strength: ranged("linkquality", obj.get("linkquality"), fields::SIGNAL)?,
        recorded_at: received_at,
        extra,
        source: Format::Zigbee2Mqtt,
    }]))
}

/// `online`/`offline` as text (Zigbee2MQTT before 2.0 and its legacy setting) or
/// `{"state": "online"}`.
fn availability(device: &str, payload: &[u8]) -> Result<Decoded, DecodeError> {
    let text = String::from_utf8_lossy(payload);
    let online = match fields::online_word(&text) {
        Some(online) => Some(online),
        None => match fields::json_value(payload) {
            Ok(Value::Object(m)) => match m.get("state") {
                Some(Value::String(s)) => fields::online_word(s),
                _ => None,
            },
            _ => None,
        },
    };
    let online = online.ok_or_else(|| {
        DecodeError::Malformed(format!(
            "availability payload {} is neither online nor offline",
            fields::short(&Value::String(text.into_owned()))
        ))
    })?;
    Ok(Decoded::Availability {
        sensor_id: sensor_id(device)?,
        online,
    })
}
