//! One unit's alert state and its transitions, as plain data and pure functions: a report (a
//! reading, a door contact's state), a device availability report or the passing of time goes
//! in, the new state and a list of events come out. Five independent parts make up a unit's
//! state:
//!
//! - temperature: `ok` → `excursion` (warning alert) → `alarm` (escalated, critical) →
//!   `restoring` → `ok` (alert resolved), with hysteresis on the way back;
//! - humidity: the same without `alarm` (`humidity_excursion`, warning, never escalated);
//! - doors: open for `door_open_after` → `door_open` (warning), critical `confirm_after` later,
//!   resolved when every door is closed (`door.rs`);
//! - connectivity: silent for `offline_after`, or every sensor reported offline → `offline`
//!   (`monitoring_interrupted`), resolved by the next report that shows it alive (`report.rs`);
//! - battery: at or below `battery_low` → `low_battery` (info), cleared
//!   [`BATTERY_HYSTERESIS`](super::rules::BATTERY_HYSTERESIS) points above it.
//!
//! The state shown to dashboards is `offline` while offline, else the temperature state; the
//! other parts show as their alerts. Everything here is serialisable: it is what the state
//! file keeps (parts added later default when an older file is read).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use super::judge::Quantity;
use super::model::{
    millis, opt_millis, Alert, AlertAcknowledged, AlertType, Event, Side, UnitState,
    UnitStateChanged,
};
use super::rules::{RestoreAfter, UnitBook, UnitRules};

/// What one message says about a unit: any of a temperature, a humidity, a battery level and a
/// door state (a door contact alone carries only the last two).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Report {
    pub temperature: Option<f64>,
    pub humidity: Option<f64>,
    pub battery: Option<f64>,
    /// `Some(true)`: the sensor's door is open.
    pub door_open: Option<bool>,
}

/// The temperature part of a unit's state, and its humidity part (which never reaches `Alarm`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(
    tag = "state",
    rename_all = "snake_case",
    rename_all_fields = "camelCase"
)]
pub enum Temp {
    #[default]
    Ok,
    /// Out of range since `since`; escalates at `since + confirm_after`.
    Excursion {
        side: Side,
        #[serde(with = "millis")]
        since: DateTime<Utc>,
    },
    Alarm {
        side: Side,
        #[serde(with = "millis")]
        since: DateTime<Utc>,
    },
    /// Back in range after an excursion that started at `since`. `in_band_since` and `readings`
    /// count progress inside the hysteresis band (reset by a reading in the dead band).
    Restoring {
        side: Side,
        #[serde(with = "millis")]
        since: DateTime<Utc>,
        escalated: bool,
        #[serde(with = "opt_millis", default)]
        in_band_since: Option<DateTime<Utc>>,
        readings: u32,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OfflineCause {
    /// No reading for `offline_after`.
    Silent,
    /// Every sensor of the unit said it went offline (e.g. a Tasmota LWT).
    DeviceReport,
}

/// Everything the engine remembers about one unit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Track {
    pub temp: Temp,
    #[serde(default)]
    pub humidity: Temp,
    /// Door contacts of the unit that are open, with when each was seen open.
    #[serde(default)]
    pub doors_open: BTreeMap<String, DateTime<Utc>>,
    /// The last report that shows the unit's monitoring alive (see [`Track::on_report`]), or
    /// when watching began.
    #[serde(with = "millis")]
    pub last_seen: DateTime<Utc>,
    /// Whether a sensor of the unit has reported a temperature or humidity (from then on a
    /// door contact's report alone no longer keeps the unit's monitoring alive).
    #[serde(default)]
    pub measures: bool,
    pub offline: Option<OfflineCause>,
    #[serde(default)]
    pub offline_sensors: BTreeSet<String>,
    pub battery_low: bool,
    /// The state last announced with `unit:state:changed`.
    pub shown: UnitState,
    /// Open alerts, at most one per type.
    pub alerts: Vec<Alert>,
}

/// An event with the organization and site whose rooms it goes to.
#[derive(Debug, Clone, PartialEq)]
pub struct Out {
    pub event: Event,
    pub org: Arc<str>,
    pub site: Arc<str>,
}

/// What one step of a unit works with, and what it produces.
pub struct Cx<'a> {
    pub book: &'a UnitBook,
    pub now: DateTime<Utc>,
    /// Time-driven transitions wait until then (the grace after a restart).
    pub hold_until: Option<DateTime<Utc>>,
    pub rng: &'a mut fastrand::Rng,
    pub out: &'a mut Vec<Out>,
    /// Set when anything worth persisting changed (not for `last_seen` alone).
    pub changed: bool,
    /// Why the shown state is changing (the `reason` of `unit:state:changed`).
    pub(super) reason: String,
}

impl<'a> Cx<'a> {
    pub fn new(
        book: &'a UnitBook,
        now: DateTime<Utc>,
        hold_until: Option<DateTime<Utc>>,
        rng: &'a mut fastrand::Rng,
        out: &'a mut Vec<Out>,
    ) -> Self {
        Cx {
            book,
            now,
            hold_until,
            rng,
            out,
            changed: false,
            reason: String::new(),
        }
    }

    pub(super) fn held(&self) -> bool {
        self.hold_until.is_some_and(|h| self.now < h)
    }

    pub(super) fn label(&self) -> &str {
        self.book.label()
    }
}

/// `t + d`, or `None` when that is beyond what a timestamp can hold (never).
pub fn after(t: DateTime<Utc>, d: Duration) -> Option<DateTime<Utc>> {
    t.checked_add_signed(chrono::Duration::from_std(d).ok()?)
}

/// `"5m"`, `"90s"`, `"1h30m"`: durations in messages as they are written in the config.
pub fn human(d: Duration) -> String {
    let s = d.as_secs();
    if s == 0 {
        return format!("{}ms", d.as_millis());
    }
    let (h, m, s) = (s / 3600, s / 60 % 60, s % 60);
    let mut out = String::new();
    for (n, unit) in [(h, "h"), (m, "m"), (s, "s")] {
        if n > 0 {
            out.push_str(&format!("{n}{unit}"));
        }
    }
    out
}

/// When a part restoring by time is back to `ok`, if it is restoring by time.
fn restore_deadline(part: &Temp, q: Quantity, rules: &UnitRules) -> Option<DateTime<Utc>> {
    match (part, q.limits(rules)?.restore_after) {
        (
            Temp::Restoring {
                in_band_since: Some(s),
                ..
            },
            RestoreAfter::Time(d),
        ) => after(*s, d),
        _ => None,
    }
}

impl Track {
    /// A unit first seen at `now` (service start or added by a reload): watched from then on.
    pub fn new(now: DateTime<Utc>) -> Track {
        Track {
            temp: Temp::Ok,
            humidity: Temp::Ok,
            doors_open: BTreeMap::new(),
            last_seen: now,
            measures: false,
            offline: None,
            offline_sensors: BTreeSet::new(),
            battery_low: false,
            shown: UnitState::Ok,
            alerts: Vec::new(),
        }
    }

    /// The state dashboards see: offline wins, else the temperature state.
    pub fn state(&self) -> UnitState {
        if self.offline.is_some() {
            return UnitState::Offline;
        }
        match self.temp {
            Temp::Ok => UnitState::Ok,
            Temp::Excursion { .. } => UnitState::Excursion,
            Temp::Alarm { .. } => UnitState::Alarm,
            Temp::Restoring { .. } => UnitState::Restoring,
        }
    }

    /// Fires whatever is due at `cx.now` (unless held after a restart).
    pub fn on_time(&mut self, cx: &mut Cx) {
        if cx.held() {
            return;
        }
        let rules = cx.book.rules;
        if let (Some(r), Temp::Excursion { side, since }) = (rules.temp, &self.temp) {
            if after(*since, r.confirm_after).is_some_and(|at| at <= cx.now) {
                self.temp = Temp::Alarm {
                    side: *side,
                    since: *since,
                };
                cx.reason = format!("out of range for {}", human(r.confirm_after));
                self.escalate(cx, AlertType::TemperatureExcursion);
            }
        }
        for q in Quantity::ALL {
            if restore_deadline(self.part(q), q, &rules).is_some_and(|at| at <= cx.now) {
                let d = match q.limits(&rules).map(|l| l.restore_after) {
                    Some(RestoreAfter::Time(d)) => d,
                    _ => continue,
                };
                self.restored(cx, q, &format!("back in range for {}", human(d)));
            }
        }
        self.door_time(cx);
        let silent_until = after(self.last_seen, rules.offline_after);
        if self.offline.is_none() && silent_until.is_some_and(|at| at <= cx.now) {
            let why = format!("no reading for {}", human(rules.offline_after));
            self.go_offline(cx, OfflineCause::Silent, &why, &why);
        }
    }

    /// The next moment [`Track::on_time`] has something to do, if any.
    pub fn deadline(&self, rules: &UnitRules) -> Option<DateTime<Utc>> {
        let escalation = match (&self.temp, rules.temp) {
            (Temp::Excursion { since, .. }, Some(r)) => after(*since, r.confirm_after),
            _ => None,
        };
        let restore = Quantity::ALL
            .into_iter()
            .filter_map(|q| restore_deadline(self.part(q), q, rules));
        let offline = match self.offline {
            None => after(self.last_seen, rules.offline_after),
            Some(_) => None,
        };
        escalation
            .into_iter()
            .chain(restore)
            .chain(self.door_deadline(rules))
            .chain(offline)
            .min()
    }

    /// Emits `unit:state:changed` if the shown state moved during this step.
    pub fn announce(&mut self, cx: &mut Cx) {
        let new = self.state();
        if new == self.shown {
            return;
        }
        let unit = &cx.book.unit;
        cx.out.push(Out {
            event: Event::StateChanged(UnitStateChanged {
                unit_id: unit.id.clone(),
                site_id: unit.site.clone(),
                organization_id: unit.org.clone(),
                previous_state: self.shown,
                new_state: new,
                timestamp: cx.now,
                reason: std::mem::take(&mut cx.reason),
            }),
            org: unit.org.clone(),
            site: unit.site.clone(),
        });
        self.shown = new;
        cx.changed = true;
    }

    /// The rules changed (registry reload): drop what no longer has a rule.
    pub fn rules_changed(&mut self, cx: &mut Cx) {
        for q in Quantity::ALL {
            if q.limits(&cx.book.rules).is_none() && *self.part(q) != Temp::Ok {
                let why = match q {
                    Quantity::Temperature => "temperature rule removed",
                    Quantity::Humidity => "humidity rule removed",
                };
                self.restored(cx, q, why);
            }
        }
        self.door_rules_changed(cx);
    }

    /// Records an acknowledgement with its optional comment: `None` if no such alert is open
    /// here, `Some(None)` if it was already acknowledged (nothing to announce; the first
    /// acknowledgement and its comment stand).
    pub fn acknowledge(
        &mut self,
        alert_id: &str,
        by: &str,
        comment: Option<&str>,
        now: DateTime<Utc>,
    ) -> Option<(Alert, Option<AlertAcknowledged>)> {
        let alert = self.alerts.iter_mut().find(|a| a.alert_id == alert_id)?;
        if alert.acknowledged_at.is_some() {
            return Some((alert.clone(), None));
        }
        alert.acknowledged_by = Some(by.to_string());
        alert.acknowledged_at = Some(now);
        alert.acknowledged_comment = comment.map(str::to_string);
        let event = AlertAcknowledged {
            alert_id: alert.alert_id.clone(),
            unit_id: alert.unit_id.clone(),
            acknowledged_by: by.to_string(),
            acknowledged_at: now,
            acknowledged_comment: alert.acknowledged_comment.clone(),
        };
        Some((alert.clone(), Some(event)))
    }

    /// Resolves every open alert (the unit left the registry).
    pub fn resolve_all(&mut self, out: &mut Vec<Out>, now: DateTime<Utc>) {
        for a in self.alerts.drain(..) {
            out.push(super::lifecycle::resolved(&a, now));
        }
    }
}
