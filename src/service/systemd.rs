//! systemd integration through the notify protocol: `READY=1` once the HTTP listener is bound and
//! MQTT is subscribed (or after `ready_timeout`, with a STATUS saying why it is degraded),
//! `WATCHDOG=1` only while no MQTT message is stuck in the pipeline (a stuck pipeline gets
//! the service restarted), `STATUS=` lines an operator can read in `systemctl status`,
//! `RELOADING=1`/`READY=1` around a reload and `STOPPING=1` at shutdown. Every call is a no-op
//! without `NOTIFY_SOCKET`, so tests and foreground runs need nothing.

use sd_notify::NotifyState;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

use crate::core::health::MqttHealth;
use crate::realtime::Realtime;

/// How often STATUS is refreshed.
const STATUS_EVERY: Duration = Duration::from_secs(10);

pub fn notify(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::debug!(error = %e, "sd_notify failed");
    }
}

/// A one-line summary for `systemctl status`.
pub fn status_line(mqtt: &MqttHealth, sockets: usize, readings_per_min: u64) -> String {
    let broker = if let Some((_, repeats)) = mqtt.reconnect_loop() {
        format!("broker: RECONNECT LOOP (the same error {repeats} times)")
    } else if mqtt.ready() {
        "broker: connected".into()
    } else if mqtt.connected.load(Relaxed) {
        "broker: connected, subscribing".into()
    } else {
        "broker: DISCONNECTED".into()
    };
    format!("{broker}; {sockets} sockets; {readings_per_min} readings/min")
}

/// Sends READY, then keeps STATUS and the watchdog fed until `stop`.
pub async fn supervise(
    app: Realtime,
    mqtt: Arc<MqttHealth>,
    ready_timeout: Duration,
    stop: CancellationToken,
) {
    let deadline = tokio::time::Instant::now() + ready_timeout;
    while !mqtt.ready() && tokio::time::Instant::now() < deadline {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
    }
    let status = if mqtt.ready() {
        status_line(&mqtt, app.connections(), 0)
    } else {
        let why = mqtt
            .last_error()
            .unwrap_or_else(|| "no connection yet".into());
        format!("DEGRADED: MQTT not ready after {ready_timeout:?}: {why}")
    };
    notify(&[NotifyState::Ready, NotifyState::Status(&status)]);

    let watchdog = sd_notify::watchdog_enabled();
    let tick = match watchdog {
        Some(w) => (w / 2).min(STATUS_EVERY),
        None => STATUS_EVERY,
    };
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_status = tokio::time::Instant::now();
    let mut last_emitted = app.hub.stats().emitted.load(Relaxed);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = interval.tick() => {}
        }
        if let Some(w) = watchdog {
            let stalled = mqtt.stuck_for();
            if stalled < w / 2 {
                notify(&[NotifyState::Watchdog]);
            } else {
                tracing::error!(
                    stalled_ms = stalled.as_millis() as u64,
                    "ingest loop stalled: not feeding the watchdog"
                );
            }
        }
        if last_status.elapsed() >= STATUS_EVERY {
            let emitted = app.hub.stats().emitted.load(Relaxed);
            let per_min = (emitted - last_emitted) * 60 / last_status.elapsed().as_secs().max(1);
            last_emitted = emitted;
            last_status = tokio::time::Instant::now();
            notify(&[NotifyState::Status(&status_line(
                &mqtt,
                app.connections(),
                per_min,
            ))]);
        }
    }
}
