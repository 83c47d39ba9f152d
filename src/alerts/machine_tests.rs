//! The machine's transitions with times passed in: no clock, no sleeping, no I/O.
//!
//! Over 400 lines: Each transition of the machine is one short table-like test; together they are
//! the machine's spec.

use chrono::{DateTime, TimeZone, Utc};
use std::path::Path;
use std::time::Duration;

use super::*;
use crate::alerts::model::{Severity, Side};
use crate::alerts::rules::{AlertsConfig, RuleBook};
use crate::core::registry::Registry;

const REGISTRY: &str = r#"
[[org]]
id = "o1"
temp_min = 0
temp_max = 8
[[site]]
id = "s1"
org = "o1"
[[unit]]
id = "u1"
site = "s1"
name = "Prep fridge"
[[unit]]
id = "u2"
site = "s1"
restore_after = 3
[[sensor]]
id = "p1"
unit = "u1"
[[sensor]]
id = "p2"
unit = "u2"
[[sensor]]
id = "p3"
unit = "u2"
"#;

pub(super) fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 15, 12, 0, 0).unwrap()
}

/// `t0` plus `s` seconds.
pub(super) fn at(s: u64) -> DateTime<Utc> {
    t0() + chrono::Duration::seconds(s as i64)
}

pub(super) const MIN: u64 = 60;

pub(super) fn book_of(text: &str) -> RuleBook {
    let reg = Registry::parse(text, Path::new("r.toml")).unwrap();
    RuleBook::build(&reg, &AlertsConfig::default().defaults()).unwrap()
}

fn machine() -> Machine {
    Machine::new(book_of(REGISTRY), t0(), fastrand::Rng::with_seed(1))
}

/// Events as short strings, in order.
pub(super) fn names(out: &[Out]) -> Vec<String> {
    out.iter()
        .map(|o| match &o.event {
            Event::StateChanged(e) => format!(
                "{} {}>{}",
                e.unit_id,
                e.previous_state.name(),
                e.new_state.name()
            ),
            Event::Triggered(e) => format!(
                "{} triggered {} {}",
                e.unit_id,
                e.alert_type.name(),
                e.severity.name()
            ),
            Event::Escalated(e) => format!(
                "{} escalated {} {}",
                e.unit_id,
                e.severity.name(),
                e.escalation_level
            ),
            Event::Resolved(e) => format!("{} resolved", e.unit_id),
            Event::Acknowledged(e) => {
                format!("{} acknowledged by {}", e.unit_id, e.acknowledged_by)
            }
        })
        .collect()
}

fn read(m: &mut Machine, s: u64, unit: &str, t: f64) -> Vec<String> {
    let sensor = if unit == "u1" { "p1" } else { "p2" };
    names(&m.reading(at(s), unit, sensor, t, None))
}

#[test]
fn an_excursion_escalates_on_time_without_further_readings() {
    let mut m = machine();
    let out = m.reading(at(0), "u1", "p1", 9.25, None);
    assert_eq!(
        names(&out),
        [
            "u1 triggered temperature_excursion warning",
            "u1 ok>excursion"
        ]
    );
    let Event::Triggered(t) = &out[0].event else {
        panic!()
    };
    assert_eq!((t.value, t.threshold), (Some(9.25), Some(8.0)));
    assert_eq!(t.threshold_violated, Some(Side::Max));
    assert_eq!(
        t.message,
        "Prep fridge: temperature 9.25 °C is above the maximum 8 °C"
    );
    assert_eq!((&*out[0].org, &*out[0].site), ("o1", "s1"));
    assert_eq!(m.next_deadline(), Some(at(5 * MIN)));

    assert!(m.advance(at(5 * MIN - 1)).is_empty());
    let out = m.advance(at(5 * MIN));
    assert_eq!(
        names(&out),
        ["u1 escalated critical 1", "u1 excursion>alarm"]
    );
    let Event::StateChanged(s) = &out[1].event else {
        panic!()
    };
    assert_eq!(s.reason, "out of range for 5m");
    assert_eq!(m.open_alerts()[0].severity, Severity::Critical);
    assert!(m.needs_save());
}

#[test]
fn hysteresis_keeps_a_reading_oscillating_around_the_limit_from_flapping() {
    let mut m = machine();
    let mut all = read(&mut m, 0, "u1", 8.2);
    // Around the limit: out, then in range but inside the 0.5 band, over and over.
    for i in 1..20 {
        let t = if i % 2 == 0 { 8.3 } else { 7.6 };
        all.extend(read(&mut m, i * 5, "u1", t));
    }
    assert_eq!(
        all,
        [
            "u1 triggered temperature_excursion warning",
            "u1 ok>excursion"
        ],
        "one alert, no restore, no second trigger"
    );
    // Past the band: restoring. Back into the band: progress is reset, not the state.
    assert_eq!(read(&mut m, 100, "u1", 7.4), ["u1 excursion>restoring"]);
    assert!(read(&mut m, 110, "u1", 7.9).is_empty());
    assert!(
        m.advance(at(100 + 2 * MIN)).is_empty(),
        "the reset stopped the restore timer"
    );
    // Out again: back to excursion with the same alert, no new trigger...
    assert_eq!(read(&mut m, 230, "u1", 8.6), ["u1 restoring>excursion"]);
    // ...and confirm_after still counts from the first crossing.
    assert_eq!(
        names(&m.advance(at(5 * MIN))),
        ["u1 escalated critical 1", "u1 excursion>alarm"]
    );
    assert_eq!(m.open_alerts().len(), 1);
}

#[test]
fn a_unit_is_restored_after_restore_after_in_the_band() {
    let mut m = machine();
    read(&mut m, 0, "u1", -1.0);
    assert_eq!(read(&mut m, 60, "u1", 0.6), ["u1 excursion>restoring"]);
    assert!(m.advance(at(60 + 2 * MIN - 1)).is_empty());
    assert_eq!(
        names(&m.advance(at(60 + 2 * MIN))),
        ["u1 resolved", "u1 restoring>ok"]
    );
    assert!(m.open_alerts().is_empty());
    // The escalation deadline died with the excursion: only the offline watch is left.
    assert_eq!(m.next_deadline(), Some(at(15 * MIN)));
}

#[test]
fn restore_after_a_number_of_readings() {
    let mut m = machine();
    read(&mut m, 0, "u2", 9.0);
    assert_eq!(read(&mut m, 10, "u2", 5.0), ["u2 excursion>restoring"]);
    assert!(read(&mut m, 20, "u2", 5.0).is_empty());
    let out = names(&m.advance(at(3600)));
    assert!(
        !out.iter().any(|e| e.contains("u2 resolved")),
        "no timed restore: {out:?}"
    );
    let mut m = machine();
    read(&mut m, 0, "u2", 9.0);
    read(&mut m, 10, "u2", 5.0);
    read(&mut m, 20, "u2", 5.0);
    assert_eq!(
        read(&mut m, 30, "u2", 5.0),
        ["u2 resolved", "u2 restoring>ok"]
    );
}

#[test]
fn an_alarm_that_returns_to_range_and_leaves_it_again_is_still_an_alarm() {
    let mut m = machine();
    read(&mut m, 0, "u1", 12.0);
    m.advance(at(5 * MIN));
    assert_eq!(read(&mut m, 6 * MIN, "u1", 5.0), ["u1 alarm>restoring"]);
    assert_eq!(read(&mut m, 7 * MIN, "u1", 9.0), ["u1 restoring>alarm"]);
    assert_eq!(m.open_alerts()[0].escalation_level, 1);
}

#[test]
fn a_silent_unit_goes_offline_on_time_and_comes_back_with_a_reading() {
    let mut m = machine();
    read(&mut m, 10 * MIN, "u1", 4.0); // pushes u1's deadline
    let out = m.advance(at(15 * MIN));
    assert_eq!(
        names(&out),
        [
            "u2 triggered monitoring_interrupted warning",
            "u2 ok>offline"
        ],
        "u2 never reported since the start"
    );
    let out = m.advance(at(25 * MIN));
    assert_eq!(
        names(&out),
        [
            "u1 triggered monitoring_interrupted warning",
            "u1 ok>offline"
        ]
    );
    let alert = m
        .open_alerts()
        .into_iter()
        .find(|a| &*a.unit_id == "u1")
        .unwrap();
    assert_eq!(
        (alert.value, alert.threshold, alert.threshold_violated),
        (None, None, None)
    );
    assert_eq!(alert.message, "Prep fridge: no reading for 15m");
    assert_eq!(
        read(&mut m, 30 * MIN, "u1", 4.0),
        ["u1 resolved", "u1 offline>ok"]
    );
}

/// A broker's retained copy shows the sensor alive when it was measured, not now: measured
/// before the last reading seen, it is old news; measured since, but `offline_after` or more
/// ago, it ends no offline and is not judged; measured recently, it is judged as of then, so
/// the unit goes offline again `offline_after` after that time.
#[test]
fn a_retained_copy_counts_as_the_sensor_alive_when_it_was_measured_not_now() {
    let mut m = machine();
    read(&mut m, 0, "u1", 4.0);
    assert_eq!(m.advance(at(15 * MIN)).len(), 4, "u1 and u2 offline");
    let mut retained = |now: u64, measured: u64, t: f64| {
        let report = Report {
            temperature: Some(t),
            ..Report::default()
        };
        names(&m.report(at(now), "u1", "p1", &report, Some(at(measured))))
    };
    assert!(retained(20 * MIN, 0, 12.0).is_empty(), "old news");
    assert!(
        retained(40 * MIN, 20 * MIN, 12.0).is_empty(),
        "too old to count"
    );
    assert_eq!(
        retained(50 * MIN, 45 * MIN, 4.0),
        ["u1 resolved", "u1 offline>ok"]
    );
    assert!(m.advance(at(59 * MIN)).is_empty());
    assert_eq!(
        names(&m.advance(at(60 * MIN))),
        [
            "u1 triggered monitoring_interrupted warning",
            "u1 ok>offline"
        ]
    );
}

#[test]
fn every_sensor_reporting_offline_takes_the_unit_offline_at_once() {
    let mut m = machine();
    assert!(
        names(&m.availability(at(1), "u2", "p2", false)).is_empty(),
        "p3 still up"
    );
    let out = names(&m.availability(at(2), "u2", "p3", false));
    assert_eq!(
        out,
        [
            "u2 triggered monitoring_interrupted warning",
            "u2 ok>offline"
        ]
    );
    assert!(
        names(&m.availability(at(3), "u2", "p3", false)).is_empty(),
        "at most one alert"
    );
    assert!(
        names(&m.availability(at(4), "u2", "p3", true)).is_empty(),
        "only a reading resolves"
    );
    assert_eq!(read(&mut m, 5, "u2", 4.0), ["u2 resolved", "u2 offline>ok"]);
}

#[test]
fn an_excursion_escalates_while_the_sensor_is_silent_then_shows_offline() {
    let mut m = machine();
    read(&mut m, 0, "u1", 9.0);
    read(&mut m, 0, "u2", 4.0);
    assert_eq!(
        names(&m.advance(at(5 * MIN))),
        ["u1 escalated critical 1", "u1 excursion>alarm"]
    );
    let out = names(&m.advance(at(15 * MIN)));
    assert_eq!(
        out[..2],
        [
            "u1 triggered monitoring_interrupted warning",
            "u1 alarm>offline"
        ]
    );
    // A reading in range: offline resolved, the excursion is restoring, not forgotten.
    assert_eq!(
        read(&mut m, 16 * MIN, "u1", 4.0),
        ["u1 resolved", "u1 offline>restoring"]
    );
}

#[test]
fn low_battery_alerts_once_and_clears_with_its_own_hysteresis() {
    let mut m = machine();
    let bat = |m: &mut Machine, s, b| names(&m.reading(at(s), "u1", "p1", 4.0, Some(b)));
    assert!(bat(&mut m, 0, 21.0).is_empty());
    assert_eq!(bat(&mut m, 10, 20.0), ["u1 triggered low_battery info"]);
    assert!(bat(&mut m, 20, 19.0).is_empty());
    assert!(
        bat(&mut m, 30, 24.0).is_empty(),
        "inside the 5-point hysteresis"
    );
    assert_eq!(bat(&mut m, 40, 25.0), ["u1 resolved"]);
    assert_eq!(
        m.states()["u1"],
        UnitState::Ok,
        "battery does not change the unit state"
    );
}

#[test]
fn acknowledging_is_recorded_once_and_independent_of_resolving() {
    let mut m = machine();
    read(&mut m, 0, "u1", 9.0);
    let id = m.open_alerts()[0].alert_id.clone();
    let (alert, out) = m.acknowledge(at(10), &id, "user-7", None).unwrap();
    assert_eq!(names(&out), ["u1 acknowledged by user-7"]);
    assert_eq!(alert.acknowledged_by.as_deref(), Some("user-7"));
    let (_, again) = m.acknowledge(at(20), &id, "user-8", None).unwrap();
    assert!(again.is_empty(), "a second ack changes nothing");
    assert_eq!(
        m.acknowledge(at(20), "nope", "u", None).unwrap_err(),
        AckError::NotFound
    );
    read(&mut m, 30, "u1", 4.0);
    assert_eq!(
        names(&m.advance(at(30 + 2 * MIN))),
        ["u1 resolved", "u1 restoring>ok"]
    );
    assert_eq!(
        m.acknowledge(at(200), &id, "u", None).unwrap_err(),
        AckError::NotFound
    );
}

#[test]
fn a_reload_keeps_open_alerts_and_applies_new_durations() {
    let mut m = machine();
    read(&mut m, 0, "u1", 9.0);
    let id = m.open_alerts()[0].alert_id.clone();
    let longer = REGISTRY.replace("temp_max = 8\n", "temp_max = 8\nconfirm_after = \"10m\"\n");
    assert!(m.reload(book_of(&longer), at(60)).is_empty());
    assert_eq!(m.open_alerts()[0].alert_id, id);
    assert_eq!(
        m.next_deadline(),
        Some(at(10 * MIN)),
        "timer recomputed from the excursion start"
    );

    let no_rule = REGISTRY.replace("temp_min = 0\ntemp_max = 8\n", "");
    let out = names(&m.reload(book_of(&no_rule), at(120)));
    assert_eq!(out, ["u1 resolved", "u1 excursion>ok"]);

    read(&mut m, 130, "u2", 4.0);
    m.availability(at(131), "u2", "p2", false);
    m.availability(at(132), "u2", "p3", false);
    let gone = REGISTRY
        .replace(
            "[[unit]]\nid = \"u2\"\nsite = \"s1\"\nrestore_after = 3\n",
            "",
        )
        .replace(
            "[[sensor]]\nid = \"p2\"\nunit = \"u2\"\n[[sensor]]\nid = \"p3\"\nunit = \"u2\"\n",
            "",
        );
    assert_eq!(names(&m.reload(book_of(&gone), at(140))), ["u2 resolved"]);
    assert!(!m.states().contains_key("u2"));
}

#[test]
fn a_resumed_machine_keeps_alerts_and_the_remaining_time() {
    let mut m = machine();
    read(&mut m, 0, "u1", 9.0);
    read(&mut m, 0, "u2", 4.0);
    let id = m.open_alerts()[0].alert_id.clone();
    let saved: Saved =
        serde_json::from_slice(&serde_json::to_vec(&m.save(at(120))).unwrap()).unwrap();

    let (mut m, out) = Machine::resume(
        book_of(REGISTRY),
        Some(saved.clone()),
        at(180),
        Duration::from_secs(30),
        fastrand::Rng::with_seed(2),
    );
    assert!(out.is_empty(), "nothing is announced again");
    assert_eq!(m.open_alerts()[0].alert_id, id);
    assert!(
        read(&mut m, 200, "u1", 9.5).is_empty(),
        "still the same excursion: no re-trigger"
    );
    assert_eq!(
        m.next_deadline(),
        Some(at(5 * MIN)),
        "the remaining time, not a new 5m"
    );
    assert_eq!(
        names(&m.advance(at(5 * MIN))),
        ["u1 escalated critical 1", "u1 excursion>alarm"]
    );

    // Down for 20 minutes: what came due meanwhile waits for the grace after the start.
    let (mut m, _) = Machine::resume(
        book_of(REGISTRY),
        Some(saved),
        at(20 * MIN),
        Duration::from_secs(60),
        fastrand::Rng::with_seed(3),
    );
    assert_eq!(m.next_deadline(), Some(at(21 * MIN)));
    assert!(m.advance(at(21 * MIN - 1)).is_empty());
    read(&mut m, 20 * MIN + 30, "u2", 4.0); // u2's reading arrived in the grace: it stays ok
    let out = names(&m.advance(at(21 * MIN)));
    assert_eq!(
        out,
        [
            "u1 escalated critical 1",
            "u1 triggered monitoring_interrupted warning",
            "u1 excursion>offline"
        ]
    );
}

/// Item 10: a unit moved to another organization by a reload has its open alert resolved for
/// the old owner (the event names the old organization) and starts `ok` with no alert for the
/// new one; a state file from before the move is treated the same at start.
#[test]
fn a_unit_moved_to_another_organization_starts_afresh() {
    let mut m = machine();
    let out = read(&mut m, 10, "u1", 12.0);
    assert!(
        out.contains(&"u1 triggered temperature_excursion warning".to_string()),
        "{out:?}"
    );
    let moved = REGISTRY.replace(
        "[[unit]]\nid = \"u1\"\nsite = \"s1\"",
        "[[org]]\nid = \"o2\"\ntemp_min = 0\ntemp_max = 8\n[[site]]\nid = \"s9\"\norg = \"o2\"\n[[unit]]\nid = \"u1\"\nsite = \"s9\"",
    );
    let saved = m.save(at(20));
    let out = m.reload(book_of(&moved), at(20));
    assert_eq!(names(&out), ["u1 resolved"]);
    assert_eq!((&*out[0].org, &*out[0].site), ("o1", "s1"));
    assert!(m.open_alerts().is_empty());
    assert_eq!(m.states()["u1"], UnitState::Ok);

    let (m, out) = Machine::resume(
        book_of(&moved),
        Some(saved),
        at(30),
        Duration::ZERO,
        fastrand::Rng::with_seed(1),
    );
    assert_eq!(names(&out), ["u1 resolved"]);
    assert_eq!(&*out[0].org, "o1");
    assert!(m.open_alerts().is_empty());
}
