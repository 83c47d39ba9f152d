//! The Socket.io side: handshake authentication and connection limits, per-socket context, and
//! the client → server events. Tenancy is enforced here: a socket only joins rooms of its own
//! organization (and allowed sites), and every room name is built from the socket's verified
//! organization, never from client input alone.
//!
//! - `subscribe`: subscriptions, resume and `get:latest`; `alerts`: `alert:ack`, `get:alerts`;
//!   `history`: `get:history`.
//! - [`expiry`]: token expiry of connected sockets; `limits`: rate limit and subscription cap.
//! - [`state`]: the handle every handler gets; [`config`]: `[realtime]` and `[limits]`.
//! - [`transport`]: the HTTP listener's connections (cap, refusals); `stall`: one connection's
//!   I/O (cut when its writes stall or nothing is read for the idle timeout).

mod alerts;
pub mod config;
pub mod expiry;
pub mod history;
mod limits;
mod stall;
pub mod state;
mod subscribe;
pub mod transport;

pub use alerts::may_acknowledge;
pub use config::{LimitsConfig, RealtimeConfig};
pub use state::Realtime;

use serde::Serialize;
use serde_json::{json, Value};
use socketioxide::extract::{AckSender, Extension, SocketRef, State, TryData};
use socketioxide::handler::ConnectHandler;
use socketioxide::socket::{DisconnectReason, Sid};
use socketioxide::SocketIo;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;
use tracing::{debug, warn};

use axum::extract::ConnectInfo;
use socketioxide::TransportType;

use crate::auth::{AuthError, Principal};
use crate::core::reading::now_rfc3339;
use crate::core::rooms;
use crate::delivery::Why;
use limits::Subscriptions;
use transport::ConnFlow;

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
    #[error("Too many connections")]
    TooManyConnections,
    #[error("Too many connections for this user")]
    TooManyForSubject,
    #[error("Token too large")]
    TokenTooLarge,
}

/// The longest token taken at the handshake (a JWT with a few claims is well under 2 KiB).
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// How much longer than `limits.max_client_payload` a transport message may be, so that a
/// CONNECT packet with a token over [`MAX_TOKEN_BYTES`] (up to this size) still reaches the
/// handshake and is answered `connect_error: Token too large` instead of a closed transport.
pub const TOKEN_ALLOWANCE: u64 = 64 * 1024;

/// Everything the server keeps per socket, in its extensions as `Arc<SocketCtx>`.
pub struct SocketCtx {
    pub principal: Principal,
    /// Whose rate limit the socket's events spend (`Realtime::buckets`).
    user: UserKey,
    subscriptions: Subscriptions,
    _slot: ConnectionSlot,
}

/// The socket's place in `max_connections` and `max_connections_per_subject`, taken by the
/// connect middleware and given back when socketioxide drops the socket. Not in a disconnect
/// handler: when the client hangs up between its CONNECT and the reply, socketioxide drops
/// the socket without running any handler.
struct ConnectionSlot {
    app: Realtime,
    subject: UserKey,
    sid: Sid,
}

/// Whose sockets `limits.max_connections_per_subject` counts: a token's `sub` within its
/// organization (two organizations may both have an `alice`).
pub type UserKey = (Arc<str>, Arc<str>);

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.app.connections.fetch_sub(1, Relaxed);
        release_subject(&self.app, &self.subject);
        self.app.slow.forget(self.sid);
    }
}

impl SocketCtx {
    /// One client event's worth of the user's rate limit.
    fn allow(&self, app: &Realtime) -> bool {
        app.buckets.take(&self.user, Instant::now())
    }

    /// Rooms this socket joined through subscribe events (`/metrics`).
    pub fn subscription_count(&self) -> usize {
        self.subscriptions.len()
    }
}

async fn authenticate(
    s: SocketRef,
    TryData(auth): TryData<Value>,
    State(app): State<Realtime>,
) -> Result<(), ConnectError> {
    if app.is_shutting_down() {
        return Err(ConnectError::ShuttingDown);
    }
    let token = auth
        .as_ref()
        .ok()
        .and_then(|a| a.get("token"))
        .and_then(Value::as_str);
    if token.is_some_and(|t| t.len() > MAX_TOKEN_BYTES) {
        app.hub.stats().client_error("token_too_large");
        debug!(sid = %s.id, "handshake refused: token too large");
        return Err(ConnectError::TokenTooLarge);
    }
    let principal = app.verify(token).map_err(|e| {
        app.hub.stats().client_error(e.reason());
        debug!(sid = %s.id, error = %e, "handshake refused");
        ConnectError::from(e)
    })?;
    if app.connections() >= app.limits.max_connections {
        app.hub.stats().client_error("too_many_connections");
        return Err(ConnectError::TooManyConnections);
    }
    let mut per = app
        .per_subject
        .entry((principal.org.clone(), principal.subject.clone()))
        .or_insert(0);
    if *per >= app.limits.max_connections_per_subject {
        app.hub.stats().client_error("too_many_for_subject");
        return Err(ConnectError::TooManyForSubject);
    }
    *per += 1;
    drop(per);
    app.connections.fetch_add(1, Relaxed);
    // From here on the slot is released when the socket goes, however it goes.
    let slot = ConnectionSlot {
        app: app.clone(),
        subject: (principal.org.clone(), principal.subject.clone()),
        sid: s.id,
    };
    let ctx = Arc::new(SocketCtx {
        user: (principal.org.clone(), principal.subject.clone()),
        subscriptions: Subscriptions::default(),
        principal: principal.clone(),
        _slot: slot,
    });
    // Rooms and handlers are set up here, not in on_connect: socketioxide sends the CONNECT
    // reply before it runs the connect handler, so a client's first event can arrive before
    // on_connect has run; anything registered there would miss it.
    join_own_rooms(&s, &principal);
    register_handlers(&s);
    track_connection(&s, &app);
    if let Some(exp) = principal.expires_at {
        app.expiries.add(exp, s.id);
    }
    s.extensions.insert(ctx);
    s.extensions.insert(principal);
    Ok(())
}

/// Which connection the socket rides on, for congestion (see `delivery::congestion`). A socket
/// whose handshake came over a websocket is bound to that connection now; one that starts on
/// long-polling is served one by one until it upgrades, when its websocket request binds it
/// (`transport::bind_websocket`).
fn track_connection(s: &SocketRef, app: &Realtime) {
    match s.transport_type() {
        TransportType::Polling => app.slow.mark(s, Why::Polling),
        TransportType::Websocket => {
            let parts = s.req_parts();
            let handshake_on_websocket = parts
                .uri
                .query()
                .is_some_and(|q| q.split('&').any(|kv| kv == "transport=websocket"));
            if let Some(ConnectInfo(conn)) = parts.extensions.get::<ConnectInfo<ConnFlow>>() {
                if handshake_on_websocket {
                    conn.0.bind(s.id);
                }
            }
        }
    }
}

/// The organization room, or, for a socket limited to some sites, one events room per site
/// (it must not hear organization-wide events of other sites).
fn join_own_rooms(s: &SocketRef, p: &Principal) {
    match &p.sites {
        None => s.join(rooms::org_room(&p.org)),
        Some(sites) => s.join(
            sites
                .iter()
                .map(|site| rooms::site_events_room(&p.org, site))
                .collect::<Vec<_>>(),
        ),
    }
}

/// Every client event, and each handler passes [`admit`] (the socket's event rate limit)
/// before doing anything else; `tests/connections.rs` sends a burst of each.
fn register_handlers(s: &SocketRef) {
    s.on("subscribe:unit", subscribe::subscribe_unit);
    s.on("subscribe:site", subscribe::subscribe_site);
    s.on("subscribe:organization", subscribe::subscribe_org);
    s.on("unsubscribe:unit", subscribe::unsubscribe_unit);
    s.on("unsubscribe:site", subscribe::unsubscribe_site);
    s.on("unsubscribe:organization", subscribe::unsubscribe_org);
    s.on("get:latest", subscribe::get_latest);
    s.on("get:history", history::get_history);
    s.on("ping", ping);
    s.on("alert:ack", alerts::alert_ack);
    s.on("get:alerts", alerts::get_alerts);
    s.on_fallback(unknown_event);
    s.on_disconnect(on_disconnect);
}

fn release_subject(app: &Realtime, subject: &UserKey) {
    app.per_subject.remove_if_mut(subject, |_, n| {
        *n = n.saturating_sub(1);
        *n == 0
    });
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

async fn on_connect(
    s: SocketRef,
    State(app): State<Realtime>,
    Extension(ctx): Extension<Arc<SocketCtx>>,
) {
    let p = &ctx.principal;
    let epoch = app.hub.epoch();
    let ack = ConnectionAck {
        socket_id: s.id.to_string(),
        timestamp: now_rfc3339(),
        organization_id: &p.org,
        role: &p.role,
        epoch: &epoch,
    };
    if let Err(e) = s.emit("connection:ack", &ack) {
        warn!(sid = %s.id, error = %e, "connection:ack not sent");
    }
    // Debug, not info: a client reconnecting in a loop must not flood the journal.
    debug!(sid = %s.id, org = %p.org, role = %p.role, sub = %p.subject, "socket connected");
}

async fn on_disconnect(
    s: SocketRef,
    reason: DisconnectReason,
    State(app): State<Realtime>,
    Extension(ctx): Extension<Arc<SocketCtx>>,
) {
    // The connection slots come back when the socket is dropped (`ConnectionSlot`); what it
    // still had pending goes now.
    app.slow.forget(s.id);
    debug!(sid = %s.id, sub = %ctx.principal.subject, ?reason, "socket disconnected");
}

/// The rate-limit gate every client event passes: `Some(ack)` to go on, `None` when the event
/// was refused (and answered `Rate limited`).
fn admit(ctx: &SocketCtx, app: &Realtime, ack: AckSender) -> Option<AckSender> {
    if ctx.allow(app) {
        return Some(ack);
    }
    app.hub.stats().client_error("rate_limited");
    let _ = ack.send(&json!({ "ok": false, "error": "Rate limited" }));
    None
}

/// `ping(ack)`: the server's clock, epoch milliseconds.
async fn ping(
    ack: AckSender,
    State(app): State<Realtime>,
    Extension(ctx): Extension<Arc<SocketCtx>>,
) {
    if let Some(ack) = admit(&ctx, &app, ack) {
        let _ = ack.send(&chrono::Utc::now().timestamp_millis());
    }
}

async fn unknown_event(
    s: SocketRef,
    ack: AckSender,
    State(app): State<Realtime>,
    Extension(ctx): Extension<Arc<SocketCtx>>,
) {
    let Some(ack) = admit(&ctx, &app, ack) else {
        return;
    };
    app.hub.stats().client_error("unknown_event");
    debug!(sid = %s.id, "unknown client event");
    let _ = ack.send(&json!({ "ok": false, "error": "Unknown event" }));
}
