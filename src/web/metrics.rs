//! `GET /metrics` in the Prometheus text exposition format (version 0.0.4), on its own listener
//! (`[metrics] listen`, loopback by default) so that a Prometheus or node-exporter textfile
//! setup on the box can scrape it without a token, and nothing outside the box can.
//!
//! prometheus-client encodes the text. The values are the counters the service already keeps
//! ([`Stats`], also served as JSON by `/api/stats`, [`MqttHealth`], the socket count), read at
//! scrape time by a [`Collector`] registered in a [`Registry`] of this listener's own: no
//! process-global registry, which would double every counter we keep and mix the numbers of the
//! several services an integration test runs in one process. The one instrument of its own is
//! the receipt-to-emit histogram ([`Latency`], a prometheus-client `Histogram` in [`Stats`]).
//!
//! [`Stats`]: crate::core::stats::Stats
//! [`MqttHealth`]: crate::core::health::MqttHealth
//! [`Latency`]: crate::core::stats::Latency
//!
//! Over 400 lines: one list of every metric family, kept together so that none is missed.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{prometheus_text, DescriptorEncoder, EncodeLabelSet};
use prometheus_client::encoding::{EncodeGaugeValue, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::core::connections::{ConnEnd, HttpConnections, METRICS_MAX_CONNECTIONS};
use crate::delivery::Congestion;
use crate::realtime::transport::{GuardedListener, ListenerOptions};
use crate::realtime::SocketCtx;
use crate::web::serve::{serve, Timeouts};
use crate::web::WebState;

#[path = "metrics_cluster.rs"]
mod cluster;
#[path = "metrics_storage.rs"]
mod storage;

/// The metrics listener's router: `/metrics` only.
pub fn router(app: WebState) -> Router {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(ServiceCollector(app)));
    Router::new()
        .route("/metrics", get(metrics))
        .with_state(Arc::new(registry))
}

/// Serves [`router`] on `listener` until `stop` is cancelled.
pub fn spawn_server(
    listener: TcpListener,
    app: WebState,
    timeouts: Timeouts,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let addr = listener.local_addr().ok();
    info!(addr = ?addr, "metrics listening (GET /metrics)");
    // Its own few connections, inside the fd reserve, with the same timeouts.
    let conns = HttpConnections::new(METRICS_MAX_CONNECTIONS, app.http.fd_limit());
    let options = ListenerOptions {
        write_timeout: timeouts.idle,
        idle_timeout: timeouts.idle,
        send_buffer: 0,
    };
    let listener = GuardedListener::new(listener, options, Congestion::default(), conns.clone());
    tokio::spawn(serve(listener, router(app), timeouts.header, conns, stop))
}

async fn metrics(State(registry): State<Arc<Registry>>) -> Response {
    let mut text = String::with_capacity(4096);
    if let Err(e) = prometheus_text::encode(&mut text, &registry) {
        // Writing into a String does not fail; a collector that did would land here.
        warn!(error = %e, "metrics could not be encoded");
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    (
        [(header::CONTENT_TYPE, prometheus_text::CONTENT_TYPE)],
        text,
    )
        .into_response()
}

/// Reads the service's counters on every scrape.
struct ServiceCollector(WebState);

impl fmt::Debug for ServiceCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ServiceCollector")
    }
}

impl Collector for ServiceCollector {
    fn encode(&self, mut out: DescriptorEncoder) -> fmt::Result {
        let app = &self.0;
        let out = &mut out;
        let stats = app.rt.hub.stats().snapshot();
        let b = |v: bool| u64::from(v);

        let version = [("version", env!("CARGO_PKG_VERSION"))];
        let help = "Always 1; the version is a label.";
        gauges(out, "sensorcast_build_info", help, [(version, 1u64)])?;
        gauge(
            out,
            "sensorcast_uptime_seconds",
            "Seconds since the service started.",
            app.started.elapsed().as_secs_f64(),
        )?;

        counter(
            out,
            "sensorcast_mqtt_messages_total",
            "MQTT messages received on subscribed topics.",
            stats.messages,
        )?;
        counter(
            out,
            "sensorcast_readings_decoded_total",
            "Readings with a temperature decoded from MQTT messages (a message may carry several).",
            stats.decoded,
        )?;
        counter(
            out,
            "sensorcast_door_reports_total",
            "Door states decoded (a door contact alone, or with a temperature).",
            stats.door_reports,
        )?;
        counter(
            out,
            "sensorcast_door_changes_total",
            "unit:door events emitted: a registered door contact changed state.",
            stats.door_changes,
        )?;
        gauge(
            out,
            "sensorcast_doors_open",
            "Registered door contacts whose last report says open.",
            app.rt.hub.doors_open(),
        )?;
        counter(
            out,
            "sensorcast_readings_emitted_total",
            "Readings mapped to a unit and emitted to its rooms.",
            stats.emitted,
        )?;
        counter(
            out,
            "sensorcast_readings_unmapped_total",
            "Readings from sensors the registry does not know.",
            stats.unmapped,
        )?;
        counter(
            out,
            "sensorcast_readings_retained_total",
            "Emitted readings that were a broker's retained copy (not taken as the sensor alive).",
            stats.retained,
        )?;
        counter(
            out,
            "sensorcast_mqtt_messages_ignored_total",
            "Messages on subscribed topics that are not readings (joins, availability).",
            stats.ignored,
        )?;
        let rejected = stats.rejected.iter().flat_map(|(format, reasons)| {
            reasons.iter().map(move |(reason, n)| {
                (
                    [("format", format.as_str()), ("reason", reason.as_str())],
                    *n,
                )
            })
        });
        counters(
            out,
            "sensorcast_mqtt_messages_rejected_total",
            "Messages rejected, by payload format and reason.",
            rejected,
        )?;
        gauge(
            out,
            "sensorcast_unmapped_sensors",
            "Distinct unregistered sensors remembered (bounded by limits.unmapped_capacity).",
            app.rt.hub.unmapped().len(),
        )?;

        let m = &app.mqtt;
        gauge(
            out,
            "sensorcast_mqtt_connected",
            "1 while connected to the broker.",
            b(m.connected.load(Relaxed)),
        )?;
        gauge(
            out,
            "sensorcast_mqtt_subscribed",
            "1 while every configured subscription is acknowledged.",
            b(m.subscribed.load(Relaxed)),
        )?;
        counter(
            out,
            "sensorcast_mqtt_reconnects_total",
            "Times an established broker connection was lost.",
            m.reconnects.load(Relaxed),
        )?;
        counters(
            out,
            "sensorcast_mqtt_connection_errors_total",
            "Failed broker connections and connect attempts, by kind of error.",
            m.errors_by_kind()
                .into_iter()
                .map(|(kind, n)| ([("kind", kind)], n)),
        )?;
        gauge(
            out,
            "sensorcast_mqtt_error_repeats",
            "Connection failures in a row with the same error (0 once a connection has held).",
            m.error_repeats(),
        )?;
        gauge(
            out,
            "sensorcast_mqtt_reconnect_loop",
            "1 while every connection ends with the same error soon after it is made.",
            b(m.reconnect_loop().is_some()),
        )?;

        let h = &app.http;
        gauge(
            out,
            "sensorcast_http_connections",
            "HTTP connections open on the main listener (websockets included).",
            h.open(),
        )?;
        gauge(
            out,
            "sensorcast_http_connections_max",
            "The cap on them: http.max_connections, below the fd limit less a reserve.",
            h.max(),
        )?;
        gauge(
            out,
            "sensorcast_fd_limit",
            "The process's soft RLIMIT_NOFILE.",
            h.fd_limit(),
        )?;
        let ended = |whys: [ConnEnd; 2]| whys.map(|w| ([("reason", w.label())], h.ended(w)));
        counters(
            out,
            "sensorcast_http_connections_refused_total",
            "Connections not served: over the cap (limit, answered 503), or accept failed.",
            ended([ConnEnd::Refused, ConnEnd::AcceptError]),
        )?;
        counters(
            out,
            "sensorcast_http_connections_closed_total",
            "Connections closed by the server: no whole header in time, or nothing read for long.",
            ended([ConnEnd::HeaderTimeout, ConnEnd::IdleTimeout]),
        )?;

        gauge(
            out,
            "sensorcast_sockets_connected",
            "Socket.io sockets connected.",
            app.rt.connections(),
        )?;
        gauge(
            out,
            "sensorcast_sockets_slow",
            "Sockets that cannot keep up right now (served one by one, not by broadcast).",
            app.rt.slow.count(),
        )?;
        counter(
            out,
            "sensorcast_sockets_marked_slow_total",
            "Times a socket was found unable to keep up (congested connection or full queue).",
            stats.slow_sockets_marked,
        )?;
        gauge(
            out,
            "sensorcast_subscriptions",
            "Subscriptions (unit, site, organization) held by connected sockets.",
            subscriptions(app),
        )?;
        counters(
            out,
            "sensorcast_deliveries_dropped_total",
            "Per-socket deliveries coalesced or dropped, by reason.",
            by_reason(&stats.deliveries_dropped),
        )?;
        counters(
            out,
            "sensorcast_client_errors_total",
            "Client requests refused (handshake, HTTP auth, bad arguments, limits), by reason.",
            by_reason(&stats.client_errors),
        )?;

        gauges(
            out,
            "sensorcast_alerts_open",
            "Open alerts by type (temperature_excursion, humidity_excursion, door_open, monitoring_interrupted, low_battery) and severity.",
            open_alerts(app),
        )?;

        let (writes, write_errors, acks_not_stored) = app.rt.alerts.store_counts();
        counter(
            out,
            "sensorcast_alert_store_writes_total",
            "Alert state file writes that reached the disk.",
            writes,
        )?;
        counter(
            out,
            "sensorcast_alert_store_write_errors_total",
            "Alert state file writes that failed (each is retried with backoff).",
            write_errors,
        )?;
        counter(
            out,
            "sensorcast_alert_acks_not_stored_total",
            "Acknowledgements answered \"not stored, try again\": not stored within 5 s.",
            acks_not_stored,
        )?;

        let (orgs, sites, units, sensors) = app.rt.hub.registry().counts();
        let kinds = [
            ("org", orgs),
            ("site", sites),
            ("unit", units),
            ("sensor", sensors),
        ];
        gauges(
            out,
            "sensorcast_registry_entries",
            "Entries in the registry in force, by kind.",
            kinds.map(|(kind, n)| ([("kind", kind)], n as u64)),
        )?;

        if let Some(c) = &app.cluster {
            cluster::encode(out, app, c)?;
        }
        if let Some(store) = &app.rt.store {
            storage::encode(out, store)?;
        }

        let latency = &app.rt.hub.stats().emit_latency.0;
        latency.encode(out.encode_descriptor(
            "sensorcast_emit_latency_seconds",
            "Time from MQTT receipt to the reading being handed to every subscribed socket.",
            None,
            latency.metric_type(),
        )?)
    }
}

/// One unlabelled counter. `name` is the sample's name; prometheus-client adds the `_total`.
fn counter(out: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> fmt::Result {
    let family = out.encode_descriptor(counter_base(name), help, None, MetricType::Counter)?;
    ConstCounter::new(v).encode(family)
}

/// A labelled counter family: its HELP and TYPE even when it has no samples yet.
fn counters<L: EncodeLabelSet>(
    out: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: impl IntoIterator<Item = (L, u64)>,
) -> fmt::Result {
    family(out, counter_base(name), help, MetricType::Counter, samples)
}

fn gauge(
    out: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    v: impl EncodeGaugeValue,
) -> fmt::Result {
    ConstGauge::new(v).encode(out.encode_descriptor(name, help, None, MetricType::Gauge)?)
}

/// A labelled gauge family: its HELP and TYPE even when it has no samples yet.
fn gauges<L: EncodeLabelSet>(
    out: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: impl IntoIterator<Item = (L, u64)>,
) -> fmt::Result {
    family(out, name, help, MetricType::Gauge, samples)
}

/// A labelled family of counters or gauges.
fn family<L: EncodeLabelSet>(
    out: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    samples: impl IntoIterator<Item = (L, u64)>,
) -> fmt::Result {
    let mut family = out.encode_descriptor(name, help, None, kind)?;
    for (labels, v) in samples {
        let sample = family.encode_family(&labels)?;
        match kind {
            MetricType::Counter => ConstCounter::new(v).encode(sample)?,
            _ => ConstGauge::new(v).encode(sample)?,
        }
    }
    Ok(())
}

/// The counter name prometheus-client takes: without the `_total` it appends.
fn counter_base(name: &str) -> &str {
    name.strip_suffix("_total").unwrap_or(name)
}

fn by_reason(m: &BTreeMap<String, u64>) -> impl Iterator<Item = ([(&str, &str); 1], u64)> {
    m.iter()
        .map(|(reason, n)| ([("reason", reason.as_str())], *n))
}

/// `sensorcast_alerts_open{type,severity}`: the open alerts of the engine's last snapshot.
fn open_alerts(app: &WebState) -> Vec<([(&'static str, &'static str); 2], u64)> {
    let view = app.rt.alerts.view();
    let mut counts = BTreeMap::<(&str, &str), u64>::new();
    for a in &view.alerts {
        *counts
            .entry((a.alert_type.name(), a.severity.name()))
            .or_default() += 1;
    }
    counts
        .into_iter()
        .map(|((t, s), n)| ([("type", t), ("severity", s)], n))
        .collect()
}

/// Sum of every connected socket's subscriptions: one pass over the sockets at scrape time,
/// nothing on the subscribe path.
fn subscriptions(app: &WebState) -> usize {
    let Some(ns) = app.fanout.namespace() else {
        return 0;
    };
    ns.sockets()
        .iter()
        .filter_map(|s| s.extensions.get::<Arc<SocketCtx>>())
        .map(|ctx| ctx.subscription_count())
        .sum()
}
