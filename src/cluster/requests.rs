//! What the rest of the service asks of the cluster besides publishing: the shared history a
//! resume reads when memory does not reach back, and acknowledgements of alerts whose unit
//! another instance owns (a command on the stream, answered on the stream by the owner).

use chrono::Utc;
use redis::AsyncCommands;
use serde_json::json;
use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use tracing::debug;

use super::relay::text;
use super::Cluster;
use crate::alerts::{AckError, Alert};
use crate::core::reading::SensorReading;

/// Resume from another instance's position: `unit`'s readings in the shared history after
/// `after` (oldest first, within `realtime.history_age`), and the newest seq they account for.
pub async fn history_after(
    c: &Cluster,
    unit: &str,
    after: u64,
) -> Option<(Vec<Arc<SensorReading>>, u64)> {
    if c.0.alone.load(Relaxed) {
        return None;
    }
    let mut conn = c.conn();
    let kept: Vec<String> = match conn.lrange(c.0.keys.history(unit), 0, -1).await {
        Ok(v) => v,
        Err(e) => {
            c.0.stats.redis_error("history");
            debug!(error = %e, "shared history not readable");
            return None;
        }
    };
    let limits = c.0.hub.history_limits();
    let cutoff = Utc::now() - chrono::Duration::from_std(limits.max_age).unwrap_or_default();
    // Readings stored under another organization or site than the unit's now (it moved)
    // belong to the previous owner and are not served.
    let mut readings: Vec<Arc<SensorReading>> = kept
        .iter()
        .filter_map(|j| serde_json::from_str::<SensorReading>(j).ok())
        .filter(|r| r.received_at >= cutoff && c.0.hub.is_current_owner(r))
        .map(Arc::new)
        .collect();
    readings.reverse();
    let through = readings.last().map_or(0, |r| r.seq);
    readings.retain(|r| r.seq > after);
    Some((readings, through))
}

/// An acknowledgement of an alert whose unit another instance owns: a command on the stream,
/// which the owner answers on the stream.
pub async fn forward_ack(
    c: &Cluster,
    alert_id: &str,
    by: &str,
    comment: Option<&str>,
) -> Result<Alert, AckError> {
    if c.0.alone.load(Relaxed) {
        return Err(AckError::Unavailable);
    }
    let req = ulid::Ulid::from_parts(Utc::now().timestamp_millis() as u64, fastrand::u128(..))
        .to_string();
    let (tx, rx) = tokio::sync::oneshot::channel();
    c.0.pending_acks.insert(req.clone(), tx);
    let mut fields = vec![
        ("k", "c"),
        ("i", req.as_str()),
        ("n", &*c.0.node),
        ("a", alert_id),
        ("b", by),
    ];
    if let Some(m) = comment {
        fields.push(("m", m));
    }
    let sent = append(c, &fields).await;
    if let Err(e) = sent {
        c.0.pending_acks.remove(&req);
        c.0.stats.redis_error("ack_forward");
        debug!(error = %e, "acknowledgement not forwarded");
        return Err(AckError::Unavailable);
    }
    let answer = tokio::time::timeout(c.0.cfg.redis_timeout * 2, rx).await;
    c.0.pending_acks.remove(&req);
    match answer {
        Ok(Ok(v)) => match serde_json::from_value::<Alert>(v["alert"].clone()) {
            Ok(alert) => Ok(alert),
            Err(_) if v["stored"] == false => Err(AckError::NotStored),
            Err(_) => Err(AckError::NotFound),
        },
        _ => Err(AckError::Unavailable),
    }
}

/// A forwarded acknowledgement: answered by the instance that owns the alert's unit.
pub(super) fn answer_ack(c: &Cluster, map: &HashMap<String, redis::Value>) {
    let (Some(req), Some(alert_id), Some(by)) = (text(map, "i"), text(map, "a"), text(map, "b"))
    else {
        return c.0.stats.dropped("bad_entry", 1);
    };
    let view = c.0.alerts.view();
    let Some(unit) = view
        .alerts
        .iter()
        .find(|a| a.alert_id == alert_id)
        .map(|a| a.unit_id.clone())
    else {
        return;
    };
    if !c.0.owned.contains(&unit) {
        return; // its owner answers
    }
    let comment = text(map, "m").map(str::to_string);
    let (c, req, alert_id, by) = (
        c.clone(),
        req.to_string(),
        alert_id.to_string(),
        by.to_string(),
    );
    tokio::spawn(async move {
        let acked =
            c.0.alerts
                .acknowledge_here(&alert_id, &by, comment.as_deref());
        let answer = match acked.await {
            Ok(alert) => json!({ "alert": alert }),
            Err(AckError::NotStored) => json!({ "error": "not stored", "stored": false }),
            Err(e) => json!({ "error": e.to_string() }),
        };
        let answer = answer.to_string();
        let sent = append(&c, &[("k", "y"), ("i", req.as_str()), ("p", &answer)]).await;
        if sent.is_err() {
            c.0.stats.redis_error("ack_answer");
        }
    });
}

/// Appends one numbered entry to the cluster's stream (see `store`'s module doc).
async fn append(c: &Cluster, fields: &[(&str, &str)]) -> redis::RedisResult<String> {
    let k = &c.0.keys;
    let mut args = vec![c.0.cfg.stream_max_len.to_string().into_bytes()];
    for (f, v) in fields {
        args.push(f.as_bytes().to_vec());
        args.push(v.as_bytes().to_vec());
    }
    let cmd = super::store::evalsha(&c.0.scripts.append, &[k.events(), k.numbered()], args);
    let mut conn = c.conn();
    match cmd.query_async(&mut conn).await {
        Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
            super::membership::load_scripts(c).await?;
            cmd.query_async(&mut conn).await
        }
        r => r,
    }
}
