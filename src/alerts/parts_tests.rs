//! The humidity and door parts of a unit's state, with times passed in: every transition of
//! each, the timers that need no message, and state files written before these parts existed.

use std::time::Duration;

use super::tests::{at, book_of, names, MIN};
use super::*;
use crate::alerts::model::{AlertType, Severity, Side};

const REGISTRY: &str = r#"
[[org]]
id = "o1"
temp_min = 0
temp_max = 8
door_open_after = "5m"
[[site]]
id = "s1"
org = "o1"
[[unit]]
id = "walkin"
site = "s1"
name = "Walk-in"
humidity_max = 80
[[unit]]
id = "produce"
site = "s1"
humidity_min = 85
restore_after = 3
[[sensor]]
id = "probe"
unit = "walkin"
[[sensor]]
id = "door-a"
unit = "walkin"
[[sensor]]
id = "door-b"
unit = "walkin"
[[sensor]]
id = "mist"
unit = "produce"
"#;

fn machine() -> Machine {
    Machine::new(book_of(REGISTRY), at(0), fastrand::Rng::with_seed(1))
}

fn humidity(m: &mut Machine, s: u64, unit: &str, h: f64) -> Vec<String> {
    let sensor = if unit == "walkin" { "probe" } else { "mist" };
    let r = Report {
        humidity: Some(h),
        ..Report::default()
    };
    names(&m.report(at(s), unit, sensor, &r, None))
}

fn door(m: &mut Machine, s: u64, sensor: &str, open: bool) -> Vec<String> {
    let r = Report {
        door_open: Some(open),
        ..Report::default()
    };
    names(&m.report(at(s), "walkin", sensor, &r, None))
}

fn open_alert(m: &Machine, ty: AlertType) -> Option<Alert> {
    m.open_alerts().into_iter().find(|a| a.alert_type == ty)
}

#[test]
fn humidity_above_its_maximum_alerts_once_never_escalates_and_leaves_the_shown_state() {
    let mut m = machine();
    assert!(
        humidity(&mut m, 0, "walkin", 80.0).is_empty(),
        "at the limit"
    );
    assert_eq!(
        humidity(&mut m, 10, "walkin", 81.5),
        ["walkin triggered humidity_excursion warning"]
    );
    let a = open_alert(&m, AlertType::HumidityExcursion).unwrap();
    assert_eq!(
        (a.value, a.threshold, a.threshold_violated),
        (Some(81.5), Some(80.0), Some(Side::Max))
    );
    assert_eq!(
        a.message,
        "Walk-in: humidity 81.5 %RH is above the maximum 80 %RH"
    );
    assert!(humidity(&mut m, 20, "walkin", 90.0).is_empty(), "one alert");
    assert!(
        names(&m.advance(at(14 * MIN))).is_empty(),
        "no escalation past confirm_after"
    );
    assert_eq!(m.states()["walkin"], UnitState::Ok);
    assert_eq!(
        open_alert(&m, AlertType::HumidityExcursion)
            .unwrap()
            .severity,
        Severity::Warning
    );
}

#[test]
fn humidity_hysteresis_holds_the_alert_until_restore_after_in_the_band() {
    let mut m = machine();
    humidity(&mut m, 0, "walkin", 81.0);
    // Oscillating across the limit inside the 2 %RH hysteresis: one alert, no restore.
    for i in 1..10 {
        let h = if i % 2 == 0 { 81.0 } else { 79.0 };
        assert!(humidity(&mut m, i * 10, "walkin", h).is_empty());
    }
    assert!(m.advance(at(100 + 2 * MIN)).is_empty(), "79 is no progress");
    // Past the band (below 78): restoring, timed by restore_after (2m by default).
    assert!(humidity(&mut m, 200, "walkin", 77.5).is_empty());
    assert_eq!(m.next_deadline(), Some(at(200 + 2 * MIN)));
    assert!(m.advance(at(200 + 2 * MIN - 1)).is_empty());
    assert_eq!(names(&m.advance(at(200 + 2 * MIN))), ["walkin resolved"]);
    assert!(open_alert(&m, AlertType::HumidityExcursion).is_none());
    // Out again later: a new alert.
    assert_eq!(
        humidity(&mut m, 400, "walkin", 85.0),
        ["walkin triggered humidity_excursion warning"]
    );
}

#[test]
fn a_minimum_only_humidity_rule_restores_after_a_number_of_readings() {
    let mut m = machine();
    assert!(
        humidity(&mut m, 0, "produce", 99.0).is_empty(),
        "no maximum"
    );
    assert_eq!(
        humidity(&mut m, 10, "produce", 84.0),
        ["produce triggered humidity_excursion warning"]
    );
    let a = open_alert(&m, AlertType::HumidityExcursion).unwrap();
    assert_eq!(a.threshold_violated, Some(Side::Min));
    assert!(
        humidity(&mut m, 20, "produce", 86.0).is_empty(),
        "dead band"
    );
    assert!(humidity(&mut m, 30, "produce", 88.0).is_empty());
    assert!(humidity(&mut m, 40, "produce", 88.0).is_empty());
    assert!(humidity(&mut m, 50, "produce", 86.5).is_empty(), "reset");
    assert!(humidity(&mut m, 60, "produce", 88.0).is_empty());
    assert!(humidity(&mut m, 70, "produce", 88.0).is_empty());
    assert_eq!(humidity(&mut m, 80, "produce", 88.0), ["produce resolved"]);
}

#[test]
fn a_door_open_past_its_limit_alerts_on_time_escalates_and_closing_resolves() {
    let mut m = machine();
    assert!(door(&mut m, 0, "door-a", true).is_empty());
    assert_eq!(m.next_deadline(), Some(at(5 * MIN)));
    assert!(m.advance(at(5 * MIN - 1)).is_empty());
    assert_eq!(
        names(&m.advance(at(5 * MIN))),
        ["walkin triggered door_open warning"]
    );
    let a = open_alert(&m, AlertType::DoorOpen).unwrap();
    assert_eq!(
        (a.value, a.threshold, a.threshold_violated),
        (Some(300.0), Some(300.0), Some(Side::Max))
    );
    assert_eq!(a.message, "Walk-in: door open for 5m (limit 5m)");
    assert_eq!(m.next_deadline(), Some(at(10 * MIN)), "confirm_after later");
    assert_eq!(
        names(&m.advance(at(10 * MIN))),
        ["walkin escalated critical 1"]
    );
    let a = open_alert(&m, AlertType::DoorOpen).unwrap();
    assert_eq!((a.severity, a.escalation_level), (Severity::Critical, 1));
    assert!(
        door(&mut m, 11 * MIN, "door-a", true).is_empty(),
        "a repeat changes nothing"
    );
    assert_eq!(door(&mut m, 12 * MIN, "door-a", false), ["walkin resolved"]);
    assert_eq!(m.states()["walkin"], UnitState::Ok, "never the shown state");
    assert!(door(&mut m, 13 * MIN, "door-a", false).is_empty());
}

#[test]
fn a_door_closed_in_time_raises_nothing_and_a_repeat_keeps_the_first_opening() {
    let mut m = machine();
    door(&mut m, 0, "door-a", true);
    assert!(door(&mut m, 2 * MIN, "door-a", true).is_empty());
    assert_eq!(m.next_deadline(), Some(at(5 * MIN)), "from the first open");
    assert!(door(&mut m, 4 * MIN, "door-a", false).is_empty());
    assert_eq!(
        m.next_deadline(),
        Some(at(15 * MIN)),
        "only the offline watch is left"
    );
    assert!(open_alert(&m, AlertType::DoorOpen).is_none());
}

#[test]
fn a_unit_with_several_doors_is_open_while_any_of_them_is() {
    let mut m = machine();
    door(&mut m, 0, "door-a", true);
    door(&mut m, 100, "door-b", true);
    assert!(door(&mut m, 200, "door-a", false).is_empty());
    assert_eq!(m.next_deadline(), Some(at(400)), "door-b's own 5 minutes");
    assert_eq!(
        names(&m.advance(at(400))),
        ["walkin triggered door_open warning"]
    );
    assert!(
        door(&mut m, 450, "door-a", true).is_empty(),
        "still one alert"
    );
    assert!(
        door(&mut m, 460, "door-b", false).is_empty(),
        "door-a is open"
    );
    assert_eq!(door(&mut m, 470, "door-a", false), ["walkin resolved"]);
}

#[test]
fn a_door_contact_keeps_its_unit_online_and_its_battery_feeds_low_battery() {
    let mut m = machine();
    let r = Report {
        door_open: Some(false),
        battery: Some(15.0),
        ..Report::default()
    };
    assert_eq!(
        names(&m.report(at(10 * MIN), "walkin", "door-b", &r, None)),
        ["walkin triggered low_battery info"]
    );
    let out = names(&m.advance(at(15 * MIN)));
    assert!(!out.iter().any(|e| e.starts_with("walkin")), "{out:?}");
    assert_eq!(
        names(&m.advance(at(25 * MIN)))[..2],
        [
            "walkin triggered monitoring_interrupted warning",
            "walkin ok>offline"
        ]
    );
}

#[test]
fn once_a_probe_has_reported_a_door_contact_alone_does_not_hide_it_going_silent() {
    let mut m = machine();
    humidity(&mut m, 0, "walkin", 50.0);
    door(&mut m, 10 * MIN, "door-a", false);
    let out = names(&m.advance(at(15 * MIN)));
    assert!(
        out.contains(&"walkin triggered monitoring_interrupted warning".to_string()),
        "15 minutes after the probe's last report, whatever the contact says: {out:?}"
    );
    assert!(
        door(&mut m, 16 * MIN, "door-a", true).is_empty(),
        "the contact does not end it"
    );
    assert_eq!(
        humidity(&mut m, 17 * MIN, "walkin", 50.0)[..2],
        ["walkin resolved", "walkin offline>ok"],
        "the probe does"
    );
}

#[test]
fn a_retained_open_door_counts_from_the_time_its_payload_names() {
    let mut m = machine();
    let r = Report {
        door_open: Some(true),
        ..Report::default()
    };
    let out = m.report(at(4 * MIN), "walkin", "door-a", &r, Some(at(MIN)));
    assert!(names(&out).is_empty());
    assert_eq!(m.next_deadline(), Some(at(6 * MIN)), "5 minutes from 1 min");
}

#[test]
fn removing_the_door_or_humidity_rule_resolves_their_alerts() {
    let mut m = machine();
    door(&mut m, 0, "door-a", true);
    humidity(&mut m, 0, "walkin", 90.0);
    m.advance(at(5 * MIN));
    assert_eq!(m.open_alerts().len(), 2);
    let no_rules = REGISTRY
        .replace("door_open_after = \"5m\"\n", "")
        .replace("humidity_max = 80\n", "");
    let out = names(&m.reload(book_of(&no_rules), at(6 * MIN)));
    assert_eq!(out, ["walkin resolved", "walkin resolved"]);
    assert!(m.open_alerts().is_empty());
    // The door is still known to be open: the rule coming back counts from its opening.
    m.reload(book_of(REGISTRY), at(7 * MIN));
    assert_eq!(m.next_deadline(), Some(at(5 * MIN)));
    assert_eq!(
        names(&m.advance(at(7 * MIN))),
        ["walkin triggered door_open warning"]
    );
    // The contact leaves the registry: it holds the door open no longer.
    let moved = REGISTRY.replace(
        "id = \"door-a\"\nunit = \"walkin\"",
        "id = \"door-a\"\nunit = \"produce\"",
    );
    assert_eq!(
        names(&m.reload(book_of(&moved), at(8 * MIN))),
        ["walkin resolved"]
    );
    assert!(m
        .open_alerts()
        .iter()
        .all(|a| a.alert_type != AlertType::DoorOpen));
}

#[test]
fn a_state_file_from_before_doors_and_humidity_loads_and_an_open_door_survives_a_restart() {
    let mut m = machine();
    door(&mut m, 0, "door-a", true);
    let mut file = serde_json::to_value(m.save(at(60))).unwrap();
    assert_eq!(
        file["units"]["walkin"]["doorsOpen"]["door-a"],
        "2026-01-15T12:00:00Z"
    );
    let saved: Saved = serde_json::from_value(file.clone()).unwrap();

    // The same file as an older version wrote it: no humidity, no doors.
    for unit in file["units"].as_object_mut().unwrap().values_mut() {
        let track = unit.as_object_mut().unwrap();
        track.remove("humidity");
        track.remove("doorsOpen");
    }
    let old: Saved = serde_json::from_value(file).unwrap();
    assert!(old.units["walkin"].doors_open.is_empty());

    // Restarted at 2 minutes: the door's timer runs on from its opening, no message needed.
    let (mut m, out) = Machine::resume(
        book_of(REGISTRY),
        Some(saved),
        at(2 * MIN),
        Duration::from_secs(30),
        fastrand::Rng::with_seed(2),
    );
    assert!(out.is_empty());
    assert_eq!(m.next_deadline(), Some(at(5 * MIN)));
    assert_eq!(
        names(&m.advance(at(5 * MIN))),
        ["walkin triggered door_open warning"]
    );
}
