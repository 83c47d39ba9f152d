//! Edge cases of each decoder, the limits, and the subscription options. The shared fixtures
//! are checked by tests/decoder_fixtures.rs; random input by `proptests`.
//!
//! Over 400 lines: Real payloads of every format with their expected readings: a table of cases,
//! not logic.

use chrono::{DateTime, TimeZone, Utc};

use super::*;
use std::cell::{RefCell, RefMut};

/// A subscription with its own decoder memory, as the pipeline keeps one per subscription.
pub(super) struct Sub {
    sub: Subscription,
    state: RefCell<DecodeState>,
}

impl Sub {
    pub(super) fn new(topic: &str, format: Format) -> Sub {
        Sub::from(Subscription::new(topic, format))
    }

    fn decode_state(&self) -> RefMut<'_, DecodeState> {
        self.state.borrow_mut()
    }
}

impl From<Subscription> for Sub {
    fn from(sub: Subscription) -> Sub {
        Sub {
            sub,
            state: RefCell::default(),
        }
    }
}

impl std::ops::Deref for Sub {
    type Target = Subscription;
    fn deref(&self) -> &Subscription {
        &self.sub
    }
}

const MAX: usize = 64 * 1024;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap()
}

/// A subscription parsed from the body of a `[[mqtt.subscriptions]]` table.
pub(super) fn sub(table: &str) -> Sub {
    Sub::from(toml::from_str::<Subscription>(table).unwrap_or_else(|e| panic!("{table}: {e}")))
}

pub(super) fn sub_err(table: &str) -> String {
    match toml::from_str::<Subscription>(table) {
        Ok(s) => panic!("{table} was accepted: {s:?}"),
        Err(e) => e.to_string(),
    }
}

pub(super) fn run(s: &Sub, topic: &str, payload: &str) -> Result<Decoded, DecodeError> {
    run_bytes(s, topic, payload.as_bytes())
}

fn run_bytes(s: &Sub, topic: &str, payload: &[u8]) -> Result<Decoded, DecodeError> {
    let msg = Message {
        topic,
        payload,
        received_at: now(),
    };
    decode(s, &mut s.decode_state(), msg, MAX)
}

pub(super) fn one(s: &Sub, topic: &str, payload: &str) -> Reading {
    match run(s, topic, payload) {
        Ok(Decoded::Readings(mut r)) if r.len() == 1 => r.remove(0),
        other => panic!("{topic} {payload}: expected one reading, got {other:?}"),
    }
}

pub(super) fn readings(s: &Sub, topic: &str, payload: &str) -> Vec<Reading> {
    match run(s, topic, payload) {
        Ok(Decoded::Readings(r)) => r,
        other => panic!("{topic} {payload}: expected readings, got {other:?}"),
    }
}

pub(super) fn ignored(s: &Sub, topic: &str, payload: &str) -> &'static str {
    match run(s, topic, payload) {
        Ok(Decoded::Ignored(why)) => why,
        other => panic!("{topic} {payload}: expected ignored, got {other:?}"),
    }
}

pub(super) fn reason(s: &Sub, topic: &str, payload: &str) -> &'static str {
    match run(s, topic, payload) {
        Err(e) => e.reason(),
        other => panic!("{topic} {payload}: expected an error, got {other:?}"),
    }
}

fn availability(s: &Sub, topic: &str, payload: &str) -> (String, bool) {
    match run(s, topic, payload) {
        Ok(Decoded::Availability { sensor_id, online }) => (sensor_id, online),
        other => panic!("{topic} {payload}: expected availability, got {other:?}"),
    }
}

fn extra(r: &Reading, name: &str) -> Option<f64> {
    r.extra.iter().find(|(k, _)| k == name).map(|(_, v)| *v)
}

// ---- limits, shared by every format ----

#[test]
fn limits_apply_to_every_format_before_parsing() {
    for format in Format::ALL {
        let s = Sub::new("#", format);
        let deep = format!("{}{}", "[".repeat(33), "]".repeat(33));
        let big = vec![b' '; MAX + 1];
        let err = run_bytes(&s, "a/b", &big).unwrap_err();
        assert_eq!(err.reason(), "too_large", "{format:?}");
        assert!(
            matches!(run(&s, "a/b", ""), Ok(Decoded::Ignored(_))),
            "{format:?}: an empty payload clears a retained message"
        );
        // Deep nesting never reaches a recursive parser (and never a stack overflow).
        let deeper = "[".repeat(100_000);
        let _ = run(&s, "tele/x/SENSOR", &deeper);
        let _ = run(&s, "zigbee2mqtt/x", &deep);
    }
}

#[test]
fn nesting_is_capped_outside_strings_only() {
    assert_eq!(fields::check_depth(b"[[[[]]]]"), Ok(()));
    let at_limit = format!(
        "{}{}",
        "{\"a\":".repeat(MAX_DEPTH),
        "1".to_owned() + &"}".repeat(MAX_DEPTH)
    );
    assert_eq!(fields::check_depth(at_limit.as_bytes()), Ok(()));
    let over = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
    assert_eq!(
        fields::check_depth(over.as_bytes()),
        Err(DecodeError::TooDeep { limit: MAX_DEPTH })
    );
    let in_string = format!("{{\"k\":\"{}\\\"{}\"}}", "[".repeat(100), "{".repeat(100));
    assert_eq!(fields::check_depth(in_string.as_bytes()), Ok(()));
    let s = Sub::new("sensors/+", Format::Json);
    assert_eq!(reason(&s, "sensors/a", &over), "too_deep");
}

#[test]
fn every_rejection_has_a_stable_reason() {
    let s = Sub::new("#", Format::Json);
    assert_eq!(reason(&s, "s/a", "{\"temperature\": 4."), "not_json");
    assert_eq!(reason(&s, "s/a", "[1]"), "not_json");
    assert_eq!(reason(&s, "s/a", "{\"humidity\": 4}"), "no_temperature");
    assert_eq!(
        reason(&s, "s/a", "{\"temperature\": \"warm\"}"),
        "not_a_number"
    );
    assert_eq!(reason(&s, "s/a", "{\"temperature\": -127}"), "out_of_range");
    assert_eq!(
        reason(&s, "s/a", "{\"temperature\": 1, \"ts\": \"x\"}"),
        "bad_timestamp"
    );
    assert_eq!(reason(&s, "s/", "{\"temperature\": 1}"), "no_sensor_id");
    let long = "x".repeat(200);
    assert_eq!(
        reason(&s, &format!("s/{long}"), "{\"temperature\": 1}"),
        "bad_sensor_id"
    );
    assert_eq!(
        reason(&s, "s/a\u{7}", "{\"temperature\": 1}"),
        "bad_sensor_id"
    );
}

/// Found by `proptests::shelly_sequences`: a subnormal out-of-range value printed 240 digits.
#[test]
fn regression_out_of_range_messages_stay_short() {
    let s = Sub::new("#", Format::Json);
    let err = run(
        &s,
        "s/a",
        r#"{"temperature": 1, "battery": -7.5352035652436006e-239}"#,
    )
    .unwrap_err();
    assert_eq!(err.reason(), "out_of_range");
    assert!(err.to_string().len() < 80, "{err}");
}

#[test]
fn parser_messages_never_quote_a_whole_payload() {
    let s = Sub::new("#", Format::TtnV3);
    let long = "x".repeat(10_000);
    let payload = format!(r#"{{"uplink_message": {{"rx_metadata": [{{"rssi": "{long}"}}]}}}}"#);
    let err = run(&s, "v3/a/devices/d/up", &payload).unwrap_err();
    assert_eq!(err.reason(), "malformed");
    assert!(err.to_string().len() < 200, "{err}");
}

/// Found by `cargo fuzz run value` (kept in fuzz/regressions/value): 64 bytes of control
/// characters grew eightfold when escaped into the message.
#[test]
fn regression_escaped_value_text_stays_short() {
    let s = Sub::new("#", Format::Value);
    let payload = format!("21{}.5", "\u{1e}".repeat(58));
    let err = run(&s, "a/b", &payload).unwrap_err();
    assert_eq!(err.reason(), "not_a_number");
    assert!(err.to_string().len() < 80, "{err}");
}

// ---- options ----

#[test]
fn topic_templates_pick_levels() {
    let t = |text: &str| TopicTemplate::try_from(text.to_owned()).unwrap();
    let topic = "sites/s1/sensors/abc/state";
    assert_eq!(t("{3}").render(topic).unwrap(), "abc");
    assert_eq!(t("{-1}").render(topic).unwrap(), "state");
    assert_eq!(t("{1..}").render(topic).unwrap(), "s1/sensors/abc/state");
    assert_eq!(t("{1..-1}").render(topic).unwrap(), "s1/sensors/abc");
    assert_eq!(t("{0..2}").render(topic).unwrap(), "sites/s1");
    assert_eq!(t("site-{1}:{3}").render(topic).unwrap(), "site-s1:abc");
    assert!(t("{5}").render(topic).is_err());
    assert!(t("{-6}").render(topic).is_err());
    assert!(t("{3..2}").render(topic).is_err());
    assert!(t("{1}").render("a//b").is_err(), "an empty level is no id");
    for bad in ["abc", "{x}", "{1", "1}", "{}", "{1..x}", "{1000}"] {
        assert!(TopicTemplate::try_from(bad.to_owned()).is_err(), "{bad}");
    }
}

#[test]
fn field_paths_follow_objects_and_arrays() {
    let p = |text: &str| FieldPath::try_from(text.to_owned()).unwrap();
    let v: serde_json::Value = serde_json::from_str(
        r#"{"params": {"temperature:0": {"tC": 19.8}}, "list": [{"v": 1}, {"v": 2}]}"#,
    )
    .unwrap();
    assert_eq!(
        p("params.temperature:0.tC").get(&v),
        Some(&serde_json::json!(19.8))
    );
    assert_eq!(p("list.1.v").get(&v), Some(&serde_json::json!(2)));
    assert_eq!(p("list.x.v").get(&v), None);
    assert_eq!(p("params.nope").get(&v), None);
    for bad in ["", "a..b", ".a", "a.", &"a.".repeat(17)] {
        assert!(FieldPath::try_from(bad.to_owned()).is_err(), "{bad}");
    }
}

#[test]
fn battery_curves_interpolate_and_clamp() {
    let c = BatteryCurve::try_from(vec![(2.5, 0.0), (2.9, 80.0), (3.0, 100.0)]).unwrap();
    assert_eq!(c.percent(2.0), 0.0);
    assert_eq!(c.percent(2.7), 40.0);
    assert!((c.percent(2.95) - 90.0).abs() < 1e-9);
    assert_eq!(c.percent(3.6), 100.0);
    assert!(BatteryCurve::try_from(vec![(3.0, 100.0)]).is_err());
    assert!(BatteryCurve::try_from(vec![(3.0, 100.0), (2.5, 0.0)]).is_err());
    assert!(BatteryCurve::try_from(vec![(2.5, 0.0), (3.0, 101.0)]).is_err());
    assert!(BatteryCurve::try_from(vec![(f64::NAN, 0.0), (3.0, 100.0)]).is_err());
}

#[test]
fn subscriptions_refuse_options_their_format_does_not_use() {
    let base = "topic = \"t/#\"\n";
    let err = sub_err(&format!("{base}format = \"ttn-v3\"\nunit = \"F\""));
    assert!(
        err.contains("unit does not apply to format \"ttn-v3\""),
        "{err}"
    );
    let err = sub_err(&format!("{base}format = \"value\"\nmetric = \"humidity\""));
    assert!(err.contains("only \"temperature\""), "{err}");
    let err = sub_err(&format!("{base}format = \"json\"\nsensor_id = \"{{9\""));
    assert!(err.contains("sensor id template"), "{err}");
    let err = sub_err(&format!(
        "{base}format = \"json\"\nfields = {{ temp = \"a\" }}"
    ));
    assert!(err.contains("temp"), "{err}");
    let err = sub_err(&format!(
        "{base}format = \"json\"\nsensor_id = \"{{1}}\"\nsensor_id_field = \"id\""
    ));
    assert!(err.contains("not both"), "{err}");
    let err = sub_err(&format!(
        "{base}format = \"zigbee2mqtt\"\nbase_topic = \"z/#\""
    ));
    assert!(err.contains("base_topic"), "{err}");
    let err = sub_err(&format!("{base}format = \"json\"\nsensor_id_segment = 2"));
    assert!(err.contains("sensor_id_segment"), "{err}");
    let s = sub(&format!(
        "{base}format = \"ttn-v3\"\nbattery_curve = [[2.5, 0], [3.0, 100]]"
    ));
    assert_eq!(
        s.decoder.battery_curve.as_ref().unwrap().percent(2.75),
        50.0
    );
}

/// Every `[[mqtt.subscriptions]]` table of the shipped config, active or commented out, is a
/// valid subscription once its `# ` is removed, and every format has one.
#[test]
fn shipped_config_examples_parse_once_uncommented() {
    let text = include_str!("../../config/sensorcast.toml");
    let lines: Vec<&str> = text.lines().collect();
    let mut formats = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let commented = line.starts_with("# ");
        if line.trim_start_matches("# ") != "[[mqtt.subscriptions]]" {
            continue;
        }
        let table: Vec<&str> = lines[i + 1..]
            .iter()
            .take_while(|l| !l.trim().is_empty() && !l.trim_start_matches("# ").starts_with('['))
            .map(|&l| {
                if commented {
                    l.strip_prefix("# ").unwrap_or(l)
                } else {
                    l
                }
            })
            .filter(|l| !l.starts_with('#'))
            .collect();
        formats.push(sub(&table.join("\n")).format);
    }
    for f in Format::ALL {
        assert!(
            formats.contains(&f),
            "config/sensorcast.toml shows no {f:?} example"
        );
    }
}

// ---- json ----

#[test]
fn json_reads_configured_paths_units_and_topic_levels() {
    let s = sub(r#"topic = "sites/+/sensors/+/state"
format = "json"
sensor_id = "{3}"
unit = "F"
fields = { temperature = "data.temp", humidity = "params.humidity:0.rh", timestamp = "data.at" }"#);
    let r = one(
        &s,
        "sites/s1/sensors/abc/state",
        r#"{"data": {"temp": 38.3, "at": 1700000000}, "params": {"humidity:0": {"rh": "55"}}, "door": true, "note": "x", "co2": 612}"#,
    );
    assert_eq!(r.sensor_id, "abc");
    assert_eq!(r.temperature, Some(3.5));
    assert_eq!(r.humidity, Some(55.0));
    assert_eq!(r.recorded_at, Utc.timestamp_opt(1_700_000_000, 0).unwrap());
    assert_eq!(r.extra, vec![("co2".into(), 612.0), ("door".into(), 1.0)]);
    // A configured path replaces the default key.
    assert_eq!(
        reason(&s, "sites/s1/sensors/abc/state", r#"{"temperature": 4}"#),
        "no_temperature"
    );
}

#[test]
fn json_defaults_and_id_from_a_payload_field() {
    let s = sub("topic = \"s/#\"\nformat = \"json\"\nsensor_id_field = \"dev.id\"");
    let r = one(
        &s,
        "s/x",
        r#"{"dev": {"id": "a8:40:41:00:00:00:12:34"}, "temperature": "4.5", "rssi": -70, "time": "2024-01-15T12:00:00Z"}"#,
    );
    assert_eq!(r.sensor_id, "A840410000001234");
    assert_eq!(r.signal_strength, Some(-70.0));
    assert!(r.extra.is_empty(), "{:?}", r.extra);
    assert_eq!(reason(&s, "s/x", r#"{"temperature": 4}"#), "no_sensor_id");
    let plain = Sub::new("s/#", Format::Json);
    assert_eq!(one(&plain, "s/a/b", r#"{"temperature": 1}"#).sensor_id, "b");
}

#[test]
fn extra_is_bounded_and_keeps_short_names_only() {
    let s = Sub::new("s/+", Format::Json);
    let mut payload = String::from("{\"temperature\": 1");
    for i in 0..40 {
        payload += &format!(", \"m{i:02}\": {i}");
    }
    payload += &format!(", \"{}\": 1}}", "n".repeat(65));
    let r = one(&s, "s/a", &payload);
    assert_eq!(r.extra.len(), MAX_EXTRA);
    assert!(r.extra.iter().all(|(k, _)| k.len() <= 64));
}

// ---- ttn-v3 ----

fn uplink(decoded: &str) -> String {
    format!(
        r#"{{"end_device_ids": {{"dev_eui": "0004A30B001C0530"}}, "uplink_message": {{"decoded_payload": {decoded}, "rx_metadata": [{{"rssi": -90}}, {{"channel_rssi": -80, "rssi": -85}}]}}}}"#
    )
}

#[test]
fn ttn_battery_voltage_needs_a_curve() {
    let topic = "v3/app@ttn/devices/d1/up";
    let plain = Sub::new("v3/+/devices/+/up", Format::TtnV3);
    let r = one(
        &plain,
        topic,
        &uplink(r#"{"TempC_SHT": 4.2, "BatV": 3.05, "door_open": 1}"#),
    );
    assert_eq!(r.battery, None);
    assert_eq!(extra(&r, "BatV"), Some(3.05));
    assert_eq!(extra(&r, "door_open"), Some(1.0));
    assert_eq!(r.signal_strength, Some(-80.0));
    assert_eq!(r.recorded_at, now(), "no received_at: the receive time");

    let curved = sub("topic = \"v3/+/devices/+/up\"\nformat = \"ttn-v3\"\nbattery_curve = [[2.5, 0], [3.0, 100]]");
    let r = one(
        &curved,
        topic,
        &uplink(r#"{"temperature": 4.2, "battery_voltage": 2750}"#),
    );
    assert_eq!(r.battery, Some(50.0), "mV");
    assert_eq!(
        extra(&r, "battery_voltage"),
        None,
        "used for the percentage"
    );
    let r = one(
        &curved,
        topic,
        &uplink(r#"{"temperature": 4.2, "BatV": 3.3}"#),
    );
    assert_eq!(r.battery, Some(100.0), "clamped");
    let r = one(
        &curved,
        topic,
        &uplink(r#"{"temperature": 4.2, "battery": 12, "BatV": 2.6}"#),
    );
    assert_eq!(r.battery, Some(12.0), "a percentage wins");
}

#[test]
fn ttn_non_uplinks_are_ignored_and_missing_formatter_is_named() {
    let s = Sub::new("v3/#", Format::TtnV3);
    for topic in [
        "v3/a@t/devices/d/join",
        "v3/a@t/devices/d/down/sent",
        "v3/a@t/devices/d/down/queued",
    ] {
        ignored(&s, topic, "{\"anything\": true}");
    }
    let err = run(
        &s,
        "v3/a@t/devices/d/up",
        r#"{"end_device_ids": {"dev_eui": "0004A30B001C0530"}, "uplink_message": {"f_port": 1}}"#,
    )
    .unwrap_err();
    assert!(err.to_string().contains("payload formatter"), "{err}");
    assert_eq!(
        reason(&s, "v3/a@t/devices/d/up", r#"{"uplink_message": 5}"#),
        "malformed"
    );
}

// ---- tasmota ----

#[test]
fn tasmota_several_probes_get_ids_per_probe_and_one_fallback() {
    let s = Sub::new("tele/#", Format::Tasmota);
    let r = readings(
        &s,
        "tele/freezer/SENSOR",
        r#"{"Time":"2024-01-01T00:00:00","DS18B20-1":{"Id":"0316","Temperature":-18.5},"DS18B20-2":{"Id":"0417","Temperature":null},"DS18B20-3":{"Id":"0518","Temperature":-19.1},"ESP32":{"Temperature":48.2},"TempUnit":"C"}"#,
    );
    let ids: Vec<_> = r.iter().map(|r| r.sensor_id.as_str()).collect();
    assert_eq!(
        ids,
        ["freezer/DS18B20-1", "freezer/DS18B20-3"],
        "null skipped, chip skipped"
    );
    assert_eq!(r[0].fallback_sensor_id.as_deref(), Some("freezer"));
    assert_eq!(r[1].fallback_sensor_id, None);
    assert_eq!(
        r[0].recorded_at,
        now(),
        "Time has no offset: the receive time"
    );
}

#[test]
fn tasmota_units_extras_and_non_readings() {
    let s = Sub::new("tele/#", Format::Tasmota);
    let r = one(
        &s,
        "tele/kitchen/th/SENSOR",
        r#"{"BME280":{"Temperature":50.0,"Humidity":40.1,"DewPoint":30.2,"Pressure":1010.2},"TempUnit":"F"}"#,
    );
    assert_eq!(r.sensor_id, "kitchen/th");
    assert_eq!(r.temperature, Some(10.0));
    assert_eq!(extra(&r, "Pressure"), Some(1010.2));
    assert_eq!(r.fallback_sensor_id, None);
    ignored(&s, "tele/plug/SENSOR", r#"{"ENERGY":{"Power":12}}"#);
    ignored(
        &s,
        "tele/plug/SENSOR",
        r#"{"DS18B20":{"Temperature":null}}"#,
    );
    ignored(&s, "tele/plug/STATE", r#"{"Wifi":{"RSSI":60}}"#);
    assert_eq!(
        reason(&s, "tele/x/SENSOR", r#"{"DS18B20":{"Temperature":-127}}"#),
        "out_of_range"
    );
    assert_eq!(
        reason(&s, "SENSOR", r#"{"DS18B20":{"Temperature":1}}"#),
        "no_sensor_id"
    );
    assert_eq!(
        availability(&s, "tele/kitchen/th/LWT", "Online"),
        ("kitchen/th".into(), true)
    );
    assert_eq!(
        availability(&s, "tele/kitchen/th/LWT", "Offline"),
        ("kitchen/th".into(), false)
    );
    assert_eq!(reason(&s, "tele/kitchen/th/LWT", "maybe"), "malformed");
    let custom = sub("topic = \"+/tele/#\"\nformat = \"tasmota\"\nsensor_id = \"{0}\"");
    assert_eq!(
        one(
            &custom,
            "dev1/tele/SENSOR",
            r#"{"SI7021":{"Temperature":2}}"#
        )
        .sensor_id,
        "dev1"
    );
}

// ---- zigbee2mqtt ----

#[test]
fn zigbee2mqtt_names_commands_bridge_and_availability() {
    let s = Sub::new("zigbee2mqtt/#", Format::Zigbee2Mqtt);
    let r = one(
        &s,
        "zigbee2mqtt/cold room/door",
        r#"{"temperature":3.1,"contact":false,"battery_low":true,"action":"x","update":{"state":"idle"},"linkquality":87}"#,
    );
    assert_eq!(r.sensor_id, "cold room/door");
    assert_eq!(r.signal_strength, Some(87.0));
    assert_eq!(
        r.extra,
        vec![("battery_low".into(), 1.0), ("contact".into(), 0.0)]
    );
    ignored(&s, "zigbee2mqtt/bridge/state", "online");
    ignored(&s, "zigbee2mqtt/bridge/devices", "[]");
    ignored(&s, "zigbee2mqtt/kitchen/lamp/set", r#"{"state":"ON"}"#);
    ignored(&s, "zigbee2mqtt/kitchen/lamp/set/state", "ON");
    ignored(&s, "zigbee2mqtt/kitchen/lamp/get", r#"{"state":""}"#);
    ignored(
        &s,
        "zigbee2mqtt/kitchen/plug",
        r#"{"power":12.5,"state":"ON"}"#,
    );
    assert_eq!(
        availability(&s, "zigbee2mqtt/a/b/availability", "offline"),
        ("a/b".into(), false)
    );
    assert_eq!(
        availability(&s, "zigbee2mqtt/a/b/availability", r#"{"state":"online"}"#),
        ("a/b".into(), true)
    );
    assert_eq!(
        reason(&s, "zigbee2mqtt/a/availability", r#"{"state":1}"#),
        "malformed"
    );
    assert_eq!(
        reason(&s, "other/a", r#"{"temperature":1}"#),
        "no_sensor_id"
    );
    let custom = sub("topic = \"home/z2m/#\"\nformat = \"zigbee2mqtt\"\nbase_topic = \"home/z2m\"");
    assert_eq!(
        one(&custom, "home/z2m/fridge", r#"{"temperature":4}"#).sensor_id,
        "fridge"
    );
}

// ---- shelly-gen2 ----

pub(super) const HT: &str = "shellyplusht-b8d61a8b17cc";

pub(super) fn shelly(method: &str, params: &str) -> String {
    format!(r#"{{"src":"{HT}","dst":"{HT}/events","method":"{method}","params":{params}}}"#)
}

#[test]
fn shelly_deltas_overlay_the_last_full_status() {
    let s = Sub::new("+/events/rpc", Format::ShellyGen2);
    let topic = format!("{HT}/events/rpc");
    let full = shelly(
        "NotifyFullStatus",
        r#"{"ts":1680962879.62,"devicepower:0":{"battery":{"V":5.2,"percent":80}},"humidity:0":{"rh":42.2},"temperature:0":{"tC":19.8,"tF":67.6},"wifi":{"rssi":-61}}"#,
    );
    let r = one(&s, &topic, &full);
    assert_eq!(
        (r.temperature, r.humidity, r.battery),
        (Some(19.8), Some(42.2), Some(80.0))
    );
    assert_eq!(r.signal_strength, Some(-61.0));
    assert_eq!(
        r.recorded_at,
        Utc.timestamp_millis_opt(1_680_962_879_620).unwrap()
    );

    let r = one(
        &s,
        &topic,
        &shelly(
            "NotifyStatus",
            r#"{"ts":1680963000,"humidity:0":{"rh":45}}"#,
        ),
    );
    assert_eq!(
        (r.temperature, r.humidity, r.battery),
        (Some(19.8), Some(45.0), Some(80.0))
    );
    assert_eq!(r.recorded_at, Utc.timestamp_opt(1_680_963_000, 0).unwrap());

    ignored(
        &s,
        &topic,
        &shelly("NotifyStatus", r#"{"ts":1680963001,"wifi":{"rssi":-70}}"#),
    );
    let r = one(
        &s,
        &topic,
        &shelly(
            "NotifyStatus",
            r#"{"ts":1680963002,"temperature:0":{"tC":20.5}}"#,
        ),
    );
    assert_eq!(
        (r.temperature, r.humidity, r.signal_strength),
        (Some(20.5), Some(45.0), Some(-70.0))
    );

    // A bad value is rejected and does not reach the memory.
    assert_eq!(
        reason(
            &s,
            &topic,
            &shelly("NotifyStatus", r#"{"humidity:0":{"rh":140}}"#)
        ),
        "out_of_range"
    );
    assert_eq!(
        s.decode_state().status(HT).unwrap().humidities,
        vec![(0, Some(45.0))]
    );
    // A failed probe is visible, not replaced by its last value.
    assert_eq!(
        reason(
            &s,
            &topic,
            &shelly("NotifyStatus", r#"{"temperature:0":{"tC":null}}"#)
        ),
        "no_temperature"
    );
}

#[test]
fn shelly_other_messages_probes_and_availability() {
    let s = Sub::new("#", Format::ShellyGen2);
    let topic = format!("{HT}/events/rpc");
    ignored(&s, &topic, &shelly("NotifyEvent", r#"{"events":[]}"#));
    ignored(&s, &format!("{HT}/status/temperature:0"), r#"{"tC":1}"#);
    ignored(
        &s,
        "plug/events/rpc",
        r#"{"src":"plug","method":"NotifyFullStatus","params":{"switch:0":{"apower":5}}}"#,
    );
    assert_eq!(
        reason(&s, &topic, r#"{"method":"NotifyStatus"}"#),
        "malformed"
    );
    let r = one(
        &s,
        "addon/events/rpc",
        r#"{"method":"NotifyFullStatus","params":{"temperature:101":{"tC":-18},"temperature:100":{"tC":-20},"illuminance:0":{"lux":3}}}"#,
    );
    assert_eq!(r.sensor_id, "addon", "no src: the topic prefix");
    assert_eq!(r.temperature, Some(-20.0));
    assert_eq!(extra(&r, "temperature:101"), Some(-18.0));
    assert_eq!(extra(&r, "illuminance"), Some(3.0));
    assert_eq!(r.recorded_at, now());
    assert_eq!(
        availability(&s, &format!("{HT}/online"), "false"),
        (HT.into(), false)
    );
}

#[test]
fn shelly_memory_is_bounded() {
    let mut state = DecodeState::new();
    let opts = Options::default();
    for i in 0..MAX_DEVICES + 10 {
        let p = format!(
            r#"{{"src":"d{i}","method":"NotifyFullStatus","params":{{"temperature:0":{{"tC":1}}}}}}"#
        );
        decode_with(
            Format::ShellyGen2,
            &opts,
            &mut state,
            Message {
                topic: "x/events/rpc",
                payload: p.as_bytes(),
                received_at: now(),
            },
            MAX,
        )
        .unwrap();
    }
    assert_eq!(state.len(), MAX_DEVICES);
    assert!(
        state.status("d0").is_none(),
        "the stalest device goes first"
    );
    assert!(state.status(&format!("d{}", MAX_DEVICES + 9)).is_some());
}

// ---- value ----

#[test]
fn value_payloads_are_one_number() {
    let s = Sub::new("home/#", Format::Value);
    let topic = "home/bathroom/analog/temperature";
    let r = one(&s, topic, " 21.50\n");
    assert_eq!((r.sensor_id.as_str(), r.temperature), (topic, Some(21.5)));
    assert_eq!(one(&s, topic, "\"4\"").temperature, Some(4.0));
    assert_eq!(reason(&s, topic, "warm"), "not_a_number");
    assert_eq!(reason(&s, topic, "NaN"), "not_a_number");
    assert_eq!(reason(&s, topic, "inf"), "not_a_number");
    assert_eq!(reason(&s, topic, &"1".repeat(65)), "not_a_number");
    let err = run_bytes(&s, topic, &[0xff, 0xfe]).unwrap_err();
    assert_eq!(err.reason(), "not_a_number");
    assert_eq!(reason(&s, topic, "-127"), "out_of_range");
    let f = sub("topic = \"home/#\"\nformat = \"value\"\nunit = \"F\"\nsensor_id = \"{1}-{2}\"");
    let r = one(&f, topic, "32");
    assert_eq!(
        (r.sensor_id.as_str(), r.temperature),
        ("bathroom-analog", Some(0.0))
    );
}
