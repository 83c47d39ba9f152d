//! The generic `json` format: an object with `temperature`, `humidity`, `battery`,
//! `signalStrength` (or `rssi`) and a timestamp under `ts`, `timestamp` or `time`, unless the
//! subscription's `fields` point elsewhere (`data.temp`). Numbers may be quoted. Temperatures are
//! in the subscription's `unit`. The sensor id comes from a payload field (`sensor_id_field`) or
//! the topic (`sensor_id` template; default: the last level). Other top-level numbers and
//! booleans are kept in `extra`.
//!
//! A door state comes from `fields.door`, else a top-level `door` (`true`, `1`, `"open"`:
//! open). A message with a door state and no temperature is a door contact's reading. The
//! default `door` key is taken only when it holds a door state (an older publisher may use the
//! name for something else); a configured path that holds anything else rejects the message.
//! `door` stays in `extra` as well, as it always was.

use serde_json::Value;

use super::fields::{self, ranged};
use super::options::{FieldPath, Options};
use super::{sensor_id, DecodeError, Decoded, Format, Message, Reading};

const TIMESTAMP_KEYS: [&str; 3] = ["ts", "timestamp", "time"];
const SIGNAL_KEYS: [&str; 2] = ["signalStrength", "rssi"];

pub fn decode(opts: &Options, msg: Message) -> Result<Decoded, DecodeError> {
    let (topic, payload, received_at) = (msg.topic, msg.payload, msg.received_at);
    let root = fields::json_value(payload)?;
    let Value::Object(obj) = &root else {
        return Err(DecodeError::NotJson(format!(
            "expected a json object, got {}",
            fields::short(&root)
        )));
    };
    let f = &opts.fields;
    // A configured path, or the default top-level key(s).
    let pick = |path: &Option<FieldPath>, keys: &[&str]| match path {
        Some(p) => p.get(&root),
        None => keys.iter().find_map(|k| obj.get(*k)),
    };
    let sensor = match &opts.sensor_id_field {
        Some(path) => match path.get(&root) {
            Some(Value::String(s)) => sensor_id(s)?,
            Some(Value::Number(n)) => sensor_id(&n.to_string())?,
            _ => return Err(DecodeError::NoSensorId("payload field missing")),
        },
        None => match &opts.sensor_id {
            Some(t) => sensor_id(&t.render(topic)?)?,
            None => sensor_id(last_level(topic)?)?,
        },
    };
    let temperature = fields::temperature(
        "temperature",
        pick(&f.temperature, &["temperature"]),
        opts.unit,
    )?;
    let door_open = match &f.door {
        Some(path) => fields::door_state("door", path.get(&root), false)?,
        None => fields::door_state("door", obj.get("door"), false).unwrap_or(None),
    };
    if temperature.is_none() && door_open.is_none() {
        return Err(DecodeError::NoTemperature);
    }
    let recorded_at = match pick(&f.timestamp, &TIMESTAMP_KEYS) {
        Some(v) => fields::parse_timestamp(v)?,
        None => received_at,
    };
    let humidity = ranged(
        "humidity",
        pick(&f.humidity, &["humidity"]),
        fields::HUMIDITY,
    )?;
    let battery = ranged("battery", pick(&f.battery, &["battery"]), fields::BATTERY)?;
    let signal_strength = ranged(
        "signalStrength",
        pick(&f.signal_strength, &SIGNAL_KEYS),
        fields::SIGNAL,
    )?;

    // Everything the reading already uses (by its top-level key) stays out of `extra`.
    let used = |key: &str| {
        let by_path = |p: &Option<FieldPath>, defaults: &[&str]| match p {
            Some(p) => p.first() == key,
            None => defaults.contains(&key),
        };
        by_path(&f.temperature, &["temperature"])
            || by_path(&f.humidity, &["humidity"])
            || by_path(&f.battery, &["battery"])
            || by_path(&f.signal_strength, &SIGNAL_KEYS)
            || by_path(&f.timestamp, &TIMESTAMP_KEYS)
            || opts
                .sensor_id_field
                .as_ref()
                .is_some_and(|p| p.first() == key)
    };
    let mut extra = Vec::new();
    for (k, v) in obj.iter().filter(|(k, _)| !used(k)) {
        fields::push_extra(&mut extra, k, v);
    }
    Ok(Decoded::Readings(vec![Reading {
        temperature,
        door_open,
        humidity,
        battery,
        signal_strength,
        extra,
        ..Reading::new(sensor, Format::Json, recorded_at)
    }]))
}

/// The last topic level, which must not be empty.
fn last_level(topic: &str) -> Result<&str, DecodeError> {
    topic
        .rsplit('/')
        .next()
        .filter(|s| !s.is_empty())
        .ok_or(DecodeError::NoSensorId("topic has no such level"))
}
