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

/// An `[[org]]`, `[[site]]` or `[[unit]]` entry: its id, the id of its parent, its name and the
/// alert rule keys (see crate::core::rules; unset keys inherit from the level above). One macro,
/// because serde's `deny_unknown_fields` does not work through `#[serde(flatten)]`.
macro_rules! entry_struct {
    ($name:ident $(, $parent:ident)?) => {
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        struct $name {
            id: String,
            $($parent: String,)?
            name: Option<String>,
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
    };
}
entry_struct!(OrgEntry);
entry_struct!(SiteEntry, org);
entry_struct!(UnitEntry, site);

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
        // A new entry's id: valid and not taken yet in its kind.
        // Kept and compared in NFC (`ids::canonical_id`).
        let new_id = |kind: &str, i: usize, id: &str, taken: &dyn Fn(&str) -> bool| {
            let id = canonical_id(id).map_err(|m| err(format!("{kind}[{i}].id"), m))?;
            match taken(&id) {
                true => Err(err(
                    format!("{kind}[{i}].id"),
                    format!("duplicate {kind} id {id:?}"),
                )),
                false => Ok(Arc::<str>::from(id)),
            }
        };
        // The entry its `key` names, which must exist.
        fn parent<'m, T>(
            map: &'m HashMap<Arc<str>, T>,
            id: &str,
            at: String,
            err: impl Fn(String, String) -> ConfigError,
        ) -> Result<&'m T, ConfigError> {
            let kind = at.rsplit('.').next().unwrap_or_default().to_owned();
            map.get(&*nfc(id))
                .ok_or_else(|| err(at, format!("no {kind} with id {id:?}")))
        }
        let mut reg = Registry::default();
        for (i, o) in file.org.into_iter().enumerate() {
            let id = new_id("org", i, &o.id, &|id| reg.orgs.contains_key(id))?;
            check_rules(&mut reg.org_rules, &id, rule_set!(o), &entry("org", i))?;
            reg.orgs.insert(id.clone(), Org { id, name: o.name });
        }
        for (i, s) in file.site.into_iter().enumerate() {
            let org = parent(&reg.orgs, &s.org, format!("site[{i}].org"), err)?;
            let org = org.id.clone();
            let id = new_id("site", i, &s.id, &|id| reg.sites.contains_key(id))?;
            check_rules(&mut reg.site_rules, &id, rule_set!(s), &entry("site", i))?;
            let site = Site {
                id: id.clone(),
                org,
                name: s.name,
            };
            reg.sites.insert(id, site);
        }
        for (i, u) in file.unit.into_iter().enumerate() {
            let site = parent(&reg.sites, &u.site, format!("unit[{i}].site"), err)?;
            let (site_id, org) = (site.id.clone(), site.org.clone());
            let id = new_id("unit", i, &u.id, &|id| reg.units.contains_key(id))?;
            check_rules(&mut reg.unit_rules, &id, rule_set!(u), &entry("unit", i))?;
            let unit = Arc::new(Unit {
                rooms: UnitRooms::new(&org, &site_id, &id),
                id: id.clone(),
                site: site_id,
                org,
                name: u.name,
            });
            reg.units.insert(id, unit);
        }
        let mut seen = HashSet::new();
        for (i, s) in file.sensor.into_iter().enumerate() {
            let key = normalize_sensor_id(&s.id)
                .map_err(|m| err(format!("sensor[{i}].id"), m.to_string()))?;
            let unit = parent(&reg.units, &s.unit, format!("sensor[{i}].unit"), err)?;
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
#[path = "registry_tests.rs"]
mod tests;
