//! Each unit's last 24 hours on the status page: a small inline SVG of the 15 min rollups
//! from the history store (the mean as a line, the min..max band behind it) with the unit's
//! temperature limits as dashed lines. Inline SVG keeps the page free of script and of any
//! external asset. [`add`] reads the store (the only part of the page that waits on I/O);
//! [`svg`] is pure. A unit with nothing stored gets no chart at all, not an empty frame.

use chrono::{DateTime, Duration, Utc};
use maud::{html, Markup};

use std::sync::Arc;

use super::page::UnitRow;
use crate::core::registry::Unit;
use crate::storage::Resolution;
use crate::web::WebState;

/// The span charted.
const SPAN_HOURS: i64 = 24;
/// The chart's size in CSS pixels.
const WIDTH: f64 = 160.0;
const HEIGHT: f64 = 36.0;
const PAD: f64 = 3.0;
/// Units charted at most per page load (the page reloads every 10 s).
const MAX_CHARTS: usize = 200;

/// A unit's 24 h as the chart draws it.
#[derive(Debug, Clone, PartialEq)]
pub struct Chart {
    pub from_ms: i64,
    pub to_ms: i64,
    /// `(bucket start ms, min, max, mean)`, oldest first.
    pub points: Vec<(i64, f64, f64, f64)>,
    pub min_limit: Option<f64>,
    pub max_limit: Option<f64>,
}

/// Fills `chart` of each of `units` (of the page's principal, already filtered) from the
/// store; leaves it `None` without a store, without data, or when the query fails.
pub async fn add(app: &WebState, units: &mut [UnitRow], now: DateTime<Utc>) {
    let Some(store) = app.rt.store.as_ref() else {
        return;
    };
    let registry = app.rt.hub.registry();
    let from = now - Duration::hours(SPAN_HOURS);
    // One read for every chart: the log (the hour not compacted yet) is inflated once.
    let charted: Vec<(usize, Arc<Unit>)> = units
        .iter()
        .enumerate()
        .take(MAX_CHARTS)
        .filter_map(|(i, row)| Some((i, registry.unit(&row.unit_id)?.clone())))
        .collect();
    let asked = charted
        .iter()
        .map(|(_, u)| (u.id.to_string(), u.org.to_string(), u.site.to_string()))
        .collect();
    let all = match store
        .buckets_many(asked, from, now, Resolution::Quarter)
        .await
    {
        Ok(all) => all,
        Err(e) => {
            tracing::warn!(error = %e, "status chart query failed");
            return;
        }
    };
    for ((i, unit), buckets) in charted.into_iter().zip(all) {
        let row = &mut units[i];
        let unit = &*unit;
        if buckets.is_empty() {
            continue;
        }
        let rules = app.rt.alerts.unit_rules(&registry, unit);
        row.chart = Some(Chart {
            from_ms: from.timestamp_millis(),
            to_ms: now.timestamp_millis(),
            points: buckets
                .iter()
                .filter(|b| b.n > 0)
                .map(|b| (b.t, b.tmin, b.tmax, b.tsum / b.n as f64))
                .collect(),
            min_limit: rules.temp_min,
            max_limit: rules.temp_max,
        });
    }
}

/// The chart as inline SVG; nothing when it has no point.
pub fn svg(c: &Chart) -> Markup {
    let Some(first) = c.points.first() else {
        return html! {};
    };
    let values = c.points.iter().flat_map(|p| [p.1, p.2]);
    let limits = c.min_limit.into_iter().chain(c.max_limit);
    let (mut lo, mut hi) = values
        .chain(limits)
        .fold((first.1, first.2), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if hi - lo < 1.0 {
        let mid = (hi + lo) / 2.0;
        (lo, hi) = (mid - 0.5, mid + 0.5);
    }
    let half = Resolution::Quarter.millis() / 2;
    let span = (c.to_ms - c.from_ms).max(1) as f64;
    let x = |t: i64| ((t + half - c.from_ms) as f64 / span * WIDTH).clamp(0.0, WIDTH);
    let y = |v: f64| PAD + (hi - v) / (hi - lo) * (HEIGHT - 2.0 * PAD);
    let line: Vec<String> = c
        .points
        .iter()
        .map(|p| format!("{:.1},{:.1}", x(p.0), y(p.3)))
        .collect();
    // The band: along the maxima, back along the minima.
    let band: Vec<String> = c
        .points
        .iter()
        .map(|p| format!("{:.1},{:.1}", x(p.0), y(p.2)))
        .chain(
            c.points
                .iter()
                .rev()
                .map(|p| format!("{:.1},{:.1}", x(p.0), y(p.1))),
        )
        .collect();
    let (tmin, tmax) = c
        .points
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.1), b.max(p.2)));
    let title = format!(
        "Last 24 h: {} to {} °C",
        super::view::display_number(tmin),
        super::view::display_number(tmax)
    );
    html! {
        svg.spark xmlns="http://www.w3.org/2000/svg" width=(WIDTH) height=(HEIGHT)
            viewBox={ "0 0 " (WIDTH) " " (HEIGHT) } role="img" aria-label=(title) {
            title { (title) }
            polygon points=(band.join(" ")) fill="#cfe0f5" stroke="none" {}
            @for limit in c.min_limit.iter().chain(&c.max_limit) {
                line.limit x1="0" x2=(WIDTH) y1=(format!("{:.1}", y(*limit)))
                    y2=(format!("{:.1}", y(*limit))) stroke="#c33" stroke-dasharray="3 2" {}
            }
            polyline points=(line.join(" ")) fill="none" stroke="#36c" stroke-width="1.5" {}
            @if c.points.len() == 1 {
                circle cx=(format!("{:.1}", x(first.0))) cy=(format!("{:.1}", y(first.3)))
                    r="2" fill="#36c" {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chart(points: Vec<(i64, f64, f64, f64)>) -> Chart {
        Chart {
            from_ms: 0,
            to_ms: 86_400_000,
            points,
            min_limit: Some(0.0),
            max_limit: Some(8.0),
        }
    }

    #[test]
    fn a_chart_draws_the_readings_and_both_limits() {
        let s = svg(&chart(vec![(0, 3.0, 5.0, 4.0), (900_000, 9.0, 10.0, 9.5)])).into_string();
        assert!(
            s.starts_with("<svg") && s.contains("class=\"spark\""),
            "{s}"
        );
        assert_eq!(s.matches("<line class=\"limit\"").count(), 2, "{s}");
        assert!(s.contains("<polyline points=\""), "{s}");
        assert!(s.contains("<title>Last 24 h: 3 to 10 °C</title>"), "{s}");
        // From 0 °C (the lower limit, at the bottom) to 10 °C (the highest value, at the top).
        assert!(s.contains("y1=\"9.0\""), "{s}");
        assert!(s.contains("y1=\"33.0\""), "{s}");
    }

    #[test]
    fn no_points_no_chart() {
        assert_eq!(svg(&chart(Vec::new())).into_string(), "");
    }
}
