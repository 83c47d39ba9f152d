//! Hourly compaction: the log's finished hours (one row per commit, every unit mixed) become
//! one deflated chunk per unit per hour and that hour's rollups, in one transaction, so a
//! query never sees an hour half moved. A chunk that already exists (a late log row) is merged
//! and its rollups computed again from all of it.

use rusqlite::{params, Connection, OptionalExtension};
use std::collections::HashMap;

use super::record;
use super::rollup::{roll, Resolution};
use super::StoreError;

const HOUR_MS: i64 = 3_600_000;

/// Compacts the log rows whose readings all lie before `before` (ms): one transaction.
pub fn compact_before(conn: &Connection, before: i64) -> Result<(), StoreError> {
    let rows: Vec<(i64, Vec<u8>)> = {
        let mut st = conn.prepare("SELECT id, body FROM log WHERE t_max < ?1 ORDER BY id")?;
        let rows = st
            .query_map([before], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        rows
    };
    if rows.is_empty() {
        return Ok(());
    }
    // (feed, hour) → framed records, in arrival order.
    let mut groups: HashMap<(u32, i64), Vec<u8>> = HashMap::new();
    for (_, body) in &rows {
        for (feed, rec) in record::frames(body) {
            let Some((_, t, _, _)) = record::values(rec) else {
                continue;
            };
            let hour = t.div_euclid(HOUR_MS) * HOUR_MS;
            let out = groups.entry((feed, hour)).or_default();
            out.extend(postcard::to_allocvec(&(feed, rec)).unwrap_or_default());
        }
    }
    conn.execute_batch("BEGIN")?;
    for ((feed, hour), mut framed) in groups {
        let existing: Option<Vec<u8>> = conn
            .query_row(
                "SELECT body FROM chunks WHERE feed = ?1 AND hour = ?2",
                params![feed, hour],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(old) = existing.and_then(|b| record::unpack(&b)) {
            let mut all = old;
            all.extend_from_slice(&framed);
            framed = all;
        }
        let values: Vec<(u64, i64, f64, Option<f64>)> = record::frames(&framed)
            .filter_map(|(_, rec)| record::values(rec))
            .collect();
        let first = values.iter().map(|v| v.0).min().unwrap_or(0);
        let last = values.iter().map(|v| v.0).max().unwrap_or(0);
        conn.execute(
            "INSERT OR REPLACE INTO chunks (feed, hour, n, first_seq, last_seq, body)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                feed,
                hour,
                values.len() as i64,
                first as i64,
                last as i64,
                record::pack(&framed)
            ],
        )?;
        for res in Resolution::ROLLUPS {
            let buckets = roll(values.iter().map(|v| (v.1, v.2, v.3)), res);
            for b in buckets {
                conn.execute(
                    "INSERT OR REPLACE INTO rollups
                       (res, feed, t, n, tmin, tmax, tsum, hn, hmin, hmax, hsum)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                    params![
                        res.millis() / 1000,
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
                    ],
                )?;
            }
        }
    }
    let last_id = rows.last().map(|r| r.0).unwrap_or(0);
    conn.execute(
        "DELETE FROM log WHERE t_max < ?1 AND id <= ?2",
        params![before, last_id],
    )?;
    conn.execute_batch("COMMIT")?;
    Ok(())
}
