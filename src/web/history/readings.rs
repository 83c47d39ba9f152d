//! `GET /api/units/{unitId}/readings?from=&to=&resolution=&format=`: what `get:history`
//! answers, over HTTP. The request is parsed and answered by [`crate::realtime::history`]
//! (same defaults, limits and tenant checks); this adds the status codes and the CSV form.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::{csv_out, error, principal, refused, unauthorized};
use crate::realtime::history::{answer, HistoryError, HistoryRequest};
use crate::web::WebState;

#[derive(Debug, Deserialize)]
pub(super) struct Params {
    from: Option<String>,
    to: Option<String>,
    resolution: Option<String>,
    format: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Format {
    Json,
    Csv,
}

fn format(f: Option<&str>) -> Result<Format, HistoryError> {
    match f {
        None | Some("") | Some("json") => Ok(Format::Json),
        Some("csv") => Ok(Format::Csv),
        Some(_) => Err(HistoryError::BadRequest(
            "Invalid arguments: format must be json or csv".into(),
        )),
    }
}

pub(super) async fn readings(
    State(app): State<WebState>,
    Path(unit_id): Path<String>,
    params: Result<Query<Params>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let p = match principal(&app, &headers) {
        Ok(p) => p,
        Err(e) => return unauthorized(&app, &e),
    };
    let Ok(Query(q)) = params else {
        return refused(
            &app,
            &HistoryError::BadRequest("Invalid arguments: unreadable query".into()),
        );
    };
    let checked = format(q.format.as_deref()).and_then(|f| {
        HistoryRequest::parse(
            Some(&unit_id),
            q.from.as_deref(),
            q.to.as_deref(),
            q.resolution.as_deref(),
        )
        .map(|req| (f, req))
    });
    let (format, req) = match checked {
        Ok(v) => v,
        Err(e) => return refused(&app, &e),
    };
    let history = match answer(&app.rt, &p, &req).await {
        Ok(h) => h,
        Err(e) => return refused(&app, &e),
    };
    match format {
        Format::Json => Json(json!({
            "ok": true,
            "unitId": req.unit_id,
            "resolution": history.resolution,
            "points": history.points,
            "truncated": history.truncated,
        }))
        .into_response(),
        Format::Csv => match csv_out::points(&history.points) {
            Ok(body) => {
                let name = format!("{}-{}.csv", req.unit_id, history.resolution.name());
                let mut r = csv_out::attachment(body, &name);
                // JSON says `truncated`; a CSV body has no place for it.
                r.headers_mut().insert(
                    "x-truncated",
                    axum::http::HeaderValue::from_static(if history.truncated {
                        "true"
                    } else {
                        "false"
                    }),
                );
                r
            }
            Err(e) => {
                tracing::warn!(error = %e, unit = %req.unit_id, "readings csv not written");
                error(StatusCode::INTERNAL_SERVER_ERROR, "History is unavailable")
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(format(None), Ok(Format::Json));
        assert_eq!(format(Some("csv")), Ok(Format::Csv));
        assert!(format(Some("xml")).is_err());
    }
}
