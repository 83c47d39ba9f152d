//! The door part of a unit's state: which of the unit's door contacts are open and since when
//! (when the engine first saw each open; for a broker's retained copy, the time its payload
//! names), and the `door_open` alert. A door open
//! for `door_open_after` raises it (warning); `confirm_after` later it escalates (critical);
//! once every door of the unit is closed it is resolved. Raising and escalating are deadlines
//! ([`Track::door_deadline`]): they fire on time with no further message, like the
//! temperature's. A repeated "open" keeps the first time; a unit with several contacts has a
//! door open while any of them is.

use chrono::{DateTime, Utc};

use super::model::{AlertType, Severity, Side};
use super::rules::UnitRules;
use super::unit::{after, human, Cx, Track};

impl Track {
    /// A door contact of the unit (`sensor`) says whether it is open, as measured at `at`
    /// (now for a live report; a retained copy's own time).
    pub(super) fn door(&mut self, cx: &mut Cx, sensor: &str, open: bool, at: DateTime<Utc>) {
        if open {
            if !self.doors_open.contains_key(sensor) {
                self.doors_open.insert(sensor.to_string(), at);
                cx.changed = true;
            }
        } else if self.doors_open.remove(sensor).is_some() {
            cx.changed = true;
            if self.doors_open.is_empty() {
                self.resolve(cx, AlertType::DoorOpen);
            }
        }
    }

    /// When the first of the doors open now was opened.
    fn first_opened(&self) -> Option<DateTime<Utc>> {
        self.doors_open.values().min().copied()
    }

    /// The open `door_open` alert: (raised at, escalation level).
    fn door_alert(&self) -> Option<(DateTime<Utc>, u32)> {
        self.alerts
            .iter()
            .find(|a| a.alert_type == AlertType::DoorOpen)
            .map(|a| (a.triggered_at, a.escalation_level))
    }

    /// Raises or escalates `door_open` when it is due at `cx.now`.
    pub(super) fn door_time(&mut self, cx: &mut Cx) {
        let (Some(rule), Some(first)) = (cx.book.rules.door, self.first_opened()) else {
            return;
        };
        let due = |at: Option<DateTime<Utc>>| at.is_some_and(|at| at <= cx.now);
        match self.door_alert() {
            None if due(after(first, rule.open_after)) => {
                let open_for = (cx.now - first).to_std().unwrap_or_default();
                let message = format!(
                    "{}: door open for {} (limit {})",
                    cx.label(),
                    human(open_for),
                    human(rule.open_after)
                );
                let mut alert = self.alert(cx, AlertType::DoorOpen, Severity::Warning, message);
                alert.value = Some(open_for.as_secs_f64().round());
                alert.threshold = Some(rule.open_after.as_secs_f64());
                alert.threshold_violated = Some(Side::Max);
                self.trigger(cx, alert);
            }
            Some((raised, 0)) if due(after(raised, rule.confirm_after)) => {
                self.escalate(cx, AlertType::DoorOpen);
            }
            _ => {}
        }
    }

    /// The next moment [`Track::door_time`] has something to do.
    pub(super) fn door_deadline(&self, rules: &UnitRules) -> Option<DateTime<Utc>> {
        let rule = rules.door?;
        let first = self.first_opened()?;
        match self.door_alert() {
            None => after(first, rule.open_after),
            Some((raised, 0)) => after(raised, rule.confirm_after),
            Some(_) => None,
        }
    }

    /// New rules (registry reload): a contact that left the unit no longer holds its door
    /// open; without a door rule, or with no door left open, the alert is resolved. The other
    /// doors' state is kept, so a rule that comes back counts from when they were opened.
    pub(super) fn door_rules_changed(&mut self, cx: &mut Cx) {
        let before = self.doors_open.len();
        self.doors_open
            .retain(|sensor, _| cx.book.sensor_ids.contains(sensor));
        cx.changed |= self.doors_open.len() != before;
        let moot = cx.book.rules.door.is_none() || self.doors_open.is_empty();
        if moot && self.door_alert().is_some() {
            self.resolve(cx, AlertType::DoorOpen);
        }
    }
}
