//! Rollups: count, min, max and mean of temperature (and of humidity where present) per unit
//! per 1 min, 15 min and 1 h. The writer computes them from a unit's hour of records when it
//! compacts that hour; queries compute the same from the log for the hour not compacted yet,
//! with this one function, so both agree.

use serde::Serialize;
use std::collections::BTreeMap;

/// A query's or a rollup's resolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Resolution {
    #[serde(rename = "raw")]
    Raw,
    #[serde(rename = "1m")]
    Minute,
    #[serde(rename = "15m")]
    Quarter,
    #[serde(rename = "1h")]
    Hour,
}

impl Resolution {
    pub const ROLLUPS: [Resolution; 3] =
        [Resolution::Minute, Resolution::Quarter, Resolution::Hour];

    pub fn parse(s: &str) -> Option<Resolution> {
        Some(match s {
            "raw" => Resolution::Raw,
            "1m" => Resolution::Minute,
            "15m" => Resolution::Quarter,
            "1h" => Resolution::Hour,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Resolution::Raw => "raw",
            Resolution::Minute => "1m",
            Resolution::Quarter => "15m",
            Resolution::Hour => "1h",
        }
    }

    /// Bucket width in milliseconds (0 for raw).
    pub fn millis(self) -> i64 {
        match self {
            Resolution::Raw => 0,
            Resolution::Minute => 60_000,
            Resolution::Quarter => 900_000,
            Resolution::Hour => 3_600_000,
        }
    }

    /// The finest resolution whose points over `span_ms` stay under `max_points` when readings
    /// come every 10 s (a typical sensor): raw up to 6 h, then 1 min up to 2 days, 15 min up
    /// to a month, then 1 h.
    pub fn for_span(span_ms: i64) -> Resolution {
        const HOUR: i64 = 3_600_000;
        match span_ms {
            s if s <= 6 * HOUR => Resolution::Raw,
            s if s <= 48 * HOUR => Resolution::Minute,
            s if s <= 31 * 24 * HOUR => Resolution::Quarter,
            _ => Resolution::Hour,
        }
    }
}

/// One bucket. Sums, not means, so buckets merge exactly.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Bucket {
    pub t: i64,
    pub n: u64,
    pub tmin: f64,
    pub tmax: f64,
    pub tsum: f64,
    pub hn: u64,
    pub hmin: f64,
    pub hmax: f64,
    pub hsum: f64,
}

impl Bucket {
    fn add(&mut self, temperature: f64, humidity: Option<f64>) {
        if self.n == 0 {
            self.tmin = temperature;
            self.tmax = temperature;
        }
        self.n += 1;
        self.tmin = self.tmin.min(temperature);
        self.tmax = self.tmax.max(temperature);
        self.tsum += temperature;
        if let Some(h) = humidity {
            if self.hn == 0 {
                self.hmin = h;
                self.hmax = h;
            }
            self.hn += 1;
            self.hmin = self.hmin.min(h);
            self.hmax = self.hmax.max(h);
            self.hsum += h;
        }
    }

    /// The wire form of a rollup point: `{ t, count, min, max, mean, humidityMean }`.
    pub fn point(&self) -> Point {
        Point {
            t: crate::storage::record::from_millis(self.t)
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            count: self.n,
            min: self.tmin,
            max: self.tmax,
            mean: round(self.tsum / self.n.max(1) as f64),
            humidity_mean: (self.hn > 0).then(|| round(self.hsum / self.hn as f64)),
        }
    }
}

/// Means to 1/1000, so that a sum's float noise does not reach the wire.
fn round(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Point {
    pub t: String,
    pub count: u64,
    pub min: f64,
    pub max: f64,
    pub mean: f64,
    pub humidity_mean: Option<f64>,
}

/// Buckets of `values` (`(received ms, temperature, humidity)`, any order) at `res`, by start.
pub fn roll(
    values: impl IntoIterator<Item = (i64, f64, Option<f64>)>,
    res: Resolution,
) -> Vec<Bucket> {
    let width = res.millis().max(1);
    let mut buckets: BTreeMap<i64, Bucket> = BTreeMap::new();
    for (t, temperature, humidity) in values {
        let start = t.div_euclid(width) * width;
        let b = buckets.entry(start).or_insert_with(|| Bucket {
            t: start,
            ..Bucket::default()
        });
        b.add(temperature, humidity);
    }
    buckets.into_values().collect()
}
