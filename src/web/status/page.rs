//! What the status page shows, read from the service at one instant ([`gather`]); the HTML
//! for it is [`render`](super::view::render), a pure function of [`PageData`].

use chrono::{DateTime, Utc};
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use crate::auth::Principal;
use crate::web::WebState;

/// Everything the page shows, gathered at one instant; [`render`](super::view::render) is a
/// pure function of it.
#[derive(Debug, Clone)]
pub struct PageData {
    pub now: DateTime<Utc>,
    pub version: &'static str,
    pub epoch: String,
    pub uptime: Duration,
    pub org: String,
    pub org_name: Option<String>,
    pub broker: Broker,
    pub units: Vec<UnitRow>,
    pub alerts: Vec<AlertRow>,
    pub unmapped: Vec<crate::pipeline::hub::UnmappedSensor>,
    pub sockets: Sockets,
    /// Cluster mode: Redis, the live instances, the cluster's sockets.
    pub cluster: Option<crate::cluster::ClusterHealth>,
}

#[derive(Debug, Clone)]
pub struct Broker {
    pub connected: bool,
    pub subscribed: bool,
    pub reconnects: u64,
    pub error: Option<String>,
}

#[derive(Debug, Clone)]
pub struct UnitRow {
    pub unit_id: String,
    pub unit_name: Option<String>,
    pub site: String,
    pub state: String,
    pub latest: Option<std::sync::Arc<crate::core::reading::SensorReading>>,
    /// The unit's door (see `pipeline::hub::UnitFeed::door`), if it has a contact that reported.
    pub door: Option<crate::core::reading::UnitDoor>,
    /// A `humidity_excursion` alert is open for the unit.
    pub humidity_alert: bool,
    /// The last 24 h from the history store ([`super::chart::add`]); `None` without data.
    pub chart: Option<super::chart::Chart>,
}

#[derive(Debug, Clone)]
pub struct AlertRow {
    pub unit: String,
    pub alert_type: String,
    pub severity: String,
    pub message: String,
    pub triggered_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct Sockets {
    pub connected: usize,
    pub of_org: usize,
    pub slow: usize,
}

/// Reads the service's state for the viewer `p`: units and alerts of their organization (and
/// allowed sites) only; broker, unmapped sensors and socket totals are the box's.
pub fn gather(
    app: &WebState,
    p: &Principal,
    stale_after: Duration,
    now: DateTime<Utc>,
) -> PageData {
    let registry = app.rt.hub.registry();
    let view = app.rt.alerts.view();
    let mut units: Vec<UnitRow> = registry
        .units()
        .filter(|u| *u.org == *p.org && p.may_see_site(&u.site))
        .map(|u| {
            let latest = app.rt.hub.latest(&u.id);
            let door = app.rt.hub.door(&u.id);
            // No reading yet says more than the engine's initial "ok"; after that the engine's
            // state (excursion, alarm, offline...) when it has one, else the reading's age. A
            // door contact's report counts as data too. A retained copy is as old as its own
            // time says; without one, of unknown age.
            let age = match latest.as_ref().map(|r| r.alive_at()) {
                Some(None) => "stale",
                alive => age_state(alive.flatten(), now, stale_after),
            };
            let heard = latest.is_some() || door.is_some();
            let state = match (heard, view.states.get(&u.id)) {
                (true, Some(engine_state)) => engine_state.name().to_string(),
                _ => age.to_string(),
            };
            let humidity_alert = view.alerts.iter().any(|a| {
                a.unit_id == u.id && a.alert_type == crate::alerts::AlertType::HumidityExcursion
            });
            let site = registry
                .site(&u.site)
                .and_then(|s| s.name.clone())
                .unwrap_or_else(|| u.site.to_string());
            UnitRow {
                unit_id: u.id.to_string(),
                unit_name: u.name.clone(),
                site,
                state,
                latest,
                door,
                humidity_alert,
                chart: None,
            }
        })
        .collect();
    units.sort_by(|a, b| {
        (&a.site, &a.unit_name, &a.unit_id).cmp(&(&b.site, &b.unit_name, &b.unit_id))
    });
    let mut alerts: Vec<AlertRow> = view
        .alerts
        .iter()
        .filter(|a| *a.organization_id == *p.org)
        .filter(|a| {
            registry
                .unit(&a.unit_id)
                .is_none_or(|u| p.may_see_site(&u.site))
        })
        .map(|a| AlertRow {
            unit: registry
                .unit(&a.unit_id)
                .and_then(|u| u.name.clone())
                .unwrap_or_else(|| a.unit_id.to_string()),
            alert_type: a.alert_type.name().into(),
            severity: a.severity.name().into(),
            message: a.message.clone(),
            triggered_at: a.triggered_at,
        })
        .collect();
    alerts.sort_by_key(|a| std::cmp::Reverse(a.triggered_at));
    let sockets = app
        .fanout
        .namespace()
        .map(|ns| ns.sockets())
        .unwrap_or_default();
    let of_org = sockets
        .iter()
        .filter(|s| {
            s.extensions
                .get::<Principal>()
                .is_some_and(|q| q.org == p.org)
        })
        .count();
    PageData {
        now,
        version: env!("CARGO_PKG_VERSION"),
        epoch: app.rt.hub.epoch().to_string(),
        uptime: app.started.elapsed(),
        org: p.org.to_string(),
        org_name: registry.org(&p.org).and_then(|o| o.name.clone()),
        broker: Broker {
            connected: app.mqtt.connected.load(Relaxed),
            subscribed: app.mqtt.subscribed.load(Relaxed),
            reconnects: app.mqtt.reconnects.load(Relaxed),
            // A reconnect loop first: between its failures the last error is clear.
            error: app.mqtt.reconnect_loop().map_or_else(
                || app.mqtt.last_error(),
                |(e, n)| Some(format!("reconnect loop, the same error {n} times: {e}")),
            ),
        },
        units,
        alerts,
        unmapped: app.rt.hub.unmapped(),
        sockets: Sockets {
            connected: app.rt.connections(),
            of_org,
            slow: app.rt.slow.count(),
        },
        cluster: app.cluster.as_ref().map(|c| c.health()),
    }
}

/// A unit's state from the age of its last reading (before the engine has judged any).
pub fn age_state(
    last: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    stale_after: Duration,
) -> &'static str {
    match last {
        None => "no data",
        Some(t) if (now - t).to_std().unwrap_or_default() > stale_after => "stale",
        Some(_) => "ok",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000 + s, 0).unwrap()
    }

    #[test]
    fn state_from_age() {
        let stale = Duration::from_secs(60);
        assert_eq!(age_state(None, t(0), stale), "no data");
        assert_eq!(age_state(Some(t(0)), t(60), stale), "ok");
        assert_eq!(age_state(Some(t(0)), t(61), stale), "stale");
    }
}
