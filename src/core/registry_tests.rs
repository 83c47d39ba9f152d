//! Tests of the registry file: parsing, references, ids, rule keys.

use super::*;

const GOOD: &str = r#"
[[org]]
id = "org-a"
[[org]]
id = "org-b"
[[site]]
id = "site-1"
org = "org-a"
[[site]]
id = "site-2"
org = "org-b"
[[unit]]
id = "unit-1"
site = "site-1"
[[unit]]
id = "unit-2"
site = "site-2"
[[sensor]]
id = "ac1f09fffe01454e"
unit = "unit-1"
[[sensor]]
id = "tasmota_probe"
unit = "unit-2"
"#;

fn parse(text: &str) -> Result<Registry, ConfigError> {
    Registry::parse(text, Path::new("registry.toml"))
}

#[test]
fn hex_ids_match_in_any_case_and_with_separators() {
    let reg = parse(GOOD).unwrap();
    for id in [
        "AC1F09FFFE01454E",
        "ac-1f-09-ff-fe-01-45-4e",
        "AC:1F:09:FF:FE:01:45:4E",
    ] {
        let unit = reg.unit_for_sensor(id).expect(id);
        assert_eq!(&*unit.id, "unit-1");
        assert_eq!(&*unit.org, "org-a");
        assert_eq!(&*unit.site, "site-1");
    }
    assert!(
        reg.unit_for_sensor("TASMOTA_PROBE").is_none(),
        "names stay case-sensitive"
    );
    assert_eq!(&*reg.unit_for_sensor("tasmota_probe").unwrap().org, "org-b");
}

#[test]
fn dangling_references_and_duplicates_are_errors() {
    let cases = [
        (
            GOOD.replace("org = \"org-b\"", "org = \"org-x\""),
            "site[1].org",
        ),
        (
            GOOD.replace("site = \"site-2\"", "site = \"nope\""),
            "unit[1].site",
        ),
        (
            GOOD.replace("unit = \"unit-2\"", "unit = \"nope\""),
            "sensor[1].unit",
        ),
        (
            GOOD.replace("id = \"org-b\"", "id = \"org-a\""),
            "org[1].id",
        ),
        (
            GOOD.replace("tasmota_probe", "AC-1F-09-FF-FE-01-45-4E"),
            "sensor[1].id",
        ),
        (
            GOOD.replace("id = \"unit-2\"", "id = \"unit:2\""),
            "unit[1].id",
        ),
    ];
    for (text, key) in cases {
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains(key), "{err} should name {key}");
    }
}

#[test]
fn unknown_keys_are_errors_with_a_line() {
    let err = parse("[[org]]\nid = \"a\"\ncolour = \"red\"\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("line 3"), "{err}");
    assert!(err.contains("colour"), "{err}");
}

#[test]
fn an_oversized_rule_duration_is_an_error_naming_its_key() {
    let text = GOOD.replace(
        "id = \"unit-2\"\n",
        "id = \"unit-2\"\noffline_after = \"99999999999999999999s\"\n",
    );
    let err = parse(&text).unwrap_err().to_string();
    assert!(
        err.contains("registry.toml: line 17, column 17: unit.offline_after: duration"),
        "{err}"
    );
    assert!(err.contains("too large"), "{err}");
}
