//! CSV bodies, written by the `csv` crate (it quotes what needs quoting), and the response
//! that carries them as a download. Text that comes from outside (device ids, unit names,
//! alert comments) is kept from reading as a spreadsheet formula: a cell that would start with
//! `=`, `+`, `-`, `@` or a control character gets a leading `'` (the usual defence; numbers
//! are written as numbers and never touched).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::SecondsFormat;
use std::borrow::Cow;

use crate::storage::{HaccpRow, Points};

const RAW_HEADER: [&str; 8] = [
    "receivedAt",
    "recordedAt",
    "seq",
    "deviceId",
    "temperature",
    "humidity",
    "battery",
    "doorOpen",
];
const ROLLUP_HEADER: [&str; 6] = ["t", "count", "min", "max", "mean", "humidityMean"];
const HACCP_HEADER: [&str; 9] = [
    "date",
    "unitId",
    "unitName",
    "readings",
    "min",
    "max",
    "mean",
    "minutesOutOfRange",
    "alerts",
];

/// A history answer as CSV: one row per reading (raw) or per bucket, oldest first.
pub fn points(points: &Points) -> Result<Vec<u8>, csv::Error> {
    let mut w = csv::Writer::from_writer(Vec::new());
    match points {
        Points::Raw(readings) => {
            w.write_record(RAW_HEADER)?;
            for r in readings {
                w.write_record([
                    r.received_at.to_rfc3339_opts(SecondsFormat::Millis, true),
                    r.recorded_at.to_rfc3339_opts(SecondsFormat::Millis, true),
                    r.seq.to_string(),
                    text(&r.device_id).into_owned(),
                    r.temperature.to_string(),
                    number(r.humidity),
                    number(r.battery),
                    r.door
                        .as_ref()
                        .map_or(String::new(), |d| d.open.to_string()),
                ])?;
            }
        }
        Points::Rollup(buckets) => {
            w.write_record(ROLLUP_HEADER)?;
            for p in buckets {
                w.write_record([
                    p.t.clone(),
                    p.count.to_string(),
                    p.min.to_string(),
                    p.max.to_string(),
                    p.mean.to_string(),
                    number(p.humidity_mean),
                ])?;
            }
        }
    }
    finish(w)
}

/// The HACCP report: one row per unit per day.
pub fn haccp(rows: &[HaccpRow]) -> Result<Vec<u8>, csv::Error> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(HACCP_HEADER)?;
    for r in rows {
        w.write_record([
            r.date.clone(),
            text(&r.unit_id).into_owned(),
            text(&r.unit_name).into_owned(),
            r.readings.to_string(),
            number(r.min),
            number(r.max),
            number(r.mean),
            r.minutes_out_of_range.to_string(),
            text(&r.alerts).into_owned(),
        ])?;
    }
    finish(w)
}

fn finish(w: csv::Writer<Vec<u8>>) -> Result<Vec<u8>, csv::Error> {
    w.into_inner().map_err(|e| csv::Error::from(e.into_error()))
}

/// `200 text/csv` offered as a download named `name` (reduced to `[A-Za-z0-9._-]`, since ids
/// come from config files).
pub fn attachment(body: Vec<u8>, name: &str) -> Response {
    let name: String = name
        .chars()
        .map(|c| match c {
            'A'..='Z' | 'a'..='z' | '0'..='9' | '.' | '_' | '-' => c,
            _ => '_',
        })
        .collect();
    let disposition = HeaderValue::from_str(&format!("attachment; filename=\"{name}\""))
        .unwrap_or(HeaderValue::from_static("attachment"));
    (
        StatusCode::OK,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/csv; charset=utf-8"),
            ),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        body,
    )
        .into_response()
}

/// An optional number: empty when absent.
fn number(v: Option<f64>) -> String {
    v.map_or(String::new(), |v| v.to_string())
}

/// Text from outside, never read as a formula.
fn text(s: &str) -> Cow<'_, str> {
    match s.chars().next() {
        Some('=' | '+' | '-' | '@') => Cow::Owned(format!("'{s}")),
        Some(c) if c.is_control() => Cow::Owned(format!("'{s}")),
        _ => Cow::Borrowed(s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn haccp_cells_are_quoted_and_never_formulas() {
        let row = HaccpRow {
            date: "2026-12-07".into(),
            unit_id: "u1".into(),
            unit_name: "=HYPERLINK(\"x\")".into(),
            readings: 2,
            min: Some(-18.5),
            max: Some(4.0),
            mean: None,
            minutes_out_of_range: 3,
            alerts: "a, b; \"c\"".into(),
        };
        let text = String::from_utf8(haccp(&[row]).unwrap()).unwrap();
        assert_eq!(
            text,
            "date,unitId,unitName,readings,min,max,mean,minutesOutOfRange,alerts\n\
             2026-12-07,u1,\"'=HYPERLINK(\"\"x\"\")\",2,-18.5,4,,3,\"a, b; \"\"c\"\"\"\n"
        );
    }
}
