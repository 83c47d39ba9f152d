//! The status page's HTML, a pure function of [`PageData`], written with maud: it escapes
//! every value it interpolates, text and attribute alike, and registry ids and names, sensor
//! ids, topics and error messages all come from outside the code. Only the page's own CSS goes
//! in as `PreEscaped`.

use chrono::{DateTime, Utc};
use maud::{html, Markup, PreEscaped, DOCTYPE};
use std::time::Duration;

use super::page::{Broker, PageData};
use crate::core::reading::UnitDoor;
use crate::pipeline::topics::shortened;

/// How often the page reloads itself, seconds.
const REFRESH_SECONDS: u32 = 10;
/// At most this many unmapped sensors are listed (the API has them all), each with its id and
/// topic in their shortened form (about 100 bytes each): the section stays under ~20 KB
/// however long the topics publishers choose.
const MAX_UNMAPPED_SHOWN: usize = 50;

const STYLE: &str =
    "body{font:15px/1.4 system-ui,sans-serif;margin:0 auto;max-width:70em;padding:1em;\
color:#222;background:#fafafa}h1{font-size:1.4em;margin:0}h2{font-size:1.1em;margin:1.4em 0 .4em}\
.meta{color:#666;font-size:.9em}table{border-collapse:collapse;width:100%;background:#fff}\
th,td{text-align:left;padding:.3em .6em;border-bottom:1px solid #e4e4e4}th{background:#f0f0f0}\
td.n{text-align:right;font-variant-numeric:tabular-nums}code{font-size:.9em}\
.pill{display:inline-block;padding:0 .5em;border-radius:.8em;font-size:.85em;background:#ddd}\
.ok{background:#cdeccd}.stale,.warning,.restoring,.open{background:#ffe6a8}\
.nodata,.offline,.info{background:#dde3ea}.alarm,.excursion,.critical,.down{background:#f7c3c3}\
.empty{color:#666}svg.spark{display:block}";

/// The whole page.
pub fn render(d: &PageData) -> String {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width,initial-scale=1";
                meta http-equiv="refresh" content=(REFRESH_SECONDS);
                title { "sensorcast status" }
                style { (PreEscaped(STYLE)) }
            }
            body {
                h1 { "sensorcast" }
                p.meta {
                    @if let Some(name) = &d.org_name { (name) " (" (d.org) ")" } @else { (d.org) }
                    " · version " (d.version) " · up " (human_duration(d.uptime))
                    " · epoch " (d.epoch) " · " (d.now.format("%Y-%m-%d %H:%M:%S"))
                    " UTC · refreshes every " (REFRESH_SECONDS) " s"
                }
                (broker_section(&d.broker))
                @if let Some(c) = &d.cluster { (cluster_section(c)) }
                (units_section(d))
                (alerts_section(d))
                (unmapped_section(d))
                h2 { "Sockets" }
                p {
                    (d.sockets.connected) " connected (" (d.sockets.of_org)
                    " of this organization), " (d.sockets.slow) " slow."
                    @if let Some(c) = &d.cluster {
                        " " (c.cluster_connections) " on every instance of the cluster."
                    }
                }
                p.meta {
                    "JSON: " code { "/health" } ", " code { "/api/stats" } ", "
                    code { "/api/sensors/unmapped" } ". Prometheus: " code { "/metrics" }
                    " on the metrics listener."
                }
            }
        }
    }
    .into_string()
}

fn broker_section(b: &Broker) -> Markup {
    let (class, text) = match (b.connected, b.subscribed) {
        (true, true) => ("ok", "connected, subscribed"),
        (true, false) => ("stale", "connected, subscriptions not acknowledged yet"),
        _ => ("down", "not connected"),
    };
    html! {
        h2 { "MQTT broker" }
        p {
            (pill(class, text)) " · " (b.reconnects) " reconnect"
            @if b.reconnects != 1 { "s" }
            @if let Some(e) = &b.error { " · last error: " code { (e) } }
        }
    }
}

/// Cluster mode: Redis, the live instances, this one's share of the units.
fn cluster_section(c: &crate::cluster::ClusterHealth) -> Markup {
    let (class, text) = match c.degraded {
        false => ("ok", "Redis connected"),
        true => (
            "down",
            "Redis unavailable: degraded, serving this instance's own ingest",
        ),
    };
    html! {
        h2 { "Cluster" }
        p {
            (pill(class, text)) " · this instance " code { (c.node_id) }
            " · " (c.live_instances) " live instance" @if c.live_instances != 1 { "s" }
            @if !c.instances.is_empty() { " (" (c.instances.join(", ")) ")" }
            " · owns " (c.owned_units) " unit" @if c.owned_units != 1 { "s" }
            @if c.stream_gaps > 0 {
                " · " (pill("down", "fell behind the event stream"))
                " " (c.stream_gaps) " time" @if c.stream_gaps != 1 { "s" }
                ", " (c.stream_entries_lost) " events lost here"
            }
        }
    }
}

fn units_section(d: &PageData) -> Markup {
    html! {
        h2 { "Units" }
        @if d.units.is_empty() {
            p.empty { "No units in the registry for this organization." }
        } @else {
            table {
                tr {
                    th { "Site" } th { "Unit" } th { "State" } th { "Temperature" }
                    th { "Humidity" } th { "Door" } th { "Battery" } th { "Last reading" }
                    th { "Sensor" } th { "Last 24 h" }
                }
                @for u in &d.units {
                    tr {
                        td { (u.site) }
                        td {
                            @if let Some(name) = &u.unit_name {
                                (name) " " span.meta { (u.unit_id) }
                            } @else {
                                (u.unit_id)
                            }
                        }
                        td { (pill(&u.state.replace(' ', ""), &u.state)) }
                        @if let Some(r) = &u.latest {
                            td.n { (display_number(r.temperature)) " °C" }
                            td.n {
                                (percent(r.humidity))
                                @if u.humidity_alert { " " (pill("excursion", "out of range")) }
                            }
                            td { (door_cell(d.now, u.door.as_ref())) }
                            td.n { (percent(r.battery)) }
                            td {
                                @match (r.retained, r.alive_at()) {
                                    (false, _) => { (ago(d.now, r.received_at)) " ago" }
                                    (true, Some(t)) => { (ago(d.now, t)) " ago (retained copy)" }
                                    (true, None) => { "unknown (retained copy)" }
                                }
                            }
                            td { code { (r.device_id) } }
                        } @else {
                            td { "–" } td { "–" } td { (door_cell(d.now, u.door.as_ref())) }
                            td { "–" } td { "never" } td {}
                        }
                        td { @if let Some(c) = &u.chart { (super::chart::svg(c)) } }
                    }
                }
            }
        }
    }
}

fn alerts_section(d: &PageData) -> Markup {
    html! {
        h2 { "Open alerts" }
        @if d.alerts.is_empty() {
            p.empty { "None." }
        } @else {
            table {
                tr { th { "Unit" } th { "Type" } th { "Severity" } th { "Since" } th { "Message" } }
                @for a in &d.alerts {
                    tr {
                        td { (a.unit) }
                        td { (a.alert_type) }
                        td { (pill(&a.severity, &a.severity)) }
                        td { (ago(d.now, a.triggered_at)) " ago" }
                        td { (a.message) }
                    }
                }
            }
        }
    }
}

fn unmapped_section(d: &PageData) -> Markup {
    html! {
        h2 { "Unmapped sensors" }
        @if d.unmapped.is_empty() {
            p.empty { "None: every sensor that published is in the registry." }
        } @else {
            p.meta { "Publishing, but not in the registry: add them to a unit." }
            table {
                tr {
                    th { "Sensor id" } th { "Topic" } th { "Format" } th { "Readings" }
                    th { "Last seen" }
                }
                @for s in d.unmapped.iter().take(MAX_UNMAPPED_SHOWN) {
                    tr {
                        td { code { (shortened(&s.sensor_id)) } }
                        td { code { (shortened(&s.topic)) } }
                        td { (s.format) }
                        td.n { (s.count) }
                        td { (ago(d.now, s.last_seen)) " ago" }
                    }
                }
            }
            @if d.unmapped.len() > MAX_UNMAPPED_SHOWN {
                p.meta {
                    "and " (d.unmapped.len() - MAX_UNMAPPED_SHOWN) " more (see "
                    code { "/api/sensors/unmapped" } ")."
                }
            }
        }
    }
}

/// A state or severity badge; `class` is one of the page's own words, escaped all the same.
fn pill(class: &str, text: &str) -> Markup {
    html! { span class={ "pill " (class) } { (text) } }
}

/// The unit's door: `open 3 min` (a badge), `closed`, or a dash without a contact.
fn door_cell(now: DateTime<Utc>, door: Option<&UnitDoor>) -> Markup {
    match door {
        Some(d) if d.open => pill("open", &format!("open {}", ago(now, d.since))),
        Some(_) => html! { "closed" },
        None => html! { "–" },
    }
}

/// `12 %`, or a dash when the sensor does not report it.
fn percent(v: Option<f64>) -> String {
    v.map_or("–".into(), |v| format!("{} %", display_number(v)))
}

/// How long before `now` `t` was, for people.
fn ago(now: DateTime<Utc>, t: DateTime<Utc>) -> String {
    human_duration((now - t).to_std().unwrap_or_default())
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
#[path = "view_tests.rs"]
mod tests;
