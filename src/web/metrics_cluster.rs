//! The cluster's part of `/metrics` (cluster mode only): Redis state, membership, ownership,
//! and what the event stream carried or could not.

use prometheus_client::encoding::DescriptorEncoder;
use std::fmt;
use std::sync::atomic::Ordering::Relaxed;

use super::{counter, counters, gauge};
use crate::cluster::Cluster;
use crate::web::WebState;

pub(super) fn encode(out: &mut DescriptorEncoder, app: &WebState, c: &Cluster) -> fmt::Result {
    let h = c.health();
    let s = c.stats();
    let b = |v: bool| u64::from(v);
    gauge(
        out,
        "sensorcast_cluster_degraded",
        "1 while Redis cannot be reached: this instance numbers and delivers its own ingest alone.",
        b(h.degraded),
    )?;
    gauge(
        out,
        "sensorcast_cluster_instances",
        "Live instances as of the last heartbeat (1 while degraded).",
        h.live_instances as u64,
    )?;
    gauge(
        out,
        "sensorcast_cluster_units_owned",
        "Units this instance owns (numbers, keeps and evaluates).",
        h.owned_units as u64,
    )?;
    gauge(
        out,
        "sensorcast_cluster_connections",
        "Socket.io sockets connected to every live instance.",
        h.cluster_connections,
    )?;
    counters(
        out,
        "sensorcast_cluster_redis_errors_total",
        "Redis commands that failed, by operation.",
        s.redis_errors()
            .into_iter()
            .map(|(op, n)| ([("op", op)], n)),
    )?;
    counters(
        out,
        "sensorcast_cluster_events_relayed_total",
        "Events read from the cluster's stream and handed to this instance's sockets, by kind.",
        s.relayed_by_kind()
            .into_iter()
            .map(|(k, n)| ([("kind", k)], n)),
    )?;
    counters(
        out,
        "sensorcast_cluster_events_dropped_total",
        "Events the cluster path did not deliver, by reason (fenced: another instance owns the unit and publishes it; delivered_while_degraded: already delivered here alone; stream_trimmed: entries trimmed from the stream before this instance read them).",
        s.dropped_by_reason().into_iter().map(|(r, n)| ([("reason", r)], n)),
    )?;
    counter(
        out,
        "sensorcast_cluster_takeovers_total",
        "Units taken over from an instance that died or stopped.",
        s.takeovers.load(Relaxed),
    )?;
    counter(
        out,
        "sensorcast_cluster_releases_total",
        "Units given up to another instance.",
        s.releases.load(Relaxed),
    )?;
    counter(
        out,
        "sensorcast_cluster_stream_gaps_total",
        "Times this instance's stream reader found entries trimmed before it read them (sensorcast_cluster_events_dropped_total{reason=\"stream_trimmed\"} counts them).",
        s.stream_gaps.load(Relaxed),
    )?;
    counter(
        out,
        "sensorcast_cluster_degraded_periods_total",
        "Times this instance lost Redis and went on alone.",
        s.degraded_periods.load(Relaxed),
    )?;
    counter(
        out,
        "sensorcast_cluster_replayed_total",
        "Messages published after a takeover that the unit's previous owner had taken but not published.",
        app.rt.hub.stats().cluster_replayed.load(Relaxed),
    )
}
