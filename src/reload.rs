//! Reload without a restart (SIGHUP): re-read the config file and the registry, and put the
//! reloadable parts in force while sockets and the MQTT session stay up. An invalid new file is
//! rejected with one clear log line and reported by `/health`; the old one stays in force.
//!
//! Reloadable: the registry (units, sites, sensors; alert rules with it), the log level, and the
//! MQTT subscription list. Everything else (listen address, broker URL, auth keys, limits)
//! needs a restart; a change there is logged as ignored.

use serde::Serialize;
use std::sync::{Arc, Mutex};

use crate::config::{Config, Subscription};
use crate::fanout::{to_json, Fanout};
use crate::hub::Hub;
use crate::reading::now_rfc3339;
use crate::registry::Registry;
use crate::route;

/// What `/health` shows about the last reload.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReloadStatus {
    pub attempts: u64,
    pub last_at: Option<String>,
    pub ok: Option<bool>,
    pub error: Option<String>,
}

/// A setter for the log filter, provided by main (tests have none).
pub type LogLevelSetter = Box<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

pub struct Reloader {
    pub status: Mutex<ReloadStatus>,
    pub log_level: Option<LogLevelSetter>,
}

/// What a reload changed, for the log and the tasks that must follow it.
pub struct Applied {
    /// The config now in force (its restart-only parts are not applied).
    pub config: Config,
    pub subscriptions: Option<Arc<[Subscription]>>,
    pub registry: Arc<Registry>,
}

impl Reloader {
    pub fn new(log_level: Option<LogLevelSetter>) -> Self {
        Reloader {
            status: Mutex::new(ReloadStatus::default()),
            log_level,
        }
    }

    pub fn status(&self) -> ReloadStatus {
        self.status.lock().expect("reload status lock").clone()
    }

    /// Loads and validates both files; on success applies them and returns what changed.
    pub fn reload(&self, current: &Config, hub: &Hub, fanout: &Fanout) -> Result<Applied, String> {
        let result = load(&current.path)
            .map_err(|e| format!("{e:#}"))
            .map(|(config, registry)| self.apply(current, config, registry, hub, fanout));
        let mut status = self.status.lock().expect("reload status lock");
        status.attempts += 1;
        status.last_at = Some(now_rfc3339());
        status.ok = Some(result.is_ok());
        status.error = result.as_ref().err().cloned();
        result
    }

    fn apply(
        &self,
        old: &Config,
        new: Config,
        registry: Registry,
        hub: &Hub,
        fanout: &Fanout,
    ) -> Applied {
        let registry = Arc::new(registry);
        let previous = hub.set_registry(registry.clone());
        evict_removed(&previous, &registry, fanout);
        if new.log.level != old.log.level {
            match &self.log_level {
                Some(set) => match set(&new.log.level) {
                    Ok(()) => tracing::info!(level = %new.log.level, "log level changed"),
                    Err(e) => tracing::warn!(error = %e, "log level not changed"),
                },
                None => tracing::debug!("no log level setter; level unchanged"),
            }
        }
        let subs_changed = subscriptions_differ(&old.mqtt.subscriptions, &new.mqtt.subscriptions);
        if restart_only_changed(old, &new) {
            tracing::warn!("config changes outside registry, log level and mqtt.subscriptions need a restart; ignored");
        }
        let (o, s, u, n) = registry.counts();
        tracing::info!(
            orgs = o,
            sites = s,
            units = u,
            sensors = n,
            subscriptions_changed = subs_changed,
            "reloaded"
        );
        Applied {
            subscriptions: subs_changed.then(|| new.mqtt.subscriptions.clone().into()),
            registry,
            config: new,
        }
    }
}

/// The config and its registry, checked as a whole: what the service starts from, what
/// `check-config` checks, and what SIGHUP applies (so a registry whose alert rules fail only
/// after inheritance is refused as a whole, not routed by while alerts keep the old rules).
pub fn load(path: &std::path::Path) -> anyhow::Result<(Config, Registry)> {
    use anyhow::Context;
    let config = Config::load(path)?;
    let registry = Registry::load(&config.registry.file)?;
    // The alert rules are valid only in combination with [alerts]: check them together.
    crate::alerts::RuleBook::build(&registry, &config.alerts.defaults())
        .with_context(|| format!("{}", config.registry.file.display()))?;
    Ok((config, registry))
}

fn subscriptions_differ(a: &[Subscription], b: &[Subscription]) -> bool {
    format!("{a:?}") != format!("{b:?}")
}

/// Whether anything that only a restart applies has changed.
fn restart_only_changed(a: &Config, b: &Config) -> bool {
    a.http.listen != b.http.listen
        || a.mqtt.url != b.mqtt.url
        || a.mqtt.client_id != b.mqtt.client_id
        || a.auth.mode != b.auth.mode
        || a.auth.jwt_secret != b.auth.jwt_secret
        || a.auth.jwt_public_key_file != b.auth.jwt_public_key_file
}

/// Sockets subscribed to a unit or site that the new registry no longer has (or that moved to
/// another site or organization) are told with `subscription:error` and leave its room.
fn evict_removed(old: &Registry, new: &Registry, fanout: &Fanout) {
    for unit in old.units() {
        let kept = new
            .unit(&unit.id)
            .is_some_and(|u| u.org == unit.org && u.site == unit.site);
        if !kept {
            evict(
                fanout,
                route::unit_room(&unit.org, &unit.id),
                "unit",
                &unit.id,
            );
        }
    }
    for (id, org) in old.sites_with_org() {
        let kept = new.site(id).is_some_and(|s| s.org.as_ref() == org);
        if !kept {
            evict(fanout, route::site_room(org, id), "site", id);
        }
    }
}

fn evict(fanout: &Fanout, room: String, entity: &'static str, id: &str) {
    let json = to_json(&serde_json::json!({
        "entity": entity,
        "entityId": id,
        "message": "Removed from the registry",
    }));
    let n = fanout.evict_room(room, &json);
    if n > 0 {
        tracing::info!(
            entity,
            id,
            sockets = n,
            "subscribers of a removed entity told and unsubscribed"
        );
    }
}
