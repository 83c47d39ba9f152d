//! What a subscription can tell its decoder: where the sensor id is in the topic, where the
//! values are in a JSON payload, the temperature unit, which quantity a plain number is, and how
//! a battery voltage maps to a percentage. Each option is parsed and checked once, when the
//! config is loaded (a bad template is a config error naming its line), so the hot path only
//! follows already-split paths.

use serde::Deserialize;
use std::fmt;

use super::DecodeError;

/// How a subscription's decoder is set up. Built by `config::Subscription` from the file, which
/// also rejects an option that does not apply to the subscription's format.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Options {
    /// Sensor id from topic levels (`json`, `value`, `tasmota`); `None`: the format's default.
    pub sensor_id: Option<TopicTemplate>,
    /// `json`: a payload field holding the sensor id (wins over the topic).
    pub sensor_id_field: Option<FieldPath>,
    /// `json`: where each value is in the payload.
    pub fields: JsonFields,
    /// `json`, `value`: the unit temperatures are published in.
    pub unit: TempUnit,
    /// `value`: which quantity the number is.
    pub metric: Metric,
    /// `ttn-v3`: battery voltage → percent; without it a voltage stays in `extra`.
    pub battery_curve: Option<BatteryCurve>,
    /// `zigbee2mqtt`: Zigbee2MQTT's own `base_topic` (may contain `/`).
    pub base_topic: Option<String>,
    /// `tasmota`: what `Switch1` `ON` means for a door contact.
    pub switch_on: SwitchOn,
}

/// What a Tasmota switch's `ON` says about its door (`switch_on = "open"` or `"closed"`): it
/// depends on how the reed contact is wired and on `SwitchMode`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SwitchOn {
    #[default]
    Open,
    Closed,
}

/// Temperature unit of a publisher (`unit = "C"` or `"F"`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum TempUnit {
    #[default]
    #[serde(rename = "C", alias = "c")]
    Celsius,
    #[serde(rename = "F", alias = "f")]
    Fahrenheit,
}

/// The quantity a `value` payload holds (`metric = "temperature"`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    #[default]
    Temperature,
    Humidity,
    Battery,
}

/// `json` field paths (`fields = { temperature = "data.temp" }`); unset ones keep the defaults.
/// `ttn-v3` takes `door` only, as a path inside `decoded_payload`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonFields {
    pub temperature: Option<FieldPath>,
    pub humidity: Option<FieldPath>,
    pub battery: Option<FieldPath>,
    pub signal_strength: Option<FieldPath>,
    pub timestamp: Option<FieldPath>,
    /// A door state (`true`, `1` or `"open"` is open).
    pub door: Option<FieldPath>,
}

/// Deepest field path accepted; payloads are depth-capped anyway.
const MAX_PATH_SEGMENTS: usize = 16;

/// A dotted path into a JSON payload: `data.temp`, `params.temperature:0.tC`, `readings.0.value`.
/// Segments are separated by `.` and taken literally (so `temperature:0` is one key); on an
/// array a segment that is a number is an index.
#[derive(Clone, PartialEq, Deserialize)]
#[serde(try_from = "String")]
pub struct FieldPath {
    text: String,
    segments: Vec<String>,
}

impl FieldPath {
    /// The value at this path, if every step exists.
    pub fn get<'v>(&self, root: &'v serde_json::Value) -> Option<&'v serde_json::Value> {
        self.segments.iter().try_fold(root, |v, seg| step(v, seg))
    }

    /// The value at this path inside an object (a path relative to `ttn-v3`'s
    /// `decoded_payload`).
    pub fn get_in<'v>(
        &self,
        map: &'v serde_json::Map<String, serde_json::Value>,
    ) -> Option<&'v serde_json::Value> {
        let (first, rest) = self.segments.split_first()?;
        rest.iter()
            .try_fold(map.get(first.as_str())?, |v, seg| step(v, seg))
    }

    /// The top-level key the path starts with.
    pub fn first(&self) -> &str {
        &self.segments[0]
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// One step of a path: a key of an object, or an index into an array.
fn step<'v>(v: &'v serde_json::Value, seg: &str) -> Option<&'v serde_json::Value> {
    match v {
        serde_json::Value::Object(m) => m.get(seg),
        serde_json::Value::Array(a) => seg.parse::<usize>().ok().and_then(|i| a.get(i)),
        _ => None,
    }
}

impl TryFrom<String> for FieldPath {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        let segments: Vec<String> = text.split('.').map(str::to_owned).collect();
        if segments.iter().any(String::is_empty) {
            return Err(format!(
                "field path {text:?}: empty segment (write keys separated by single dots)"
            ));
        }
        if segments.len() > MAX_PATH_SEGMENTS {
            return Err(format!(
                "field path {text:?}: more than {MAX_PATH_SEGMENTS} segments"
            ));
        }
        Ok(FieldPath { text, segments })
    }
}

impl fmt::Debug for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.text)
    }
}

/// A sensor id made of topic levels: `{3}` is level 3 (0-based), `{-1}` the last, `{1..}` levels
/// 1 to the end joined by `/`, `{1..-1}` all but the first and last. Text outside braces is kept
/// as it is (`"site-{1}/{3}"`).
#[derive(Clone, PartialEq, Deserialize)]
#[serde(try_from = "String")]
pub struct TopicTemplate {
    text: String,
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Text(String),
    /// Levels `start..end` (`end` exclusive, `None`: to the end); `single` for `{N}`.
    Levels {
        start: i32,
        end: Option<i32>,
        single: bool,
    },
}

/// Larger level indexes are surely typos (MQTT topics this deep do not occur).
const MAX_LEVEL: i32 = 64;

impl TopicTemplate {
    /// Builds the sensor id for `topic`, or says which level is missing.
    pub fn render(&self, topic: &str) -> Result<String, DecodeError> {
        let levels: Vec<&str> = topic.split('/').collect();
        let n = levels.len() as i64;
        let at = |i: i32| if i < 0 { n + i as i64 } else { i as i64 };
        let mut out = String::with_capacity(topic.len());
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Levels { start, end, single } => {
                    let s = at(*start);
                    let e = if *single { s + 1 } else { end.map_or(n, at) };
                    if s < 0 || e > n || s >= e {
                        return Err(DecodeError::NoSensorId("topic has no such level"));
                    }
                    let picked = &levels[s as usize..e as usize];
                    if picked.iter().any(|l| l.is_empty()) {
                        return Err(DecodeError::NoSensorId("topic level is empty"));
                    }
                    for (i, level) in picked.iter().enumerate() {
                        if i > 0 {
                            out.push('/');
                        }
                        out.push_str(level);
                    }
                }
            }
        }
        Ok(out)
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl TryFrom<String> for TopicTemplate {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        let bad = |why: &str| format!("sensor id template {text:?}: {why}");
        let mut parts = Vec::new();
        let mut rest = text.as_str();
        while !rest.is_empty() {
            let open = rest.find(['{', '}']).unwrap_or(rest.len());
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_owned()));
            }
            rest = &rest[open..];
            if rest.is_empty() {
                break;
            }
            if rest.starts_with('}') {
                return Err(bad("'}' without '{'"));
            }
            let close = rest.find('}').ok_or_else(|| bad("'{' without '}'"))?;
            parts.push(parse_levels(&rest[1..close]).ok_or_else(|| {
                bad("expected {N}, {N..} or {N..M} with whole numbers (negative count from the end)")
            })?);
            rest = &rest[close + 1..];
        }
        if !parts.iter().any(|p| matches!(p, Part::Levels { .. })) {
            return Err(bad("names no topic level; write {N} for level N (0-based)"));
        }
        Ok(TopicTemplate { text, parts })
    }
}

fn parse_levels(inner: &str) -> Option<Part> {
    let index = |s: &str| {
        s.trim()
            .parse::<i32>()
            .ok()
            .filter(|i| i.abs() <= MAX_LEVEL)
    };
    match inner.split_once("..") {
        None => Some(Part::Levels {
            start: index(inner)?,
            end: None,
            single: true,
        }),
        Some((a, b)) => Some(Part::Levels {
            start: index(a)?,
            end: if b.trim().is_empty() {
                None
            } else {
                Some(index(b)?)
            },
            single: false,
        }),
    }
}

impl fmt::Debug for TopicTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.text)
    }
}

/// Battery voltage → percent: points `[volts, percent]` with volts strictly increasing,
/// interpolated linearly and clamped at both ends (`battery_curve = [[2.5, 0], [3.0, 100]]`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "Vec<(f64, f64)>")]
pub struct BatteryCurve(Vec<(f64, f64)>);

impl BatteryCurve {
    /// The percentage for `volts`, to 0.1 %.
    pub fn percent(&self, volts: f64) -> f64 {
        (self.interpolate(volts) * 10.0).round() / 10.0
    }

    fn interpolate(&self, volts: f64) -> f64 {
        let points = &self.0;
        let (v0, p0) = points[0];
        if volts <= v0 {
            return p0;
        }
        for w in points.windows(2) {
            let ((va, pa), (vb, pb)) = (w[0], w[1]);
            if volts <= vb {
                return pa + (pb - pa) * (volts - va) / (vb - va);
            }
        }
        points[points.len() - 1].1
    }
}

impl TryFrom<Vec<(f64, f64)>> for BatteryCurve {
    type Error = String;
    fn try_from(points: Vec<(f64, f64)>) -> Result<Self, String> {
        if points.len() < 2 || points.len() > 32 {
            return Err("battery_curve needs 2 to 32 [volts, percent] points".into());
        }
        for &(v, p) in &points {
            if !(v.is_finite() && v > 0.0 && v < 100.0) {
                return Err(format!("battery_curve: {v} V is not a battery voltage"));
            }
            if !(0.0..=100.0).contains(&p) {
                return Err(format!("battery_curve: {p} is not a percentage (0..=100)"));
            }
        }
        if points.windows(2).any(|w| w[1].0 <= w[0].0) {
            return Err("battery_curve: volts must increase from one point to the next".into());
        }
        Ok(BatteryCurve(points))
    }
}
