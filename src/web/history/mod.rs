//! The history store over plain HTTP, for scripts, spreadsheets and auditors that do not speak
//! Socket.io: a unit's readings (`GET /api/units/{unitId}/readings`, JSON or CSV) and the
//! HACCP report of a site (`GET /api/reports/haccp`, CSV). Both take the same
//! `Authorization: Bearer <JWT>` as the socket handshake and answer with the same tenant rules
//! as `get:history` (which [`crate::realtime::history`] owns; the readings route only adds the
//! HTTP framing). Errors are JSON `{ "error": ... }` whatever format was asked for.
//!
//! - [`readings`]: the readings route; [`haccp`]: the report; [`csv_out`]: CSV bodies.

mod csv_out;
mod haccp;
mod readings;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::auth::{AuthError, Principal};
use crate::realtime::history::HistoryError;
use crate::web::WebState;

pub fn router(app: WebState) -> Router {
    Router::new()
        .route("/api/units/{unit_id}/readings", get(readings::readings))
        .route("/api/reports/haccp", get(haccp::report))
        .with_state(app)
}

/// The principal of a request's bearer token.
fn principal(app: &WebState, headers: &HeaderMap) -> Result<Principal, AuthError> {
    app.rt.verify(crate::web::signin::bearer(headers))
}

/// The 401 for a token that did not verify (counted like the socket handshake's refusals).
fn unauthorized(app: &WebState, e: &AuthError) -> Response {
    app.rt.hub.stats().client_error(e.reason());
    let mut r = error(StatusCode::UNAUTHORIZED, &e.to_string());
    r.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    r
}

/// `{ "error": message }` with `status`.
fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

/// A refused history request: counted under its reason, answered with its client message.
fn refused(app: &WebState, e: &HistoryError) -> Response {
    app.rt.hub.stats().client_error(e.reason());
    let status = match e {
        HistoryError::BadRequest(_) => StatusCode::BAD_REQUEST,
        HistoryError::AccessDenied => StatusCode::FORBIDDEN,
        HistoryError::Disabled | HistoryError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
    };
    error(status, &e.to_string())
}
