//! One `[[mqtt.subscriptions]]` entry: a topic filter, its QoS, and how to decode what arrives
//! on it. The decoder options are checked against the format while parsing, so an option the
//! format does not use is an error naming it rather than something silently ignored
//! (docs/decoders.md lists them per format). Pure data: the decoders' memory between messages
//! ([`DecodeState`](super::DecodeState)) belongs to whoever decodes (the pipeline).

use serde::Deserialize;

use super::{
    BatteryCurve, FieldPath, Format, JsonFields, Metric, Options, SwitchOn, TempUnit, TopicTemplate,
};

/// One MQTT subscription and how to decode what arrives on it. The decoder options are checked
/// against the format while parsing, so an option the format does not use is an error naming
/// it rather than something silently ignored (docs/decoders.md lists them per format).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "SubscriptionFile")]
pub struct Subscription {
    pub topic: String,
    pub format: Format,
    pub qos: u8,
    /// How the decoder reads this subscription's payloads.
    pub decoder: Options,
}

impl Subscription {
    /// A subscription with its format's defaults (tests, benches, fuzzers).
    pub fn new(topic: impl Into<String>, format: Format) -> Self {
        Subscription {
            topic: topic.into(),
            format,
            qos: default_qos(),
            decoder: Options::default(),
        }
    }
}

/// A `[[mqtt.subscriptions]]` table as written; [`Subscription`] is it checked.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SubscriptionFile {
    topic: String,
    format: Format,
    #[serde(default = "default_qos")]
    qos: u8,
    /// Sensor id from topic levels: `"{3}"`, `"{-1}"`, `"{1..}"` (json, value, tasmota).
    sensor_id: Option<TopicTemplate>,
    /// json: a payload field (dotted path) holding the sensor id.
    sensor_id_field: Option<FieldPath>,
    /// json: dotted paths to the values; ttn-v3: `door` only (inside decoded_payload).
    fields: Option<JsonFields>,
    /// json, value: "C" (default) or "F".
    unit: Option<TempUnit>,
    /// value: the quantity the number is.
    metric: Option<Metric>,
    /// ttn-v3: battery `[[volts, percent], ...]`.
    battery_curve: Option<BatteryCurve>,
    /// zigbee2mqtt: Zigbee2MQTT's `base_topic` (default "zigbee2mqtt").
    base_topic: Option<String>,
    /// tasmota: what `Switch1` `ON` means, "open" (default) or "closed".
    switch_on: Option<SwitchOn>,
}

impl TryFrom<SubscriptionFile> for Subscription {
    type Error = String;

    fn try_from(f: SubscriptionFile) -> Result<Self, String> {
        use Format::*;
        let format = f.format;
        let only = |key: &str, set: bool, formats: &[Format]| {
            if !set || formats.contains(&format) {
                return Ok(());
            }
            let names: Vec<&str> = formats.iter().map(|f| f.name()).collect();
            Err(format!(
                "{key} does not apply to format \"{}\" (only to {})",
                format.name(),
                names.join(", ")
            ))
        };
        only("sensor_id", f.sensor_id.is_some(), &[Json, Value, Tasmota])?;
        only("sensor_id_field", f.sensor_id_field.is_some(), &[Json])?;
        only("fields", f.fields.is_some(), &[Json, TtnV3])?;
        if let (TtnV3, Some(fields)) = (format, &f.fields) {
            let door_only = JsonFields {
                door: fields.door.clone(),
                ..JsonFields::default()
            };
            if *fields != door_only {
                return Err(
                    "fields: format \"ttn-v3\" takes only fields.door (a path inside decoded_payload)"
                        .into(),
                );
            }
        }
        only("switch_on", f.switch_on.is_some(), &[Tasmota])?;
        only("unit", f.unit.is_some(), &[Json, Value])?;
        only("metric", f.metric.is_some(), &[Value])?;
        only("battery_curve", f.battery_curve.is_some(), &[TtnV3])?;
        only("base_topic", f.base_topic.is_some(), &[Zigbee2Mqtt])?;
        if f.sensor_id.is_some() && f.sensor_id_field.is_some() {
            return Err(
                "set sensor_id (from the topic) or sensor_id_field (from the payload), not both"
                    .into(),
            );
        }
        let metric = f.metric.unwrap_or_default();
        if metric != Metric::Temperature {
            return Err("metric: only \"temperature\" is supported for now; every reading needs a temperature, so a value subscription cannot carry a humidity or battery level alone".into());
        }
        if let Some(base) = &f.base_topic {
            if base.is_empty() || base.ends_with('/') || base.contains(['+', '#']) {
                return Err(format!(
                    "base_topic {base:?} must be a topic without wildcards or a trailing '/'"
                ));
            }
        }
        Ok(Subscription {
            topic: f.topic,
            format,
            qos: f.qos,
            decoder: Options {
                sensor_id: f.sensor_id,
                sensor_id_field: f.sensor_id_field,
                fields: f.fields.unwrap_or_default(),
                unit: f.unit.unwrap_or_default(),
                metric,
                battery_curve: f.battery_curve,
                base_topic: f.base_topic,
                switch_on: f.switch_on.unwrap_or_default(),
            },
        })
    }
}

fn default_qos() -> u8 {
    1
}

/// Longest topic a reading may come on, bytes. MQTT allows 65,535; real sensor topics stay
/// under 200 (a TTN uplink topic with 36-character ids is about 110), so 512 leaves room and
/// bounds what one message can make the service remember or log. Longer topics are rejected
/// (`topic_too_long`) before any decoding; a subscription filter longer than this could never
/// deliver a topic the service takes, so it is a config error.
pub const MAX_TOPIC_BYTES: usize = 512;

/// The filter the broker matches topics against: `topic` without a `$share/<group>/` prefix
/// (a shared subscription delivers plain topics). Empty for a `$share/<group>` without a
/// filter, which [`validate_topic_filter`] refuses.
pub fn match_filter(topic: &str) -> &str {
    match topic.strip_prefix("$share/") {
        Some(rest) => rest.split_once('/').map_or("", |(_, filter)| filter),
        None => topic,
    }
}

/// A subscription's topic: an MQTT filter (rumqttc's `valid_filter`: `#` only as the whole
/// last level, `+` a whole level), optionally shared as `$share/<group>/<filter>` (syntax
/// only: the `[mqtt]` section refuses shared subscriptions; cluster mode does not use them).
pub fn validate_topic_filter(topic: &str) -> Result<(), String> {
    if let Some(c) = topic.chars().find(|c| c.is_control()) {
        return Err(format!(
            "{topic:?} contains the control character {c:?}: MQTT topics may not hold U+0000, \
             and a broker would refuse or mangle the others"
        ));
    }
    if let Some(rest) = topic.strip_prefix("$share/") {
        let Some((group, _)) = rest.split_once('/') else {
            return Err(format!(
                "{topic:?} has no filter: write \"$share/<group>/<filter>\""
            ));
        };
        if group.is_empty() || group.contains(['+', '#']) {
            return Err("the $share group must be a name without '+' or '#'".into());
        }
    }
    let filter = match_filter(topic);
    if filter.is_empty() {
        return Err("must not be empty".into());
    }
    if filter.len() > MAX_TOPIC_BYTES {
        return Err(format!(
            "{} bytes is over the {MAX_TOPIC_BYTES}-byte topic limit",
            filter.len()
        ));
    }
    if filter.starts_with('$') {
        // rumqttc's `matches`, like a broker's wildcards, never matches a `$` topic.
        return Err(format!(
            "{filter:?}: topics starting with '$' are the broker's own ($SYS), not readings; \
             only \"$share/<group>/<filter>\" may start with '$'"
        ));
    }
    if !rumqttc::valid_filter(filter) {
        return Err(format!(
            "{filter:?} is not an MQTT topic filter: '+' must be a whole level, '#' only the \
             whole last level"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{match_filter, validate_topic_filter};

    #[test]
    fn filters_are_checked_like_a_broker_and_share_needs_a_filter() {
        for ok in [
            "sensors/+",
            "v3/+/devices/+/up",
            "#",
            "a/b/#",
            "$share/g/sensors/#",
        ] {
            assert_eq!(validate_topic_filter(ok), Ok(()), "{ok}");
        }
        for (bad, why) in [
            ("", "empty"),
            ("sensors/#/x", "'#' only"),
            ("sensors/a#", "'#' only"),
            ("sensors/a+", "'+' must be"),
            ("$share/g", "has no filter"),
            ("$share/g/", "empty"),
            ("$share//sensors/+", "group"),
            ("$share/g+/sensors/+", "group"),
            ("$share/g/sensors/#/x", "'#' only"),
            ("$SYS/broker/#", "broker's own"),
            ("$share/g/$SYS/#", "broker's own"),
            ("$share", "broker's own"),
            (&"a/".repeat(257), "topic limit"),
        ] {
            let err = validate_topic_filter(bad).expect_err(bad);
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn the_share_prefix_is_not_part_of_the_filter() {
        assert_eq!(match_filter("$share/g/sensors/+"), "sensors/+");
        assert_eq!(match_filter("sensors/+"), "sensors/+");
        assert_eq!(match_filter("$share/g"), "");
    }
}
