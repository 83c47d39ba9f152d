//! Shared by every fuzz target: turns the fuzzer's bytes into messages for one decoder and
//! checks what comes out, so a broken limit is a crash the fuzzer keeps, not just a panic.
//!
//! Input layout: the first byte picks one of the format's usual topics; a value past the list
//! means the topic is the text up to the first `\n`. The rest is the payload, split on NUL
//! bytes into several messages that go, in order, through one `DecodeState` (Shelly deltas).
//! The payload fixtures (`tests/fixtures/payloads`) make a good seed corpus: docs/decoders.md.

use chrono::{TimeZone, Utc};
use sensorcast::core::ids::normalize_sensor_id;
use sensorcast::decode::{
    decode_with, BatteryCurve, DecodeState, Decoded, FieldPath, Format, Message, Options, TempUnit,
    TopicTemplate, MAX_DEVICES, MAX_EXTRA,
};

const MAX_PAYLOAD: usize = 64 * 1024;

fn topics(format: Format) -> &'static [&'static str] {
    match format {
        Format::TtnV3 => &["v3/app@ttn/devices/d1/up", "v3/app@ttn/devices/d1/join"],
        Format::Tasmota => &["tele/dev/SENSOR", "tele/a/b/LWT", "tele/x/STATE"],
        Format::Zigbee2Mqtt => &[
            "zigbee2mqtt/kitchen/fridge",
            "zigbee2mqtt/a/availability",
            "zigbee2mqtt/bridge/state",
            "zigbee2mqtt/a/set",
        ],
        Format::ShellyGen2 => &["shellyplusht-1/events/rpc", "shellyplusht-1/online"],
        Format::Value | Format::Json => &["home/bathroom/analog/temperature", "sensors/a"],
    }
}

/// Options that reach the optional code paths (templates, paths, curve, unit).
fn rich(format: Format) -> Options {
    let mut o = Options::default();
    match format {
        Format::Json => {
            o.fields.temperature = FieldPath::try_from("data.temp".to_owned()).ok();
            o.sensor_id = TopicTemplate::try_from("{1..}".to_owned()).ok();
            o.unit = TempUnit::Fahrenheit;
        }
        Format::TtnV3 => {
            o.battery_curve = BatteryCurve::try_from(vec![(2.5, 0.0), (3.0, 100.0)]).ok();
        }
        Format::Value => o.sensor_id = TopicTemplate::try_from("{-2}".to_owned()).ok(),
        _ => {}
    }
    o
}

pub fn run(format: Format, data: &[u8]) {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let list = topics(format);
    let (topic, payload) = match list.get(pick as usize) {
        Some(t) => (t.to_string(), rest),
        None => {
            let end = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
            let topic = String::from_utf8_lossy(&rest[..end]).into_owned();
            (topic, rest.get(end + 1..).unwrap_or_default())
        }
    };
    let at = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    for options in [Options::default(), rich(format)] {
        let mut state = DecodeState::new();
        for message in payload.split(|&b| b == 0) {
            let out = decode_with(
                format,
                &options,
                &mut state,
                Message {
                    topic: &topic,
                    payload: message,
                    received_at: at,
                },
                MAX_PAYLOAD,
            );
            check(&out);
        }
        assert!(state.len() <= MAX_DEVICES);
    }
}

fn check(out: &Result<Decoded, sensorcast::decode::DecodeError>) {
    let id_ok = |id: &str| normalize_sensor_id(id).as_deref() == Ok(id);
    let within = |v: f64, min: f64, max: f64| v.is_finite() && (min..=max).contains(&v);
    match out {
        Ok(Decoded::Readings(readings)) => {
            assert!(!readings.is_empty());
            for r in readings {
                assert!(id_ok(&r.sensor_id), "{r:?}");
                assert!(r.fallback_sensor_id.as_deref().is_none_or(id_ok), "{r:?}");
                assert!(r.temperature.is_some() || r.door_open.is_some(), "{r:?}");
                assert!(
                    r.temperature.is_none_or(|t| within(t, -100.0, 150.0)),
                    "{r:?}"
                );
                assert!(r.humidity.is_none_or(|h| within(h, 0.0, 100.0)), "{r:?}");
                assert!(r.battery.is_none_or(|b| within(b, 0.0, 100.0)), "{r:?}");
                assert!(
                    r.signal_strength.is_none_or(|s| within(s, -200.0, 255.0)),
                    "{r:?}"
                );
                assert!(r.extra.len() <= MAX_EXTRA, "{r:?}");
                assert!(
                    r.extra.iter().all(|(k, v)| k.len() <= 64 && v.is_finite()),
                    "{r:?}"
                );
            }
        }
        Ok(Decoded::Availability { sensor_id, .. }) => assert!(id_ok(sensor_id)),
        Ok(Decoded::Ignored(why)) => assert!(!why.is_empty()),
        Err(e) => {
            assert!(!e.reason().is_empty());
            assert!(e.to_string().len() <= 300, "long error message: {e}");
        }
    }
}
