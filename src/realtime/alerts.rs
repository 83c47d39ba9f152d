//! The client → server alert events: `alert:ack({ alertId, comment? }, ack)` and
//! `get:alerts(ack)`.
//! Registered by [`crate::realtime`] on every socket. Visibility follows the socket's token:
//! its organization's alerts only, and for a token limited to some sites, only alerts of units
//! on those sites. An alert the socket may not see is answered exactly like an id that does
//! not exist, so probing reveals nothing.

use serde_json::{json, Value};
use socketioxide::extract::{AckSender, Extension, State, TryData};
use socketioxide::ParserError;
use std::sync::Arc;
use tracing::{debug, info};

use super::state::Realtime;
use super::{admit, SocketCtx};
use crate::alerts::{AckError, Alert};
use crate::auth::Principal;

/// Longest alert id accepted (ours are 26 characters).
const MAX_ALERT_ID: usize = 64;

/// Longest acknowledgement comment, in characters after trimming: a sentence or two on the
/// corrective action, not a report.
pub const MAX_COMMENT: usize = 500;

/// Roles that may acknowledge an alert.
pub fn may_acknowledge(p: &Principal) -> bool {
    matches!(&*p.role, "owner" | "admin" | "manager" | "staff")
}

/// Whether `p` may see `alert`.
pub fn visible(p: &Principal, alert: &Alert) -> bool {
    alert.organization_id == p.org && p.may_see_site(&alert.site_id)
}

/// Reads an alert id from `{ alertId }`, `"id"` or `[{ alertId }]`.
fn alert_id(data: &Result<Value, ParserError>) -> Option<String> {
    let v = data.as_ref().ok()?;
    let v = match v {
        Value::Array(a) => a.first()?,
        other => other,
    };
    let id = match v {
        Value::String(s) => s.as_str(),
        Value::Object(o) => o.get("alertId")?.as_str()?,
        _ => return None,
    };
    (!id.is_empty() && id.len() <= MAX_ALERT_ID).then(|| id.to_string())
}

/// Reads the optional `comment` of `{ alertId, comment }`: `Ok(None)` when absent, null or
/// blank; trimmed; `Err(client message)` when not a string or longer than [`MAX_COMMENT`].
fn comment(data: &Result<Value, ParserError>) -> Result<Option<String>, &'static str> {
    let v = match data.as_ref() {
        Ok(Value::Array(a)) => a.first(),
        Ok(other) => Some(other),
        Err(_) => None,
    };
    let Some(c) = v.and_then(|v| v.as_object()).and_then(|o| o.get("comment")) else {
        return Ok(None);
    };
    match c {
        Value::Null => Ok(None),
        Value::String(s) => {
            let s = s.trim();
            if s.chars().count() > MAX_COMMENT {
                Err("Comment too long")
            } else {
                Ok((!s.is_empty()).then(|| s.to_string()))
            }
        }
        _ => Err("Invalid arguments: comment must be a string"),
    }
}

fn refuse(app: &Realtime, ack: AckSender, reason: &'static str, error: &str) {
    app.hub.stats().client_error(reason);
    let _ = ack.send(&json!({ "ok": false, "error": error }));
}

/// `alert:ack({ alertId, comment? }, ack)` → `{ ok: true, alert }`, and `alert:acknowledged`
/// (with the comment) to the organization. `{ ok: false, error }` with "Access denied" (role),
/// "Alert not found" (unknown, resolved or not visible), "Comment too long" (over 500
/// characters after trimming) or "Invalid arguments...". Under the socket's event rate
/// limit like every client event. Answered only once the acknowledgement is stored (the state
/// file on disk, or Redis in cluster mode); "Acknowledgement not stored, try again" if that did
/// not happen within 5 s. Acknowledging an alert that is already acknowledged answers
/// the same and is logged at debug level only (the first acknowledgement at info).
pub async fn alert_ack(
    TryData(d): TryData<Value>,
    ack: AckSender,
    State(app): State<Realtime>,
    Extension(ctx): Extension<Arc<SocketCtx>>,
) {
    let Some(ack) = admit(&ctx, &app, ack) else {
        return;
    };
    let p = &ctx.principal;
    let Some(id) = alert_id(&d) else {
        return refuse(
            &app,
            ack,
            "bad_arguments",
            "Invalid arguments: expected { alertId }",
        );
    };
    let comment = match comment(&d) {
        Ok(c) => c,
        Err(error) => return refuse(&app, ack, "bad_arguments", error),
    };
    if !may_acknowledge(p) {
        return refuse(&app, ack, "access_denied", "Access denied");
    }
    let view = app.alerts.view();
    let Some(seen) = view
        .alerts
        .iter()
        .find(|a| a.alert_id == id && visible(p, a))
    else {
        return refuse(&app, ack, "alert_not_found", "Alert not found");
    };
    let repeated = seen.acknowledged_at.is_some();
    let acked = app.alerts.acknowledge(&id, &p.subject, comment.as_deref());
    match acked.await {
        Ok(alert) => {
            if repeated {
                debug!(alert = %id, by = %p.subject, "alert acknowledged again");
            } else {
                info!(alert = %id, by = %p.subject, "alert acknowledged");
            }
            let _ = ack.send(&json!({ "ok": true, "alert": alert }));
        }
        // Announced, but not stored in time (or the owner in a cluster did not answer): not
        // confirmed, so that the person does not walk away from an unrecorded answer.
        Err(AckError::NotStored | AckError::Unavailable) => refuse(
            &app,
            ack,
            "ack_not_stored",
            "Acknowledgement not stored, try again",
        ),
        // Resolved between the check and the engine's turn.
        Err(AckError::NotFound) => refuse(&app, ack, "alert_not_found", "Alert not found"),
    }
}

/// `get:alerts(ack)` → `{ ok: true, alerts: Alert[] }`: the open alerts the socket may see,
/// oldest first. Under the socket's event rate limit.
pub async fn get_alerts(
    ack: AckSender,
    State(app): State<Realtime>,
    Extension(ctx): Extension<Arc<SocketCtx>>,
) {
    let Some(ack) = admit(&ctx, &app, ack) else {
        return;
    };
    let view = app.alerts.view();
    let alerts: Vec<&Alert> = view
        .alerts
        .iter()
        .filter(|a| visible(&ctx.principal, a))
        .collect();
    let _ = ack.send(&json!({ "ok": true, "alerts": alerts }));
}
