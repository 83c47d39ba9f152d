//! The HACCP report's rows: one per unit per UTC day with the readings' count, min, max and
//! mean (from the 1 h rollups), the minutes out of the unit's limits (1 min rollups while raw
//! retention lasts, whole 15 min ones after), and the alerts of that day with who acknowledged
//! them, when and with what comment (from the stored alert events).

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

use super::query::{feeds, log_tails, merge, ms, rolled_with, snapshot};
use super::record;
use super::rollup::{Bucket, Resolution};
use super::{Store, StoreError, StoreHealth};

const DAY_MS: i64 = 86_400_000;

/// One unit's day in the HACCP report.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HaccpRow {
    pub date: String,
    pub unit_id: String,
    pub unit_name: String,
    pub readings: u64,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub mean: Option<f64>,
    pub minutes_out_of_range: u64,
    /// The alerts raised that day: type, severity, time, and who acknowledged them, when and
    /// with what comment (`; ` between alerts).
    pub alerts: String,
}

/// A unit as the HACCP report needs it: its id, name and temperature limits.
#[derive(Debug, Clone)]
pub struct HaccpUnit {
    pub id: String,
    pub name: String,
    pub min: Option<f64>,
    pub max: Option<f64>,
}

impl Store {
    /// The HACCP report of `units` (of `org`/`site`): one row per unit per UTC day in
    /// `[from, to)`, days with no reading included (0 readings: a gap is a finding too).
    pub async fn haccp(
        &self,
        org: &str,
        site: &str,
        units: Vec<HaccpUnit>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<HaccpRow>, StoreError> {
        let (org, site) = (org.to_owned(), site.to_owned());
        self.read(move |conn, health| {
            snapshot(conn, |conn| {
                haccp_rows(conn, &org, &site, &units, ms(from), ms(to), health)
            })
        })
        .await
    }
}

fn haccp_rows(
    conn: &Connection,
    org: &str,
    site: &str,
    units: &[HaccpUnit],
    from: i64,
    to: i64,
    health: &StoreHealth,
) -> Result<Vec<HaccpRow>, StoreError> {
    let first_day = from.div_euclid(DAY_MS) * DAY_MS;
    let mut rows = Vec::new();
    let sets = units
        .iter()
        .map(|u| feeds(conn, &u.id, org, site, None))
        .collect::<Result<Vec<_>, _>>()?;
    // The log (the hour not compacted yet) inflated once for every unit and resolution: the
    // widest range (whole hours) holds what each resolution needs; buckets outside the
    // report's days are filtered out.
    let refs: Vec<_> = sets.iter().collect();
    let tails = log_tails(conn, &refs, first_day, to - 1, Resolution::Hour, health)?;
    for ((u, feeds), tail) in units.iter().zip(&sets).zip(tails) {
        let roll = |res: Resolution| rolled_with(conn, feeds, first_day, to - 1, res, tail.clone());
        let hours = roll(Resolution::Hour)?;
        let minutes = roll(Resolution::Minute)?;
        let quarters = roll(Resolution::Quarter)?;
        let alerts = alerts_of(conn, &u.id, org, site, first_day, to)?;
        let mut day = first_day;
        while day < to {
            let end = day + DAY_MS;
            let inside = |t: i64| t >= day && t < end;
            let mut total = Bucket::default();
            let mut merged = BTreeMap::new();
            for b in hours.iter().filter(|b| inside(b.t)) {
                merge(&mut merged, Bucket { t: 0, ..*b });
            }
            if let Some(b) = merged.remove(&0) {
                total = b;
            }
            let out = |b: &Bucket| {
                u.min.is_some_and(|lo| b.tmin < lo) || u.max.is_some_and(|hi| b.tmax > hi)
            };
            let by_minute: Vec<&Bucket> = minutes.iter().filter(|b| inside(b.t)).collect();
            let minutes_out = if by_minute.is_empty() {
                // Past raw retention only 15 min rollups are left: whole quarters count.
                quarters.iter().filter(|b| inside(b.t) && out(b)).count() as u64 * 15
            } else {
                by_minute.iter().filter(|b| out(b)).count() as u64
            };
            let day_alerts: Vec<&str> = alerts
                .iter()
                .filter(|(t, _)| inside(*t))
                .map(|(_, s)| s.as_str())
                .collect();
            rows.push(HaccpRow {
                date: record::from_millis(day).format("%Y-%m-%d").to_string(),
                unit_id: u.id.clone(),
                unit_name: u.name.clone(),
                readings: total.n,
                min: (total.n > 0).then_some(total.tmin),
                max: (total.n > 0).then_some(total.tmax),
                mean: (total.n > 0).then(|| (total.tsum / total.n as f64 * 100.0).round() / 100.0),
                minutes_out_of_range: minutes_out,
                alerts: day_alerts.join("; "),
            });
            day = end;
        }
    }
    Ok(rows)
}

/// The alerts of `unit` triggered in `[from, to)`, each as (time, description with who
/// acknowledged it, when, and the comment, and when it was resolved).
fn alerts_of(
    conn: &Connection,
    unit: &str,
    org: &str,
    site: &str,
    from: i64,
    to: i64,
) -> Result<Vec<(i64, String)>, StoreError> {
    let mut st = conn.prepare_cached(
        "SELECT alert_id, at, kind, body FROM alert_events
         WHERE site = ?1 AND unit = ?2 AND org = ?3 AND at >= ?4 ORDER BY id",
    )?;
    let rows = st.query_map(params![site, unit, org, from], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, String>(3)?,
        ))
    })?;
    let mut order: Vec<String> = Vec::new();
    let mut found: HashMap<String, (i64, Vec<String>)> = HashMap::new();
    for row in rows {
        let (id, at, kind, body) = row?;
        let body: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        let text = |k: &str| {
            body.get(k)
                .and_then(|v| v.as_str())
                .unwrap_or("")
                .to_owned()
        };
        let when = record::from_millis(at).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        match kind.as_str() {
            "alert:triggered" if at < to => {
                order.push(id.clone());
                found.insert(
                    id,
                    (
                        at,
                        vec![format!(
                            "{} {} at {when}",
                            text("alertType"),
                            text("severity")
                        )],
                    ),
                );
            }
            "alert:escalated" => {
                if let Some((_, parts)) = found.get_mut(&id) {
                    parts.push(format!("escalated to {} at {when}", text("severity")));
                }
            }
            "alert:acknowledged" => {
                if let Some((_, parts)) = found.get_mut(&id) {
                    let comment = text("acknowledgedComment");
                    let mut s = format!("acknowledged by {} at {when}", text("acknowledgedBy"));
                    if !comment.is_empty() {
                        s.push_str(&format!(": {comment}"));
                    }
                    parts.push(s);
                }
            }
            "alert:resolved" => {
                if let Some((_, parts)) = found.get_mut(&id) {
                    parts.push(format!("resolved at {when}"));
                }
            }
            _ => {}
        }
    }
    Ok(order
        .into_iter()
        .filter_map(|id| found.remove(&id))
        .map(|(at, parts)| (at, parts.join(", ")))
        .collect())
}
