//! The decoders against real-world payloads: every fixture decodes to what its `expect` says,
//! or is rejected with a message containing its `expect_error` text, through the same
//! `decode::decode` call the pipeline makes. The project's fixtures (`tests/fixtures/payloads/`,
//! format in its README) always run; `$SENSORCAST_FIXTURES`, else `../shared/fixtures/payloads/`
//! when it exists, is checked as well (tests/common/fixtures.rs).

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{DateTime, TimeZone, Utc};
use common::fixtures;
use sensorcast::decode::Subscription;
use sensorcast::decode::{self, Decoded, Format, Reading};
use serde_json::Value;

/// Absolute tolerance for numbers (°C, %, dBm).
const TOLERANCE: f64 = 1e-9;
const MAX_PAYLOAD: usize = 64 * 1024;

/// Every fixture of every folder decodes as it says; all failures are listed at once.
#[test]
fn every_payload_fixture_decodes_as_expected() {
    let mut checked = 0;
    let mut failures = Vec::new();
    for dir in fixtures::dirs() {
        let files = fixtures::files(&dir);
        eprintln!("{} fixtures in {}", files.len(), dir.display());
        checked += files.len();
        for path in files {
            if let Err(why) = check_fixture(&path) {
                failures.push(format!("{}: {why}", path.display()));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} fixtures failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The project's own fixtures cover every format with readings and with rejections, so the
/// test above means something in a fresh clone.
#[test]
fn the_project_fixtures_cover_every_format() {
    // format -> (fixtures with readings, fixtures with an expected error)
    let mut seen: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for path in fixtures::files(&fixtures::project_dir()) {
        let text = std::fs::read_to_string(&path).unwrap();
        let fixture: Value = serde_json::from_str(&text).unwrap();
        let counts = seen
            .entry(fixture["format"].as_str().unwrap_or("?").to_owned())
            .or_default();
        if fixture.get("expect").is_some() {
            counts.0 += 1;
        } else {
            counts.1 += 1;
        }
    }
    for format in Format::ALL {
        let (readings, errors) = seen.get(format.name()).copied().unwrap_or_default();
        assert!(
            readings >= 3 && errors >= 1,
            "{}: {readings} reading and {errors} error fixtures (want 3+ and 1+): {seen:?}",
            format.name()
        );
    }
}

fn check_fixture(path: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("unreadable: {e}"))?;
    let fixture: Value = serde_json::from_str(&text).map_err(|e| format!("not json: {e}"))?;
    let obj = fixture.as_object().ok_or("not a json object")?;
    for key in obj.keys() {
        if !["format", "topic", "payload", "expect", "expect_error"].contains(&key.as_str()) {
            return Err(format!("unknown fixture key {key:?}"));
        }
    }
    let text_of = |key: &str| {
        obj.get(key)
            .and_then(Value::as_str)
            .ok_or(format!("{key} must be a string"))
    };
    let format: Format = text_of("format")?.parse()?;
    let topic = text_of("topic")?;
    let payload = text_of("payload")?;

    let sub = Subscription::new("#", format);
    let received_at = Utc.with_ymd_and_hms(2030, 6, 1, 12, 0, 0).unwrap();
    let outcome = decode::decode(
        &sub,
        &mut decode::DecodeState::new(),
        decode::Message {
            topic,
            payload: payload.as_bytes(),
            received_at,
        },
        MAX_PAYLOAD,
    );
    match (obj.get("expect"), obj.get("expect_error")) {
        (Some(expect), None) => {
            let readings = match outcome {
                Ok(Decoded::Readings(r)) => r,
                other => return Err(format!("expected a reading, got {other:?}")),
            };
            // One object for one reading; a list for a message that carries several.
            let expects: Vec<&Value> = match expect {
                Value::Array(list) => list.iter().collect(),
                one => vec![one],
            };
            if expects.len() != readings.len() {
                return Err(format!(
                    "expected {} reading(s), got {readings:?}",
                    expects.len()
                ));
            }
            for (want, got) in expects.into_iter().zip(&readings) {
                check_reading(want, got).map_err(|e| format!("{e}\n  reading: {got:?}"))?;
            }
            Ok(())
        }
        (None, Some(Value::String(word))) => match outcome {
            Err(e) if e.to_string().contains(word.as_str()) => Ok(()),
            Err(e) => Err(format!("rejected, but {:?} lacks {word:?}", e.to_string())),
            Ok(other) => Err(format!("expected a rejection ({word:?}), got {other:?}")),
        },
        _ => Err("needs exactly one of expect (object or list) and expect_error (text)".into()),
    }
}

/// Checks the fields `want` lists; `null` means the reading must not have the field.
fn check_reading(want: &Value, r: &Reading) -> Result<(), String> {
    let want = want.as_object().ok_or("expect must be an object")?;
    for (key, value) in want {
        match key.as_str() {
            "temperature" => number(key, value, r.temperature)?,
            "door" => {
                let got = r.door_open.map(|open| if open { "open" } else { "closed" });
                if value.as_str() != got {
                    return Err(format!("door: expected {value}, got {got:?}"));
                }
            }
            "humidity" => number(key, value, r.humidity)?,
            "battery" => number(key, value, r.battery)?,
            "signalStrength" => number(key, value, r.signal_strength)?,
            "sensorId" => {
                if value.as_str() != Some(r.sensor_id.as_str()) {
                    return Err(format!("sensorId: expected {value}, got {:?}", r.sensor_id));
                }
            }
            "recordedAt" => {
                let text = value.as_str().ok_or("recordedAt must be text")?;
                let at = DateTime::parse_from_rfc3339(text)
                    .map_err(|e| format!("recordedAt {text:?}: {e}"))?;
                if at != r.recorded_at {
                    return Err(format!(
                        "recordedAt: expected {text}, got {}",
                        r.recorded_at.to_rfc3339()
                    ));
                }
            }
            "extra" => {
                let names = value.as_object().ok_or("extra must be an object")?;
                for (name, v) in names {
                    let got = r.extra.iter().find(|(k, _)| k == name).map(|(_, n)| *n);
                    number(&format!("extra.{name}"), v, got)?;
                }
            }
            other => return Err(format!("unknown expectation {other:?}")),
        }
    }
    Ok(())
}

fn number(key: &str, want: &Value, got: Option<f64>) -> Result<(), String> {
    match (want, got) {
        (Value::Null, None) => Ok(()),
        (Value::Number(n), Some(g)) if n.as_f64().is_some_and(|n| (n - g).abs() <= TOLERANCE) => {
            Ok(())
        }
        _ => Err(format!("{key}: expected {want}, got {got:?}")),
    }
}
