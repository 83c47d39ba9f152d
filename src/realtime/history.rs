//! `get:history({ unitId, from, to, resolution }, ack)`: a unit's stored history, with the same
//! tenant checks as `subscribe:unit`. The request is parsed and checked here once
//! ([`HistoryRequest`]) and answered by [`answer`], which `/api/units/{id}/readings` uses too.

use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Value};
use socketioxide::extract::{AckSender, Extension, State, TryData};
use std::sync::Arc;

use super::state::Realtime;
use super::{admit, SocketCtx};
use crate::auth::Principal;
use crate::storage::{History, Resolution};

/// Spans longer than this are refused (more than the longest retention).
const MAX_SPAN_DAYS: i64 = 800;

/// A checked history request.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryRequest {
    pub unit_id: String,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub resolution: Resolution,
}

/// Why a history request gets no points; the message is the client's.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum HistoryError {
    #[error("{0}")]
    BadRequest(String),
    #[error("Access denied")]
    AccessDenied,
    #[error("History is not enabled on this server")]
    Disabled,
    #[error("History is unavailable")]
    Unavailable,
}

impl HistoryError {
    pub fn reason(&self) -> &'static str {
        match self {
            HistoryError::BadRequest(_) => "bad_arguments",
            HistoryError::AccessDenied => "access_denied",
            HistoryError::Disabled | HistoryError::Unavailable => "history_unavailable",
        }
    }
}

fn time(v: Option<&str>, key: &str) -> Result<Option<DateTime<Utc>>, HistoryError> {
    match v {
        None | Some("") => Ok(None),
        Some(s) => DateTime::parse_from_rfc3339(s)
            .map(|t| Some(t.with_timezone(&Utc)))
            .map_err(|_| {
                HistoryError::BadRequest(format!(
                    "Invalid arguments: {key} must be an ISO 8601 time (2026-12-07T10:00:00Z)"
                ))
            }),
    }
}

impl HistoryRequest {
    /// From the request's fields (all optional but the unit): `to` defaults to now, `from` to
    /// 24 hours before `to`, `resolution` to the finest that suits the span.
    pub fn parse(
        unit_id: Option<&str>,
        from: Option<&str>,
        to: Option<&str>,
        resolution: Option<&str>,
    ) -> Result<HistoryRequest, HistoryError> {
        let unit_id = unit_id
            .filter(|u| !u.is_empty() && u.len() <= 256)
            .ok_or_else(|| HistoryError::BadRequest("Invalid arguments: expected unitId".into()))?;
        let to = time(to, "to")?.unwrap_or_else(Utc::now);
        let from = time(from, "from")?.unwrap_or(to - Duration::hours(24));
        if from > to {
            return Err(HistoryError::BadRequest(
                "Invalid arguments: from must not be after to".into(),
            ));
        }
        if to - from > Duration::days(MAX_SPAN_DAYS) {
            return Err(HistoryError::BadRequest(format!(
                "Invalid arguments: at most {MAX_SPAN_DAYS} days at once"
            )));
        }
        let resolution = match resolution {
            None | Some("") => Resolution::for_span((to - from).num_milliseconds()),
            Some(r) => Resolution::parse(r).ok_or_else(|| {
                HistoryError::BadRequest(
                    "Invalid arguments: resolution must be raw, 1m, 15m or 1h".into(),
                )
            })?,
        };
        Ok(HistoryRequest {
            unit_id: unit_id.to_owned(),
            from,
            to,
            resolution,
        })
    }

    fn from_value(v: &Value) -> Result<HistoryRequest, HistoryError> {
        let v = match v {
            Value::Array(a) => a.first().unwrap_or(&Value::Null),
            other => other,
        };
        let field = |k: &str| -> Result<Option<&str>, HistoryError> {
            match v.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s)),
                Some(_) => Err(HistoryError::BadRequest(format!(
                    "Invalid arguments: {k} must be a string"
                ))),
            }
        };
        if !v.is_object() {
            return Err(HistoryError::BadRequest(
                "Invalid arguments: expected { unitId, from, to, resolution }".into(),
            ));
        }
        HistoryRequest::parse(
            field("unitId")?,
            field("from")?,
            field("to")?,
            field("resolution")?,
        )
    }
}

/// The history `p` asked for, if `p` may see the unit (another organization's, another site's
/// or an unknown unit is `Access denied` alike).
pub async fn answer(
    app: &Realtime,
    p: &Principal,
    req: &HistoryRequest,
) -> Result<History, HistoryError> {
    let registry = app.hub.registry();
    let unit = registry
        .unit(&req.unit_id)
        .filter(|u| u.org == p.org && p.may_see_site(&u.site))
        .cloned()
        .ok_or(HistoryError::AccessDenied)?;
    let store = app.store.as_ref().ok_or(HistoryError::Disabled)?;
    store
        .history(
            &unit.id,
            &unit.org,
            &unit.site,
            req.from,
            req.to,
            req.resolution,
            app.limits.max_history_points,
        )
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, unit = %unit.id, "history query failed");
            HistoryError::Unavailable
        })
}

pub(super) async fn get_history(
    TryData(d): TryData<Value>,
    ack: AckSender,
    State(app): State<Realtime>,
    Extension(ctx): Extension<Arc<SocketCtx>>,
) {
    let Some(ack) = admit(&ctx, &app, ack) else {
        return;
    };
    let req = d
        .as_ref()
        .map_err(|_| HistoryError::BadRequest("Invalid arguments".into()))
        .and_then(HistoryRequest::from_value);
    let result = match req {
        Ok(req) => answer(&app, &ctx.principal, &req)
            .await
            .map(|h| (req.unit_id, h)),
        Err(e) => Err(e),
    };
    match result {
        Ok((unit_id, h)) => {
            let _ = ack.send(&json!({
                "ok": true,
                "unitId": unit_id,
                "resolution": h.resolution,
                "points": h.points,
                "truncated": h.truncated,
            }));
        }
        Err(e) => {
            app.hub.stats().client_error(e.reason());
            let _ = ack.send(&json!({ "ok": false, "error": e.to_string() }));
        }
    }
}
