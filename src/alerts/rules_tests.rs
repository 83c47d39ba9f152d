//! Rule inheritance and validation: each key on its own, unit > site > org > `[alerts]`.

use super::*;
use std::path::Path;

const REG: &str = r#"
[[org]]
id = "o1"
temp_min = 0
temp_max = 8
offline_after = "30m"
[[site]]
id = "s1"
org = "o1"
temp_max = 5.5
restore_after = 3
[[site]]
id = "s2"
org = "o1"
[[unit]]
id = "freezer"
site = "s1"
temp_min = -25
temp_max = -15
confirm_after = "90s"
[[unit]]
id = "fridge"
site = "s1"
[[unit]]
id = "plain"
site = "s2"
hysteresis = 1
[[sensor]]
id = "a"
unit = "freezer"
[[sensor]]
id = "b"
unit = "freezer"
"#;

fn book(text: &str, defaults: &AlertsConfig) -> Result<RuleBook, RuleError> {
    let reg = Registry::parse(text, Path::new("r.toml")).expect("registry parses");
    RuleBook::build(&reg, &defaults.defaults())
}

#[test]
fn each_key_inherits_unit_over_site_over_org_over_defaults() {
    let b = book(REG, &AlertsConfig::default()).unwrap();
    let freezer = b.get("freezer").unwrap();
    let t = freezer.rules.temp.unwrap();
    assert_eq!((t.min, t.max, t.hysteresis), (-25.0, -15.0, 0.5));
    assert_eq!(t.confirm_after, Duration::from_secs(90));
    assert_eq!(t.restore_after, RestoreAfter::Readings(3), "from the site");
    assert_eq!(freezer.rules.offline_after, Duration::from_secs(1800));
    assert_eq!(freezer.rules.battery_low, 20.0);
    assert_eq!(freezer.sensors, 2);

    let fridge = b.get("fridge").unwrap().rules.temp.unwrap();
    assert_eq!(
        (fridge.min, fridge.max),
        (0.0, 5.5),
        "min from org, max from site"
    );
    assert_eq!(fridge.confirm_after, DEFAULT_CONFIRM_AFTER);
    let plain = b.get("plain").unwrap().rules.temp.unwrap();
    assert_eq!((plain.min, plain.max, plain.hysteresis), (0.0, 8.0, 1.0));
}

#[test]
fn a_unit_needs_both_limits_and_defaults_can_supply_them() {
    let text = "[[org]]\nid = \"o\"\ntemp_max = 4\n[[site]]\nid = \"s\"\norg = \"o\"\n[[unit]]\nid = \"u\"\nsite = \"s\"\n";
    let b = book(text, &AlertsConfig::default()).unwrap();
    assert_eq!(b.get("u").unwrap().rules.temp, None);
    let defaults = AlertsConfig {
        temp_min: Some(0.0),
        ..AlertsConfig::default()
    };
    let b = book(text, &defaults).unwrap();
    assert_eq!(b.get("u").unwrap().rules.temp.unwrap().max, 4.0);
}

#[test]
fn inherited_limits_that_leave_no_band_are_an_error_naming_the_unit() {
    // The org's temp_max 8 with the unit's temp_min 7.8 and hysteresis 0.5: no room.
    let text = REG.replace(
        "id = \"plain\"\nsite = \"s2\"\nhysteresis = 1",
        "id = \"plain\"\nsite = \"s2\"\ntemp_min = 7.8",
    );
    let err = book(&text, &AlertsConfig::default()).unwrap_err();
    assert_eq!(
        err,
        RuleError::Band {
            unit: "plain".into(),
            min: 7.8,
            max: 8.0,
            hysteresis: 0.5
        }
    );
    assert!(err.to_string().contains("\"plain\""), "{err}");
}

#[test]
fn restore_after_is_a_duration_or_a_count_and_keys_are_checked_per_entry() {
    #[derive(Deserialize)]
    struct T {
        r: RestoreAfter,
    }
    let parse = |s: &str| toml::from_str::<T>(&format!("r = {s}")).map(|t| t.r);
    assert_eq!(
        parse("\"90s\"").unwrap(),
        RestoreAfter::Time(Duration::from_secs(90))
    );
    assert_eq!(parse("3").unwrap(), RestoreAfter::Readings(3));
    assert!(parse("0").unwrap_err().to_string().contains("1 or more"));
    assert!(parse("true")
        .unwrap_err()
        .to_string()
        .contains("number of readings"));

    let bad = |key: &str, v: &str| {
        let text = REG.replace("hysteresis = 1", &format!("{key} = {v}"));
        let err = Registry::parse(&text, Path::new("r.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains(&format!("unit[2].{key}")), "{err}");
    };
    bad("hysteresis", "-1");
    bad("battery_low", "120");
    bad("offline_after", "\"0s\"");
    bad("temp_min", "9\ntemp_max = 2");
}

#[test]
fn the_alerts_table_is_validated() {
    let mut c = AlertsConfig::default();
    assert!(c.validate().is_ok());
    c.webhooks = vec!["https://example.com/hook".into()];
    assert!(c.validate().is_ok());
    c.webhooks.push("ftp://example.com/hook".into());
    assert_eq!(c.validate().unwrap_err().0, "webhooks[1]");
    c.webhooks.clear();
    c.hysteresis = f64::NAN;
    assert_eq!(c.validate().unwrap_err().0, "hysteresis");
}

const HUMID: &str = r#"
[[org]]
id = "o1"
humidity_max = 70
door_open_after = "3m"
[[site]]
id = "s1"
org = "o1"
humidity_hysteresis = 1
confirm_after = "2m"
[[site]]
id = "s2"
org = "o1"
[[unit]]
id = "produce"
site = "s1"
humidity_min = 30
[[unit]]
id = "walkin"
site = "s2"
door_open_after = "10m"
restore_after = 4
"#;

#[test]
fn humidity_and_door_keys_inherit_each_on_its_own() {
    let b = book(HUMID, &AlertsConfig::default()).unwrap();
    let produce = b.get("produce").unwrap().rules;
    assert_eq!(
        produce.humidity,
        Some(HumidityRule {
            min: Some(30.0),
            max: Some(70.0),
            hysteresis: 1.0,
            restore_after: DEFAULT_RESTORE_AFTER,
        })
    );
    assert_eq!(
        produce.door,
        Some(DoorRule {
            open_after: Duration::from_secs(180),
            confirm_after: Duration::from_secs(120),
        })
    );
    let walkin = b.get("walkin").unwrap().rules;
    let h = walkin.humidity.unwrap();
    assert_eq!((h.min, h.max, h.hysteresis), (None, Some(70.0), 2.0));
    assert_eq!(h.restore_after, RestoreAfter::Readings(4));
    assert_eq!(walkin.door.unwrap().open_after, Duration::from_secs(600));
    assert_eq!(walkin.door.unwrap().confirm_after, DEFAULT_CONFIRM_AFTER);

    // Without any key anywhere: no humidity rule, no door rule.
    let plain = book(REG, &AlertsConfig::default()).unwrap();
    let freezer = plain.get("freezer").unwrap().rules;
    assert_eq!((freezer.humidity, freezer.door), (None, None));
    // [alerts] is the last level.
    let defaults: AlertsConfig =
        toml::from_str("humidity_min = 20\ndoor_open_after = \"90s\"\nhumidity_hysteresis = 3")
            .unwrap();
    let b = book(REG, &defaults).unwrap();
    let r = b.get("freezer").unwrap().rules;
    assert_eq!(r.humidity.unwrap().min, Some(20.0));
    assert_eq!(r.humidity.unwrap().hysteresis, 3.0);
    assert_eq!(r.door.unwrap().open_after, Duration::from_secs(90));
}

#[test]
fn humidity_and_door_values_are_refused_with_file_line_and_key() {
    let err = |text: &str| {
        Registry::parse(text, Path::new("r.toml"))
            .unwrap_err()
            .to_string()
    };
    // Line 17 is `humidity_min = 30` of the unit "produce".
    let e = err(&HUMID.replace("humidity_min = 30", "humidity_min = 130"));
    assert!(
        e.starts_with(
            "r.toml: line 17, column 16: unit.humidity_min: 130 is not a relative humidity"
        ),
        "{e}"
    );
    let e = err(&HUMID.replace("humidity_hysteresis = 1", "humidity_hysteresis = -1"));
    assert!(
        e.contains("line 9, column 23: site.humidity_hysteresis:"),
        "{e}"
    );
    let e = err(&HUMID.replace("\"10m\"", "\"500ms\""));
    assert!(
        e.contains("line 21, column 19: unit.door_open_after:") && e.contains("at least 1s"),
        "{e}"
    );
    let e = err(&HUMID.replace("\"3m\"", "\"3 fortnights\""));
    assert!(e.contains("line 5, column 19: org.door_open_after:"), "{e}");
    // Two keys of one entry that contradict each other: the line of the first one.
    let e = err(&HUMID.replace("humidity_min = 30", "humidity_min = 30\nhumidity_max = 20"));
    assert_eq!(
        e,
        "r.toml: line 17: unit[0].humidity_min: 30 must be below humidity_max 20"
    );
    let e = err(&REG.replace("hysteresis = 1", "temp_min = 9\ntemp_max = 2"));
    assert!(
        e.contains(": unit[2].temp_min: 9 must be below temp_max 2"),
        "{e}"
    );
    assert!(e.contains("r.toml: line 27: "), "{e}");
}

#[test]
fn inherited_humidity_limits_that_leave_no_band_are_an_error_naming_the_unit() {
    // The org's humidity_max 70 with the unit's minimum 69 and the site's hysteresis 1.
    let text = HUMID.replace("humidity_min = 30", "humidity_min = 69");
    let err = book(&text, &AlertsConfig::default()).unwrap_err();
    assert_eq!(
        err,
        RuleError::HumidityBand {
            unit: "produce".into(),
            min: 69.0,
            max: 70.0,
            hysteresis: 1.0
        }
    );
    assert!(err.to_string().contains("\"produce\""), "{err}");
}

#[test]
fn the_alerts_table_checks_humidity_and_door_values_while_parsing() {
    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct File {
        alerts: AlertsConfig,
    }
    let err = |text: &str| toml::from_str::<File>(text).unwrap_err().to_string();
    let e = err("[alerts]\nhumidity_max = 100.5\n");
    assert!(
        e.contains("line 2") && e.contains("humidity_max") && e.contains("relative humidity"),
        "{e}"
    );
    let e = err("[alerts]\ndoor_open_after = \"0s\"\n");
    assert!(e.contains("line 2") && e.contains("at least 1s"), "{e}");
    let ok: File = toml::from_str("[alerts]\nhumidity_min = 0\nhumidity_max = 100\n").unwrap();
    assert_eq!(
        ok.alerts.humidity_hysteresis,
        Rh(DEFAULT_HUMIDITY_HYSTERESIS)
    );
}
