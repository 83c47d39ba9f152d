//! Reading the store back: a unit's history (raw or rolled up), the readings a resuming
//! subscriber missed, each unit's newest reading at start, and the HACCP day rows. Every query
//! names the unit with its organization and site: history kept under another owner (a unit
//! that moved) is never part of the answer.
//!
//! Raw readings live in two places: the log (the current hour, one row per commit, every unit
//! mixed) and chunks (one row per unit per past hour). A query reads both inside one read
//! transaction, so compaction moving an hour from one to the other is never seen half done.

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use super::record::{self, FeedKey};
use super::rollup::{roll, Bucket, Point, Resolution};
use super::schema::{chunk_id, chunk_key};
use super::{Store, StoreError, StoreHealth};
use crate::core::reading::SensorReading;

const HOUR_MS: i64 = 3_600_000;

/// A history answer.
#[derive(Debug, Serialize)]
pub struct History {
    pub resolution: Resolution,
    pub points: Points,
    pub truncated: bool,
}

#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Points {
    Raw(Vec<SensorReading>),
    Rollup(Vec<Point>),
}

impl Points {
    pub fn len(&self) -> usize {
        match self {
            Points::Raw(v) => v.len(),
            Points::Rollup(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The feeds of `unit` under `org` and `site` (every epoch, or only `epoch`).
pub(super) fn feeds(
    conn: &Connection,
    unit: &str,
    org: &str,
    site: &str,
    epoch: Option<&str>,
) -> Result<HashMap<u32, FeedKey>, StoreError> {
    let mut st = conn.prepare_cached(
        "SELECT feed, epoch FROM feeds WHERE unit = ?1 AND org = ?2 AND site = ?3",
    )?;
    let rows = st.query_map([unit, org, site], |r| {
        Ok((r.get::<_, u32>(0)?, r.get::<_, String>(1)?))
    })?;
    let mut out = HashMap::new();
    for row in rows {
        let (feed, e) = row?;
        if epoch.is_none_or(|want| want == e) {
            out.insert(
                feed,
                FeedKey {
                    unit: unit.into(),
                    org: org.into(),
                    site: site.into(),
                    epoch: e.into(),
                },
            );
        }
    }
    Ok(out)
}

/// The hours `[from, to]` (ms) clamped to the hours that have chunks, as chunk hours.
fn chunk_hours(conn: &Connection, from: i64, to: i64) -> Result<Vec<i64>, StoreError> {
    // Two queries: SQLite answers MIN or MAX alone from the tree's ends, both at once by
    // scanning the table.
    let lo: Option<i64> = conn.query_row("SELECT MIN(id) FROM chunks", [], |r| r.get(0))?;
    let hi: Option<i64> = conn.query_row("SELECT MAX(id) FROM chunks", [], |r| r.get(0))?;
    let (Some(lo), Some(hi)) = (lo, hi) else {
        return Ok(Vec::new());
    };
    let first = (from.div_euclid(HOUR_MS) * HOUR_MS).max(chunk_key(lo).0);
    let last = to.min(chunk_key(hi).0);
    Ok((first..=last.max(first - 1))
        .step_by(HOUR_MS as usize)
        .collect())
}

/// The log rows overlapping `[from, to]`, in order, inflated (a damaged row is counted).
fn log_rows(
    conn: &Connection,
    from: i64,
    to: i64,
    health: &StoreHealth,
    mut visit: impl FnMut(&[u8]),
) -> Result<(), StoreError> {
    let mut st = conn.prepare_cached(
        "SELECT body, packed FROM log WHERE t_max >= ?1 AND t_min <= ?2 ORDER BY id",
    )?;
    let rows = st.query_map(params![from, to], |r| {
        Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, bool>(1)?))
    })?;
    for row in rows {
        let (body, packed) = row?;
        match record::log_body(body, packed) {
            Some(bytes) => visit(&bytes),
            None => {
                health.damaged.fetch_add(1, Relaxed);
            }
        }
    }
    Ok(())
}

/// Every record of `feeds` (framed bodies, decoded by the caller): chunks of the hours in
/// `[from, to]`, then the log rows that overlap it. `visit` gets (feed, record bytes).
fn scan(
    conn: &Connection,
    feeds: &HashMap<u32, FeedKey>,
    from: i64,
    to: i64,
    health: &StoreHealth,
    mut visit: impl FnMut(u32, &[u8]),
) -> Result<(), StoreError> {
    let hours = chunk_hours(conn, from, to)?;
    let mut st = conn.prepare_cached("SELECT body FROM chunks WHERE id = ?1")?;
    for feed in feeds.keys() {
        for &hour in &hours {
            let Some(body) = st
                .query_row([chunk_id(hour, *feed)], |r| r.get::<_, Vec<u8>>(0))
                .optional()?
            else {
                continue;
            };
            match record::unpack(&body) {
                Some(bytes) => record::frames(&bytes).for_each(|(f, rec)| visit(f, rec)),
                None => {
                    health.damaged.fetch_add(1, Relaxed);
                }
            }
        }
    }
    log_rows(conn, from, to, health, |body| {
        for (f, rec) in record::frames(body) {
            if feeds.contains_key(&f) {
                visit(f, rec);
            }
        }
    })
}

/// Raw readings in `[from, to]`, oldest first, at most `limit` (and whether there were more).
pub fn raw(
    conn: &Connection,
    feeds: &HashMap<u32, FeedKey>,
    from: i64,
    to: i64,
    limit: usize,
    health: &StoreHealth,
) -> Result<(Vec<SensorReading>, bool), StoreError> {
    let mut out = Vec::new();
    scan(conn, feeds, from, to, health, |f, rec| {
        let Some((_, t, _, _)) = record::values(rec) else {
            return;
        };
        if t < from || t > to {
            return;
        }
        if let Some(r) = feeds.get(&f).and_then(|k| record::decode(k, rec)) {
            out.push(r);
        }
    })?;
    out.sort_by_key(|r| (r.received_at, r.seq));
    let truncated = out.len() > limit;
    out.truncate(limit);
    Ok((out, truncated))
}

/// The 1 min rollups stored for the hour `hour` (of one feed, or all), as (feed, bucket) in
/// (feed, time) order.
pub(super) fn minute_rows(
    conn: &Connection,
    hour: i64,
    only: Option<u32>,
) -> Result<Vec<(u32, Bucket)>, StoreError> {
    // Two statements: `feed = ?` must be a plain equality for SQLite to seek on it (an
    // `?2 IS NULL OR` form reads every feed's rows of the hour).
    const COLUMNS: &str = "SELECT feed, t, n, tmin, tmax, tsum, hn, hmin, hmax, hsum FROM rollups";
    let row = |r: &rusqlite::Row| Ok((r.get::<_, u32>(0)?, bucket(r, 1)?));
    let rows: Vec<(u32, Bucket)> = match only {
        Some(feed) => conn
            .prepare_cached(&format!(
                "{COLUMNS} WHERE res = 60 AND p = ?1 AND feed = ?2 ORDER BY t"
            ))?
            .query_map(params![hour, feed], row)?
            .collect::<Result<_, _>>()?,
        None => conn
            .prepare_cached(&format!(
                "{COLUMNS} WHERE res = 60 AND p = ?1 ORDER BY feed, t"
            ))?
            .query_map(params![hour], row)?
            .collect::<Result<_, _>>()?,
    };
    Ok(rows)
}

/// A bucket from the row's columns `t, n, tmin, tmax, tsum, hn, hmin, hmax, hsum` from `at`.
fn bucket(r: &rusqlite::Row, at: usize) -> rusqlite::Result<Bucket> {
    Ok(Bucket {
        t: r.get(at)?,
        n: r.get::<_, i64>(at + 1)? as u64,
        tmin: r.get::<_, Option<f64>>(at + 2)?.unwrap_or_default(),
        tmax: r.get::<_, Option<f64>>(at + 3)?.unwrap_or_default(),
        tsum: r.get::<_, Option<f64>>(at + 4)?.unwrap_or_default(),
        hn: r.get::<_, i64>(at + 5)? as u64,
        hmin: r.get::<_, Option<f64>>(at + 6)?.unwrap_or_default(),
        hmax: r.get::<_, Option<f64>>(at + 7)?.unwrap_or_default(),
        hsum: r.get::<_, Option<f64>>(at + 8)?.unwrap_or_default(),
    })
}

/// Rollup buckets at `res` whose start lies in `[from, to]`: the stored rollups (15 min and
/// 1 h ones for days before `rolled_day`), the same merged from the 1 min rollups for compacted
/// hours after it, and from the log for the hour not compacted yet. Coarse buckets are always
/// merged from 1 min ones, in time order, so stored and computed ones agree exactly.
pub(super) fn rolled(
    conn: &Connection,
    feeds: &HashMap<u32, FeedKey>,
    from: i64,
    to: i64,
    res: Resolution,
    health: &StoreHealth,
) -> Result<Vec<Bucket>, StoreError> {
    let tail = log_tails(conn, &[feeds], from, to, res, health)?;
    rolled_with(
        conn,
        feeds,
        from,
        to,
        res,
        tail.into_iter().flatten().collect(),
    )
}

/// A value of the log as rollups need it: (received ms, temperature, humidity).
type Value = (i64, f64, Option<f64>);

/// The log's values of each set of feeds in `sets` for [`rolled_with`], inflating each log row
/// once however many sets (units) ask: the status page charts up to 200 units per load.
pub(super) fn log_tails(
    conn: &Connection,
    sets: &[&HashMap<u32, FeedKey>],
    from: i64,
    to: i64,
    res: Resolution,
    health: &StoreHealth,
) -> Result<Vec<Vec<Value>>, StoreError> {
    let width = res.millis();
    let start = from.div_euclid(width) * width;
    let owner: HashMap<u32, usize> = sets
        .iter()
        .enumerate()
        .flat_map(|(i, set)| set.keys().map(move |f| (*f, i)))
        .collect();
    let mut tails = vec![Vec::new(); sets.len()];
    log_rows(conn, start, to.saturating_add(width), health, |body| {
        for (f, rec) in record::frames(body) {
            if let Some(&i) = owner.get(&f) {
                if let Some((_, t, temp, hum)) = record::values(rec) {
                    tails[i].push((t, temp, hum));
                }
            }
        }
    })?;
    Ok(tails)
}

/// [`rolled`] with the log's part (`tail`, from [`log_tails`]) already read.
pub(super) fn rolled_with(
    conn: &Connection,
    feeds: &HashMap<u32, FeedKey>,
    from: i64,
    to: i64,
    res: Resolution,
    tail: Vec<Value>,
) -> Result<Vec<Bucket>, StoreError> {
    let width = res.millis();
    let start = from.div_euclid(width) * width;
    let coarse = |b: Bucket| Bucket {
        t: b.t.div_euclid(width) * width,
        ..b
    };
    let mut merged: BTreeMap<i64, Bucket> = BTreeMap::new();
    let bound = |sql: &str| conn.query_row(sql, [width / 1000], |r| r.get::<_, Option<i64>>(0));
    let lo = bound("SELECT MIN(p) FROM rollups WHERE res = ?1")?;
    let hi = bound("SELECT MAX(p) FROM rollups WHERE res = ?1")?;
    let minutes = |sql: &str| conn.query_row(sql, [], |r| r.get::<_, Option<i64>>(0));
    let minute_lo = minutes("SELECT MIN(p) FROM rollups WHERE res = 60")?;
    let minute_hi = minutes("SELECT MAX(p) FROM rollups WHERE res = 60")?;
    let mut st = conn.prepare_cached(
        "SELECT t, n, tmin, tmax, tsum, hn, hmin, hmax, hsum FROM rollups
         WHERE res = ?1 AND p = ?2 AND feed = ?3 AND t >= ?4 AND t <= ?5 ORDER BY t",
    )?;
    // Stored periods: hours for 1 min rollups, days for the others.
    let (period, stored_until) = if res == Resolution::Minute {
        (HOUR_MS, i64::MAX)
    } else {
        (super::compact::DAY_MS, super::compact::rolled_day(conn)?)
    };
    if let (Some(lo), Some(hi)) = (lo, hi) {
        let first = (start.div_euclid(period) * period).max(lo);
        let last = to.min(hi).min(stored_until - 1);
        for feed in feeds.keys() {
            let mut p = first;
            while p <= last {
                let rows =
                    st.query_map(params![width / 1000, p, feed, start, to], |r| bucket(r, 0))?;
                for b in rows {
                    merge(&mut merged, b?);
                }
                p += period;
            }
        }
    }
    // Coarse rollups of days not rolled yet: from their 1 min rollups.
    if res != Resolution::Minute {
        if let (Some(minute_lo), Some(minute_hi)) = (minute_lo, minute_hi) {
            let mut hour = (start.div_euclid(HOUR_MS) * HOUR_MS)
                .max(stored_until)
                .max(minute_lo);
            // Up to the newest hour with 1 min rollups, not to `to` (which may be far ahead).
            while hour <= to.min(minute_hi) {
                for feed in feeds.keys() {
                    for (_, b) in minute_rows(conn, hour, Some(*feed))? {
                        merge(&mut merged, coarse(b));
                    }
                }
                hour += HOUR_MS;
            }
        }
    }
    // The log only: chunks are already in the rollups.
    for b in roll(tail, Resolution::Minute) {
        merge(&mut merged, coarse(b));
    }
    Ok(merged
        .into_values()
        .filter(|b| b.t >= start && b.t <= to)
        .collect())
}

pub(super) fn merge(into: &mut BTreeMap<i64, Bucket>, b: Bucket) {
    match into.get_mut(&b.t) {
        None => {
            into.insert(b.t, b);
        }
        Some(a) => {
            if b.n > 0 {
                a.tmin = if a.n > 0 { a.tmin.min(b.tmin) } else { b.tmin };
                a.tmax = if a.n > 0 { a.tmax.max(b.tmax) } else { b.tmax };
            }
            if b.hn > 0 {
                a.hmin = if a.hn > 0 { a.hmin.min(b.hmin) } else { b.hmin };
                a.hmax = if a.hn > 0 { a.hmax.max(b.hmax) } else { b.hmax };
            }
            a.n += b.n;
            a.tsum += b.tsum;
            a.hn += b.hn;
            a.hsum += b.hsum;
        }
    }
}

/// Each unit's newest stored reading, under the organization and site it was stored with.
pub fn latest_all(conn: &Connection) -> Result<Vec<SensorReading>, StoreError> {
    let mut keys: HashMap<u32, FeedKey> = HashMap::new();
    let mut st = conn.prepare("SELECT feed, unit, org, site, epoch FROM feeds")?;
    for row in st.query_map([], |r| {
        Ok((
            r.get::<_, u32>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, String>(3)?,
            r.get::<_, String>(4)?,
        ))
    })? {
        let (feed, unit, org, site, epoch) = row?;
        keys.insert(
            feed,
            FeedKey {
                unit: unit.into(),
                org: org.into(),
                site: site.into(),
                epoch: epoch.into(),
            },
        );
    }
    // The last record of each feed: the log first (newest), then the feed's last chunk.
    let mut last: HashMap<u32, Vec<u8>> = HashMap::new();
    let mut st = conn.prepare("SELECT body, packed FROM log ORDER BY id")?;
    for row in st.query_map([], |r| Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, bool>(1)?)))? {
        let (body, packed) = row?;
        let Some(body) = record::log_body(body, packed) else {
            continue;
        };
        for (f, rec) in record::frames(&body) {
            last.insert(f, rec.to_vec());
        }
    }
    let mut hours =
        conn.prepare("SELECT feed, last_hour FROM feeds WHERE last_hour IS NOT NULL")?;
    let newest_chunks: Vec<(u32, i64)> = hours
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    let mut st = conn.prepare("SELECT body FROM chunks WHERE id = ?1")?;
    for (feed, hour) in newest_chunks {
        if last.contains_key(&feed) {
            continue;
        }
        let body: Option<Vec<u8>> = st
            .query_row([chunk_id(hour, feed)], |r| r.get(0))
            .optional()?;
        if let Some(bytes) = body.and_then(|b| record::unpack(&b)) {
            if let Some((_, rec)) = record::frames(&bytes).last() {
                last.insert(feed, rec.to_vec());
            }
        }
    }
    let mut newest: HashMap<Arc<str>, SensorReading> = HashMap::new();
    for (feed, rec) in last {
        let Some(r) = keys.get(&feed).and_then(|k| record::decode(k, &rec)) else {
            continue;
        };
        match newest.get(&r.unit_id) {
            Some(have) if (have.received_at, have.seq) >= (r.received_at, r.seq) => {}
            _ => {
                newest.insert(r.unit_id.clone(), r);
            }
        }
    }
    Ok(newest.into_values().collect())
}

pub(super) fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// A read transaction: chunks and log seen at one point in time.
pub(super) fn snapshot<T>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    conn.execute_batch("BEGIN")?;
    let out = f(conn);
    let _ = conn.execute_batch("COMMIT");
    out
}

impl Store {
    /// `unit`'s history in `[from, to]` at `res` (raw: at most `max_points` readings, oldest
    /// first; rollups likewise).
    #[allow(clippy::too_many_arguments)]
    pub async fn history(
        &self,
        unit: &str,
        org: &str,
        site: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        res: Resolution,
        max_points: usize,
    ) -> Result<History, StoreError> {
        let (unit, org, site) = (unit.to_owned(), org.to_owned(), site.to_owned());
        self.read(move |conn, health| {
            snapshot(conn, |conn| {
                let feeds = feeds(conn, &unit, &org, &site, None)?;
                let (from, to) = (ms(from), ms(to));
                if res == Resolution::Raw {
                    let (v, truncated) = raw(conn, &feeds, from, to, max_points, health)?;
                    return Ok(History {
                        resolution: res,
                        points: Points::Raw(v),
                        truncated,
                    });
                }
                let mut b = rolled(conn, &feeds, from, to, res, health)?;
                let truncated = b.len() > max_points;
                b.truncate(max_points);
                Ok(History {
                    resolution: res,
                    points: Points::Rollup(b.iter().map(Bucket::point).collect()),
                    truncated,
                })
            })
        })
        .await
    }

    /// Rollup buckets of `unit` (the status page's chart, the HACCP report).
    pub async fn buckets(
        &self,
        unit: &str,
        org: &str,
        site: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        res: Resolution,
    ) -> Result<Vec<Bucket>, StoreError> {
        let (unit, org, site) = (unit.to_owned(), org.to_owned(), site.to_owned());
        self.read(move |conn, health| {
            snapshot(conn, |conn| {
                let feeds = feeds(conn, &unit, &org, &site, None)?;
                rolled(conn, &feeds, ms(from), ms(to), res, health)
            })
        })
        .await
    }

    /// [`Store::buckets`] of several units `(unit, org, site)` in one read, in their order.
    pub async fn buckets_many(
        &self,
        units: Vec<(String, String, String)>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        res: Resolution,
    ) -> Result<Vec<Vec<Bucket>>, StoreError> {
        self.read(move |conn, health| {
            snapshot(conn, |conn| {
                let sets = units
                    .iter()
                    .map(|(unit, org, site)| feeds(conn, unit, org, site, None))
                    .collect::<Result<Vec<_>, _>>()?;
                let refs: Vec<&HashMap<u32, FeedKey>> = sets.iter().collect();
                let (from, to) = (ms(from), ms(to));
                let tails = log_tails(conn, &refs, from, to, res, health)?;
                sets.iter()
                    .zip(tails)
                    .map(|(set, tail)| rolled_with(conn, set, from, to, res, tail))
                    .collect()
            })
        })
        .await
    }

    /// The readings of `unit` (under `org`, `site` and the store's epoch) after `seq`, oldest
    /// first, and the newest seq stored; at most `max` (more: `None`, the caller cannot
    /// recover that far).
    pub async fn readings_after(
        &self,
        unit: &str,
        org: &str,
        site: &str,
        seq: u64,
        max: usize,
    ) -> Result<Option<(Vec<SensorReading>, u64)>, StoreError> {
        let (unit, org, site) = (unit.to_owned(), org.to_owned(), site.to_owned());
        let epoch = self.epoch().to_owned();
        self.read(move |conn, health| {
            snapshot(conn, |conn| {
                let feeds = feeds(conn, &unit, &org, &site, Some(&epoch))?;
                let Some(&feed) = feeds.keys().next() else {
                    return Ok(Some((Vec::new(), 0)));
                };
                // Chunks that may hold seqs after `seq`: back from the feed's newest hour
                // until a chunk starts at or before it (or nothing older is kept).
                let (newest, oldest): (Option<i64>, Option<i64>) = conn.query_row(
                    "SELECT last_hour, (SELECT MIN(id) FROM chunks) FROM feeds WHERE feed = ?1",
                    [feed],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?;
                let mut first_hour = None;
                if let (Some(newest), Some(oldest)) = (newest, oldest) {
                    let oldest = chunk_key(oldest).0;
                    let mut st = conn
                        .prepare_cached("SELECT first_seq, last_seq FROM chunks WHERE id = ?1")?;
                    let mut hour = newest;
                    while hour >= oldest {
                        let seqs: Option<(i64, i64)> = st
                            .query_row([chunk_id(hour, feed)], |r| Ok((r.get(0)?, r.get(1)?)))
                            .optional()?;
                        if let Some((first, last)) = seqs {
                            if last as u64 <= seq {
                                break;
                            }
                            first_hour = Some(hour);
                            if first as u64 <= seq + 1 {
                                break;
                            }
                        }
                        hour -= HOUR_MS;
                    }
                }
                let log_from: Option<i64> =
                    conn.query_row("SELECT MIN(t_min) FROM log", [], |r| r.get(0))?;
                let from = match (first_hour, log_from) {
                    (Some(a), Some(b)) => a.min(b),
                    (a, b) => a.or(b).unwrap_or(i64::MAX),
                };
                let mut out = Vec::new();
                let mut through = 0;
                let mut too_many = false;
                scan(conn, &feeds, from, i64::MAX, health, |f, rec| {
                    let Some((s, _, _, _)) = record::values(rec) else {
                        return;
                    };
                    through = through.max(s);
                    if s <= seq || too_many {
                        return;
                    }
                    if out.len() >= max {
                        too_many = true;
                        return;
                    }
                    if let Some(r) = feeds.get(&f).and_then(|k| record::decode(k, rec)) {
                        out.push(r);
                    }
                })?;
                if too_many {
                    return Ok(None);
                }
                if through == 0 {
                    through = match newest {
                        Some(hour) => conn
                            .query_row(
                                "SELECT last_seq FROM chunks WHERE id = ?1",
                                [chunk_id(hour, feed)],
                                |r| r.get::<_, i64>(0),
                            )
                            .optional()?
                            .unwrap_or(0) as u64,
                        None => 0,
                    };
                }
                out.sort_by_key(|r| r.seq);
                Ok(Some((out, through)))
            })
        })
        .await
    }
}
