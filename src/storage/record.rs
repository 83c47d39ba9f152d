//! How one reading is kept on disk: a compact binary record (postcard, a serde format with
//! variable-length integers) of what a [`SensorReading`] carries beyond its feed. The unit,
//! site, organization and epoch are the feed's (stored once in `feeds`), the `id` is derived
//! (`{epoch}-{unitId}-{seq}`), and times are milliseconds. About 45–60 bytes per reading,
//! against 300 for its JSON: the box writes to an SD card.
//!
//! Records are framed as `(feed, bytes)` pairs, so a scan for one unit skips the others without
//! decoding them.

use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::sync::Arc;

use crate::core::reading::{DoorState, SensorReading};

/// What a feed is: one unit under one organization, site and epoch.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FeedKey {
    pub unit: Arc<str>,
    pub org: Arc<str>,
    pub site: Arc<str>,
    pub epoch: Arc<str>,
}

#[derive(Serialize, Deserialize)]
struct Rec<'a> {
    seq: u64,
    received_ms: i64,
    /// `recorded_at - received_at`: usually a few milliseconds, so one or two bytes.
    recorded_delta_ms: i64,
    #[serde(borrow)]
    device: Cow<'a, str>,
    temperature: f64,
    humidity: Option<f64>,
    battery: Option<f64>,
    signal: Option<f64>,
    #[serde(borrow)]
    source: Cow<'a, str>,
    #[serde(borrow)]
    extra: Vec<(Cow<'a, str>, f64)>,
    retained: bool,
    /// (device, open, since in ms)
    #[serde(borrow)]
    door: Option<(Cow<'a, str>, bool, i64)>,
}

pub fn millis(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub fn from_millis(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

/// Appends `(feed, record of r)` to `out`.
pub fn encode(feed: u32, r: &SensorReading, out: &mut Vec<u8>) {
    let rec = Rec {
        seq: r.seq,
        received_ms: millis(r.received_at),
        recorded_delta_ms: millis(r.recorded_at) - millis(r.received_at),
        device: Cow::Borrowed(&r.device_id),
        temperature: r.temperature,
        humidity: r.humidity,
        battery: r.battery,
        signal: r.signal_strength,
        source: Cow::Borrowed(r.source),
        extra: r
            .extra
            .iter()
            .map(|(k, v)| (Cow::Borrowed(k.as_str()), *v))
            .collect(),
        retained: r.retained,
        door: r
            .door
            .as_ref()
            .map(|d| (Cow::Borrowed(&*d.device_id), d.open, millis(d.since))),
    };
    // Serialising into a Vec cannot fail for this plain struct. The frame, `(feed, bytes)`,
    // is appended to `out` in place.
    let body = postcard::to_allocvec(&rec).unwrap_or_default();
    let framed = postcard::to_extend(&(feed, body.as_slice()), std::mem::take(out));
    *out = framed.unwrap_or_default();
}

/// The records of `bytes`, framed by [`encode`], as `(feed, record bytes)`. Stops at the first
/// frame that does not parse (a torn write cannot happen inside SQLite, but a bug must not loop).
pub fn frames(mut bytes: &[u8]) -> impl Iterator<Item = (u32, &[u8])> {
    std::iter::from_fn(move || {
        if bytes.is_empty() {
            return None;
        }
        let ((feed, body), rest): ((u32, &[u8]), &[u8]) = postcard::take_from_bytes(bytes).ok()?;
        bytes = rest;
        Some((feed, body))
    })
}

/// The reading a record holds, with its feed's ids. `None` for a record that does not parse.
pub fn decode(key: &FeedKey, body: &[u8]) -> Option<SensorReading> {
    let rec: Rec = postcard::from_bytes(body).ok()?;
    let received_at = from_millis(rec.received_ms);
    Some(SensorReading {
        id: format!("{}-{}-{}", key.epoch, key.unit, rec.seq),
        seq: rec.seq,
        unit_id: key.unit.clone(),
        site_id: key.site.clone(),
        organization_id: key.org.clone(),
        device_id: rec.device.as_ref().into(),
        temperature: rec.temperature,
        humidity: rec.humidity,
        battery: rec.battery,
        signal_strength: rec.signal,
        recorded_at: from_millis(rec.received_ms + rec.recorded_delta_ms),
        received_at,
        source: crate::core::reading::static_name(rec.source.into_owned()),
        extra: rec
            .extra
            .into_iter()
            .map(|(k, v)| (k.into_owned(), v))
            .collect(),
        retained: rec.retained,
        door: rec.door.map(|(d, open, since)| DoorState {
            device_id: d.as_ref().into(),
            open,
            since: from_millis(since),
        }),
    })
}

/// The values a rollup needs, without decoding the rest: (received ms, temperature, humidity).
pub fn values(body: &[u8]) -> Option<(u64, i64, f64, Option<f64>)> {
    let rec: Rec = postcard::from_bytes(body).ok()?;
    Some((rec.seq, rec.received_ms, rec.temperature, rec.humidity))
}

/// Compresses a chunk (one unit's hour of records): raw deflate, level 9 (written once an
/// hour, read by every history query: size over speed).
pub fn pack(bytes: &[u8]) -> Vec<u8> {
    miniz_oxide::deflate::compress_to_vec(bytes, 9)
}

/// Compresses a log row (one commit's records, every unit): raw deflate, level 1. About half
/// the bytes, so half the pages each commit writes.
pub fn pack_log(bytes: &[u8]) -> Vec<u8> {
    miniz_oxide::deflate::compress_to_vec(bytes, 1)
}

/// A log row's records: `body` as stored, deflated when `packed`. `None` when it does not
/// inflate (a damaged row).
pub fn log_body(body: Vec<u8>, packed: bool) -> Option<Vec<u8>> {
    if packed {
        unpack(&body)
    } else {
        Some(body)
    }
}

/// A chunk's records, or `None` when it does not inflate (a damaged row is skipped, counted by
/// the caller). Bounded: a chunk never holds more than 64 MiB of records.
pub fn unpack(bytes: &[u8]) -> Option<Vec<u8>> {
    miniz_oxide::inflate::decompress_to_vec_with_limit(bytes, 64 << 20).ok()
}
