//! The rejection log: a warn line for a rejected message, so an installer sees why a sensor's
//! readings go nowhere, without a publisher being able to fill the log or the memory. Every
//! rejection is counted elsewhere (`/api/stats`); this only decides which ones are also logged:
//!
//! - at most once a minute per sensor (or per topic when there is no sensor id);
//! - topics, sensor ids and reasons in their [`shortened`] form, both in the line and as the
//!   key remembered for "once a minute", so a 60 KB topic costs about 100 bytes;
//! - the remembered keys are capped in bytes ([`MEMORY`]; forgotten all at once when full);
//! - at most [`BUDGET`] lines a minute in all; the rest are summed up in one line.

use std::collections::HashMap;
use std::time::{Duration, Instant};
use tracing::warn;

use super::topics::shortened;

/// How often the same sensor (or topic) may log a rejection.
const EVERY: Duration = Duration::from_secs(60);
/// Bytes of remembered keys (each at most ~100 bytes, so about a thousand keys).
pub const MEMORY: usize = 128 * 1024;
/// Rejection lines a minute, whatever the number of keys: what a flood of distinct topics or
/// ids can write to the SD card.
pub const BUDGET: u32 = 60;

pub struct RejectionLog {
    last: HashMap<String, Instant>,
    bytes: usize,
    window_start: Instant,
    in_window: u32,
    /// Rejections not logged in the current window because it was over [`BUDGET`].
    suppressed: u64,
}

impl Default for RejectionLog {
    fn default() -> Self {
        RejectionLog {
            last: HashMap::new(),
            bytes: 0,
            window_start: Instant::now(),
            in_window: 0,
            suppressed: 0,
        }
    }
}

impl RejectionLog {
    /// Logs a rejection of a message on `topic` (of `sensor`, when known) unless that key was
    /// logged within the last minute or the minute's budget is spent.
    pub fn log(&mut self, sensor: Option<&str>, topic: &str, why: &str) {
        self.log_at(Instant::now(), sensor, topic, why);
    }

    /// [`RejectionLog::log`] at `now`: returns whether a line was written.
    fn log_at(&mut self, now: Instant, sensor: Option<&str>, topic: &str, why: &str) -> bool {
        let topic = shortened(topic);
        let sensor = sensor.map(shortened);
        let key = sensor.as_deref().unwrap_or(&topic);
        if self
            .last
            .get(key)
            .is_some_and(|at| now.duration_since(*at) < EVERY)
        {
            return false;
        }
        if now.duration_since(self.window_start) >= EVERY {
            if self.suppressed > 0 {
                warn!(
                    suppressed = self.suppressed,
                    budget = BUDGET,
                    "more rejections than the log takes in a minute; the rest were not logged (all are counted in /api/stats)"
                );
            }
            self.window_start = now;
            self.in_window = 0;
            self.suppressed = 0;
        }
        if self.in_window >= BUDGET {
            self.suppressed += 1;
            return false;
        }
        self.in_window += 1;
        if self.bytes + key.len() > MEMORY {
            self.last.clear();
            self.bytes = 0;
        }
        if self.last.insert(key.to_string(), now).is_none() {
            self.bytes += key.len();
        }
        let reason = shortened(why);
        match &sensor {
            Some(sensor) => {
                warn!(%sensor, %topic, %reason, "reading rejected (logged at most once a minute per sensor)")
            }
            None => {
                warn!(%topic, %reason, "message rejected (logged at most once a minute per topic)")
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn once_a_minute_per_key_within_a_budget_and_a_byte_cap() {
        let mut log = RejectionLog::default();
        let t0 = Instant::now();
        let long = |i: usize| format!("sensors/{i}{}", "x".repeat(60_000));
        assert!(log.log_at(t0, None, &long(0), "why"));
        assert!(
            !log.log_at(t0, None, &long(0), "why"),
            "the same topic within a minute"
        );
        assert!(
            log.log_at(t0, Some("probe-1"), &long(0), "why"),
            "a sensor is its own key"
        );
        for i in 1..(BUDGET as usize - 1) {
            assert!(log.log_at(t0, None, &long(i), "why"));
        }
        assert!(
            !log.log_at(t0, None, &long(10_000), "why"),
            "over the budget"
        );
        assert_eq!(log.suppressed, 1);
        assert!(
            log.bytes <= BUDGET as usize * 110,
            "{} bytes of keys",
            log.bytes
        );
        let later = t0 + EVERY;
        assert!(log.log_at(later, None, &long(0), "why"), "a minute later");
        assert_eq!(log.suppressed, 0, "summed up and reset");
        // Keys are forgotten when their bytes would pass the cap.
        let mut log = RejectionLog::default();
        for i in 0..5000 {
            let t = t0 + EVERY * (i / BUDGET + 1);
            log.log_at(t, Some(&format!("{i}{}", "y".repeat(90))), "t", "why");
            assert!(log.bytes <= MEMORY);
        }
    }
}
