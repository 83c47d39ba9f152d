//! Field helpers shared by the decoders: numbers that may be quoted, range checks, and the
//! timestamp forms sensors use. Kept apart so every decoder rejects the same things the same way.

use chrono::{DateTime, TimeZone, Utc};
use serde_json::Value;

use super::DecodeError;

/// Physical ranges outside which a value is a sensor fault, not a measurement
/// (a DS18B20 reports -127 °C when its probe is disconnected).
pub const TEMPERATURE: (f64, f64) = (-100.0, 150.0);
pub const HUMIDITY: (f64, f64) = (0.0, 100.0);
pub const BATTERY: (f64, f64) = (0.0, 100.0);
pub const SIGNAL: (f64, f64) = (-200.0, 255.0);

/// A JSON value as a finite number: a JSON number, or a string holding one ("18.9").
/// `Ok(None)` for null/absent.
pub fn number(field: &'static str, v: Option<&Value>) -> Result<Option<f64>, DecodeError> {
    let n = match v {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Number(n)) => n.as_f64(),
        Some(Value::String(s)) => s.trim().parse::<f64>().ok(),
        Some(_) => None,
    };
    match n {
        Some(n) if n.is_finite() => Ok(Some(n)),
        _ => Err(DecodeError::NotANumber {
            field,
            value: short(v.expect("checked above")),
        }),
    }
}

/// [`number`] plus a range check.
pub fn ranged(
    field: &'static str,
    v: Option<&Value>,
    (min, max): (f64, f64),
) -> Result<Option<f64>, DecodeError> {
    match number(field, v)? {
        Some(n) if !(min..=max).contains(&n) => Err(DecodeError::OutOfRange {
            field,
            value: n,
            min,
            max,
        }),
        other => Ok(other),
    }
}

/// Converts °F to °C. Rounded to 6 decimals so that 38.3 °F gives 3.5, not 3.4999999999999996.
pub fn fahrenheit_to_celsius(f: f64) -> f64 {
    (((f - 32.0) * 5.0 / 9.0) * 1e6).round() / 1e6
}

/// Checks a Celsius temperature against the physical range.
pub fn check_temperature(t: f64) -> Result<f64, DecodeError> {
    let (min, max) = TEMPERATURE;
    if (min..=max).contains(&t) {
        Ok(t)
    } else {
        Err(DecodeError::OutOfRange {
            field: "temperature",
            value: t,
            min,
            max,
        })
    }
}

/// A timestamp as epoch seconds, epoch milliseconds (numbers or numeric strings; values above
/// 1e11 are taken as milliseconds) or RFC 3339 text.
pub fn parse_timestamp(v: &Value) -> Result<DateTime<Utc>, DecodeError> {
    let bad = || DecodeError::BadTimestamp(short(v));
    let epoch = match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => match DateTime::parse_from_rfc3339(s.trim()) {
            Ok(t) => return Ok(t.with_timezone(&Utc)),
            Err(_) => s.trim().parse::<f64>().ok(),
        },
        _ => None,
    }
    .ok_or_else(bad)?;
    if !epoch.is_finite() || epoch < 0.0 {
        return Err(bad());
    }
    let millis = if epoch >= 1e11 { epoch } else { epoch * 1000.0 };
    if millis > 1e14 {
        return Err(bad());
    }
    Utc.timestamp_millis_opt(millis.round() as i64)
        .single()
        .ok_or_else(bad)
}

/// A short rendering of a value for error messages (never the whole payload).
pub fn short(v: &Value) -> String {
    let mut s = v.to_string();
    if s.len() > 40 {
        let mut cut = 40;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}

/// Parses a payload as a JSON object.
pub fn json_object(payload: &[u8]) -> Result<serde_json::Map<String, Value>, DecodeError> {
    match serde_json::from_slice::<Value>(payload) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(DecodeError::NotJson(format!(
            "expected a json object, got {}",
            short(&other)
        ))),
        Err(e) => Err(DecodeError::NotJson(e.to_string())),
    }
}
