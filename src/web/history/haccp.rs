//! `GET /api/reports/haccp?siteId=&from=&to=`: the HACCP temperature record of one site as
//! CSV, one row per unit per UTC day (see [`crate::storage::HaccpRow`]). An owner's or admin's
//! report, for the site's own organization (and allowed sites). The units are the site's in
//! the registry in force, each with the temperature limits the alert engine applies to it.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::Deserialize;

use super::{csv_out, error, principal, refused, unauthorized};
use crate::realtime::history::HistoryError;
use crate::storage::HaccpUnit;
use crate::web::WebState;

/// Reports longer than this are refused (the 1 h rollups are kept 400 days by default).
const MAX_DAYS: i64 = 400;
/// Without `from`: this many days, today included.
const DEFAULT_DAYS: i64 = 7;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Params {
    site_id: Option<String>,
    from: Option<String>,
    to: Option<String>,
}

/// `from`/`to` as given: a date (`from`: its start; `to`: its end, the day included) or an ISO
/// 8601 time.
fn bound(v: Option<&str>, key: &str, is_end: bool) -> Result<Option<DateTime<Utc>>, HistoryError> {
    let Some(s) = v.filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        let d = if is_end { d.succ_opt().unwrap_or(d) } else { d };
        return Ok(Some(d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc()));
    }
    DateTime::parse_from_rfc3339(s)
        .map(|t| Some(t.with_timezone(&Utc)))
        .map_err(|_| {
            HistoryError::BadRequest(format!(
                "Invalid arguments: {key} must be a date (2026-12-07) or an ISO 8601 time"
            ))
        })
}

/// The report's span: `[from, to)`, by default the last [`DEFAULT_DAYS`] days up to `now`.
fn span(
    from: Option<&str>,
    to: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(DateTime<Utc>, DateTime<Utc>), HistoryError> {
    let to = bound(to, "to", true)?.unwrap_or(now);
    let from = match bound(from, "from", false)? {
        Some(f) => f,
        None => {
            let today = to.date_naive() - Duration::days(DEFAULT_DAYS - 1);
            today.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc()
        }
    };
    if from >= to {
        return Err(HistoryError::BadRequest(
            "Invalid arguments: from must be before to".into(),
        ));
    }
    if to - from > Duration::days(MAX_DAYS) {
        return Err(HistoryError::BadRequest(format!(
            "Invalid arguments: at most {MAX_DAYS} days at once"
        )));
    }
    Ok((from, to))
}

pub(super) async fn report(
    State(app): State<WebState>,
    params: Result<Query<Params>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let p = match principal(&app, &headers) {
        Ok(p) => p,
        Err(e) => return unauthorized(&app, &e),
    };
    if !p.is_admin() {
        app.rt.hub.stats().client_error("access_denied");
        return error(
            StatusCode::FORBIDDEN,
            "Forbidden: owner or admin role required",
        );
    }
    let Ok(Query(q)) = params else {
        return refused(
            &app,
            &HistoryError::BadRequest("Invalid arguments: unreadable query".into()),
        );
    };
    let Some(site_id) = q.site_id.filter(|s| !s.is_empty()) else {
        return refused(
            &app,
            &HistoryError::BadRequest("Invalid arguments: expected siteId".into()),
        );
    };
    let (from, to) = match span(q.from.as_deref(), q.to.as_deref(), Utc::now()) {
        Ok(v) => v,
        Err(e) => return refused(&app, &e),
    };
    let registry = app.rt.hub.registry();
    let Some(site) = registry
        .site(&site_id)
        .filter(|s| s.org == p.org && p.may_see_site(&s.id))
    else {
        return refused(&app, &HistoryError::AccessDenied);
    };
    let Some(store) = app.rt.store.as_ref() else {
        return refused(&app, &HistoryError::Disabled);
    };
    let mut units: Vec<HaccpUnit> = registry
        .units()
        .filter(|u| u.site == site.id && u.org == site.org)
        .map(|u| {
            let rules = app.rt.alerts.unit_rules(&registry, u);
            HaccpUnit {
                id: u.id.to_string(),
                name: u.name.clone().unwrap_or_else(|| u.id.to_string()),
                min: rules.temp_min,
                max: rules.temp_max,
            }
        })
        .collect();
    units.sort_by(|a, b| a.id.cmp(&b.id));
    let (org, site_id) = (site.org.to_string(), site.id.to_string());
    let rows = match store.haccp(&org, &site_id, units, from, to).await {
        Ok(rows) => rows,
        Err(e) => {
            tracing::warn!(error = %e, site = %site_id, "haccp query failed");
            return refused(&app, &HistoryError::Unavailable);
        }
    };
    match csv_out::haccp(&rows) {
        Ok(body) => {
            let name = format!(
                "haccp-{site_id}-{}-{}.csv",
                from.format("%Y%m%d"),
                (to - Duration::milliseconds(1)).format("%Y%m%d")
            );
            csv_out::attachment(body, &name)
        }
        Err(e) => {
            tracing::warn!(error = %e, site = %site_id, "haccp csv not written");
            error(StatusCode::INTERNAL_SERVER_ERROR, "History is unavailable")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn spans_from_dates_times_and_defaults() {
        let now = at("2026-12-07T10:30:00Z");
        assert_eq!(span(None, None, now), Ok((at("2026-12-01T00:00:00Z"), now)));
        assert_eq!(
            span(Some("2026-12-01"), Some("2026-12-03"), now),
            Ok((at("2026-12-01T00:00:00Z"), at("2026-12-04T00:00:00Z")))
        );
        assert_eq!(
            span(
                Some("2026-12-01T06:00:00Z"),
                Some("2026-12-01T18:00:00+01:00"),
                now
            ),
            Ok((at("2026-12-01T06:00:00Z"), at("2026-12-01T17:00:00Z")))
        );
        assert!(span(Some("yesterday"), None, now).is_err());
        assert!(span(Some("2026-12-05"), Some("2026-12-04"), now).is_err());
        assert!(span(Some("2025-01-01"), Some("2026-12-01"), now).is_err());
        assert!(span(Some("2025-11-02"), Some("2026-12-05"), now).is_ok());
    }
}
