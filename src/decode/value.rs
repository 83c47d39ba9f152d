//! The `value` format: the payload is one number as text (`21.50`, blanks and surrounding quotes
//! allowed), the way Home Assistant, Node-RED, ESPHome and Zigbee2MQTT's attribute output
//! publish a single measurement per topic. The subscription says which quantity it is
//! (`metric`, only `temperature` for now since a reading needs one) and its `unit`. The sensor id
//! is the whole topic unless a `sensor_id` template picks levels; `recorded_at` is the receive
//! time.

use serde_json::Value;

use super::fields;
use super::options::{Metric, Options};
use super::{sensor_id, DecodeError, Decoded, Format, Message, Reading};

/// A number is never longer than this; longer text is not parsed at all.
const MAX_NUMBER_TEXT: usize = 64;

pub fn decode(opts: &Options, msg: Message) -> Result<Decoded, DecodeError> {
    let (topic, payload, received_at) = (msg.topic, msg.payload, msg.received_at);
    let raw = parse_number(payload)?;
    if opts.metric != Metric::Temperature {
        // Config loading refuses this; a reading cannot be made of a humidity alone.
        return Err(DecodeError::NoTemperature);
    }
    let temperature = fields::check_temperature(fields::to_celsius(raw, opts.unit))?;
    let sensor = match &opts.sensor_id {
        Some(t) => sensor_id(&t.render(topic)?)?,
        None => sensor_id(topic)?,
    };
    Ok(Decoded::Readings(vec![Reading {
        sensor_id: sensor,
        fallback_sensor_id: None,
        temperature: Some(temperature),
        door_open: None,
        humidity: None,
        battery: None,
        signal_strength: None,
        recorded_at: received_at,
        extra: Vec::new(),
        source: Format::Value,
    }]))
}

/// The payload as a finite number.
fn parse_number(payload: &[u8]) -> Result<f64, DecodeError> {
    let bad = |shown: String| DecodeError::NotANumber {
        field: "value",
        value: shown,
    };
    if payload.len() > MAX_NUMBER_TEXT {
        return Err(bad(format!("{} bytes of text", payload.len())));
    }
    let text = std::str::from_utf8(payload).map_err(|_| bad("bytes that are not text".into()))?;
    let t = text.trim();
    let t = t
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(t)
        .trim();
    match t.parse::<f64>() {
        Ok(n) if n.is_finite() => Ok(n),
        // Through `short`: escaping control characters could make 64 bytes 500.
        _ => Err(bad(fields::short(&Value::String(text.into())))),
    }
}
