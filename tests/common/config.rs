//! The files a test runs sensorcast on, built from typed values instead of patched text:
//! [`TestConfig`] is the service config (`sensorcast.toml`), [`TestRegistry`] the registry. Both
//! render TOML text that is written to a directory and read by the service's own loaders, so
//! the real config parser is exercised, and a test says what it changes
//! (`.limit("event_rate", 5.0)`) rather than which text it expects to find and replace.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;

use toml::{Table, Value};

use super::broker::Broker;

/// The HS256 secret of the test config (`jwt.secret` in its directory).
pub const SECRET: &str = "integration-test-secret-0123456789";

/// A service config for a test: the defaults below, then whatever the test sets.
///
/// Defaults: HTTP on `127.0.0.1:0` (the starter picks the real port), a short shutdown
/// timeout, the test broker with a unique client id and fast reconnects, two subscriptions
/// (`v3/+/devices/+/up` as `ttn-v3`, `sensors/+` as `json`, QoS 1), JWT auth with [`SECRET`],
/// the [`TestRegistry::standard`] registry, state in the directory, metrics off (binaries must
/// not contend for the default port; an in-process service gets a listener of its own).
#[derive(Clone, Debug)]
pub struct TestConfig {
    /// Every section by name; `mqtt.subscriptions` lives in `subscriptions`.
    sections: BTreeMap<String, Table>,
    subscriptions: Vec<Table>,
    registry: String,
}

impl TestConfig {
    /// The defaults, against `broker`.
    pub fn new(broker: &Broker) -> Self {
        Self::for_url(&broker.url())
    }

    /// The defaults, against the MQTT URL `url` (a port nothing listens on, a TLS URL, or
    /// something that is no URL at all for a test of `check-config`).
    pub fn for_url(url: &str) -> Self {
        let config = TestConfig {
            sections: BTreeMap::new(),
            subscriptions: Vec::new(),
            registry: TestRegistry::standard().render(),
        };
        config
            .http("listen", "127.0.0.1:0")
            .http("shutdown_timeout", "3s")
            .mqtt("url", url)
            .mqtt(
                "client_id",
                format!("sensorcast-test-{}", fastrand::u64(..)),
            )
            .mqtt("reconnect_min", "100ms")
            .mqtt("reconnect_max", "1s")
            .subscription("v3/+/devices/+/up", "ttn-v3")
            .subscription("sensors/+", "json")
            .set("auth", "mode", "jwt")
            .set("auth", "jwt_secret_file", "jwt.secret")
            .set("registry", "file", "registry.toml")
            .set("state", "dir", "state")
            .set("metrics", "enabled", false)
    }

    /// Sets `key` of `[section]`, any section and any key (an unknown one too, to see it
    /// refused).
    pub fn set(mut self, section: &str, key: &str, value: impl Into<Value>) -> Self {
        self.sections
            .entry(section.to_owned())
            .or_default()
            .insert(key.to_owned(), value.into());
        self
    }

    /// Sets a key of `[http]` (`ready_timeout`, `cors_origins`, ...).
    pub fn http(self, key: &str, value: impl Into<Value>) -> Self {
        self.set("http", key, value)
    }

    /// Sets a key of `[mqtt]` (`reconnect_min`, ...).
    pub fn mqtt(self, key: &str, value: impl Into<Value>) -> Self {
        self.set("mqtt", key, value)
    }

    /// Sets a key of `[limits]` (`max_connections`, `event_rate`, `socket_buffer`, ...).
    pub fn limit(self, key: &str, value: impl Into<Value>) -> Self {
        self.set("limits", key, value)
    }

    /// Sets a key of `[realtime]` (`stall_timeout`, `batch`, `history_readings`, ...).
    pub fn realtime(self, key: &str, value: impl Into<Value>) -> Self {
        self.set("realtime", key, value)
    }

    /// Sets a key of `[alerts]` (`temp_max`, `confirm_after`, `webhooks`, ...).
    pub fn alerts(self, key: &str, value: impl Into<Value>) -> Self {
        self.set("alerts", key, value)
    }

    /// Authentication off: every socket belongs to `dev_org`, as in config/dev.toml.
    pub fn auth_none(mut self, dev_org: &str) -> Self {
        self.sections.remove("auth");
        self.set("auth", "mode", "none")
            .set("auth", "dev_org", dev_org)
    }

    /// JWTs verified against a public key (ES256 or RS256) instead of [`SECRET`].
    pub fn auth_public_key(mut self, pem: &Path) -> Self {
        self.sections.remove("auth");
        self.set("auth", "mode", "jwt").set(
            "auth",
            "jwt_public_key_file",
            pem.display().to_string(),
        )
    }

    /// MQTT over TLS: the CA to trust and the client certificate and key to present.
    pub fn mqtt_tls(self, ca: &Path, cert: &Path, key: &Path) -> Self {
        self.mqtt("ca_file", ca.display().to_string())
            .mqtt("cert_file", cert.display().to_string())
            .mqtt("key_file", key.display().to_string())
    }

    /// Keeps the service's state (open alerts) in `dir`, so that it outlives one start.
    pub fn state_dir(self, dir: &Path) -> Self {
        self.set("state", "dir", dir.display().to_string())
    }

    /// The address `[http] listen` names.
    pub fn listen(self, addr: SocketAddr) -> Self {
        self.http("listen", addr.to_string())
    }

    /// Adds a `[[mqtt.subscriptions]]` entry with QoS 1.
    pub fn subscription(mut self, topic: &str, format: &str) -> Self {
        let mut sub = Table::new();
        sub.insert("topic".into(), topic.into());
        sub.insert("format".into(), format.into());
        sub.insert("qos".into(), 1.into());
        self.subscriptions.push(sub);
        self
    }

    /// Sets `key` of the `index`th subscription (0 is the `ttn-v3` one, 1 the `json` one).
    pub fn subscription_key(mut self, index: usize, key: &str, value: impl Into<Value>) -> Self {
        self.subscriptions[index].insert(key.to_owned(), value.into());
        self
    }

    /// The registry written beside the config.
    pub fn registry(mut self, registry: &TestRegistry) -> Self {
        self.registry = registry.render();
        self
    }

    /// A registry given as text, for tests of what the loader says about a broken one (its
    /// line numbers are the test's).
    pub fn registry_text(mut self, text: &str) -> Self {
        self.registry = text.to_owned();
        self
    }

    /// The MQTT client id (unique per config), to find in the broker's log.
    pub fn client_id(&self) -> &str {
        self.sections["mqtt"]["client_id"]
            .as_str()
            .expect("client_id is text")
    }

    /// The `sensorcast.toml` text.
    pub fn render(&self) -> String {
        let mut doc: Table = self
            .sections
            .iter()
            .map(|(name, table)| (name.clone(), Value::Table(table.clone())))
            .collect();
        let subscriptions = self.subscriptions.iter().cloned().map(Value::Table);
        doc.entry("mqtt")
            .or_insert_with(|| Value::Table(Table::new()))
            .as_table_mut()
            .expect("[mqtt] is a table")
            .insert(
                "subscriptions".into(),
                Value::Array(subscriptions.collect()),
            );
        let text = toml::to_string(&doc).expect("a test config renders as TOML");
        format!("# Written by tests/common/config.rs for one test.\n{text}")
    }

    /// The registry text.
    pub fn registry_rendered(&self) -> &str {
        &self.registry
    }

    /// Writes `sensorcast.toml`, `registry.toml` and `jwt.secret` into `dir`.
    pub fn write_to(&self, dir: &Path) {
        std::fs::write(dir.join("sensorcast.toml"), self.render()).expect("write sensorcast.toml");
        std::fs::write(dir.join("registry.toml"), &self.registry).expect("write registry.toml");
        std::fs::write(dir.join("jwt.secret"), format!("{SECRET}\n")).expect("write jwt.secret");
    }

    /// A fresh directory with the three files, as an installer lays them out.
    pub fn write_dir(&self) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        self.write_to(dir.path());
        dir
    }
}

/// A registry for a test: orgs, sites, units and sensors, each with its keys (alert rules).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TestRegistry {
    /// `(kind, entry)`, kind being `org`, `site`, `unit` or `sensor`; each entry has an `id`.
    entries: Vec<(&'static str, Table)>,
}

impl TestRegistry {
    /// Two organizations; o1 has two sites. Sensors: a TTN dev_eui and three json ids.
    ///
    /// ```text
    /// o1: s1: u1 (AC1F09FFFE01454E, probe-1)    o2: s3: u3 (probe-3)
    ///     s2: u2 (probe-2)
    /// ```
    pub fn standard() -> Self {
        TestRegistry::default()
            .org("o1")
            .org("o2")
            .site("s1", "o1")
            .site("s2", "o1")
            .site("s3", "o2")
            .unit("u1", "s1")
            .unit("u2", "s2")
            .unit("u3", "s3")
            .sensor("AC1F09FFFE01454E", "u1")
            .sensor("probe-1", "u1")
            .sensor("probe-2", "u2")
            .sensor("probe-3", "u3")
    }

    pub fn org(self, id: &str) -> Self {
        self.entry("org", id, None)
    }

    pub fn site(self, id: &str, org: &str) -> Self {
        self.entry("site", id, Some(("org", org)))
    }

    pub fn unit(self, id: &str, site: &str) -> Self {
        self.entry("unit", id, Some(("site", site)))
    }

    pub fn sensor(self, id: &str, unit: &str) -> Self {
        self.entry("sensor", id, Some(("unit", unit)))
    }

    /// Removes the `kind` (`org`, `site`, `unit`, `sensor`) called `id`; it must be there.
    pub fn without(mut self, kind: &str, id: &str) -> Self {
        let before = self.entries.len();
        self.entries
            .retain(|(k, e)| !(*k == kind && e["id"].as_str() == Some(id)));
        assert_ne!(before, self.entries.len(), "no {kind} {id:?} to remove");
        self
    }

    /// Sets `key` (an alert rule: `temp_min`, `restore_after`, ...) of the `kind` called `id`.
    pub fn set(mut self, kind: &str, id: &str, key: &str, value: impl Into<Value>) -> Self {
        let (_, entry) = self
            .entries
            .iter_mut()
            .find(|(k, e)| *k == kind && e["id"].as_str() == Some(id))
            .unwrap_or_else(|| panic!("no {kind} {id:?} to set {key} on"));
        entry.insert(key.to_owned(), value.into());
        self
    }

    /// The `registry.toml` text.
    pub fn render(&self) -> String {
        let mut doc = Table::new();
        for kind in ["org", "site", "unit", "sensor"] {
            let list: Vec<Value> = self
                .entries
                .iter()
                .filter(|(k, _)| *k == kind)
                .map(|(_, e)| Value::Table(e.clone()))
                .collect();
            if !list.is_empty() {
                doc.insert(kind.into(), Value::Array(list));
            }
        }
        toml::to_string(&doc).expect("a test registry renders as TOML")
    }

    fn entry(mut self, kind: &'static str, id: &str, parent: Option<(&str, &str)>) -> Self {
        let mut e = Table::new();
        e.insert("id".into(), id.into());
        if let Some((key, parent)) = parent {
            e.insert(key.into(), parent.into());
        }
        self.entries.push((kind, e));
        self
    }
}
