//! The alert state of every unit, with a deadline queue: the pure core of the engine. Inputs
//! are readings, availability reports, acknowledgements, new rules and the current time; the
//! output of each call is the list of events to announce. Nothing here does I/O or reads a
//! clock, so every transition, including the time-driven ones, is tested by passing times in.
//!
//! The queue holds each unit's next deadline once (`BTreeSet<(when, unit)>` plus the key each
//! unit is filed under), so [`Machine::advance`] touches only the units that are due.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use super::model::{millis, Alert, Event, UnitState};
use super::rules::RuleBook;
use super::unit::{after, Cx, Out, Report, Track};

/// The state file's content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Saved {
    pub version: u32,
    #[serde(with = "millis")]
    pub saved_at: DateTime<Utc>,
    pub units: BTreeMap<String, Track>,
}

pub const SAVED_VERSION: u32 = 1;

/// Why an acknowledgement was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AckError {
    #[error("no open alert with that id")]
    NotFound,
    /// Cluster mode: the instance that owns the alert's unit did not answer in time.
    #[error("the instance that owns the alert did not answer")]
    Unavailable,
    /// The acknowledgement was not durably stored (state file or Redis) within the bound: it
    /// is not confirmed, the client is asked to try again.
    #[error("acknowledgement not stored")]
    NotStored,
}

pub struct Machine {
    book: RuleBook,
    tracks: HashMap<Arc<str>, Track>,
    queue: BTreeSet<(DateTime<Utc>, Arc<str>)>,
    filed: HashMap<Arc<str>, DateTime<Utc>>,
    hold_until: Option<DateTime<Utc>>,
    rng: fastrand::Rng,
    /// Something worth writing changed since the last [`Machine::save`].
    dirty: bool,
    /// Only `last_seen` times changed (written at shutdown, not per reading).
    seen_dirty: bool,
    /// Cluster mode: the units this machine holds (the others belong to other instances).
    owned: Option<std::collections::HashSet<Arc<str>>>,
    /// Units whose state changed since [`Machine::take_changed`] (cluster mode).
    changed: std::collections::BTreeSet<Arc<str>>,
}

impl Machine {
    /// A fresh start: every unit of `book` is `ok` and watched from `now`.
    pub fn new(book: RuleBook, now: DateTime<Utc>, rng: fastrand::Rng) -> Machine {
        Self::resume(book, None, now, Duration::ZERO, rng).0
    }

    /// Continues from a state file. Deadlines keep their absolute times, but none fires before
    /// `now + grace`, so readings queued while the service was away are seen first. Units that
    /// left the registry meanwhile have their alerts resolved (the returned events).
    pub fn resume(
        book: RuleBook,
        saved: Option<Saved>,
        now: DateTime<Utc>,
        grace: Duration,
        rng: fastrand::Rng,
    ) -> (Machine, Vec<Out>) {
        let tracks = saved
            .map(|s| s.units.into_iter().map(|(k, v)| (k.into(), v)).collect())
            .unwrap_or_default();
        let mut m = Machine {
            book: RuleBook::default(),
            tracks,
            queue: BTreeSet::new(),
            filed: HashMap::new(),
            hold_until: (!grace.is_zero()).then(|| after(now, grace)).flatten(),
            rng,
            dirty: false,
            seen_dirty: false,
            owned: None,
            changed: Default::default(),
        };
        let out = m.reload(book, now);
        (m, out)
    }

    /// Cluster mode: a machine that holds no unit until [`Machine::own`] gives it one.
    pub fn partial(book: RuleBook, now: DateTime<Utc>, rng: fastrand::Rng) -> Machine {
        let mut m = Machine {
            book: RuleBook::default(),
            tracks: HashMap::new(),
            queue: BTreeSet::new(),
            filed: HashMap::new(),
            hold_until: None,
            rng,
            dirty: false,
            seen_dirty: false,
            owned: Some(Default::default()),
            changed: Default::default(),
        };
        m.reload(book, now);
        m
    }

    /// Cluster mode: this instance owns `unit` from now on. `saved`: the state its previous
    /// owner left (none: watched from `now`); `last_at`: when its last reading was received,
    /// which the saved state does not follow reading by reading. A unit already held keeps its
    /// state (it is newer than any copy) and is marked to be written again. Deadlines that
    /// passed while nobody owned it fire at once.
    pub fn own(
        &mut self,
        now: DateTime<Utc>,
        unit: &Arc<str>,
        saved: Option<Track>,
        last_at: Option<DateTime<Utc>>,
    ) -> Vec<Out> {
        let mut out = Vec::new();
        if let Some(owned) = &mut self.owned {
            owned.insert(unit.clone());
        }
        self.changed.insert(unit.clone());
        if self.book.get(unit).is_none() {
            return out;
        }
        self.tracks.entry(unit.clone()).or_insert_with(|| {
            let mut t = saved.unwrap_or_else(|| Track::new(now));
            if let Some(at) = last_at {
                t.last_seen = t.last_seen.max(at.min(now));
            }
            t
        });
        self.step(unit, now, &mut out, |track, cx| track.on_time(cx));
        out
    }

    /// Cluster mode: `unit` belongs to another instance now; its timers stop here.
    pub fn release(&mut self, unit: &str) {
        if let Some(owned) = &mut self.owned {
            owned.remove(unit);
        }
        self.tracks.remove(unit);
        self.changed.remove(unit);
        self.unfile(unit);
    }

    /// Cluster mode: marks every held unit to be written again (Redis lost what it kept).
    pub fn touch_all(&mut self) {
        self.changed.extend(self.tracks.keys().cloned());
    }

    /// The units whose state changed since the last call, with that state.
    pub fn take_changed(&mut self) -> Vec<(Arc<str>, Track)> {
        std::mem::take(&mut self.changed)
            .into_iter()
            .filter_map(|u| Some((u.clone(), self.tracks.get(&u)?.clone())))
            .collect()
    }

    /// A temperature reading of `unit` (after it was emitted), with its battery level if any.
    /// Unknown units are ignored.
    pub fn reading(
        &mut self,
        now: DateTime<Utc>,
        unit: &str,
        sensor: &str,
        temperature: f64,
        battery: Option<f64>,
    ) -> Vec<Out> {
        let report = Report {
            temperature: Some(temperature),
            battery,
            ..Report::default()
        };
        self.report(now, unit, sensor, &report, None)
    }

    /// Whatever one message of `sensor` says about `unit` (a reading, a door contact's state,
    /// or both). `measured_at`: `None` for a live report; for a broker's retained copy the
    /// time its payload says it was measured, so that it shows the sensor alive then, not now
    /// ([`Track::on_report`]). Unknown units are ignored.
    pub fn report(
        &mut self,
        now: DateTime<Utc>,
        unit: &str,
        sensor: &str,
        report: &Report,
        measured_at: Option<DateTime<Utc>>,
    ) -> Vec<Out> {
        let mut out = Vec::new();
        self.step(unit, now, &mut out, |track, cx| {
            track.on_report(cx, sensor, report, measured_at);
            track.on_time(cx);
        });
        self.seen_dirty = true;
        out.extend(self.advance(now));
        out
    }

    /// A device's own online/offline report for one sensor of `unit`.
    pub fn availability(
        &mut self,
        now: DateTime<Utc>,
        unit: &str,
        sensor: &str,
        online: bool,
    ) -> Vec<Out> {
        let mut out = Vec::new();
        self.step(unit, now, &mut out, |track, cx| {
            track.on_availability(cx, sensor, online)
        });
        out.extend(self.advance(now));
        out
    }

    /// Fires every deadline that is due at `now`.
    pub fn advance(&mut self, now: DateTime<Utc>) -> Vec<Out> {
        let mut out = Vec::new();
        // Each due unit is stepped once per call; a step files the unit's next deadline.
        let due: Vec<Arc<str>> = self
            .queue
            .iter()
            .take_while(|(at, _)| *at <= now)
            .map(|(_, unit)| unit.clone())
            .collect();
        for unit in due {
            self.step(&unit, now, &mut out, |track, cx| track.on_time(cx));
        }
        out
    }

    /// The earliest deadline, for the engine's sleep.
    pub fn next_deadline(&self) -> Option<DateTime<Utc>> {
        self.queue.first().map(|(at, _)| *at)
    }

    /// Records that `by` acknowledged `alert_id`. Acknowledging twice is not an error: the
    /// alert comes back as it is and nothing is announced again.
    pub fn acknowledge(
        &mut self,
        now: DateTime<Utc>,
        alert_id: &str,
        by: &str,
        comment: Option<&str>,
    ) -> Result<(Alert, Vec<Out>), AckError> {
        for track in self.tracks.values_mut() {
            if let Some((alert, event)) = track.acknowledge(alert_id, by, comment, now) {
                let mut out = Vec::new();
                // Cluster mode: committed again even when repeated, so that the answer waits
                // for a commit that holds the acknowledgement.
                if self.owned.is_some() {
                    self.changed.insert(alert.unit_id.clone());
                }
                if let Some(e) = event {
                    self.dirty = true;
                    out.push(Out {
                        event: Event::Acknowledged(e),
                        org: alert.organization_id.clone(),
                        site: alert.site_id.clone(),
                    });
                }
                return Ok((alert, out));
            }
        }
        Err(AckError::NotFound)
    }

    /// New rules (a registry reload) applied to the running state: open alerts stay open and
    /// timers are recomputed from the new durations. Units that left the registry have their
    /// alerts resolved; new units are watched from `now`. A unit moved to another site or
    /// organization is treated as gone and new: its open alerts are resolved for the old owner
    /// (the events carry the old organization and site, so only the old owner's dashboards
    /// hear them) and it starts afresh, `ok`, for the new one.
    pub fn reload(&mut self, book: RuleBook, now: DateTime<Utc>) -> Vec<Out> {
        let mut out = Vec::new();
        let owner =
            |b: &RuleBook, u: &str| b.get(u).map(|e| (e.unit.org.clone(), e.unit.site.clone()));
        // Moved: by the previous rules, or (a state file from before a restart) by whose
        // alerts it holds.
        let gone: Vec<(Arc<str>, bool)> = self
            .tracks
            .iter()
            .filter_map(|(u, t)| {
                let new = owner(&book, u)?;
                let held_by_other = t
                    .alerts
                    .iter()
                    .any(|a| (&a.organization_id, &a.site_id) != (&new.0, &new.1));
                let moved = owner(&self.book, u).is_some_and(|old| old != new);
                (moved || held_by_other).then(|| (u.clone(), true))
            })
            .chain(
                self.tracks
                    .keys()
                    .filter(|u| book.get(u).is_none())
                    .map(|u| (u.clone(), false)),
            )
            .collect();
        for (unit, moved) in gone {
            if let Some(mut t) = self.tracks.remove(&unit) {
                t.resolve_all(&mut out, now);
                self.dirty = true;
            }
            self.unfile(&unit);
            // Cluster mode: the fresh state replaces the old owner's in Redis.
            if moved && self.owned.is_some() {
                self.changed.insert(unit);
            }
        }
        self.book = book;
        let units: Vec<Arc<str>> = self.book.units().map(|b| b.unit.id.clone()).collect();
        for unit in units {
            let held = self.owned.as_ref().is_none_or(|o| o.contains(&unit));
            if !held {
                continue;
            }
            if !self.tracks.contains_key(&unit) {
                self.tracks.insert(unit.clone(), Track::new(now));
                self.seen_dirty = true;
            }
            self.step(&unit, now, &mut out, |track, cx| track.rules_changed(cx));
        }
        out
    }

    /// Every open alert.
    pub fn open_alerts(&self) -> Vec<Alert> {
        let mut v: Vec<Alert> = self
            .tracks
            .values()
            .flat_map(|t| t.alerts.iter().cloned())
            .collect();
        v.sort_by(|a, b| a.alert_id.cmp(&b.alert_id));
        v
    }

    /// Each unit's shown state.
    pub fn states(&self) -> BTreeMap<Arc<str>, UnitState> {
        self.tracks
            .iter()
            .map(|(u, t)| (u.clone(), t.shown))
            .collect()
    }

    /// True when a state change has not been written yet.
    pub fn needs_save(&self) -> bool {
        self.dirty
    }

    /// True when anything (even only last-reading times) has not been written yet.
    pub fn has_unsaved(&self) -> bool {
        self.dirty || self.seen_dirty
    }

    /// The state to write; marks everything as written.
    pub fn save(&mut self, now: DateTime<Utc>) -> Saved {
        self.dirty = false;
        self.seen_dirty = false;
        Saved {
            version: SAVED_VERSION,
            saved_at: now,
            units: self
                .tracks
                .iter()
                .map(|(u, t)| (u.to_string(), t.clone()))
                .collect(),
        }
    }

    /// Runs `f` on one unit's track, then announces its state and files its next deadline.
    fn step(
        &mut self,
        unit: &str,
        now: DateTime<Utc>,
        out: &mut Vec<Out>,
        f: impl FnOnce(&mut Track, &mut Cx),
    ) {
        let (Some(book), Some(track)) = (self.book.get(unit), self.tracks.get_mut(unit)) else {
            self.unfile(unit);
            return;
        };
        let mut cx = Cx::new(book, now, self.hold_until, &mut self.rng, out);
        f(track, &mut cx);
        track.announce(&mut cx);
        self.dirty |= cx.changed;
        if cx.changed && self.owned.is_some() {
            self.changed.insert(book.unit.id.clone());
        }
        let deadline = track
            .deadline(&book.rules)
            .map(|d| self.hold_until.map_or(d, |h| d.max(h)));
        let id = book.unit.id.clone();
        self.unfile(&id);
        if let Some(at) = deadline {
            self.queue.insert((at, id.clone()));
            self.filed.insert(id, at);
        }
    }

    fn unfile(&mut self, unit: &str) {
        if let Some((unit, at)) = self.filed.remove_entry(unit) {
            self.queue.remove(&(at, unit));
        }
    }
}

#[cfg(test)]
#[path = "parts_tests.rs"]
mod parts_tests;
#[cfg(test)]
#[path = "machine_tests.rs"]
mod tests;
