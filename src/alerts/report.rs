//! What a report does to a unit: which reports show its monitoring alive, how a broker's
//! retained copy counts, a device's own availability report, and going offline
//! (`monitoring_interrupted`). The parts a report carries are judged by `judge.rs` (temperature,
//! humidity), `door.rs` and the battery rule.

use chrono::{DateTime, Utc};

use super::judge::Quantity;
use super::model::{AlertType, Severity};
use super::unit::{after, Cx, OfflineCause, Report, Track};

impl Track {
    /// A report from `sensor`: every part it carries is judged.
    ///
    /// `measured_at` is `None` for a live report, measured now. A broker's retained copy
    /// carries the time its payload names (a time after now counts as now): not newer than
    /// the last report seen, it is old news and ignored; newer, the sensor was alive then, and
    /// the copy is judged only if that still makes the unit alive now (within
    /// `offline_after`), so a dead sensor's last words cannot end its `monitoring_interrupted`.
    ///
    /// Which reports show the unit's monitoring alive (`last_seen`, the end of
    /// `monitoring_interrupted`): once any sensor of the unit has reported a temperature or a
    /// humidity, only such reports do; a door contact alone still checking in must not hide a
    /// dead probe. A unit that has only ever had door reports is kept alive by them.
    pub fn on_report(
        &mut self,
        cx: &mut Cx,
        sensor: &str,
        r: &Report,
        measured_at: Option<DateTime<Utc>>,
    ) {
        let at = measured_at.map_or(cx.now, |t| t.min(cx.now));
        if measured_at.is_some() && at <= self.last_seen {
            return;
        }
        let measures = r.temperature.is_some() || r.humidity.is_some();
        self.measures |= measures;
        let monitors = measures || !self.measures;
        if monitors {
            self.last_seen = at;
        }
        let live = measured_at.is_none()
            || after(at, cx.book.rules.offline_after).is_some_and(|t| t > cx.now);
        if live {
            self.alive(cx, sensor, r, at, monitors);
        }
    }

    /// A report that shows `sensor` alive at `at` (now, or a retained copy's time): that sensor
    /// is back online, the unit too if the report `monitors` it, then each part it carries.
    fn alive(&mut self, cx: &mut Cx, sensor: &str, r: &Report, at: DateTime<Utc>, monitors: bool) {
        if self.offline_sensors.remove(sensor) {
            cx.changed = true;
        }
        if monitors && self.offline.take().is_some() {
            cx.reason = "reading received".into();
            self.resolve(cx, AlertType::MonitoringInterrupted);
        }
        if let Some(open) = r.door_open {
            self.door(cx, sensor, open, at);
        }
        if let Some(h) = r.humidity {
            self.judge(cx, Quantity::Humidity, h);
        }
        if let Some(t) = r.temperature {
            self.judge(cx, Quantity::Temperature, t);
        }
        if let Some(b) = r.battery {
            self.battery(cx, b);
        }
    }

    pub fn on_availability(&mut self, cx: &mut Cx, sensor: &str, online: bool) {
        let changed = if online {
            self.offline_sensors.remove(sensor)
        } else {
            self.offline_sensors.insert(sensor.to_string())
        };
        cx.changed |= changed;
        let all_offline = self.offline_sensors.len() >= cx.book.sensors.max(1);
        if !online && all_offline && self.offline.is_none() {
            let why = "the device reported that it is offline";
            self.go_offline(
                cx,
                OfflineCause::DeviceReport,
                "device reported offline",
                why,
            );
        }
    }

    /// The unit's monitoring is interrupted: `monitoring_interrupted` (warning) says `why`.
    pub(super) fn go_offline(&mut self, cx: &mut Cx, cause: OfflineCause, reason: &str, why: &str) {
        self.offline = Some(cause);
        cx.reason = reason.into();
        let message = format!("{}: {why}", cx.label());
        let alert = self.alert(
            cx,
            AlertType::MonitoringInterrupted,
            Severity::Warning,
            message,
        );
        self.trigger(cx, alert);
    }
}
