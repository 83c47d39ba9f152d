//! The Socket.io side: handshake authentication, the client → server events (subscribe,
//! unsubscribe, get:latest, ping) and the per-socket bookkeeping. Tenancy is enforced here:
//! a socket can only join rooms of its own organization (and allowed sites), and every room
//! name is built from the socket's verified organization, never from client input alone.

use serde::Serialize;
use serde_json::{json, Value};
use socketioxide::extract::{AckSender, Extension, SocketRef, State, TryData};
use socketioxide::handler::ConnectHandler;
use socketioxide::socket::DisconnectReason;
use socketioxide::{ParserError, SocketIo};
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::app::AppState;
use crate::auth::{AuthError, Principal};
use crate::reading::now_rfc3339;
use crate::route;

/// Longest id accepted in a client event.
const MAX_ID_LEN: usize = 128;

pub fn register(io: &SocketIo) {
    io.ns("/", on_connect.with(authenticate));
}

/// Why a handshake was refused; `Display` is what `connect_error.message` shows.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("Server shutting down")]
    ShuttingDown,
}

async fn authenticate(
    s: SocketRef,
    TryData(auth): TryData<Value>,
    State(app): State<AppState>,
) -> Result<(), ConnectError> {
    if app.shutting_down.load(Relaxed) {
        return Err(ConnectError::ShuttingDown);
    }
    let token = auth
        .as_ref()
        .ok()
        .and_then(|a| a.get("token"))
        .and_then(Value::as_str);
    match app.auth.verify(token) {
        Ok(principal) => {
            s.extensions.insert(principal);
            Ok(())
        }
        Err(e) => {
            app.hub.stats().client_error(e.reason());
            debug!(sid = %s.id, error = %e, "handshake refused");
            Err(e.into())
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ConnectionAck<'a> {
    socket_id: String,
    timestamp: String,
    organization_id: &'a str,
    role: &'a str,
    epoch: &'a str,
}

async fn on_connect(s: SocketRef, State(app): State<AppState>, Extension(p): Extension<Principal>) {
    app.connections.fetch_add(1, Relaxed);
    // A socket limited to some sites must not hear organization-wide events of other sites.
    match &p.sites {
        None => s.join(route::org_room(&p.org)),
        Some(sites) => s.join(
            sites
                .iter()
                .map(|site| route::site_events_room(&p.org, site))
                .collect::<Vec<_>>(),
        ),
    }
    let ack = ConnectionAck {
        socket_id: s.id.to_string(),
        timestamp: now_rfc3339(),
        organization_id: &p.org,
        role: &p.role,
        epoch: app.hub.epoch(),
    };
    if let Err(e) = s.emit("connection:ack", &ack) {
        warn!(sid = %s.id, error = %e, "connection:ack not sent");
    }
    info!(sid = %s.id, org = %p.org, role = %p.role, sub = %p.subject, "socket connected");

    s.on("subscribe:unit", subscribe_unit);
    s.on("subscribe:site", subscribe_site);
    s.on("subscribe:organization", subscribe_org);
    s.on("unsubscribe:unit", unsubscribe_unit);
    s.on("unsubscribe:site", unsubscribe_site);
    s.on("unsubscribe:organization", unsubscribe_org);
    s.on("get:latest", get_latest);
    s.on("ping", ping);
    s.on("alert:ack", crate::alerts::socket::alert_ack);
    s.on("get:alerts", crate::alerts::socket::get_alerts);
    s.on_fallback(unknown_event);

    let expiry = CancellationToken::new();
    if let Some(exp) = p.expires_at {
        spawn_expiry(&s, &app, exp, expiry.clone());
    }
    s.extensions.insert(ExpiryGuard(expiry));
    s.on_disconnect(on_disconnect);
}

/// Cancels the socket's expiry timer when it disconnects.
#[derive(Clone)]
struct ExpiryGuard(CancellationToken);

async fn on_disconnect(s: SocketRef, reason: DisconnectReason, State(app): State<AppState>) {
    app.connections.fetch_sub(1, Relaxed);
    if let Some(ExpiryGuard(t)) = s.extensions.get::<ExpiryGuard>() {
        t.cancel();
    }
    debug!(sid = %s.id, ?reason, "socket disconnected");
}

/// Disconnects the socket when its token expires (the handshake's leeway does not apply here:
/// a dashboard is expected to reconnect with a fresh token before then).
fn spawn_expiry(s: &SocketRef, app: &AppState, exp: u64, cancel: CancellationToken) {
    let now = jsonwebtoken::get_current_timestamp();
    let wait = Duration::from_secs(exp.saturating_sub(now));
    let socket = s.clone();
    let shutdown = app.shutdown.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = cancel.cancelled() => {}
            _ = shutdown.cancelled() => {}
            _ = tokio::time::sleep(wait) => {
                info!(sid = %socket.id, "token expired, disconnecting socket");
                let _ = socket.emit("auth:expired", &json!({ "message": "Token expired" }));
                let _ = socket.disconnect();
            }
        }
    });
}

/// Which kind of entity a subscribe names.
#[derive(Clone, Copy)]
enum Entity {
    Unit,
    Site,
    Organization,
}

impl Entity {
    fn name(self) -> &'static str {
        match self {
            Entity::Unit => "unit",
            Entity::Site => "site",
            Entity::Organization => "organization",
        }
    }
    fn id_key(self) -> &'static str {
        match self {
            Entity::Unit => "unitId",
            Entity::Site => "siteId",
            Entity::Organization => "organizationId",
        }
    }
}

/// Reads an entity id from `"id"`, `{ unitId: "id", ... }` or `["id"]`.
fn entity_id(data: &Result<Value, ParserError>, entity: Entity) -> Result<String, &'static str> {
    let v = data.as_ref().map_err(|_| "Invalid arguments")?;
    let v = match v {
        Value::Array(a) => a.first().unwrap_or(&Value::Null),
        other => other,
    };
    let id = match v {
        Value::String(s) => s.as_str(),
        Value::Object(o) => o
            .get(entity.id_key())
            .and_then(Value::as_str)
            .ok_or("Invalid arguments: expected an id string")?,
        _ => return Err("Invalid arguments: expected an id string"),
    };
    if id.is_empty() || id.len() > MAX_ID_LEN {
        return Err("Invalid arguments: bad id length");
    }
    Ok(id.to_string())
}

/// The room for `entity`/`id` if the principal may see it. Unknown ids are denied exactly like
/// another organization's, so probing reveals nothing.
fn room_for(app: &AppState, p: &Principal, entity: Entity, id: &str) -> Option<String> {
    let registry = app.hub.registry();
    match entity {
        Entity::Unit => registry
            .unit(id)
            .filter(|u| u.org == p.org && p.may_see_site(&u.site))
            .map(|u| route::unit_room(&u.org, &u.id)),
        Entity::Site => registry
            .site(id)
            .filter(|s| s.org == p.org && p.may_see_site(&s.id))
            .map(|s| route::site_room(&s.org, &s.id)),
        Entity::Organization => (p.sites.is_none()).then(|| route::readings_room(&p.org)),
    }
}

/// Latest readings for a subscribe ack: one reading (or null) for a unit, a list for a site
/// or the organization.
fn latest_for(app: &AppState, p: &Principal, entity: Entity, id: &str) -> Value {
    let hub = &app.hub;
    match entity {
        Entity::Unit => json!(hub.latest(id)),
        Entity::Site | Entity::Organization => {
            let registry = hub.registry();
            let list: Vec<_> = registry
                .units()
                .filter(|u| u.org == p.org && p.may_see_site(&u.site))
                .filter(|u| matches!(entity, Entity::Organization) || &*u.site == id)
                .filter_map(|u| hub.latest(&u.id))
                .collect();
            json!(list)
        }
    }
}

fn deny(s: &SocketRef, app: &AppState, ack: AckSender, entity: Entity, id: &str) {
    app.hub.stats().client_error("access_denied");
    let _ = s.emit(
        "subscription:error",
        &json!({ "entity": entity.name(), "entityId": id, "message": "Access denied" }),
    );
    let _ = ack.send(&json!({ "ok": false, "error": "Access denied" }));
}

fn bad_args(app: &AppState, ack: AckSender, error: &str) {
    app.hub.stats().client_error("bad_arguments");
    let _ = ack.send(&json!({ "ok": false, "error": error }));
}

fn subscribe(
    s: SocketRef,
    data: Result<Value, ParserError>,
    ack: AckSender,
    app: AppState,
    p: Principal,
    entity: Entity,
) {
    let id = match entity {
        Entity::Organization => p.org.to_string(),
        _ => match entity_id(&data, entity) {
            Ok(id) => id,
            Err(e) => return bad_args(&app, ack, e),
        },
    };
    match room_for(&app, &p, entity, &id) {
        Some(room) => {
            s.join(room);
            let latest = latest_for(&app, &p, entity, &id);
            let _ = ack.send(&json!({ "ok": true, "latest": latest, "epoch": app.hub.epoch() }));
        }
        None => deny(&s, &app, ack, entity, &id),
    }
}

fn unsubscribe(
    s: SocketRef,
    data: Result<Value, ParserError>,
    ack: AckSender,
    app: AppState,
    p: Principal,
    entity: Entity,
) {
    let room = match entity {
        Entity::Organization => route::readings_room(&p.org),
        _ => match entity_id(&data, entity) {
            Ok(id) if matches!(entity, Entity::Unit) => route::unit_room(&p.org, &id),
            Ok(id) => route::site_room(&p.org, &id),
            Err(e) => return bad_args(&app, ack, e),
        },
    };
    s.leave(room);
    let _ = ack.send(&json!({ "ok": true }));
}

async fn subscribe_unit(
    s: SocketRef,
    TryData(d): TryData<Value>,
    ack: AckSender,
    State(app): State<AppState>,
    Extension(p): Extension<Principal>,
) {
    subscribe(s, d, ack, app, p, Entity::Unit)
}
async fn subscribe_site(
    s: SocketRef,
    TryData(d): TryData<Value>,
    ack: AckSender,
    State(app): State<AppState>,
    Extension(p): Extension<Principal>,
) {
    subscribe(s, d, ack, app, p, Entity::Site)
}
async fn subscribe_org(
    s: SocketRef,
    TryData(d): TryData<Value>,
    ack: AckSender,
    State(app): State<AppState>,
    Extension(p): Extension<Principal>,
) {
    subscribe(s, d, ack, app, p, Entity::Organization)
}
async fn unsubscribe_unit(
    s: SocketRef,
    TryData(d): TryData<Value>,
    ack: AckSender,
    State(app): State<AppState>,
    Extension(p): Extension<Principal>,
) {
    unsubscribe(s, d, ack, app, p, Entity::Unit)
}
async fn unsubscribe_site(
    s: SocketRef,
    TryData(d): TryData<Value>,
    ack: AckSender,
    State(app): State<AppState>,
    Extension(p): Extension<Principal>,
) {
    unsubscribe(s, d, ack, app, p, Entity::Site)
}
async fn unsubscribe_org(
    s: SocketRef,
    TryData(d): TryData<Value>,
    ack: AckSender,
    State(app): State<AppState>,
    Extension(p): Extension<Principal>,
) {
    unsubscribe(s, d, ack, app, p, Entity::Organization)
}

/// `get:latest(unitId, ack)`: the unit's last reading or `null`; a unit the socket may not see
/// gets `{ ok: false, error: "Access denied" }`.
async fn get_latest(
    TryData(d): TryData<Value>,
    ack: AckSender,
    State(app): State<AppState>,
    Extension(p): Extension<Principal>,
) {
    let id = match entity_id(&d, Entity::Unit) {
        Ok(id) => id,
        Err(e) => return bad_args(&app, ack, e),
    };
    if room_for(&app, &p, Entity::Unit, &id).is_none() {
        app.hub.stats().client_error("access_denied");
        let _ = ack.send(&json!({ "ok": false, "error": "Access denied" }));
        return;
    }
    let _ = ack.send(&app.hub.latest(&id));
}

/// `ping(ack)`: the server's clock, epoch milliseconds.
async fn ping(ack: AckSender) {
    let _ = ack.send(&chrono::Utc::now().timestamp_millis());
}

async fn unknown_event(s: SocketRef, ack: AckSender, State(app): State<AppState>) {
    app.hub.stats().client_error("unknown_event");
    debug!(sid = %s.id, "unknown client event");
    let _ = ack.send(&json!({ "ok": false, "error": "Unknown event" }));
}
