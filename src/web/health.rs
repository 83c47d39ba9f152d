//! HTTP routes beside Socket.io: health probes for systemd, load balancers and dashboards, and
//! the small `/api/` an installer uses (unmapped sensors, counters). The status page (`/`) is in
//! [`super::status`], `/metrics` in [`super::metrics`] (on its own listener). Health is open; `/api/`
//! takes `Authorization: Bearer <JWT>` verified exactly like the socket handshake, and needs the
//! `owner` or `admin` role (unless `auth.mode = "none"`). The history routes under `/api/` are
//! in [`super::history`], with their own role rules.

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::core::connections::ConnEnd;
use crate::web::WebState;

pub fn router(app: WebState) -> Router {
    let api = Router::new()
        .route("/api/sensors/unmapped", get(unmapped))
        .route("/api/stats", get(stats))
        .layer(middleware::from_fn_with_state(app.clone(), require_admin));
    Router::new()
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
        .route("/health/realtime", get(realtime))
        .route("/health", get(health))
        .merge(api)
        .with_state(app)
}

async fn live() -> Json<serde_json::Value> {
    Json(json!({ "alive": true }))
}

async fn ready(State(app): State<WebState>) -> Response {
    if app.rt.is_shutting_down() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "ready": false, "reason": "shutting down" })),
        )
            .into_response();
    }
    match mqtt_problem(&app) {
        None => Json(json!({ "ready": true })).into_response(),
        Some(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "ready": false, "reason": reason })),
        )
            .into_response(),
    }
}

/// Why MQTT is not ready, or `None` when connected and subscribed (and not in a reconnect
/// loop: connected most of the time, yet every connection ends the same way soon after).
fn mqtt_problem(app: &WebState) -> Option<String> {
    let m = &app.mqtt;
    if let Some((error, repeats)) = m.reconnect_loop() {
        return Some(format!(
            "mqtt reconnect loop: the same error ended the last {repeats} connections soon after each was made: {error}"
        ));
    }
    if m.ready() {
        return None;
    }
    let state = if m.connected.load(std::sync::atomic::Ordering::Relaxed) {
        "mqtt connected, subscriptions not acknowledged yet"
    } else {
        "mqtt not connected"
    };
    Some(match m.last_error() {
        Some(e) => format!("{state}: {e}"),
        None => state.to_string(),
    })
}

/// `{ websocket: { enabled, connections, clusterConnections } }`: this instance's sockets, and
/// every live instance's (the same number on a single box).
async fn realtime(State(app): State<WebState>) -> Json<serde_json::Value> {
    let local = app.rt.connections() as u64;
    let cluster = app.cluster.as_ref().map_or(local, |c| c.connections());
    Json(json!({ "websocket": {
        "enabled": true,
        "connections": local,
        "clusterConnections": cluster,
    } }))
}

/// `checks.storage`: the history store's counters and its problem, if any.
fn storage_check(store: &crate::storage::Store) -> serde_json::Value {
    use std::sync::atomic::Ordering::Relaxed;
    let h = store.health();
    let problem = h.problem();
    json!({
        "status": if problem.is_none() { "ok" } else { "error" },
        "path": store.path().display().to_string(),
        "commits": h.commits.load(Relaxed),
        "readingsStored": h.readings_stored.load(Relaxed),
        "readingsDropped": h.readings_dropped.load(Relaxed),
        "commitErrors": h.commit_errors.load(Relaxed),
        "prunedForBudget": h.pruned_for_budget.load(Relaxed),
        "bytesUsed": h.bytes_used.load(Relaxed),
        "error": problem,
    })
}

async fn health(State(app): State<WebState>) -> Response {
    let problem = mqtt_problem(&app);
    let cluster = app.cluster.as_ref().map(|c| c.health());
    let unavailable = problem.is_some() || cluster.as_ref().is_some_and(|c| c.degraded);
    // A history store in trouble degrades the service (said at the top) but live delivery
    // goes on, so the instance stays in a load balancer (200). So does an alert state file
    // that cannot be written: acknowledgements are then not confirmed and a restart would
    // forget alerts, which the top-level status must say.
    let storage = app.rt.store.as_ref().map(storage_check);
    let store_failing = app.rt.alerts.store_failing();
    let degraded =
        unavailable || store_failing || storage.as_ref().is_some_and(|s| s["status"] != "ok");
    let (orgs, sites, units, sensors) = app.rt.hub.registry().counts();
    let stats = app.rt.hub.stats().snapshot();
    let mut body = json!({
        "status": if degraded { "degraded" } else { "ok" },
        "version": env!("CARGO_PKG_VERSION"),
        "uptimeSeconds": app.started.elapsed().as_secs(),
        "epoch": app.rt.hub.epoch(),
        "checks": {
            "mqtt": {
                "status": if problem.is_none() { "ok" } else { "error" },
                "connected": app.mqtt.connected.load(std::sync::atomic::Ordering::Relaxed),
                "subscribed": app.mqtt.subscribed.load(std::sync::atomic::Ordering::Relaxed),
                "reconnects": app.mqtt.reconnects.load(std::sync::atomic::Ordering::Relaxed),
                "errorRepeats": app.mqtt.error_repeats(),
                "repeatedError": app.mqtt.reconnect_loop().map(|(error, _)| error),
                "error": problem,
            },
            "http": {
                "connections": app.http.open(),
                "maxConnections": app.http.max(),
                "fdLimit": app.http.fd_limit(),
                "refused": app.http.ended(ConnEnd::Refused),
                "acceptErrors": app.http.ended(ConnEnd::AcceptError),
                "headerTimeouts": app.http.ended(ConnEnd::HeaderTimeout),
                "idleTimeouts": app.http.ended(ConnEnd::IdleTimeout),
            },
            "socketio": {
                "status": "ok",
                "connections": app.rt.connections(),
                "slowSockets": app.rt.slow.count(),
            },
            "registry": { "orgs": orgs, "sites": sites, "units": units, "sensors": sensors },
            "reload": app.reload.status(),
        },
        "pipeline": stats,
        "alerts": app.rt.alerts.health(),
    });
    if let Some(cluster) = cluster {
        body["checks"]["cluster"] = json!(cluster);
    }
    body["checks"]["storage"] = storage.unwrap_or_else(|| json!({ "status": "off" }));
    let code = if !unavailable {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}

async fn unmapped(State(app): State<WebState>) -> Json<serde_json::Value> {
    let list = app.rt.hub.unmapped();
    Json(json!({ "count": list.len(), "sensors": list }))
}

async fn stats(State(app): State<WebState>) -> Json<crate::core::stats::StatsSnapshot> {
    Json(app.rt.hub.stats().snapshot())
}

/// 401 without a valid token, 403 for roles other than owner/admin.
async fn require_admin(State(app): State<WebState>, req: Request, next: Next) -> Response {
    match app.rt.verify(crate::web::signin::bearer(req.headers())) {
        Ok(p) if p.is_admin() => next.run(req).await,
        Ok(_) => (
            StatusCode::FORBIDDEN,
            Json(json!({ "error": "Forbidden: owner or admin role required" })),
        )
            .into_response(),
        Err(e) => {
            app.rt.hub.stats().client_error(e.reason());
            let mut r = (
                StatusCode::UNAUTHORIZED,
                Json(json!({ "error": e.to_string() })),
            )
                .into_response();
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
            r
        }
    }
}
