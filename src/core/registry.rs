//! The registry: which sensor belongs to which unit, site and organization. It lives in its own
//! TOML file so that an installer can replace it without touching the service config, and it is
//! validated as a whole when loaded (every reference exists, ids are unique), so routing never
//! meets a dangling id. Lookups are by normalised sensor id (see [`normalize_sensor_id`]).

use serde::Deserialize;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::duration::HumanDuration;
use super::error::{key_line, located, read_text, toml_error_message, ConfigError};
use super::ids::{canonical_id, nfc, normalize_sensor_id};
use super::rooms::UnitRooms;
use super::rules::{DoorOpenAfter, RestoreAfter, Rh, RuleSet};

/// The alert rule keys of a registry entry, as a [`RuleSet`] (the same keys on every level).
macro_rules! rule_set {
    ($e:expr) => {
        RuleSet {
            temp_min: $e.temp_min,
            temp_max: $e.temp_max,
            hysteresis: $e.hysteresis,
            confirm_after: $e.confirm_after.map(|d| d.0),
            restore_after: $e.restore_after,
            offline_after: $e.offline_after.map(|d| d.0),
            battery_low: $e.battery_low,
            humidity_min: $e.humidity_min.map(|v| v.0),
            humidity_max: $e.humidity_max.map(|v| v.0),
            humidity_hysteresis: $e.humidity_hysteresis.map(|v| v.0),
            door_open_after: $e.door_open_after.map(|d| d.0),
        }
    };
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RegistryFile {
    #[serde(default)]
    org: Vec<OrgEntry>,
    #[serde(default)]
    site: Vec<SiteEntry>,
    #[serde(default)]
    unit: Vec<UnitEntry>,
    #[serde(default)]
    sensor: Vec<SensorEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OrgEntry {
    id: String,
    name: Option<String>,
    // Alert rule keys (see crate::core::rules); unset keys inherit from the level above.
    temp_min: Option<f64>,
    temp_max: Option<f64>,
    hysteresis: Option<f64>,
    confirm_after: Option<HumanDuration>,
    restore_after: Option<RestoreAfter>,
    offline_after: Option<HumanDuration>,
    battery_low: Option<f64>,
    humidity_min: Option<Rh>,
    humidity_max: Option<Rh>,
    humidity_hysteresis: Option<Rh>,
    door_open_after: Option<DoorOpenAfter>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SiteEntry {
    id: String,
    org: String,
    name: Option<String>,
    // Alert rule keys (see crate::core::rules); unset keys inherit from the level above.
    temp_min: Option<f64>,
    temp_max: Option<f64>,
    hysteresis: Option<f64>,
    confirm_after: Option<HumanDuration>,
    restore_after: Option<RestoreAfter>,
    offline_after: Option<HumanDuration>,
    battery_low: Option<f64>,
    humidity_min: Option<Rh>,
    humidity_max: Option<Rh>,
    humidity_hysteresis: Option<Rh>,
    door_open_after: Option<DoorOpenAfter>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UnitEntry {
    id: String,
    site: String,
    name: Option<String>,
    // Alert rule keys (see crate::core::rules); unset keys inherit from the level above.
    temp_min: Option<f64>,
    temp_max: Option<f64>,
    hysteresis: Option<f64>,
    confirm_after: Option<HumanDuration>,
    restore_after: Option<RestoreAfter>,
    offline_after: Option<HumanDuration>,
    battery_low: Option<f64>,
    humidity_min: Option<Rh>,
    humidity_max: Option<Rh>,
    humidity_hysteresis: Option<Rh>,
    door_open_after: Option<DoorOpenAfter>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SensorEntry {
    id: String,
    unit: String,
}

/// A unit with its place in the hierarchy. Ids are `Arc<str>` so routing clones are cheap.
#[derive(Debug, Clone)]
pub struct Unit {
    pub id: Arc<str>,
    pub site: Arc<str>,
    pub org: Arc<str>,
    pub name: Option<String>,
    /// The unit's rooms, named once here rather than per reading.
    pub rooms: UnitRooms,
}

#[derive(Debug, Clone)]
pub struct Site {
    pub id: Arc<str>,
    pub org: Arc<str>,
    pub name: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Org {
    pub id: Arc<str>,
    pub name: Option<String>,
}

/// The loaded, validated registry. Immutable: a reload builds a new one.
#[derive(Debug, Default)]
pub struct Registry {
    orgs: HashMap<Arc<str>, Org>,
    sites: HashMap<Arc<str>, Site>,
    units: HashMap<Arc<str>, Arc<Unit>>,
    /// normalised sensor id → unit
    sensors: HashMap<String, Arc<Unit>>,
    /// Alert rule keys set on entries, by entry id (entries that set none are absent).
    org_rules: HashMap<Arc<str>, RuleSet>,
    site_rules: HashMap<Arc<str>, RuleSet>,
    unit_rules: HashMap<Arc<str>, RuleSet>,
}

impl Registry {
    pub fn load(path: &Path) -> Result<Registry, ConfigError> {
        let text = read_text(path)?;
        Self::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Registry, ConfigError> {
        let file: RegistryFile = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: toml_error_message(text, &e),
        })?;
        Self::build(file, path, text)
    }

    fn build(file: RegistryFile, path: &Path, text: &str) -> Result<Registry, ConfigError> {
        let err = |key: String, message: String| ConfigError::Invalid {
            path: PathBuf::from(path),
            key: located(text, &key),
            message,
        };
        let entry = |kind, index| Entry {
            kind,
            index,
            path,
            text,
        };
        let mut reg = Registry::default();
        for (i, o) in file.org.into_iter().enumerate() {
            let id: Arc<str> = canonical_id(&o.id)
                .map_err(|m| err(format!("org[{i}].id"), m))?
                .into();
            if reg.orgs.contains_key(&id) {
                return Err(err(
                    format!("org[{i}].id"),
                    format!("duplicate org id {id:?}"),
                ));
            }
            check_rules(&mut reg.org_rules, &id, rule_set!(o), &entry("org", i))?;
            reg.orgs.insert(id.clone(), Org { id, name: o.name });
        }
        for (i, s) in file.site.into_iter().enumerate() {
            let id: Arc<str> = canonical_id(&s.id)
                .map_err(|m| err(format!("site[{i}].id"), m))?
                .into();
            let org = reg.orgs.get(&*nfc(&s.org)).ok_or_else(|| {
                err(
                    format!("site[{i}].org"),
                    format!("no org with id {:?}", s.org),
                )
            })?;
            if reg.sites.contains_key(&id) {
                return Err(err(
                    format!("site[{i}].id"),
                    format!("duplicate site id {id:?}"),
                ));
            }
            check_rules(&mut reg.site_rules, &id, rule_set!(s), &entry("site", i))?;
            let site = Site {
                id: id.clone(),
                org: org.id.clone(),
                name: s.name,
            };
            reg.sites.insert(id, site);
        }
        for (i, u) in file.unit.into_iter().enumerate() {
            let id: Arc<str> = canonical_id(&u.id)
                .map_err(|m| err(format!("unit[{i}].id"), m))?
                .into();
            let site = reg.sites.get(&*nfc(&u.site)).ok_or_else(|| {
                err(
                    format!("unit[{i}].site"),
                    format!("no site with id {:?}", u.site),
                )
            })?;
            if reg.units.contains_key(&id) {
                return Err(err(
                    format!("unit[{i}].id"),
                    format!("duplicate unit id {id:?}"),
                ));
            }
            check_rules(&mut reg.unit_rules, &id, rule_set!(u), &entry("unit", i))?;
            let unit = Arc::new(Unit {
                rooms: UnitRooms::new(&site.org, &site.id, &id),
                id: id.clone(),
                site: site.id.clone(),
                org: site.org.clone(),
                name: u.name,
            });
            reg.units.insert(id, unit);
        }
        let mut seen = HashSet::new();
        for (i, s) in file.sensor.into_iter().enumerate() {
            let key = normalize_sensor_id(&s.id)
                .map_err(|m| err(format!("sensor[{i}].id"), m.to_string()))?;
            let unit = reg.units.get(&*nfc(&s.unit)).ok_or_else(|| {
                err(
                    format!("sensor[{i}].unit"),
                    format!("no unit with id {:?}", s.unit),
                )
            })?;
            if !seen.insert(key.clone()) {
                return Err(err(
                    format!("sensor[{i}].id"),
                    format!(
                        "sensor {:?} is listed twice (a sensor belongs to one unit)",
                        s.id
                    ),
                ));
            }
            reg.sensors.insert(key, unit.clone());
        }
        Ok(reg)
    }

    /// The unit a sensor reports for, by its id in any spelling (see [`normalize_sensor_id`]).
    pub fn unit_for_sensor(&self, sensor_id: &str) -> Option<&Arc<Unit>> {
        match normalize_sensor_id(sensor_id) {
            Ok(key) => self.sensors.get(&key),
            Err(_) => None,
        }
    }

    /// The unit a sensor reports for, by its already normalised id (what decoders give): the
    /// lookup of the hot path, with no normalising and no allocation.
    pub fn unit_for_key(&self, key: &str) -> Option<&Arc<Unit>> {
        self.sensors.get(key)
    }

    /// The unit, site or organization of that id, compared in NFC (see [`super::ids::nfc`]).
    pub fn unit(&self, id: &str) -> Option<&Arc<Unit>> {
        self.units.get(&*nfc(id))
    }

    pub fn site(&self, id: &str) -> Option<&Site> {
        self.sites.get(&*nfc(id))
    }

    pub fn org(&self, id: &str) -> Option<&Org> {
        self.orgs.get(&*nfc(id))
    }

    /// Site ids with their organization.
    pub fn sites_with_org(&self) -> impl Iterator<Item = (&str, &str)> {
        self.sites.values().map(|s| (&*s.id, &*s.org))
    }

    pub fn units(&self) -> impl Iterator<Item = &Arc<Unit>> {
        self.units.values()
    }

    /// Registered sensor ids (normalised) with their unit.
    pub fn sensors(&self) -> impl Iterator<Item = (&str, &Arc<Unit>)> {
        self.sensors.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Alert rule keys set on the `[[org]]` entry `id`, if it sets any.
    pub fn org_rules(&self, id: &str) -> Option<&RuleSet> {
        self.org_rules.get(id)
    }

    pub fn site_rules(&self, id: &str) -> Option<&RuleSet> {
        self.site_rules.get(id)
    }

    pub fn unit_rules(&self, id: &str) -> Option<&RuleSet> {
        self.unit_rules.get(id)
    }

    pub fn counts(&self) -> (usize, usize, usize, usize) {
        (
            self.orgs.len(),
            self.sites.len(),
            self.units.len(),
            self.sensors.len(),
        )
    }
}

/// Where an entry is written, for errors that the TOML parser cannot place (a check of two
/// keys together).
struct Entry<'a> {
    kind: &'static str,
    index: usize,
    path: &'a Path,
    text: &'a str,
}

impl Entry<'_> {
    /// `line L: kind[i].key` when the key's line is found, else `kind[i].key`.
    fn key(&self, key: &str) -> String {
        let name = format!("{}[{}].{key}", self.kind, self.index);
        match key_line(self.text, self.kind, self.index, key) {
            Some(line) => format!("line {line}: {name}"),
            None => name,
        }
    }
}

/// Validates the rule keys of one entry on their own and keeps them when any is set.
fn check_rules(
    into: &mut HashMap<Arc<str>, RuleSet>,
    id: &Arc<str>,
    rules: RuleSet,
    at: &Entry,
) -> Result<(), ConfigError> {
    rules
        .check()
        .map_err(|(key, message)| ConfigError::Invalid {
            path: at.path.to_owned(),
            key: at.key(key),
            message,
        })?;
    if rules != RuleSet::default() {
        into.insert(id.clone(), rules);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
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
}
