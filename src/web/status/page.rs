//! What the status page shows, read from the service at one instant ([`gather`]), and the HTML
//! for it ([`render`], a pure function of [`PageData`]). Every piece of text from outside the
//! code (registry ids and names, sensor ids, topics, error messages) goes through [`escape`].

use chrono::{DateTime, Utc};
use std::fmt::Write as _;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use crate::auth::Principal;
use crate::web::WebState;

/// How often the page reloads itself, seconds.
const REFRESH_SECONDS: u32 = 10;
/// At most this many unmapped sensors are listed (the API has them all).
const MAX_UNMAPPED_SHOWN: usize = 50;

/// Everything the page shows, gathered at one instant; [`render`] is a pure function of it.
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
            // No reading yet says more than the engine's initial "ok"; after that the engine's
            // state (excursion, alarm, offline...) when it has one, else the reading's age.
            let age = age_state(latest.as_ref().map(|r| r.received_at), now, stale_after);
            let state = match (&latest, view.states.get(&u.id)) {
                (Some(_), Some(engine_state)) => engine_state.name().to_string(),
                _ => age.to_string(),
            };
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
        .rt
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
            slow: app.rt.fanout.slow_sockets(),
        },
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

const STYLE: &str =
    "body{font:15px/1.4 system-ui,sans-serif;margin:0 auto;max-width:70em;padding:1em;\
color:#222;background:#fafafa}h1{font-size:1.4em;margin:0}h2{font-size:1.1em;margin:1.4em 0 .4em}\
.meta{color:#666;font-size:.9em}table{border-collapse:collapse;width:100%;background:#fff}\
th,td{text-align:left;padding:.3em .6em;border-bottom:1px solid #e4e4e4}th{background:#f0f0f0}\
td.n{text-align:right;font-variant-numeric:tabular-nums}code{font-size:.9em}\
.pill{display:inline-block;padding:0 .5em;border-radius:.8em;font-size:.85em;background:#ddd}\
.ok{background:#cdeccd}.stale,.warning,.restoring{background:#ffe6a8}\
.nodata,.offline,.info{background:#dde3ea}.alarm,.excursion,.critical,.down{background:#f7c3c3}\
.empty{color:#666}";

/// The whole page.
pub fn render(d: &PageData) -> String {
    let mut h = String::with_capacity(8 * 1024);
    let org = match &d.org_name {
        Some(n) => format!("{} ({})", escape(n), escape(&d.org)),
        None => escape(&d.org),
    };
    let _ = write!(
        h,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <meta http-equiv=\"refresh\" content=\"{REFRESH_SECONDS}\">\
         <title>sensorcast status</title><style>{STYLE}</style></head><body>\
         <h1>sensorcast</h1><p class=\"meta\">{org} · version {} · up {} · epoch {} · \
         {} UTC · refreshes every {REFRESH_SECONDS} s</p>",
        escape(d.version),
        human_duration(d.uptime),
        escape(&d.epoch),
        d.now.format("%Y-%m-%d %H:%M:%S"),
    );
    broker_section(&mut h, &d.broker);
    units_section(&mut h, d);
    alerts_section(&mut h, d);
    unmapped_section(&mut h, d);
    let _ = write!(
        h,
        "<h2>Sockets</h2><p>{} connected ({} of this organization), {} slow.</p>",
        d.sockets.connected, d.sockets.of_org, d.sockets.slow
    );
    h.push_str(
        "<p class=\"meta\">JSON: <code>/health</code>, <code>/api/stats</code>, \
         <code>/api/sensors/unmapped</code>. Prometheus: <code>/metrics</code> on the metrics \
         listener.</p></body></html>",
    );
    h
}

fn broker_section(h: &mut String, b: &Broker) {
    let (class, text) = match (b.connected, b.subscribed) {
        (true, true) => ("ok", "connected, subscribed"),
        (true, false) => ("stale", "connected, subscriptions not acknowledged yet"),
        _ => ("down", "not connected"),
    };
    let _ = write!(
        h,
        "<h2>MQTT broker</h2><p>{} · {} reconnect{}",
        pill(class, text),
        b.reconnects,
        if b.reconnects == 1 { "" } else { "s" }
    );
    if let Some(e) = &b.error {
        let _ = write!(h, " · last error: <code>{}</code>", escape(e));
    }
    h.push_str("</p>");
}

fn units_section(h: &mut String, d: &PageData) {
    h.push_str("<h2>Units</h2>");
    if d.units.is_empty() {
        h.push_str("<p class=\"empty\">No units in the registry for this organization.</p>");
        return;
    }
    h.push_str(
        "<table><tr><th>Site</th><th>Unit</th><th>State</th><th>Temperature</th>\
         <th>Humidity</th><th>Battery</th><th>Last reading</th><th>Sensor</th></tr>",
    );
    for u in &d.units {
        let name = match &u.unit_name {
            Some(n) => format!(
                "{} <span class=\"meta\">{}</span>",
                escape(n),
                escape(&u.unit_id)
            ),
            None => escape(&u.unit_id),
        };
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{name}</td><td>{}</td>",
            escape(&u.site),
            pill(&u.state.replace(' ', ""), &u.state)
        );
        match &u.latest {
            Some(r) => {
                let _ = write!(
                    h,
                    "<td class=\"n\">{} °C</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
                     <td>{} ago</td><td><code>{}</code></td></tr>",
                    display_number(r.temperature),
                    r.humidity
                        .map_or("–".into(), |v| format!("{} %", display_number(v))),
                    r.battery
                        .map_or("–".into(), |v| format!("{} %", display_number(v))),
                    human_duration((d.now - r.received_at).to_std().unwrap_or_default()),
                    escape(&r.device_id),
                );
            }
            None => h.push_str("<td>–</td><td>–</td><td>–</td><td>never</td><td></td></tr>"),
        }
    }
    h.push_str("</table>");
}

fn alerts_section(h: &mut String, d: &PageData) {
    h.push_str("<h2>Open alerts</h2>");
    let alerts = &d.alerts;
    if alerts.is_empty() {
        h.push_str("<p class=\"empty\">None.</p>");
        return;
    }
    h.push_str(
        "<table><tr><th>Unit</th><th>Type</th><th>Severity</th><th>Since</th><th>Message</th></tr>",
    );
    for a in alerts {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{} ago</td><td>{}</td></tr>",
            escape(&a.unit),
            escape(&a.alert_type),
            pill(&a.severity, &a.severity),
            human_duration((d.now - a.triggered_at).to_std().unwrap_or_default()),
            escape(&a.message),
        );
    }
    h.push_str("</table>");
}

fn unmapped_section(h: &mut String, d: &PageData) {
    h.push_str("<h2>Unmapped sensors</h2>");
    if d.unmapped.is_empty() {
        h.push_str("<p class=\"empty\">None: every sensor that published is in the registry.</p>");
        return;
    }
    h.push_str(
        "<p class=\"meta\">Publishing, but not in the registry: add them to a unit.</p>\
         <table><tr><th>Sensor id</th><th>Topic</th><th>Format</th><th>Readings</th>\
         <th>Last seen</th></tr>",
    );
    for s in d.unmapped.iter().take(MAX_UNMAPPED_SHOWN) {
        let _ = write!(
            h,
            "<tr><td><code>{}</code></td><td><code>{}</code></td><td>{}</td><td class=\"n\">{}</td>\
             <td>{} ago</td></tr>",
            escape(&s.sensor_id),
            escape(&s.topic),
            escape(s.format),
            s.count,
            human_duration((d.now - s.last_seen).to_std().unwrap_or_default()),
        );
    }
    h.push_str("</table>");
    if d.unmapped.len() > MAX_UNMAPPED_SHOWN {
        let _ = write!(
            h,
            "<p class=\"meta\">and {} more (see <code>/api/sensors/unmapped</code>).</p>",
            d.unmapped.len() - MAX_UNMAPPED_SHOWN
        );
    }
}

pub(super) fn small_page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>sensorcast: {title}</title><style>{STYLE}</style></head><body>\
         <h1>sensorcast: {title}</h1>{body}</body></html>"
    )
}

/// A state or severity badge; `class` is one of the page's own words, escaped all the same.
fn pill(class: &str, text: &str) -> String {
    format!(
        "<span class=\"pill {}\">{}</span>",
        escape(class),
        escape(text)
    )
}

/// HTML text and attribute escaping.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// At most two decimals, no trailing zeros: `-18.25`, `4`, `3.8`.
pub fn display_number(v: f64) -> String {
    let r = (v * 100.0).round() / 100.0;
    format!("{}", if r == 0.0 { 0.0 } else { r })
}

/// `12 s`, `4 min`, `3 h`, `2 d`.
pub fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=119 => format!("{s} s"),
        120..=7199 => format!("{} min", s / 60),
        7200..=172_799 => format!("{} h", s / 3600),
        _ => format!("{} d", s / 86_400),
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
    fn escaping_covers_text_and_attributes() {
        assert_eq!(
            escape(r#"<script>alert("x")</script> & 'y'"#),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;y&#39;"
        );
    }

    #[test]
    fn state_from_age() {
        let stale = Duration::from_secs(60);
        assert_eq!(age_state(None, t(0), stale), "no data");
        assert_eq!(age_state(Some(t(0)), t(60), stale), "ok");
        assert_eq!(age_state(Some(t(0)), t(61), stale), "stale");
    }

    #[test]
    fn numbers_and_durations_read_well() {
        assert_eq!(display_number(-18.25), "-18.25");
        assert_eq!(display_number(4.0), "4");
        assert_eq!(display_number(3.756), "3.76");
        assert_eq!(display_number(-0.001), "0");
        assert_eq!(human_duration(Duration::from_secs(5)), "5 s");
        assert_eq!(human_duration(Duration::from_secs(600)), "10 min");
        assert_eq!(human_duration(Duration::from_secs(3 * 86_400)), "3 d");
    }

    #[test]
    fn page_escapes_everything_that_comes_from_outside() {
        let hostile = "<script>alert(1)</script>";
        let data = PageData {
            now: t(100),
            version: "0.1.0",
            epoch: "e".into(),
            uptime: Duration::from_secs(100),
            org: "o1".into(),
            org_name: Some(hostile.into()),
            broker: Broker {
                connected: false,
                subscribed: false,
                reconnects: 1,
                error: Some(hostile.into()),
            },
            units: vec![UnitRow {
                unit_id: "u1".into(),
                unit_name: Some(hostile.into()),
                site: hostile.into(),
                state: "no data".into(),
                latest: None,
            }],
            alerts: vec![AlertRow {
                unit: hostile.into(),
                alert_type: hostile.into(),
                severity: hostile.into(),
                message: hostile.into(),
                triggered_at: t(40),
            }],
            unmapped: vec![crate::pipeline::hub::UnmappedSensor {
                sensor_id: hostile.into(),
                topic: hostile.into(),
                format: "json",
                first_seen: t(0),
                last_seen: t(90),
                count: 2,
            }],
            sockets: Sockets {
                connected: 0,
                of_org: 0,
                slow: 0,
            },
        };
        let page = render(&data);
        assert!(!page.contains("<script"), "{page}");
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(page.contains("not connected") && page.contains("10 s ago"));
    }
}
