//! `GET /metrics` in the Prometheus text exposition format (version 0.0.4), on its own listener
//! (`[metrics] listen`, loopback by default) so that a Prometheus or node-exporter textfile
//! setup on the box can scrape it without a token, and nothing outside the box can.
//!
//! The text is written by hand from the counters the service already keeps ([`Stats`],
//! [`MqttHealth`], the socket count) instead of going through the `metrics` facade: that facade
//! wants one global recorder per process, which would double every counter we already have and
//! mix the numbers of the several services an integration test runs in one process. The only
//! new instrument is [`Histogram`], the time from MQTT receipt to emit: fixed buckets, one
//! atomic add per observation, no lock on the hot path.
//!
//! [`Stats`]: crate::core::stats::Stats
//! [`MqttHealth`]: crate::core::health::MqttHealth
//! [`Histogram`]: crate::core::stats::Histogram

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use std::fmt::Write as _;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::core::stats::HistogramSnapshot;
use crate::realtime::SocketCtx;
use crate::web::WebState;

/// The metrics listener's router: `/metrics` only.
pub fn router(app: WebState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .with_state(app)
}

/// Serves [`router`] on `listener` until `stop` is cancelled.
pub fn spawn_server(
    listener: TcpListener,
    app: WebState,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let addr = listener.local_addr().ok();
        info!(addr = ?addr, "metrics listening (GET /metrics)");
        let served = axum::serve(listener, router(app))
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await;
        if let Err(e) = served {
            warn!(error = %e, "metrics listener failed");
        }
    })
}

async fn metrics(State(app): State<WebState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        render(&app),
    )
}

/// The whole exposition text.
pub fn render(app: &WebState) -> String {
    let mut out = Exposition::default();
    let stats = app.rt.hub.stats().snapshot();
    let b = |v: bool| u64::from(v) as f64;

    out.family(
        "sensorcast_build_info",
        "gauge",
        "Always 1; the version is a label.",
    );
    out.sample(
        "sensorcast_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1.0,
    );
    out.single(
        "sensorcast_uptime_seconds",
        "gauge",
        "Seconds since the service started.",
        app.started.elapsed().as_secs_f64(),
    );

    out.single(
        "sensorcast_mqtt_messages_total",
        "counter",
        "MQTT messages received on subscribed topics.",
        stats.messages as f64,
    );
    out.single(
        "sensorcast_readings_decoded_total",
        "counter",
        "Readings decoded from MQTT messages (a message may carry several).",
        stats.decoded as f64,
    );
    out.single(
        "sensorcast_readings_emitted_total",
        "counter",
        "Readings mapped to a unit and emitted to its rooms.",
        stats.emitted as f64,
    );
    out.single(
        "sensorcast_readings_unmapped_total",
        "counter",
        "Readings from sensors the registry does not know.",
        stats.unmapped as f64,
    );
    out.single(
        "sensorcast_mqtt_messages_ignored_total",
        "counter",
        "Messages on subscribed topics that are not readings (joins, availability).",
        stats.ignored as f64,
    );
    out.family(
        "sensorcast_mqtt_messages_rejected_total",
        "counter",
        "Messages rejected, by payload format and reason.",
    );
    for (format, reasons) in &stats.rejected {
        for (reason, n) in reasons {
            out.sample(
                "sensorcast_mqtt_messages_rejected_total",
                &[("format", format), ("reason", reason)],
                *n as f64,
            );
        }
    }
    out.single(
        "sensorcast_unmapped_sensors",
        "gauge",
        "Distinct unregistered sensors remembered (bounded by limits.unmapped_capacity).",
        app.rt.hub.unmapped().len() as f64,
    );

    let m = &app.mqtt;
    out.single(
        "sensorcast_mqtt_connected",
        "gauge",
        "1 while connected to the broker.",
        b(m.connected.load(Relaxed)),
    );
    out.single(
        "sensorcast_mqtt_subscribed",
        "gauge",
        "1 while every configured subscription is acknowledged.",
        b(m.subscribed.load(Relaxed)),
    );
    out.single(
        "sensorcast_mqtt_reconnects_total",
        "counter",
        "Times an established broker connection was lost.",
        m.reconnects.load(Relaxed) as f64,
    );
    out.family(
        "sensorcast_mqtt_connection_errors_total",
        "counter",
        "Failed broker connections and connect attempts, by kind of error.",
    );
    for (kind, n) in m.errors_by_kind() {
        out.sample(
            "sensorcast_mqtt_connection_errors_total",
            &[("kind", kind)],
            n as f64,
        );
    }
    out.single(
        "sensorcast_mqtt_error_repeats",
        "gauge",
        "Connection failures in a row with the same error (0 once a connection has held).",
        m.error_repeats() as f64,
    );
    out.single(
        "sensorcast_mqtt_reconnect_loop",
        "gauge",
        "1 while every connection ends with the same error soon after it is made.",
        b(m.reconnect_loop().is_some()),
    );

    out.single(
        "sensorcast_sockets_connected",
        "gauge",
        "Socket.io sockets connected.",
        app.rt.connections() as f64,
    );
    out.single(
        "sensorcast_sockets_slow",
        "gauge",
        "Sockets whose outgoing queue is full right now.",
        app.rt.fanout.slow_sockets() as f64,
    );
    out.single(
        "sensorcast_sockets_marked_slow_total",
        "counter",
        "Times a socket's queue was found full and the socket was marked slow.",
        stats.slow_sockets_marked as f64,
    );
    out.single(
        "sensorcast_subscriptions",
        "gauge",
        "Subscriptions (unit, site, organization) held by connected sockets.",
        subscriptions(app) as f64,
    );
    out.family(
        "sensorcast_deliveries_dropped_total",
        "counter",
        "Per-socket deliveries coalesced or dropped, by reason.",
    );
    for (reason, n) in &stats.deliveries_dropped {
        out.sample(
            "sensorcast_deliveries_dropped_total",
            &[("reason", reason)],
            *n as f64,
        );
    }
    out.family(
        "sensorcast_client_errors_total",
        "counter",
        "Client requests refused (handshake, HTTP auth, bad arguments, limits), by reason.",
    );
    for (reason, n) in &stats.client_errors {
        out.sample(
            "sensorcast_client_errors_total",
            &[("reason", reason)],
            *n as f64,
        );
    }

    alerts(&mut out, app);

    let (orgs, sites, units, sensors) = app.rt.hub.registry().counts();
    out.family(
        "sensorcast_registry_entries",
        "gauge",
        "Entries in the registry in force, by kind.",
    );
    for (kind, n) in [
        ("org", orgs),
        ("site", sites),
        ("unit", units),
        ("sensor", sensors),
    ] {
        out.sample("sensorcast_registry_entries", &[("kind", kind)], n as f64);
    }

    out.histogram(
        "sensorcast_emit_latency_seconds",
        "Time from MQTT receipt to the reading being handed to every subscribed socket.",
        &app.rt.hub.stats().emit_latency.snapshot(),
    );
    out.text
}

/// `sensorcast_alerts_open{type,severity}`: the open alerts of the engine's last snapshot.
fn alerts(out: &mut Exposition, app: &WebState) {
    out.family(
        "sensorcast_alerts_open",
        "gauge",
        "Open alerts by type and severity.",
    );
    let view = app.rt.alerts.view();
    let mut counts = std::collections::BTreeMap::<(&str, &str), u64>::new();
    for a in &view.alerts {
        *counts
            .entry((a.alert_type.name(), a.severity.name()))
            .or_default() += 1;
    }
    for ((t, s), n) in counts {
        out.sample(
            "sensorcast_alerts_open",
            &[("type", t), ("severity", s)],
            n as f64,
        );
    }
}

/// Sum of every connected socket's subscriptions: one pass over the sockets at scrape time,
/// nothing on the subscribe path.
fn subscriptions(app: &WebState) -> usize {
    let Some(ns) = app.rt.fanout.namespace() else {
        return 0;
    };
    ns.sockets()
        .iter()
        .filter_map(|s| s.extensions.get::<Arc<SocketCtx>>())
        .map(|ctx| ctx.subscription_count())
        .sum()
}

/// The exposition text being written.
#[derive(Default)]
struct Exposition {
    text: String,
}

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.text, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                let _ = write!(self.text, "{k}=\"{}\"", escape_label(v));
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {}", number(value));
    }

    fn single(&mut self, name: &str, kind: &str, help: &str, value: f64) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }

    fn histogram(&mut self, name: &str, help: &str, h: &HistogramSnapshot) {
        self.family(name, "histogram", help);
        let bucket = format!("{name}_bucket");
        for (bound, n) in &h.buckets {
            self.sample(&bucket, &[("le", &number(*bound))], *n as f64);
        }
        self.sample(&format!("{name}_sum"), &[], h.sum_seconds);
        self.sample(&format!("{name}_count"), &[], h.count as f64);
    }
}

/// Prometheus number syntax (`+Inf`, `NaN`, otherwise Rust's shortest round-trip form).
fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

/// Label values escape backslash, double quote and newline.
fn escape_label(v: &str) -> String {
    v.replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', r"\n")
}

/// HELP text escapes backslash and newline.
fn escape_help(v: &str) -> String {
    v.replace('\\', r"\\").replace('\n', r"\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_format_escapes_and_spells_numbers() {
        let mut out = Exposition::default();
        out.family("x_total", "counter", "a \\ b\nc");
        out.sample("x_total", &[("reason", "a\"b\\c\nd"), ("k", "v")], 3.0);
        out.histogram(
            "h",
            "h",
            &HistogramSnapshot {
                buckets: vec![(0.5, 1), (f64::INFINITY, 2)],
                sum_seconds: 0.75,
                count: 2,
            },
        );
        assert_eq!(
            out.text,
            "# HELP x_total a \\\\ b\\nc\n# TYPE x_total counter\n\
             x_total{reason=\"a\\\"b\\\\c\\nd\",k=\"v\"} 3\n\
             # HELP h h\n# TYPE h histogram\n\
             h_bucket{le=\"0.5\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 0.75\nh_count 2\n"
        );
    }
}
