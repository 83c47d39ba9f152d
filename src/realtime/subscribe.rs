//! Subscribe, unsubscribe and get:latest, with resume. A subscribe that names where the client
//! left off (`since: { epoch, seq }`) joins the room and replays the missed readings while
//! holding the unit's lock (the same lock the MQTT task holds while emitting), so the client
//! gets every reading after `seq` exactly once: replayed, or live after the replay. The acks
//! also carry each unit's door, read under the same locks (see `pipeline::hub`). In cluster mode
//! a resume that memory cannot serve (this instance started after the client's position) reads
//! the shared history first, then takes the locks and joins it with memory.

use serde_json::{json, Map, Value};
use socketioxide::extract::{AckSender, Extension, SocketRef, State, TryData};
use socketioxide::ParserError;
use std::sync::{Arc, MutexGuard};

use super::state::Realtime;
use super::{admit, SocketCtx};
use crate::auth::Principal;
use crate::core::reading::SensorReading;
use crate::core::registry::Unit;
use crate::core::rooms;
use crate::delivery::{Kind, Payload};
use crate::pipeline::hub::UnitFeed;

/// Longest id accepted in a client event.
const MAX_ID_LEN: usize = 128;

#[derive(Clone, Copy, PartialEq)]
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

/// A parsed subscribe request: the id, and where the client left off.
struct Request {
    id: String,
    since: Option<Since>,
}

/// `since: { epoch, seq }` for a unit; `since: { epoch, seqs: { unitId: seq } }` for a site.
struct Since {
    epoch: String,
    seq: Option<u64>,
    seqs: Map<String, Value>,
}

type ArgError = &'static str;

/// Reads `"id"`, `["id"]` or `{ unitId: "id", since: {...} }`.
fn parse(data: &Result<Value, ParserError>, entity: Entity) -> Result<Request, ArgError> {
    let v = data.as_ref().map_err(|_| "Invalid arguments")?;
    let v = match v {
        Value::Array(a) => a.first().unwrap_or(&Value::Null),
        other => other,
    };
    let (id, since) = match v {
        Value::String(s) => (s.as_str(), None),
        Value::Object(o) => {
            let id = o
                .get(entity.id_key())
                .and_then(Value::as_str)
                .ok_or("Invalid arguments: expected an id string")?;
            let since = match o.get("since") {
                None | Some(Value::Null) => None,
                Some(s) => Some(parse_since(s)?),
            };
            (id, since)
        }
        _ => return Err("Invalid arguments: expected an id string"),
    };
    if id.is_empty() || id.len() > MAX_ID_LEN {
        return Err("Invalid arguments: bad id length");
    }
    Ok(Request {
        id: id.to_string(),
        since,
    })
}

/// `subscribe:organization` takes nothing, or `{ since: { epoch, seqs } }` to resume.
fn parse_org(data: &Result<Value, ParserError>) -> Result<Option<Since>, ArgError> {
    let first = match data {
        Ok(Value::Array(a)) => a.first(),
        Ok(v) => Some(v),
        Err(_) => None,
    };
    match first.and_then(|v| v.get("since")) {
        None | Some(Value::Null) => Ok(None),
        Some(s) => parse_since(s).map(Some),
    }
}

fn parse_since(v: &Value) -> Result<Since, ArgError> {
    const BAD: &str = "Invalid arguments: since must be { epoch, seq } or { epoch, seqs }";
    let o = v.as_object().ok_or(BAD)?;
    let epoch = o.get("epoch").and_then(Value::as_str).ok_or(BAD)?;
    let seq = match o.get("seq") {
        None | Some(Value::Null) => None,
        Some(n) => Some(n.as_u64().ok_or(BAD)?),
    };
    let seqs = match o.get("seqs") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) if m.len() <= 1000 => m.clone(),
        Some(_) => return Err(BAD),
    };
    Ok(Since {
        epoch: epoch.to_string(),
        seq,
        seqs,
    })
}

fn deny(s: &SocketRef, app: &Realtime, ack: AckSender, entity: Entity, id: &str) {
    app.hub.stats().client_error("access_denied");
    let _ = s.emit(
        "subscription:error",
        &json!({ "entity": entity.name(), "entityId": id, "message": "Access denied" }),
    );
    let _ = ack.send(&json!({ "ok": false, "error": "Access denied" }));
}

fn fail(app: &Realtime, ack: AckSender, reason: &'static str, error: &str) {
    app.hub.stats().client_error(reason);
    let _ = ack.send(&json!({ "ok": false, "error": error }));
}

/// The units a subscription covers, if the principal may see them. Unknown ids are denied
/// exactly like another organization's, so probing reveals nothing.
fn units_for(
    app: &Realtime,
    p: &Principal,
    entity: Entity,
    id: &str,
) -> Option<(String, Vec<Arc<Unit>>)> {
    let registry = app.hub.registry();
    let visible = |u: &&Arc<Unit>| u.org == p.org && p.may_see_site(&u.site);
    match entity {
        Entity::Unit => registry
            .unit(id)
            .filter(visible)
            .map(|u| (rooms::unit_room(&u.org, &u.id), vec![u.clone()])),
        Entity::Site => registry
            .site(id)
            .filter(|s| s.org == p.org && p.may_see_site(&s.id))
            .map(|s| {
                let units = registry
                    .units()
                    .filter(visible)
                    .filter(|u| u.site == s.id)
                    .cloned()
                    .collect();
                (rooms::site_room(&s.org, &s.id), units)
            }),
        Entity::Organization => p.sites.is_none().then(|| {
            let units = registry.units().filter(visible).cloned().collect();
            (rooms::readings_room(&p.org), units)
        }),
    }
}

async fn subscribe(call: Call, entity: Entity) {
    let (s, data, ack, app, ctx) = call;
    let Some(ack) = admit(&ctx, &app, ack) else {
        return;
    };
    let p = &ctx.principal;
    let req = match entity {
        Entity::Organization => match parse_org(&data) {
            Ok(since) => Request {
                id: p.org.to_string(),
                since,
            },
            Err(e) => return fail(&app, ack, "bad_arguments", e),
        },
        _ => match parse(&data, entity) {
            Ok(r) => r,
            Err(e) => return fail(&app, ack, "bad_arguments", e),
        },
    };
    let Some((room, mut units)) = units_for(&app, p, entity, &req.id) else {
        return deny(&s, &app, ack, entity, &req.id);
    };
    if !ctx
        .subscriptions
        .add(&room, app.limits.max_subscriptions_per_socket)
    {
        return fail(
            &app,
            ack,
            "too_many_subscriptions",
            "Too many subscriptions",
        );
    }
    units.sort_by(|a, b| a.id.cmp(&b.id));
    // Before any lock: what the shared history has where memory does not reach back.
    let stored = match &req.since {
        Some(since) => stored(&app, entity, since, &units).await,
        None => Vec::new(),
    };
    // Lock every covered unit (in id order: the MQTT task only ever holds one) so that joining
    // the room and reading history happen at one instant for all of them.
    let feeds: Vec<_> = units.iter().map(|u| app.hub.feed(&u.id)).collect();
    let guards: Vec<MutexGuard<'_, UnitFeed>> = feeds
        .iter()
        .map(|f| f.lock().expect("unit feed lock"))
        .collect();
    s.join(room);
    let recovered = req
        .since
        .as_ref()
        .map(|since| replay(&s, &app, entity, since, &units, &guards, &stored));
    let latest: Vec<Value> = guards.iter().filter_map(|g| g.latest_json()).collect();
    let doors: Vec<Value> = guards
        .iter()
        .filter_map(|g| g.door().map(|d| json!(d)))
        .collect();
    drop(guards);
    let mut answer = match entity {
        Entity::Unit => json!({
            "ok": true,
            "latest": latest.into_iter().next().unwrap_or(Value::Null),
            "door": doors.into_iter().next().unwrap_or(Value::Null),
            "epoch": &*app.hub.epoch(),
        }),
        _ => json!({ "ok": true, "latest": latest, "doors": doors, "epoch": &*app.hub.epoch() }),
    };
    if let Some(recovered) = recovered {
        answer["recovered"] = json!(recovered);
    }
    let _ = ack.send(&answer);
}

/// The client's position in `unit`'s feed, if it gave one.
fn position(entity: Entity, since: &Since, unit: &Unit) -> Option<u64> {
    match entity {
        Entity::Unit => since.seq,
        _ => since.seqs.get(&*unit.id).and_then(Value::as_u64),
    }
}

/// Cluster mode: the shared history of each unit whose resume memory cannot serve (read
/// without any lock held), by unit index.
async fn stored(app: &Realtime, entity: Entity, since: &Since, units: &[Arc<Unit>]) -> Stored {
    let mut out = Vec::new();
    if since.epoch != *app.hub.epoch() {
        return out;
    }
    for (i, unit) in units.iter().enumerate() {
        let Some(from) = position(entity, since, unit) else {
            continue;
        };
        if app.hub.in_memory_after(&unit.id, from) {
            continue;
        }
        if let Some(found) = app.hub.stored_after(unit, from).await {
            out.push((i, found));
        }
    }
    out
}

/// What [`stored`] found: `(unit index, (readings, through))`.
type Stored = Vec<(usize, (Vec<Arc<SensorReading>>, u64))>;

/// Replays what each unit's history holds after the client's position; `true` when nothing was
/// missed (same epoch, history reaches back far enough for every unit asked about).
fn replay(
    s: &SocketRef,
    app: &Realtime,
    entity: Entity,
    since: &Since,
    units: &[Arc<Unit>],
    feeds: &[MutexGuard<'_, UnitFeed>],
    stored: &Stored,
) -> bool {
    if since.epoch != *app.hub.epoch() {
        return false;
    }
    let limits = app.hub.history_limits();
    let mut complete = true;
    for (i, (unit, feed)) in units.iter().zip(feeds).enumerate() {
        let Some(from) = position(entity, since, unit) else {
            if entity == Entity::Unit {
                complete = false; // a unit subscribe with `since` but no `seq`
            }
            continue;
        };
        let kept = stored.iter().find(|(j, _)| *j == i).map(|(_, k)| k);
        match feed.after_with(from, kept, limits) {
            Some(missed) => {
                for r in missed {
                    app.slow.send(
                        s,
                        "sensor:reading",
                        &Payload::Reading(r.clone()),
                        Kind::Reading(&unit.id),
                    );
                }
            }
            None => complete = false,
        }
    }
    if !complete {
        app.hub.stats().client_error("resume_gap");
    }
    complete
}

async fn unsubscribe(call: Call, entity: Entity) {
    let (s, data, ack, app, ctx) = call;
    let Some(ack) = admit(&ctx, &app, ack) else {
        return;
    };
    let org = &ctx.principal.org;
    let room = match entity {
        Entity::Organization => rooms::readings_room(org),
        Entity::Unit | Entity::Site => match parse(&data, entity) {
            Ok(r) if entity == Entity::Unit => rooms::unit_room(org, &r.id),
            Ok(r) => rooms::site_room(org, &r.id),
            Err(e) => return fail(&app, ack, "bad_arguments", e),
        },
    };
    ctx.subscriptions.remove(&room);
    s.leave(room);
    let _ = ack.send(&json!({ "ok": true }));
}

/// What a subscribe or unsubscribe handler is called with (the socket, its arguments, the ack,
/// the app, the socket's context).
type Call = (
    SocketRef,
    Result<Value, ParserError>,
    AckSender,
    Realtime,
    Arc<SocketCtx>,
);

macro_rules! handler {
    ($name:ident, $f:ident, $entity:expr) => {
        pub(super) async fn $name(
            s: SocketRef,
            TryData(d): TryData<Value>,
            ack: AckSender,
            State(app): State<Realtime>,
            Extension(ctx): Extension<Arc<SocketCtx>>,
        ) {
            $f((s, d, ack, app, ctx), $entity).await
        }
    };
}

handler!(subscribe_unit, subscribe, Entity::Unit);
handler!(subscribe_site, subscribe, Entity::Site);
handler!(subscribe_org, subscribe, Entity::Organization);
handler!(unsubscribe_unit, unsubscribe, Entity::Unit);
handler!(unsubscribe_site, unsubscribe, Entity::Site);
handler!(unsubscribe_org, unsubscribe, Entity::Organization);

/// `get:latest(unitId, ack)`: the unit's last reading (with the unit's door now) or `null`; a
/// unit the socket may not see gets `{ ok: false, error: "Access denied" }`.
pub(super) async fn get_latest(
    TryData(d): TryData<Value>,
    ack: AckSender,
    State(app): State<Realtime>,
    Extension(ctx): Extension<Arc<SocketCtx>>,
) {
    let Some(ack) = admit(&ctx, &app, ack) else {
        return;
    };
    let id = match parse(&d, Entity::Unit) {
        Ok(r) => r.id,
        Err(e) => return fail(&app, ack, "bad_arguments", e),
    };
    if units_for(&app, &ctx.principal, Entity::Unit, &id).is_none() {
        return fail(&app, ack, "access_denied", "Access denied");
    }
    let _ = ack.send(&app.hub.latest_json(&id));
}
