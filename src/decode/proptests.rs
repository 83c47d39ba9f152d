//! Property tests: every decoder, fed random bytes, random JSON, and random JSON shaped like its
//! own format, either decodes to readings that respect every limit or rejects the input with a
//! short message, and never panics. The two bounds that only show past them are driven past
//! them: nesting beyond `MAX_DEPTH`, and more devices than the Shelly memory holds (a small
//! memory, as the real one holds 4096). `PROPTEST_CASES` sets the number of cases (256 by
//! default, a few seconds in all); docs/decoders.md says how to run them long and how to run
//! cargo-fuzz.
//!
//! Over 400 lines: One property block per decoder format, same shape each: a table, not logic.

use chrono::{TimeZone, Utc};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use serde_json::{Map, Value};
use std::collections::VecDeque;

use super::fields::{BATTERY, HUMIDITY, MAX_EXTRA_NAME, SIGNAL, TEMPERATURE};
use super::state::DeviceStatus;
use super::*;
use crate::core::ids::normalize_sensor_id;

const MAX: usize = 64 * 1024;

/// Keys the decoders look for, so random objects often hit the interesting paths.
const KEYS: &[&str] = &[
    "temperature",
    "humidity",
    "battery",
    "signalStrength",
    "rssi",
    "ts",
    "time",
    "timestamp",
    "linkquality",
    "state",
    "contact",
    "Temperature",
    "Humidity",
    "TempUnit",
    "DS18B20",
    "DS18B20-1",
    "ESP32",
    "method",
    "params",
    "src",
    "temperature:0",
    "temperature:101",
    "tC",
    "humidity:0",
    "rh",
    "devicepower:0",
    "percent",
    "V",
    "external",
    "present",
    "wifi",
    "illuminance:0",
    "lux",
    "end_device_ids",
    "dev_eui",
    "device_id",
    "uplink_message",
    "decoded_payload",
    "rx_metadata",
    "channel_rssi",
    "received_at",
    "BatV",
    "temperature_f",
    "data",
    "temp",
    "id",
];

/// Strings that mean something to some decoder, and a few that should not.
const WORDS: &[&str] = &[
    "",
    "F",
    "C",
    "online",
    "offline",
    "Online",
    "NotifyStatus",
    "NotifyFullStatus",
    "NotifyEvent",
    "18.9",
    "NaN",
    "-inf",
    "1e400",
    "2024-01-15T12:00:00Z",
    "1700000000",
    "a8-40-41-00-00-00-12-34",
    "\u{0}",
    "é",
    "shellyplusht-b8d61a8b17cc",
];

fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        (-200.0..200.0f64).prop_map(Value::from),
        (0.0..5000.0f64).prop_map(Value::from),
    ]
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => proptest::sample::select(KEYS).prop_map(str::to_owned),
        1 => ".{0,80}",
    ]
}

fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        number(),
        proptest::sample::select(WORDS).prop_map(Value::from),
        ".{0,40}".prop_map(Value::from),
    ];
    leaf.prop_recursive(5, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..8)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn object() -> impl Strategy<Value = Value> {
    prop::collection::vec((key(), json()), 0..8)
        .prop_map(|kv| Value::Object(kv.into_iter().collect()))
}

/// A small value of the kind sensor fields hold.
fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => number(),
        1 => Just(Value::Null),
        1 => any::<bool>().prop_map(Value::Bool),
        1 => proptest::sample::select(WORDS).prop_map(Value::from),
    ]
}

/// One Shelly component as a status carries it (`"temperature:0": {"tC": 19.8}`).
fn shelly_component() -> impl Strategy<Value = (String, Value)> {
    let name = proptest::sample::select(vec![
        "temperature:0",
        "temperature:100",
        "temperature:101",
        "humidity:0",
        "humidity:1",
        "devicepower:0",
        "illuminance:0",
        "wifi",
        "sys",
        "switch:0",
        "temperature:x",
    ]);
    let field =
        proptest::sample::select(vec!["tC", "tF", "rh", "lux", "rssi", "id", "V", "percent"]);
    let battery = (scalar(), scalar()).prop_map(|(p, v)| serde_json::json!({"percent": p, "V": v}));
    let body = (
        prop::collection::vec((field, scalar()), 0..4),
        prop::option::of(battery),
    )
        .prop_map(|(fields, battery)| {
            let mut m: Map<String, Value> =
                fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
            if let Some(b) = battery {
                m.insert("battery".into(), b);
            }
            Value::Object(m)
        });
    prop_oneof![
        6 => (name.prop_map(str::to_owned), body),
        1 => (key(), json()),
    ]
}

/// Random JSON in the envelope each format expects, so the inner decoding code is reached.
fn shaped(format: Format) -> BoxedStrategy<Value> {
    match format {
        Format::TtnV3 => (json(), object(), prop::collection::vec(object(), 0..4), json())
            .prop_map(|(eui, decoded, rx, at)| {
                serde_json::json!({"end_device_ids": {"dev_eui": eui},
                    "uplink_message": {"decoded_payload": decoded, "rx_metadata": rx, "received_at": at}})
            })
            .boxed(),
        Format::Tasmota => (prop::collection::vec((key(), object()), 0..4), scalar())
            .prop_map(|(probes, unit)| {
                let mut m: Map<String, Value> = probes.into_iter().collect();
                m.insert("TempUnit".into(), unit);
                Value::Object(m)
            })
            .boxed(),
        Format::ShellyGen2 => (
            prop_oneof![4 => Just(Value::from("dev")), 1 => json()],
            prop_oneof![
                4 => proptest::sample::select(vec!["NotifyStatus", "NotifyFullStatus"]).prop_map(Value::from),
                1 => json(),
            ],
            prop::collection::vec(shelly_component(), 0..6),
            scalar(),
        )
            .prop_map(|(src, method, params, ts)| {
                let mut p: Map<String, Value> = params.into_iter().collect();
                p.insert("ts".into(), ts);
                serde_json::json!({"src": src, "method": method, "params": p})
            })
            .boxed(),
        _ => object().boxed(),
    }
}

fn topic(format: Format) -> BoxedStrategy<String> {
    let typical: &'static [&'static str] = match format {
        Format::TtnV3 => &[
            "v3/app@ttn/devices/d1/up",
            "v3/app@ttn/devices/d1/join",
            "up",
        ],
        Format::Tasmota => &[
            "tele/dev/SENSOR",
            "tele/a/b/LWT",
            "tele/x/STATE",
            "SENSOR",
            "/SENSOR",
        ],
        Format::Zigbee2Mqtt => &[
            "zigbee2mqtt/kitchen/fridge",
            "zigbee2mqtt/a/availability",
            "zigbee2mqtt/bridge/state",
            "zigbee2mqtt/a/set",
            "zigbee2mqtt/",
            "zigbee2mqtt",
        ],
        Format::ShellyGen2 => &["shellyplusht-1/events/rpc", "/events/rpc", "x/online"],
        Format::Value | Format::Json => &["home/a/temperature", "sensors/a", "a//b", "/", ""],
    };
    prop_oneof![
        4 => proptest::sample::select(typical).prop_map(str::to_owned),
        1 => "[a-z/+#]{0,20}",
        1 => ".{0,200}",
    ]
    .boxed()
}

/// Options that make every code path reachable (templates, paths, curve, unit).
fn options(format: Format) -> Options {
    let mut o = Options::default();
    match format {
        Format::Json => {
            o.fields.temperature = Some(FieldPath::try_from("data.temp".to_owned()).unwrap());
            o.sensor_id = Some(TopicTemplate::try_from("{1..}".to_owned()).unwrap());
            o.unit = TempUnit::Fahrenheit;
        }
        Format::TtnV3 => {
            o.battery_curve = Some(BatteryCurve::try_from(vec![(2.5, 0.0), (3.0, 100.0)]).unwrap());
        }
        Format::Value => o.sensor_id = Some(TopicTemplate::try_from("{-2}".to_owned()).unwrap()),
        _ => {}
    }
    o
}

/// The properties every outcome must have.
fn check(result: &Result<Decoded, DecodeError>) {
    let id_ok = |id: &str| normalize_sensor_id(id).as_deref() == Ok(id);
    let within = |v: f64, (min, max): (f64, f64)| v.is_finite() && (min..=max).contains(&v);
    match result {
        Ok(Decoded::Readings(readings)) => {
            assert!(!readings.is_empty(), "readings are never an empty list");
            for r in readings {
                assert!(id_ok(&r.sensor_id), "{r:?}");
                assert!(r.fallback_sensor_id.as_deref().is_none_or(id_ok), "{r:?}");
                // A reading has a temperature, a door state, or both.
                assert!(r.temperature.is_some() || r.door_open.is_some(), "{r:?}");
                assert!(
                    r.temperature.is_none_or(|t| within(t, TEMPERATURE)),
                    "{r:?}"
                );
                assert!(r.humidity.is_none_or(|h| within(h, HUMIDITY)), "{r:?}");
                assert!(r.battery.is_none_or(|b| within(b, BATTERY)), "{r:?}");
                assert!(r.signal_strength.is_none_or(|s| within(s, SIGNAL)), "{r:?}");
                assert!(r.extra.len() <= MAX_EXTRA, "{r:?}");
                for (k, v) in &r.extra {
                    assert!(
                        !k.is_empty() && k.len() <= MAX_EXTRA_NAME && v.is_finite(),
                        "{r:?}"
                    );
                }
            }
        }
        Ok(Decoded::Availability { sensor_id, .. }) => assert!(id_ok(sensor_id), "{sensor_id:?}"),
        Ok(Decoded::Ignored(why)) => assert!(!why.is_empty()),
        Err(e) => {
            let message = e.to_string();
            assert!(!e.reason().is_empty());
            assert!(message.len() <= 300, "error messages stay short: {message}");
        }
    }
}

fn run(format: Format, state: &mut DecodeState, topic: &str, payload: &[u8]) {
    let at = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    check(&decode_with(
        format,
        &options(format),
        state,
        Message {
            topic,
            payload,
            received_at: at,
        },
        MAX,
    ));
    check(&decode_with(
        format,
        &Options::default(),
        state,
        Message {
            topic,
            payload,
            received_at: at,
        },
        MAX,
    ));
}

/// Distinct devices in a [`shelly_sequences`] run, and the memory bound it runs with.
const SEQUENCE_DEVICES: usize = 6;
const SEQUENCE_MEMORY: usize = 3;

/// A device status that tells one update from another.
fn status_of(t: i32) -> DeviceStatus {
    DeviceStatus {
        temperatures: vec![(0, Some(f64::from(t)))],
        ..DeviceStatus::default()
    }
}

/// Each decoder that parses JSON, with a topic on which it does.
const JSON_TOPICS: [(Format, &str); 5] = [
    (Format::TtnV3, "v3/app@ttn/devices/d1/up"),
    (Format::Tasmota, "tele/dev/SENSOR"),
    (Format::Zigbee2Mqtt, "zigbee2mqtt/kitchen/fridge"),
    (Format::ShellyGen2, "dev/events/rpc"),
    (Format::Json, "sensors/a"),
];

/// How deep `[`/`{` really nest in `v`: 0 for a scalar, 1 for `[]` or `{}`.
fn nesting(v: &Value) -> usize {
    match v {
        Value::Array(a) => 1 + a.iter().map(nesting).max().unwrap_or(0),
        Value::Object(o) => 1 + o.values().map(nesting).max().unwrap_or(0),
        _ => 0,
    }
}

/// Text made of what the depth scan must not be fooled by: brackets, quotes and backslashes.
fn tricky_text() -> impl Strategy<Value = String> {
    "[\\[\\]{}\"\\\\:,a ]{0,12}"
}

/// JSON around a spine of containers from 0 to `MAX_DEPTH + 8` deep (often right at the limit),
/// with random siblings at every level (scalars, tricky strings, small nested values) and tricky
/// object keys; the real depth is what [`nesting`] counts.
fn nested() -> impl Strategy<Value = Value> {
    let spine = prop_oneof![0..=MAX_DEPTH + 8, MAX_DEPTH - 1..=MAX_DEPTH + 1];
    let sibling = prop_oneof![
        3 => tricky_text().prop_map(Value::from),
        1 => json(),
    ];
    let level = (
        any::<bool>(),
        tricky_text(),
        prop::collection::vec((tricky_text(), sibling), 0..3),
        any::<prop::sample::Index>(),
    )
        .boxed();
    let innermost = prop_oneof![tricky_text().prop_map(Value::from), number()];
    (
        innermost,
        spine.prop_flat_map(move |d| prop::collection::vec(level.clone(), d)),
    )
        .prop_map(|(innermost, levels)| {
            levels
                .into_iter()
                .fold(innermost, |inner, (array, key, siblings, at)| {
                    if array {
                        let mut items: Vec<Value> = siblings.into_iter().map(|(_, v)| v).collect();
                        items.insert(at.index(items.len() + 1), inner);
                        Value::Array(items)
                    } else {
                        let mut m: Map<String, Value> = siblings.into_iter().collect();
                        m.insert(key, inner);
                        Value::Object(m)
                    }
                })
        })
}

fn format() -> impl Strategy<Value = Format> {
    proptest::sample::select(Format::ALL.to_vec())
}

fn config() -> ProptestConfig {
    ProptestConfig {
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("regressions"))),
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn random_bytes(format in format(), topic in topic(Format::Json), payload in prop::collection::vec(any::<u8>(), 0..600)) {
        run(format, &mut DecodeState::new(), &topic, &payload);
    }

    #[test]
    fn random_json(format in format(), topic_seed in any::<prop::sample::Index>(), value in json()) {
        let topics = [
            "v3/a@t/devices/d/up", "tele/d/SENSOR", "zigbee2mqtt/a/b", "s/events/rpc", "home/x/y", "sensors/a",
        ];
        let topic = *topic_seed.get(&topics[..]);
        run(format, &mut DecodeState::new(), topic, value.to_string().as_bytes());
    }

    #[test]
    fn shaped_json(
        (format, topic, value) in format().prop_flat_map(|f| (Just(f), topic(f), shaped(f)))
    ) {
        run(format, &mut DecodeState::new(), &topic, value.to_string().as_bytes());
    }

    /// Deltas laid over one another, from more devices than the memory holds, keep the memory
    /// consistent and within its bound.
    #[test]
    fn shelly_sequences(
        messages in prop::collection::vec((shaped(Format::ShellyGen2), 0..SEQUENCE_DEVICES), 1..16)
    ) {
        let mut state = DecodeState::with_max_devices(SEQUENCE_MEMORY);
        for (mut m, device) in messages {
            // Most messages name one of a few devices, so the memory fills and evicts.
            if m["src"] == "dev" {
                m["src"] = Value::from(format!("dev-{device}"));
            }
            run(Format::ShellyGen2, &mut state, "dev/events/rpc", m.to_string().as_bytes());
            prop_assert!(state.len() <= SEQUENCE_MEMORY, "{} devices kept", state.len());
        }
    }

    /// The memory keeps exactly the devices updated most recently, each with its last status,
    /// however many distinct devices pass through it: a least-recently-updated list is the model.
    #[test]
    fn memory_forgets_the_least_recently_updated(
        max in 1..8usize,
        updates in prop::collection::vec((0..20usize, -50..50i32), 0..120),
    ) {
        let mut state = DecodeState::with_max_devices(max);
        // Oldest first: (device, the temperature of its last status).
        let mut model: VecDeque<(usize, i32)> = VecDeque::new();
        for (device, t) in updates {
            state.remember(&format!("d{device}"), status_of(t));
            model.retain(|(d, _)| *d != device);
            if model.len() == max {
                model.pop_front();
            }
            model.push_back((device, t));
            prop_assert_eq!(state.len(), model.len());
            for d in 0..20 {
                let want = model.iter().find(|(m, _)| *m == d).map(|(_, t)| status_of(*t));
                prop_assert_eq!(state.status(&format!("d{d}")), want.as_ref(), "device d{}", d);
            }
        }
    }

    /// Whatever the nesting, and however strings full of quotes, escapes and brackets sit in it,
    /// the flat depth scan and every JSON decoder reject exactly the payloads nested deeper than
    /// `MAX_DEPTH` (as `too_deep`), and no other.
    #[test]
    fn depth_verdict_matches_the_real_depth(value in nested(), pretty in any::<bool>()) {
        let text = if pretty {
            serde_json::to_string_pretty(&value).unwrap()
        } else {
            value.to_string()
        };
        let depth = nesting(&value);
        let too_deep = depth > MAX_DEPTH;
        prop_assert_eq!(
            fields::check_depth(text.as_bytes()).is_err(),
            too_deep,
            "check_depth on nesting {}: {}", depth, text
        );
        let at = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        for (format, topic) in JSON_TOPICS {
            let outcome = decode_with(
                format, &Options::default(), &mut DecodeState::new(),
                Message { topic, payload: text.as_bytes(), received_at: at }, usize::MAX,
            );
            prop_assert_eq!(
                matches!(outcome, Err(DecodeError::TooDeep { .. })),
                too_deep,
                "{:?} on nesting {}: {:?}", format, depth, outcome
            );
        }
    }
}
