//! Reload without a restart (SIGHUP): re-read the config file and the registry, and put the
//! reloadable parts in force while sockets and the MQTT session stay up. An invalid new file is
//! rejected with one clear log line and reported by `/health`; the old one stays in force.
//!
//! Reloadable: the registry (units, sites, sensors; alert rules with it), `log.level`, and
//! `mqtt.subscriptions`. Every other key needs a restart: the config sections are compared by
//! value, and each section that changed outside those keys is named in a warning.

use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tracing::error;

use super::systemd;
use crate::config::Config;
use crate::core::health::MqttHealth;
use crate::core::health::ReloadLog;
use crate::core::registry::Registry;
use crate::core::rooms;
use crate::decode::Subscription;
use crate::delivery::{to_json, Fanout, Payload};
use crate::ingest::MqttConfig;
use crate::pipeline::hub::Hub;
use crate::realtime::Realtime;

/// A setter for the log filter, provided by main (tests have none).
pub type LogLevelSetter = Box<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

pub struct Reloader {
    pub log: Arc<ReloadLog>,
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
    pub fn new(log: Arc<ReloadLog>, log_level: Option<LogLevelSetter>) -> Self {
        Reloader { log, log_level }
    }

    /// Loads and validates both files (on a blocking thread: they are files, and whatever a
    /// file holds, a failure or even a panic there is a refused reload, never a dead reload
    /// task); on success applies them and returns what changed.
    pub async fn reload(
        &self,
        current: &Config,
        hub: &Hub,
        fanout: &Fanout,
    ) -> Result<Applied, String> {
        let path = current.path.clone();
        let loaded = tokio::task::spawn_blocking(move || load(&path))
            .await
            .unwrap_or_else(|e| Err(anyhow::anyhow!("reading the files failed: {e}")));
        let result = loaded
            .map_err(|e| format!("{e:#}"))
            .map(|(config, registry)| self.apply(current, config, registry, hub, fanout));
        self.log
            .record(result.as_ref().map(|_| ()).map_err(String::as_str));
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
        let subs_changed = old.mqtt.subscriptions != new.mqtt.subscriptions;
        let ignored = restart_only_changes(old, &new);
        if !ignored.is_empty() {
            tracing::warn!(
                sections = ?ignored,
                "config changes outside the registry, log.level and mqtt.subscriptions need a restart; ignored"
            );
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

/// What the reload loop works on.
pub struct ReloadContext {
    pub reloader: Reloader,
    pub rt: Realtime,
    pub fanout: Fanout,
    pub mqtt: Arc<MqttHealth>,
    pub subscriptions: tokio::sync::watch::Sender<Arc<[Subscription]>>,
}

/// Waits for reload requests and applies them. Each reload runs as a task of its own: if it
/// ever failed in a way nobody foresaw (a panic), that reload is reported as refused and the
/// next SIGHUP is served all the same.
pub async fn run(
    mut config: Config,
    cx: Arc<ReloadContext>,
    requests: Arc<tokio::sync::Notify>,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = requests.notified() => {}
        }
        systemd::notify(&[sd_notify::NotifyState::Reloading]);
        let (current, job) = (config.clone(), cx.clone());
        match tokio::spawn(async move { reload_once(&current, &job).await }).await {
            Ok(Some(applied)) => config = applied,
            Ok(None) => {}
            Err(e) => {
                error!(error = %e, "reload failed unexpectedly; the previous config and registry stay in force");
                cx.reloader
                    .log
                    .record(Err("reload failed unexpectedly (see the log)"));
            }
        }
        let status = systemd::status_line(&cx.mqtt, cx.rt.connections(), 0);
        systemd::notify(&[
            sd_notify::NotifyState::Ready,
            sd_notify::NotifyState::Status(&status),
        ]);
    }
}

/// One reload: the config now in force, or `None` when the files were refused.
async fn reload_once(config: &Config, cx: &ReloadContext) -> Option<Config> {
    match cx.reloader.reload(config, &cx.rt.hub, &cx.fanout).await {
        Ok(applied) => {
            // New thresholds apply to running state; open alerts stay open.
            if let Err(e) = cx.rt.alerts.reload(&applied.registry).await {
                error!(error = %e, "alert rules of the new registry refused; previous rules stay");
            }
            if let Some(subs) = applied.subscriptions {
                cx.subscriptions.send_replace(subs);
            }
            Some(applied.config)
        }
        Err(e) => {
            error!(error = %e, "reload rejected; the previous config and registry stay in force");
            None
        }
    }
}

/// The config and its registry, checked as a whole: what the service starts from, what
/// `check-config` checks, and what SIGHUP applies (so a registry whose alert rules fail only
/// after inheritance is refused as a whole, not routed by while alerts keep the old rules).
pub fn load(path: &std::path::Path) -> anyhow::Result<(Config, Registry)> {
    let config = Config::load(path)?;
    let registry = Registry::load(&config.registry.file)?;
    // The alert rules are valid only in combination with [alerts]: check them together.
    // Such an error is about a unit's entry as a whole: name where that entry starts.
    if let Err(e) = crate::alerts::RuleBook::build(&registry, &config.alerts.defaults()) {
        let file = &config.registry.file;
        let text = std::fs::read_to_string(file).unwrap_or_default();
        let at = match crate::core::error::entry_at(&text, "unit", e.unit()) {
            Some(entry) => format!("{}: {entry}", file.display()),
            None => file.display().to_string(),
        };
        return Err(anyhow::Error::new(e).context(at));
    }
    Ok((config, registry))
}

/// The sections whose keys changed where only a restart applies them (every key but the
/// registry, `log.level` and `mqtt.subscriptions`).
pub fn restart_only_changes(a: &Config, b: &Config) -> Vec<&'static str> {
    let mqtt = |m: &MqttConfig| MqttConfig {
        subscriptions: Vec::new(),
        ..m.clone()
    };
    let mut changed = Vec::new();
    let mut check = |name: &'static str, differs: bool| {
        if differs {
            changed.push(name);
        }
    };
    check("http", a.http != b.http);
    check("mqtt", mqtt(&a.mqtt) != mqtt(&b.mqtt));
    check("auth", a.auth != b.auth);
    check("state", a.state != b.state);
    check("log", a.log.format != b.log.format);
    check("limits", a.limits != b.limits);
    check("realtime", a.realtime != b.realtime);
    check("alerts", a.alerts != b.alerts);
    check("metrics", a.metrics != b.metrics);
    check("status", a.status != b.status);
    changed
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
                rooms::unit_room(&unit.org, &unit.id),
                "unit",
                &unit.id,
            );
        }
    }
    for (id, org) in old.sites_with_org() {
        let kept = new.site(id).is_some_and(|s| s.org.as_ref() == org);
        if !kept {
            evict(fanout, rooms::site_room(org, id), "site", id);
        }
    }
}

fn evict(fanout: &Fanout, room: String, entity: &'static str, id: &str) {
    let json = Payload::Event(to_json(&serde_json::json!({
        "entity": entity,
        "entityId": id,
        "message": "Removed from the registry",
    })));
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const BASE: &str = r#"
[registry]
file = "registry.toml"
[log]
level = "info"
[[mqtt.subscriptions]]
topic = "sensors/+"
format = "json"
"#;

    fn config(extra: &str) -> Config {
        Config::parse(&format!("{BASE}{extra}"), Path::new("sensorcast.toml")).unwrap()
    }

    /// Every key outside the registry, `log.level` and `mqtt.subscriptions` is compared by
    /// value, so a change to any of them (here `[limits]`, which used to vanish silently) is
    /// named as needing a restart, and a change to the reloadable ones is not.
    #[test]
    fn every_section_but_the_reloadable_keys_needs_a_restart() {
        let base = config("");
        assert!(restart_only_changes(&base, &config("")).is_empty());
        let cases = [
            ("[limits]\nevent_rate = 5.0\n", "limits"),
            ("[http]\nshutdown_timeout = \"3s\"\n", "http"),
            ("[mqtt]\nkeep_alive = \"10s\"\n", "mqtt"),
            ("[realtime]\nhistory_readings = 5\n", "realtime"),
            ("[alerts]\nbattery_low = 10.0\n", "alerts"),
            ("[metrics]\nenabled = false\n", "metrics"),
            ("[status]\nstale_after = \"1m\"\n", "status"),
            ("[auth]\nleeway = \"5s\"\n", "auth"),
            ("[state]\ndir = \"/tmp/x\"\n", "state"),
        ];
        for (extra, section) in cases {
            assert_eq!(
                restart_only_changes(&base, &config(extra)),
                [section],
                "{extra}"
            );
        }
        let reloadable = Config::parse(
            &BASE
                .replace("level = \"info\"", "level = \"debug\"")
                .replace("sensors/+", "sensors/#"),
            Path::new("sensorcast.toml"),
        )
        .unwrap();
        assert_ne!(reloadable.mqtt.subscriptions, base.mqtt.subscriptions);
        assert!(restart_only_changes(&base, &reloadable).is_empty());
    }
}
