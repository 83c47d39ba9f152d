//! Payload decoders: bytes from one MQTT topic in, zero or more readings out. A reading carries
//! a temperature, a door state, or both: a door contact alone (no temperature) is a reading
//! too, which the pipeline turns into door events rather than a `sensor:reading`. Every decoder is a
//! function of (subscription options, topic, payload, receive time) so that it can be tested
//! against real fixtures and fuzzed without a broker; the one exception, Shelly's partial
//! status, reads and updates a bounded [`DecodeState`] passed in by the caller. A payload is
//! either decoded, ignored (not a reading) or rejected with a [`DecodeError`] whose
//! [`reason`](DecodeError::reason) is a stable label for metrics. docs/decoders.md describes
//! each format for installers.
//!
//! Limits, applied before any work a hostile payload could inflate: the payload size (the
//! caller's `max_bytes`), JSON nesting ([`MAX_DEPTH`], checked by a flat scan before parsing),
//! sensor ids (128 bytes of printable text, `registry::normalize_sensor_id`), and extra
//! measurements ([`MAX_EXTRA`], names of at most 64 bytes).

mod fields;
mod json;
mod options;
mod shelly;
mod state;
mod subscription;
mod tasmota;
mod ttn;
mod value;
mod zigbee2mqtt;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::core::ids::{normalize_sensor_id, SensorIdError};

pub use crate::core::reading::Extra;
pub use fields::{fahrenheit_to_celsius, parse_timestamp};
pub use options::{
    BatteryCurve, FieldPath, JsonFields, Metric, Options, SwitchOn, TempUnit, TopicTemplate,
};
pub use state::{DecodeState, MAX_DEVICES};
pub use subscription::{match_filter, validate_topic_filter, Subscription, MAX_TOPIC_BYTES};

/// Payload formats a subscription can name (`format = "..."`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
pub enum Format {
    #[serde(rename = "json")]
    Json,
    #[serde(rename = "ttn-v3")]
    TtnV3,
    #[serde(rename = "tasmota")]
    Tasmota,
    #[serde(rename = "zigbee2mqtt")]
    Zigbee2Mqtt,
    #[serde(rename = "shelly-gen2")]
    ShellyGen2,
    #[serde(rename = "value")]
    Value,
}

impl Format {
    /// The name used in config and in `sensor:reading.source`.
    pub fn name(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::TtnV3 => "ttn-v3",
            Format::Tasmota => "tasmota",
            Format::Zigbee2Mqtt => "zigbee2mqtt",
            Format::ShellyGen2 => "shelly-gen2",
            Format::Value => "value",
        }
    }

    /// Every format, in the order the docs list them.
    pub const ALL: [Format; 6] = [
        Format::TtnV3,
        Format::Tasmota,
        Format::Zigbee2Mqtt,
        Format::ShellyGen2,
        Format::Value,
        Format::Json,
    ];
}

impl std::str::FromStr for Format {
    type Err = String;
    /// The config name (`"ttn-v3"`) back to the format.
    fn from_str(s: &str) -> Result<Self, String> {
        Format::ALL
            .into_iter()
            .find(|f| f.name() == s)
            .ok_or_else(|| format!("unknown format {s:?}"))
    }
}

/// One decoded measurement, before it is mapped to a unit. A decoder never returns one with
/// neither a temperature nor a door state (that is `no_temperature`, or not a reading at all).
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    /// The device id as the decoder reports it (normalised hex for hex device ids).
    pub sensor_id: String,
    /// A second id to route by when `sensor_id` is not registered: a Tasmota device with several
    /// probes names each reading `<topic>/<probe>`, and its first probe also answers to `<topic>`.
    pub fallback_sensor_id: Option<String>,
    /// °C, as the sensor gave it (converted only when the sensor reports °F); `None` for a door
    /// contact that measures no temperature.
    pub temperature: Option<f64>,
    /// `Some(true)`: the sensor's door (or window) is open; `None`: the message says nothing
    /// about a door.
    pub door_open: Option<bool>,
    pub humidity: Option<f64>,
    /// Percent.
    pub battery: Option<f64>,
    /// dBm (RSSI) or a link-quality figure, as the format provides.
    pub signal_strength: Option<f64>,
    /// When the sensor measured it; when the payload does not say, exactly the `received_at`
    /// the decoder was given (the pipeline tells a payload's own time by that).
    pub recorded_at: DateTime<Utc>,
    pub source: Format,
    /// Other numeric measurements (CO2, pressure, power; a door field as published, too),
    /// bounded by [`MAX_EXTRA`].
    pub extra: Extra,
}

impl Reading {
    /// A reading of `sensor_id` that carries nothing yet: decoders fill in what they found.
    pub fn new(sensor_id: String, source: Format, recorded_at: DateTime<Utc>) -> Reading {
        Reading {
            sensor_id,
            fallback_sensor_id: None,
            temperature: None,
            door_open: None,
            humidity: None,
            battery: None,
            signal_strength: None,
            recorded_at,
            source,
            extra: Vec::new(),
        }
    }
}

/// At most this many extra measurements are kept per reading (the rest are not emitted).
pub const MAX_EXTRA: usize = 16;

/// Deepest `[`/`{` nesting accepted in a JSON payload (real sensors stay under 6).
pub const MAX_DEPTH: usize = 32;

/// What a message decoded to.
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded {
    Readings(Vec<Reading>),
    /// A message on a subscribed topic that is not a reading (a join, a downlink event).
    Ignored(&'static str),
    /// The device says it went online or offline (Tasmota LWT, Zigbee2MQTT availability).
    Availability {
        sensor_id: String,
        online: bool,
    },
}

/// Why a payload was rejected. `Display` is the message for logs; `reason()` the metric label.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    #[error("payload of {size} bytes is over the {limit}-byte limit")]
    TooLarge { size: usize, limit: usize },
    #[error("payload is not valid json: {0}")]
    NotJson(String),
    #[error("json nesting deeper than {limit} levels")]
    TooDeep { limit: usize },
    #[error("payload has no temperature")]
    NoTemperature,
    #[error("{field}: not a number ({value})")]
    NotANumber { field: &'static str, value: String },
    #[error("{field}: {value} is not a door state (open or closed)")]
    NotADoorState { field: &'static str, value: String },
    // `{value:?}` switches to exponent form for tiny and huge values, so the message stays short.
    #[error("{field}: {value:?} is outside the physical range {min}..={max}")]
    OutOfRange {
        field: &'static str,
        value: f64,
        min: f64,
        max: f64,
    },
    #[error("timestamp {0:?} is neither epoch seconds, epoch milliseconds nor RFC 3339")]
    BadTimestamp(String),
    #[error("no sensor id: {0}")]
    NoSensorId(&'static str),
    #[error("{0}")]
    BadSensorId(SensorIdError),
    #[error("no uplink_message.decoded_payload: the application has no payload formatter")]
    NoDecodedPayload,
    #[error("{0}")]
    Malformed(String),
}

impl DecodeError {
    /// A stable, low-cardinality label for counters.
    pub fn reason(&self) -> &'static str {
        match self {
            DecodeError::TooLarge { .. } => "too_large",
            DecodeError::NotJson(_) => "not_json",
            DecodeError::TooDeep { .. } => "too_deep",
            DecodeError::NoTemperature => "no_temperature",
            DecodeError::NotANumber { .. } => "not_a_number",
            DecodeError::NotADoorState { .. } => "not_a_door_state",
            DecodeError::OutOfRange { .. } => "out_of_range",
            DecodeError::BadTimestamp(_) => "bad_timestamp",
            DecodeError::NoSensorId(_) => "no_sensor_id",
            DecodeError::BadSensorId(_) => "bad_sensor_id",
            DecodeError::NoDecodedPayload => "no_decoded_payload",
            DecodeError::Malformed(_) => "malformed",
        }
    }
}

/// One MQTT message as the decoders see it: where it came from, its bytes, and when it arrived
/// (the reading's time unless the payload carries its own).
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    pub topic: &'a str,
    pub payload: &'a [u8],
    pub received_at: DateTime<Utc>,
}

/// Decodes one MQTT message. `max_bytes` caps the payload before any parsing; `state` is the
/// subscription's decoder memory (only Shelly Gen2 uses it). An empty payload is how MQTT clears
/// a retained message, never a reading, so it is ignored for every format.
pub fn decode(
    sub: &Subscription,
    state: &mut DecodeState,
    msg: Message,
    max_bytes: usize,
) -> Result<Decoded, DecodeError> {
    decode_with(sub.format, &sub.decoder, state, msg, max_bytes)
}

/// [`decode`] from a format and its options, for callers without a `Subscription`.
pub fn decode_with(
    format: Format,
    options: &Options,
    state: &mut DecodeState,
    msg: Message,
    max_bytes: usize,
) -> Result<Decoded, DecodeError> {
    let size = msg.payload.len();
    if size > max_bytes {
        return Err(DecodeError::TooLarge {
            size,
            limit: max_bytes,
        });
    }
    if size == 0 {
        return Ok(Decoded::Ignored(
            "empty payload (a retained message cleared)",
        ));
    }
    match format {
        Format::Json => json::decode(options, msg),
        Format::TtnV3 => ttn::decode(options, msg),
        Format::Tasmota => tasmota::decode(options, msg),
        Format::Zigbee2Mqtt => zigbee2mqtt::decode(options, msg),
        Format::ShellyGen2 => shelly::decode(state, msg),
        Format::Value => value::decode(options, msg),
    }
}

/// Normalises and checks a decoded sensor id.
fn sensor_id(raw: &str) -> Result<String, DecodeError> {
    normalize_sensor_id(raw).map_err(DecodeError::BadSensorId)
}

#[cfg(test)]
mod door_tests;
#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
