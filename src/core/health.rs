//! Health shared across layers: the MQTT edge writes [`MqttHealth`] and the service writes
//! [`ReloadStatus`]; `/health`, `/metrics`, the status page and systemd's STATUS line read them.
//! Plain atomics and short-held locks: nothing here waits.

use serde::Serialize;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What the rest of the service may ask about the broker connection.
pub struct MqttHealth {
    pub connected: AtomicBool,
    /// Every configured subscription is acknowledged in the current session.
    pub subscribed: AtomicBool,
    pub reconnects: AtomicU64,
    last_error: Mutex<Option<String>>,
    created: Instant,
    /// Milliseconds after `created` when the message being handled entered the pipeline;
    /// 0 while the loop waits for the broker.
    busy_since_ms: AtomicU64,
}

impl Default for MqttHealth {
    fn default() -> Self {
        MqttHealth {
            connected: AtomicBool::new(false),
            subscribed: AtomicBool::new(false),
            reconnects: AtomicU64::new(0),
            last_error: Mutex::new(None),
            created: Instant::now(),
            busy_since_ms: AtomicU64::new(0),
        }
    }
}

impl MqttHealth {
    pub fn busy(&self, busy: bool) {
        let ms = if busy {
            self.created.elapsed().as_millis() as u64 + 1
        } else {
            0
        };
        self.busy_since_ms.store(ms, Relaxed);
    }

    /// How long the message in hand has been in the pipeline (zero while the loop waits for
    /// the broker): a pipeline stuck on one message is what the watchdog must catch.
    pub fn stuck_for(&self) -> Duration {
        match self.busy_since_ms.load(Relaxed) {
            0 => Duration::ZERO,
            since => {
                let now = self.created.elapsed().as_millis() as u64 + 1;
                Duration::from_millis(now.saturating_sub(since))
            }
        }
    }

    pub fn ready(&self) -> bool {
        self.connected.load(Relaxed) && self.subscribed.load(Relaxed)
    }

    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().expect("health lock").clone()
    }

    pub fn set_error(&self, e: Option<String>) {
        *self.last_error.lock().expect("health lock") = e;
    }
}

/// What `/health` shows about the last reload.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReloadStatus {
    pub attempts: u64,
    pub last_at: Option<String>,
    pub ok: Option<bool>,
    pub error: Option<String>,
}

/// The outcome of every reload so far, for `/health` (`checks.reload`).
#[derive(Default)]
pub struct ReloadLog(Mutex<ReloadStatus>);

impl ReloadLog {
    pub fn status(&self) -> ReloadStatus {
        self.0.lock().expect("reload status lock").clone()
    }

    /// Records one attempt: `Err` carries why the files were refused.
    pub fn record(&self, result: Result<(), &str>) {
        let mut status = self.0.lock().expect("reload status lock");
        status.attempts += 1;
        status.last_at = Some(super::reading::now_rfc3339());
        status.ok = Some(result.is_ok());
        status.error = result.err().map(str::to_string);
    }
}
