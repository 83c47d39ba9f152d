//! Field helpers shared by the decoders: numbers that may be quoted, range checks, and the
//! timestamp forms sensors use. Kept apart so every decoder rejects the same things the same way.

use chrono::{DateTime, TimeZone, Utc};
use serde_json::Value;

use super::options::TempUnit;
use super::{DecodeError, Extra, MAX_DEPTH, MAX_EXTRA};

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

/// A door state: `true`/`false`, `1`/`0`, or the words `open`/`closed`, `on`/`off`,
/// `true`/`false` (any case); `true` is open. A `contact` field says the opposite (Zigbee's
/// `contact: true` is a closed door), which `contact` inverts. `Ok(None)` for null/absent.
pub fn door_state(
    field: &'static str,
    v: Option<&Value>,
    contact: bool,
) -> Result<Option<bool>, DecodeError> {
    let open = match v {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Bool(b)) => Some(*b),
        Some(Value::Number(n)) => n.as_f64().and_then(|x| {
            if x == 1.0 {
                Some(true)
            } else if x == 0.0 {
                Some(false)
            } else {
                None
            }
        }),
        Some(Value::String(s)) => door_word(s),
        Some(_) => None,
    };
    match open {
        Some(open) => Ok(Some(open != contact)),
        None => Err(DecodeError::NotADoorState {
            field,
            value: short(v.expect("checked above")),
        }),
    }
}

/// `open`/`on`/`true` → `true`, `closed`/`close`/`off`/`false` → `false` (any case, blanks
/// allowed).
pub fn door_word(text: &str) -> Option<bool> {
    let t = text.trim();
    let is = |w: &str| t.eq_ignore_ascii_case(w);
    if is("open") || is("on") || is("true") || is("1") {
        Some(true)
    } else if is("closed") || is("close") || is("off") || is("false") || is("0") {
        Some(false)
    } else {
        None
    }
}

/// Converts °F to °C. Rounded to 6 decimals so that 38.3 °F gives 3.5, not 3.4999999999999996.
pub fn fahrenheit_to_celsius(f: f64) -> f64 {
    (((f - 32.0) * 5.0 / 9.0) * 1e6).round() / 1e6
}

/// A temperature published in `unit`, in °C and range-checked; `Ok(None)` when absent or null.
pub fn temperature(
    field: &'static str,
    v: Option<&Value>,
    unit: TempUnit,
) -> Result<Option<f64>, DecodeError> {
    number(field, v)?
        .map(|t| check_temperature(to_celsius(t, unit)))
        .transpose()
}

/// `t` in °C.
pub fn to_celsius(t: f64, unit: TempUnit) -> f64 {
    match unit {
        TempUnit::Celsius => t,
        TempUnit::Fahrenheit => fahrenheit_to_celsius(t),
    }
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
    match v {
        Value::String(s) => parse_timestamp_str(s),
        Value::Number(n) => n
            .as_f64()
            .and_then(from_epoch)
            .ok_or_else(|| DecodeError::BadTimestamp(short(v))),
        _ => Err(DecodeError::BadTimestamp(short(v))),
    }
}

/// [`parse_timestamp`] for text (RFC 3339 or a number), without building a JSON value.
pub fn parse_timestamp_str(s: &str) -> Result<DateTime<Utc>, DecodeError> {
    let t = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(t) {
        return Ok(t.with_timezone(&Utc));
    }
    t.parse::<f64>()
        .ok()
        .and_then(from_epoch)
        .ok_or_else(|| DecodeError::BadTimestamp(short(&Value::String(s.to_owned()))))
}

/// Epoch seconds or milliseconds (above 1e11) to a time; `None` when negative or absurd.
fn from_epoch(epoch: f64) -> Option<DateTime<Utc>> {
    if !epoch.is_finite() || epoch < 0.0 {
        return None;
    }
    let millis = if epoch >= 1e11 { epoch } else { epoch * 1000.0 };
    if millis > 1e14 {
        return None;
    }
    Utc.timestamp_millis_opt(millis.round() as i64).single()
}

/// A short rendering of a value for error messages (never the whole payload).
pub fn short(v: &Value) -> String {
    clip(v.to_string(), 40)
}

/// `s` cut to at most `max` bytes (at a character boundary), marked with `…` when cut: parser
/// messages quote the offending string, which may be most of the payload.
pub fn clip(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}

/// Longest parser message kept in an error.
const MAX_PARSER_MESSAGE: usize = 160;

/// A JSON parser error as [`DecodeError::NotJson`], clipped.
pub fn not_json(e: &serde_json::Error) -> DecodeError {
    DecodeError::NotJson(clip(e.to_string(), MAX_PARSER_MESSAGE))
}

/// A JSON shape error (valid JSON, wrong types) as [`DecodeError::Malformed`], clipped.
pub fn malformed(what: &str, e: &serde_json::Error) -> DecodeError {
    DecodeError::Malformed(clip(format!("{what}: {e}"), MAX_PARSER_MESSAGE))
}

/// Rejects a payload whose `[`/`{` nesting goes deeper than [`MAX_DEPTH`], before it is parsed:
/// one pass over the bytes, no recursion, no allocation. Brackets inside strings do not count.
/// Invalid JSON passes through here and is rejected by the parser.
pub fn check_depth(payload: &[u8]) -> Result<(), DecodeError> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in payload {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(DecodeError::TooDeep { limit: MAX_DEPTH });
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// Parses a payload as JSON after the depth check.
pub fn json_value(payload: &[u8]) -> Result<Value, DecodeError> {
    check_depth(payload)?;
    serde_json::from_slice(payload).map_err(|e| not_json(&e))
}

/// Parses a payload as a JSON object (after the depth check).
pub fn json_object(payload: &[u8]) -> Result<serde_json::Map<String, Value>, DecodeError> {
    match json_value(payload)? {
        Value::Object(map) => Ok(map),
        other => Err(DecodeError::NotJson(format!(
            "expected a json object, got {}",
            short(&other)
        ))),
    }
}

/// Longest name kept in `extra` (longer ones are skipped: a name is a label, not data).
pub const MAX_EXTRA_NAME: usize = 64;

/// Keeps `name = v` in `extra` when `v` is a finite number or a boolean (1/0), the name is short
/// printable text, and [`MAX_EXTRA`] is not reached. Anything else is not a measurement.
pub fn push_extra(extra: &mut Extra, name: &str, v: &Value) {
    if extra.len() >= MAX_EXTRA
        || name.is_empty()
        || name.len() > MAX_EXTRA_NAME
        || name.chars().any(char::is_control)
    {
        return;
    }
    let n = match v {
        Value::Number(n) => n.as_f64(),
        Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
        _ => None,
    };
    if let Some(n) = n.filter(|n| n.is_finite()) {
        extra.push((name.to_owned(), n));
    }
}

/// `true` for `online`, `false` for `offline` (any case, surrounding blanks allowed), as Tasmota
/// LWT, Zigbee2MQTT availability and Shelly `online` topics say it.
pub fn online_word(text: &str) -> Option<bool> {
    let t = text.trim();
    if t.eq_ignore_ascii_case("online") || t == "true" {
        Some(true)
    } else if t.eq_ignore_ascii_case("offline") || t == "false" {
        Some(false)
    } else {
        None
    }
}
