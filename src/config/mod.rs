//! The service configuration: one TOML file, a documented set of environment overrides, and
//! validation done while loading, so a bad file is one clear error naming file, line and key
//! instead of a surprise at run time. Secrets (MQTT password, JWT secret) are read from a file or
//! an environment variable into [`Secret`], whose `Debug` never shows them.
//!
//! Each layer owns the section it is configured by (`ingest::MqttConfig`, `auth::AuthConfig`,
//! `alerts::AlertsConfig`, ...) and checks it on its own; this module composes them, adds the
//! service's own sections (`[http]`, `[registry]`, `[state]`, `[log]`), the environment
//! overrides and the secrets, and checks what spans sections.

mod env;
#[cfg(test)]
mod tests;

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use crate::core::error::ConfigError;
pub use crate::core::secret::Secret;
pub use env::ENV_OVERRIDES;

use crate::alerts::AlertsConfig;
use crate::auth::{AuthConfig, AuthMode};
use crate::cluster::ClusterConfig;
use crate::core::duration::duration_str;
use crate::core::error::{located, read_text, toml_error_message};
use crate::ingest::MqttConfig;
use crate::realtime::{LimitsConfig, RealtimeConfig};
use crate::storage::StorageConfig;
use crate::web::{MetricsConfig, StatusConfig};

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub http: HttpConfig,
    #[serde(default)]
    pub mqtt: MqttConfig,
    #[serde(default)]
    pub auth: AuthConfig,
    pub registry: RegistryConfig,
    #[serde(default)]
    pub state: StateConfig,
    #[serde(default)]
    pub log: LogConfig,
    #[serde(default)]
    pub limits: LimitsConfig,
    #[serde(default)]
    pub realtime: RealtimeConfig,
    /// Alert rule defaults (the last level of inheritance) and the alert engine's knobs.
    #[serde(default)]
    pub alerts: AlertsConfig,
    #[serde(default)]
    pub metrics: MetricsConfig,
    #[serde(default)]
    pub status: StatusConfig,
    /// Cluster mode (several instances on Redis); absent on a single box.
    #[serde(default)]
    pub cluster: Option<ClusterConfig>,
    /// The history store (docs/storage.md).
    #[serde(default)]
    pub storage: StorageConfig,
    /// The directory of the config file; relative paths inside it resolve against this.
    #[serde(skip)]
    pub base_dir: PathBuf,
    /// The file this was loaded from (re-read on reload).
    #[serde(skip)]
    pub path: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    pub listen: SocketAddr,
    /// Origins allowed by CORS (credentials allowed). Empty: same-origin only.
    pub cors_origins: Vec<String>,
    /// How long shutdown waits for sockets and in-flight work before exiting anyway.
    #[serde(with = "duration_str")]
    pub shutdown_timeout: Duration,
    /// systemd READY=1 is sent once MQTT is subscribed, or after this long (degraded).
    #[serde(with = "duration_str")]
    pub ready_timeout: Duration,
    /// A client must send a whole request header within this long after connecting (or after
    /// the previous response on a kept-alive connection), or the connection is closed.
    #[serde(with = "duration_str")]
    pub header_timeout: Duration,
    /// A connection from which nothing was read for this long is closed. Must be longer than
    /// `realtime.ping_interval + realtime.ping_timeout` (a live Socket.io client answers every
    /// ping).
    #[serde(with = "duration_str")]
    pub idle_timeout: Duration,
    /// HTTP connections open at once (websockets included); more are answered 503 and closed.
    /// Never more than the fd limit less a reserve (`core::connections::FD_RESERVE`); unset:
    /// exactly that.
    pub max_connections: Option<usize>,
}

impl HttpConfig {
    /// `Err((key under http., message))`; the idle timeout must outlast a Socket.io heartbeat.
    pub fn validate(&self, realtime: &RealtimeConfig) -> Result<(), (String, String)> {
        if self.header_timeout.is_zero() {
            return Err(("header_timeout".into(), "must be above 0".into()));
        }
        let heartbeat = realtime.ping_interval + realtime.ping_timeout;
        if self.idle_timeout <= heartbeat {
            return Err((
                "idle_timeout".into(),
                format!(
                    "must be longer than realtime.ping_interval + realtime.ping_timeout ({}), or live sockets are cut",
                    humantime::format_duration(heartbeat)
                ),
            ));
        }
        if self.max_connections == Some(0) {
            return Err(("max_connections".into(), "must be above 0".into()));
        }
        Ok(())
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: "0.0.0.0:3000".parse().expect("static address"),
            cors_origins: Vec::new(),
            shutdown_timeout: Duration::from_secs(10),
            ready_timeout: Duration::from_secs(30),
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
            max_connections: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    pub file: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StateConfig {
    pub dir: PathBuf,
}

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig {
            dir: PathBuf::from("/var/lib/sensorcast"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A tracing filter: `info`, or `sensorcast=debug,info`.
    pub level: String,
    /// `text` (no colours when not on a terminal) or `json`.
    pub format: String,
}

impl LogConfig {
    /// `Err((key under log., message))`.
    pub fn validate(&self) -> Result<(), (String, String)> {
        if !matches!(self.format.as_str(), "text" | "json") {
            return Err(("format".into(), "expected \"text\" or \"json\"".into()));
        }
        log_filter(&self.level).map_err(|e| ("level".to_string(), e))?;
        Ok(())
    }
}

/// A log filter from `log.level` or `RUST_LOG`: comma-separated levels and `target=level`
/// directives (`info`, `sensorcast=debug,info`), as `tracing_subscriber`'s `Targets` reads them.
/// Empty items are skipped (`Targets` would read one as "errors only"); span filters
/// (`target[span]=level`, which `EnvFilter` had) are refused rather than never matching.
pub fn log_filter(s: &str) -> Result<tracing_subscriber::filter::Targets, String> {
    let items: Vec<&str> = s
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    if items.is_empty() {
        return Err(
            "expected a level or a list of target=level (\"info\", \"sensorcast=debug,info\")"
                .into(),
        );
    }
    if let Some(span) = items.iter().find(|p| p.contains('[')) {
        return Err(format!(
            "{span}: span filters are not supported, only levels and target=level"
        ));
    }
    items.join(",").parse().map_err(|e| format!("{e}"))
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
            format: "text".into(),
        }
    }
}

impl Config {
    /// Reads, overrides from the process environment, resolves paths, loads secrets, validates.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let env: Vec<(String, String)> = std::env::vars().collect();
        Self::load_with_env(path, &env)
    }

    /// [`Config::load`] with an explicit environment, so tests need not touch the process's.
    pub fn load_with_env(path: &Path, env: &[(String, String)]) -> Result<Config, ConfigError> {
        let text = read_text(path)?;
        let mut config = Self::parse(&text, path)?;
        config.apply_env(env)?;
        config.path = path.to_owned();
        config.base_dir = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        config.resolve_paths();
        config.load_secrets(path, &text)?;
        config.validate(path, &text)?;
        Ok(config)
    }

    /// Parses TOML text; the error names the line, column and key.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: toml_error_message(text, &e),
        })
    }

    fn resolve_paths(&mut self) {
        let base = self.base_dir.clone();
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        fix(&mut self.registry.file);
        fix(&mut self.state.dir);
        for p in [
            &mut self.mqtt.password_file,
            &mut self.mqtt.ca_file,
            &mut self.mqtt.cert_file,
            &mut self.mqtt.key_file,
            &mut self.auth.jwt_secret_file,
            &mut self.auth.jwt_public_key_file,
            &mut self.alerts.webhook_ca_file,
            &mut self.storage.path,
        ]
        .into_iter()
        .flatten()
        {
            fix(p);
        }
    }

    fn load_secrets(&mut self, path: &Path, text: &str) -> Result<(), ConfigError> {
        if self.mqtt.password.is_none() {
            if let Some(file) = &self.mqtt.password_file {
                let key = located(text, "mqtt.password_file");
                self.mqtt.password = Some(read_secret(path, &key, file)?);
            }
        }
        if self.auth.jwt_secret.is_none() {
            if let Some(file) = &self.auth.jwt_secret_file {
                let key = located(text, "auth.jwt_secret_file");
                self.auth.jwt_secret = Some(read_secret(path, &key, file)?);
            }
        }
        Ok(())
    }

    fn validate(&self, path: &Path, text: &str) -> Result<(), ConfigError> {
        let invalid = |key: String, message: String| ConfigError::Invalid {
            path: path.to_owned(),
            key: located(text, &key),
            message,
        };
        let section = |name: &str, checked: Result<(), (String, String)>| {
            checked.map_err(|(key, message)| {
                let key = if key.is_empty() {
                    name.to_string()
                } else {
                    format!("{name}.{key}")
                };
                invalid(key, message)
            })
        };
        section("http", self.http.validate(&self.realtime))?;
        section("mqtt", self.mqtt.validate())?;
        section("auth", self.auth.validate())?;
        section("log", self.log.validate())?;
        section("limits", self.limits.validate())?;
        section("realtime", self.realtime.validate())?;
        section("alerts", self.alerts.validate())?;
        section("http", check_origins(&self.http.cors_origins))?;
        section("registry", check_registry_file(&self.registry.file))?;
        section("state", check_state_dir(&self.state.dir))?;
        if let Some(cluster) = &self.cluster {
            section("cluster", cluster.validate())?;
        }
        section("storage", self.storage.validate())?;
        Ok(())
    }
}

/// CORS origins as a browser sends them: `scheme://host[:port]`, nothing else (a newline or a
/// path would fail only when the service starts).
fn check_origins(origins: &[String]) -> Result<(), (String, String)> {
    for (i, o) in origins.iter().enumerate() {
        let ok = axum::http::HeaderValue::from_str(o).is_ok()
            && o.parse::<axum::http::Uri>().is_ok_and(|u| {
                matches!(u.scheme_str(), Some("http" | "https"))
                    && u.host().is_some()
                    && u.path_and_query().is_none_or(|p| p.as_str() == "/")
                    && !o.ends_with('/')
            });
        if !ok {
            return Err((
                format!("cors_origins[{i}]"),
                format!("{o:?} is not an origin: write scheme://host[:port], nothing more"),
            ));
        }
    }
    Ok(())
}

/// The registry must be a regular file (`/dev/zero` or a directory would hang or fail later);
/// a missing one is reported by the registry's loader, with its path.
fn check_registry_file(file: &Path) -> Result<(), (String, String)> {
    match std::fs::metadata(file) {
        Ok(m) if !m.is_file() => Err((
            "file".into(),
            format!("{} is not a regular file", file.display()),
        )),
        _ => Ok(()),
    }
}

/// The state directory must be a directory the service can write (or, when missing, one it
/// can create): found now rather than at the first alert.
fn check_state_dir(dir: &Path) -> Result<(), (String, String)> {
    let bad = |m: String| Err(("dir".to_string(), m));
    match std::fs::metadata(dir) {
        Ok(m) if !m.is_dir() => bad(format!("{} is not a directory", dir.display())),
        Ok(_) => match tempfile::tempfile_in(dir) {
            Ok(_) => Ok(()),
            Err(e) => bad(format!("{} is not writable: {e}", dir.display())),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let parent = dir.ancestors().skip(1).find(|p| p.exists());
            match parent {
                Some(p) if p.is_dir() && tempfile::tempfile_in(p).is_ok() => Ok(()),
                _ => bad(format!(
                    "{} does not exist and cannot be created (under systemd, StateDirectory= makes it)",
                    dir.display()
                )),
            }
        }
        Err(e) => bad(format!("{}: {e}", dir.display())),
    }
}

fn read_secret(config: &Path, key: &str, file: &Path) -> Result<Secret, ConfigError> {
    let text = std::fs::read_to_string(file).map_err(|e| ConfigError::Invalid {
        path: config.to_owned(),
        key: key.into(),
        message: format!("cannot read {}: {e}", file.display()),
    })?;
    Ok(Secret::new(text.trim_end_matches(['\n', '\r'])))
}
