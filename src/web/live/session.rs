//! `GET /live/session`: what the wallboard needs besides the socket's events, read at one
//! instant for the viewer (their organization's units, and only their sites'): the token for
//! the socket's handshake (from the cookie or header that authenticated this request), the
//! organization, whether the role may acknowledge, the units with names, limits and state now.
//! The page asks again after every reconnect, so a reload of the registry shows up there.

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use serde::Serialize;

use crate::auth::Principal;
use crate::web::status::age_state;
use crate::web::WebState;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Session {
    /// The token to open the socket with; `null` when authentication is off.
    token: Option<String>,
    /// Epoch seconds.
    expires_at: Option<u64>,
    organization_id: String,
    organization_name: Option<String>,
    role: String,
    can_acknowledge: bool,
    stale_after_seconds: u64,
    units: Vec<UnitInfo>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct UnitInfo {
    unit_id: String,
    name: Option<String>,
    site_id: String,
    site_name: Option<String>,
    /// The alert engine's state, else `ok`/`stale`/`no data` from the last reading's age.
    state: String,
    /// Limits of the temperature rule (both or neither, like the engine).
    temp_min: Option<f64>,
    temp_max: Option<f64>,
    humidity_min: Option<f64>,
    humidity_max: Option<f64>,
}

pub(super) async fn session(State(app): State<WebState>, uri: Uri, headers: HeaderMap) -> Response {
    let (p, token) = match super::viewer(&app, &headers, &uri) {
        Ok(v) => v,
        Err(denied) => return denied.into_response(),
    };
    let mut r = Json(gather(&app, &p, token)).into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn gather(app: &WebState, p: &Principal, token: Option<String>) -> Session {
    let registry = app.rt.hub.registry();
    let view = app.rt.alerts.view();
    let now = Utc::now();
    let mut units: Vec<UnitInfo> = registry
        .units()
        .filter(|u| *u.org == *p.org && p.may_see_site(&u.site))
        .map(|u| {
            let rules = app.rt.alerts.unit_rules(&registry, u);
            let latest = app.rt.hub.latest(&u.id);
            let heard = latest.is_some() || app.rt.hub.door(&u.id).is_some();
            let state = match (heard, view.states.get(&u.id)) {
                (true, Some(s)) => s.name().to_string(),
                // As on the status page: a retained copy without a time of its own is stale.
                _ => match latest.as_ref().map(|r| r.alive_at()) {
                    Some(None) => "stale".to_string(),
                    alive => age_state(alive.flatten(), now, app.stale_after).to_string(),
                },
            };
            let temp = rules.temp_min.zip(rules.temp_max);
            UnitInfo {
                unit_id: u.id.to_string(),
                name: u.name.clone(),
                site_id: u.site.to_string(),
                site_name: registry.site(&u.site).and_then(|s| s.name.clone()),
                state,
                temp_min: temp.map(|t| t.0),
                temp_max: temp.map(|t| t.1),
                humidity_min: rules.humidity_min,
                humidity_max: rules.humidity_max,
            }
        })
        .collect();
    units.sort_by(|a, b| {
        let key = |u: &UnitInfo| (u.site_name.clone(), u.site_id.clone(), u.name.clone());
        key(a).cmp(&key(b)).then_with(|| a.unit_id.cmp(&b.unit_id))
    });
    Session {
        token: token.filter(|_| app.rt.auth.mode() != crate::auth::AuthMode::None),
        expires_at: p.expires_at,
        organization_id: p.org.to_string(),
        organization_name: registry.org(&p.org).and_then(|o| o.name.clone()),
        role: p.role.to_string(),
        can_acknowledge: crate::realtime::may_acknowledge(p),
        stale_after_seconds: app.stale_after.as_secs(),
        units,
    }
}
