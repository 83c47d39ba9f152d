//! Hourly compaction: the log's finished hours (one row per commit, every unit mixed) become
//! one deflated chunk per unit per hour and that hour's 1 min rollups, in one transaction, so a
//! query never sees an hour half moved. Once a whole UTC day is compacted, its 15 min and 1 h
//! rollups are computed from the 1 min ones and stored (until then queries compute them the
//! same way). Everything is inserted in key order (hour, then feed): new pages at the end of
//! each tree. A chunk that already exists (a late log row) is merged, and the rollups of its
//! hour (and of its day, if already rolled) are computed again.

use rusqlite::{params, Connection, OptionalExtension};
use std::collections::{BTreeMap, BTreeSet};

use super::query::{merge, minute_rows};
use super::record;
use super::rollup::{roll, Bucket, Resolution};
use super::schema::chunk_id;
use super::StoreError;

const HOUR_MS: i64 = 3_600_000;
pub const DAY_MS: i64 = 86_400_000;

/// Compacts the log rows whose readings all lie before `before` (ms), then stores the coarse
/// rollups of every day that is now wholly compacted: one transaction. Returns how many
/// damaged rows it met (a log row or an hour's chunk that does not inflate): they cannot be
/// read, so they are dropped, and the caller counts them.
pub fn compact_before(conn: &Connection, before: i64) -> Result<u64, StoreError> {
    let read: Vec<(i64, Vec<u8>, bool)> = conn
        .prepare("SELECT id, body, packed FROM log WHERE t_max < ?1 ORDER BY id")?
        .query_map([before], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<Result<_, _>>()?;
    // The newest log row read, damaged or not: everything up to it goes once compacted.
    let last_id = read.last().map_or(0, |r| r.0);
    let read_n = read.len();
    let rows: Vec<(i64, Vec<u8>)> = read
        .into_iter()
        .filter_map(|(id, body, packed)| Some((id, record::log_body(body, packed)?)))
        .collect();
    let mut damaged = (read_n - rows.len()) as u64;
    let mut rolled_day = rolled_day(conn)?;
    if read_n == 0 {
        roll_days(conn, before, &mut rolled_day)?;
        return Ok(0);
    }
    // (hour, feed) → framed records, in arrival order; BTreeMap: inserted in key order.
    let mut groups: BTreeMap<(i64, u32), Vec<u8>> = BTreeMap::new();
    for (_, body) in &rows {
        for (feed, rec) in record::frames(body) {
            let Some((_, t, _, _)) = record::values(rec) else {
                continue;
            };
            let hour = t.div_euclid(HOUR_MS) * HOUR_MS;
            let out = groups.entry((hour, feed)).or_default();
            out.extend(postcard::to_allocvec(&(feed, rec)).unwrap_or_default());
        }
    }
    conn.execute_batch("BEGIN")?;
    let mut minutes: Vec<(u32, Bucket)> = Vec::new();
    let mut redo_days: BTreeSet<(i64, u32)> = BTreeSet::new();
    for ((hour, feed), mut framed) in groups {
        let id = chunk_id(hour, feed);
        let existing: Option<Vec<u8>> = conn
            .query_row("SELECT body FROM chunks WHERE id = ?1", [id], |r| r.get(0))
            .optional()?;
        match existing.map(|b| record::unpack(&b)) {
            Some(Some(mut all)) => {
                all.extend_from_slice(&framed);
                framed = all;
            }
            Some(None) => damaged += 1,
            None => {}
        }
        let values: Vec<(u64, i64, f64, Option<f64>)> = record::frames(&framed)
            .filter_map(|(_, rec)| record::values(rec))
            .collect();
        let first = values.iter().map(|v| v.0).min().unwrap_or(0);
        let last = values.iter().map(|v| v.0).max().unwrap_or(0);
        conn.execute(
            "INSERT OR REPLACE INTO chunks (id, n, first_seq, last_seq, body)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                id,
                values.len() as i64,
                first as i64,
                last as i64,
                record::pack(&framed)
            ],
        )?;
        conn.execute(
            "UPDATE feeds SET last_hour = ?2 WHERE feed = ?1 AND (last_hour IS NULL OR last_hour < ?2)",
            params![feed, hour],
        )?;
        let buckets = roll(values.iter().map(|v| (v.1, v.2, v.3)), Resolution::Minute);
        minutes.extend(buckets.into_iter().map(|b| (feed, b)));
        let day = hour.div_euclid(DAY_MS) * DAY_MS;
        if day < rolled_day {
            redo_days.insert((day, feed));
        }
    }
    // 1 min rollups: (hour, feed, t) order, the table's key order.
    minutes.sort_by_key(|(feed, b)| (b.t.div_euclid(HOUR_MS), *feed, b.t));
    for (feed, b) in &minutes {
        put(
            conn,
            Resolution::Minute,
            b.t.div_euclid(HOUR_MS) * HOUR_MS,
            *feed,
            b,
        )?;
    }
    // A late hour of a day whose coarse rollups are stored: that unit's day again, from its
    // 1 min rollups if they are all still there (past raw retention they are not, and the
    // stored day stays as it was).
    let minutes_from: Option<i64> =
        conn.query_row("SELECT MIN(p) FROM rollups WHERE res = 60", [], |r| {
            r.get(0)
        })?;
    for (day, feed) in redo_days {
        if minutes_from.is_some_and(|p| p > day) {
            continue;
        }
        roll_day(conn, day, Some(feed))?;
    }
    // Every row read goes, damaged ones too (they would be met again); only those: ids do not
    // follow time, so a row of the current hour may sit among them.
    conn.execute(
        "DELETE FROM log WHERE t_max < ?1 AND id <= ?2",
        params![before, last_id],
    )?;
    roll_days(conn, before, &mut rolled_day)?;
    conn.execute_batch("COMMIT")?;
    Ok(damaged)
}

/// The day before which 15 min and 1 h rollups are stored (0: none yet).
pub fn rolled_day(conn: &Connection) -> Result<i64, StoreError> {
    Ok(conn
        .query_row(
            "SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'rolled_day'",
            [],
            |r| r.get(0),
        )
        .optional()?
        .unwrap_or(0))
}

/// Stores the coarse rollups of each day that is wholly compacted (ends at or before
/// `before` and has nothing left in the log), from its 1 min rollups. Inside the caller's
/// transaction, or its own when there is none.
fn roll_days(conn: &Connection, before: i64, rolled: &mut i64) -> Result<(), StoreError> {
    let in_log: Option<i64> = conn.query_row("SELECT MIN(t_min) FROM log", [], |r| r.get(0))?;
    // A day is done once it is over (`before` may lie in the future: compact everything).
    let now = chrono::Utc::now().timestamp_millis();
    let done = before
        .min(in_log.unwrap_or(i64::MAX))
        .min(now)
        .div_euclid(DAY_MS)
        * DAY_MS;
    if *rolled >= done {
        return Ok(());
    }
    // Skip days with no 1 min rollups at all (a store that was off, or a new one).
    let first: Option<i64> = conn.query_row(
        "SELECT MIN(p) FROM rollups WHERE res = 60 AND p >= ?1",
        [*rolled],
        |r| r.get(0),
    )?;
    let start = match first {
        Some(p) => (*rolled).max(p.div_euclid(DAY_MS) * DAY_MS),
        None => done,
    };
    let own = conn.is_autocommit();
    if own {
        conn.execute_batch("BEGIN")?;
    }
    let mut day = start;
    while day < done {
        roll_day(conn, day, None)?;
        day += DAY_MS;
    }
    conn.execute(
        "INSERT INTO meta (key, value) VALUES ('rolled_day', ?1)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        [done.to_string()],
    )?;
    if own {
        conn.execute_batch("COMMIT")?;
    }
    *rolled = done;
    Ok(())
}

/// The 15 min and 1 h rollups of `day` (of one feed, or all) from its 1 min rollups, replacing
/// what was stored.
fn roll_day(conn: &Connection, day: i64, only: Option<u32>) -> Result<(), StoreError> {
    // feed → (t → bucket) per resolution, merged in time order.
    let mut quarter: BTreeMap<u32, BTreeMap<i64, Bucket>> = BTreeMap::new();
    let mut hour: BTreeMap<u32, BTreeMap<i64, Bucket>> = BTreeMap::new();
    let mut h = day;
    while h < day + DAY_MS {
        for (feed, b) in minute_rows(conn, h, only)? {
            for (res, into) in [
                (Resolution::Quarter, &mut quarter),
                (Resolution::Hour, &mut hour),
            ] {
                let w = res.millis();
                let map = into.entry(feed).or_default();
                merge(
                    map,
                    Bucket {
                        t: b.t.div_euclid(w) * w,
                        ..b
                    },
                );
            }
        }
        h += HOUR_MS;
    }
    for (res, rolled) in [(Resolution::Quarter, quarter), (Resolution::Hour, hour)] {
        if let Some(feed) = only {
            conn.execute(
                "DELETE FROM rollups WHERE res = ?1 AND p = ?2 AND feed = ?3",
                params![res.millis() / 1000, day, feed],
            )?;
        }
        for (feed, buckets) in rolled {
            for b in buckets.values() {
                put(conn, res, day, feed, b)?;
            }
        }
    }
    Ok(())
}

fn put(
    conn: &Connection,
    res: Resolution,
    period: i64,
    feed: u32,
    b: &Bucket,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT OR REPLACE INTO rollups
           (res, p, feed, t, n, tmin, tmax, tsum, hn, hmin, hmax, hsum)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
    )?
    .execute(params![
        res.millis() / 1000,
        period,
        feed,
        b.t,
        b.n as i64,
        b.tmin,
        b.tmax,
        b.tsum,
        b.hn as i64,
        (b.hn > 0).then_some(b.hmin),
        (b.hn > 0).then_some(b.hmax),
        (b.hn > 0).then_some(b.hsum)
    ])?;
    Ok(())
}
