//! The service configuration: one TOML file, a documented set of environment overrides, and
//! validation done while loading, so a bad file is one clear error naming file, line and key
//! instead of a surprise at run time. Secrets (MQTT password, JWT secret) are read from a file or
//! an environment variable into [`Secret`], whose `Debug` never shows them.

use serde::Deserialize;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use crate::decode::{self, DecodeState, Format};

/// Why a configuration could not be loaded. Every variant says which file (or variable) is wrong.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: {key}: {message}")]
    Invalid {
        path: PathBuf,
        key: String,
        message: String,
    },
    #[error("environment variable {var}: {message}")]
    Env { var: String, message: String },
}

/// A secret value. `Debug` and `Display` print `MASKED`, so it can sit in a logged struct.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MASKED")
    }
}

#[derive(Debug, Clone, Deserialize)]
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
    pub alerts: crate::alerts::rules::AlertsConfig,
    #[serde(default)]
    pub metrics: MetricsConfig,
    #[serde(default)]
    pub status: StatusConfig,
    /// The directory of the config file; relative paths inside it resolve against this.
    #[serde(skip)]
    pub base_dir: PathBuf,
    /// The file this was loaded from (re-read on reload).
    #[serde(skip)]
    pub path: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
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
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: "0.0.0.0:3000".parse().expect("static address"),
            cors_origins: Vec::new(),
            shutdown_timeout: Duration::from_secs(10),
            ready_timeout: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MqttConfig {
    pub url: String,
    pub client_id: String,
    pub username: Option<String>,
    pub password_file: Option<PathBuf>,
    #[serde(skip)]
    pub password: Option<Secret>,
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    #[serde(with = "duration_str")]
    pub keep_alive: Duration,
    pub max_packet_size: usize,
    /// `false` (default) keeps the broker session across reconnects, so QoS 1 readings
    /// published while sensorcast is away are delivered when it comes back.
    pub clean_session: bool,
    #[serde(with = "duration_str")]
    pub reconnect_min: Duration,
    #[serde(with = "duration_str")]
    pub reconnect_max: Duration,
    pub subscriptions: Vec<Subscription>,
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            url: "mqtt://127.0.0.1:1883".into(),
            client_id: "sensorcast".into(),
            username: None,
            password_file: None,
            password: None,
            ca_file: None,
            cert_file: None,
            key_file: None,
            keep_alive: Duration::from_secs(30),
            max_packet_size: 256 * 1024,
            clean_session: false,
            reconnect_min: Duration::from_millis(200),
            reconnect_max: Duration::from_secs(30),
            subscriptions: Vec::new(),
        }
    }
}

/// One MQTT subscription and how to decode what arrives on it. The decoder options are checked
/// against the format while parsing, so an option the format does not use is an error naming
/// it rather than something silently ignored (docs/decoders.md lists them per format).
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "SubscriptionFile")]
pub struct Subscription {
    pub topic: String,
    pub format: Format,
    pub qos: u8,
    /// How the decoder reads this subscription's payloads.
    pub decoder: decode::Options,
    /// The decoder's memory for this subscription (Shelly's last status per device, bounded).
    /// Clones share it, as clones of the pipeline share their subscriptions.
    state: Arc<Mutex<DecodeState>>,
}

impl Subscription {
    /// A subscription with its format's defaults (tests, benches, fuzzers).
    pub fn new(topic: impl Into<String>, format: Format) -> Self {
        Subscription {
            topic: topic.into(),
            format,
            qos: default_qos(),
            decoder: decode::Options::default(),
            state: Default::default(),
        }
    }

    /// The decoder memory, locked for one `decode::decode` call. Only the MQTT task decodes, so
    /// the lock is uncontended; a lock poisoned by a panic is taken over, since the memory is a
    /// cache of what devices last said and holds nothing that must stay consistent.
    pub fn decode_state(&self) -> MutexGuard<'_, DecodeState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A `[[mqtt.subscriptions]]` table as written; [`Subscription`] is it checked.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SubscriptionFile {
    topic: String,
    format: Format,
    #[serde(default = "default_qos")]
    qos: u8,
    /// Sensor id from topic levels: `"{3}"`, `"{-1}"`, `"{1..}"` (json, value, tasmota).
    sensor_id: Option<decode::TopicTemplate>,
    /// json: a payload field (dotted path) holding the sensor id.
    sensor_id_field: Option<decode::FieldPath>,
    /// json: dotted paths to the values.
    fields: Option<decode::JsonFields>,
    /// json, value: "C" (default) or "F".
    unit: Option<decode::TempUnit>,
    /// value: the quantity the number is.
    metric: Option<decode::Metric>,
    /// ttn-v3: battery `[[volts, percent], ...]`.
    battery_curve: Option<decode::BatteryCurve>,
    /// zigbee2mqtt: Zigbee2MQTT's `base_topic` (default "zigbee2mqtt").
    base_topic: Option<String>,
}

impl TryFrom<SubscriptionFile> for Subscription {
    type Error = String;

    fn try_from(f: SubscriptionFile) -> Result<Self, String> {
        use Format::*;
        let format = f.format;
        let only = |key: &str, set: bool, formats: &[Format]| {
            if !set || formats.contains(&format) {
                return Ok(());
            }
            let names: Vec<&str> = formats.iter().map(|f| f.name()).collect();
            Err(format!(
                "{key} does not apply to format \"{}\" (only to {})",
                format.name(),
                names.join(", ")
            ))
        };
        only("sensor_id", f.sensor_id.is_some(), &[Json, Value, Tasmota])?;
        only("sensor_id_field", f.sensor_id_field.is_some(), &[Json])?;
        only("fields", f.fields.is_some(), &[Json])?;
        only("unit", f.unit.is_some(), &[Json, Value])?;
        only("metric", f.metric.is_some(), &[Value])?;
        only("battery_curve", f.battery_curve.is_some(), &[TtnV3])?;
        only("base_topic", f.base_topic.is_some(), &[Zigbee2Mqtt])?;
        if f.sensor_id.is_some() && f.sensor_id_field.is_some() {
            return Err(
                "set sensor_id (from the topic) or sensor_id_field (from the payload), not both"
                    .into(),
            );
        }
        let metric = f.metric.unwrap_or_default();
        if metric != decode::Metric::Temperature {
            return Err("metric: only \"temperature\" is supported for now; every reading needs a temperature, so a value subscription cannot carry a humidity or battery level alone".into());
        }
        if let Some(base) = &f.base_topic {
            if base.is_empty() || base.ends_with('/') || base.contains(['+', '#']) {
                return Err(format!(
                    "base_topic {base:?} must be a topic without wildcards or a trailing '/'"
                ));
            }
        }
        Ok(Subscription {
            topic: f.topic,
            format,
            qos: f.qos,
            decoder: decode::Options {
                sensor_id: f.sensor_id,
                sensor_id_field: f.sensor_id_field,
                fields: f.fields.unwrap_or_default(),
                unit: f.unit.unwrap_or_default(),
                metric,
                battery_curve: f.battery_curve,
                base_topic: f.base_topic,
            },
            state: Default::default(),
        })
    }
}

fn default_qos() -> u8 {
    1
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    #[default]
    Jwt,
    None,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    pub mode: AuthMode,
    pub jwt_secret_file: Option<PathBuf>,
    pub jwt_public_key_file: Option<PathBuf>,
    #[serde(skip)]
    pub jwt_secret: Option<Secret>,
    pub org_claim: String,
    pub role_claim: String,
    pub sites_claim: String,
    #[serde(with = "duration_str")]
    pub leeway: Duration,
    /// `mode = "none"` only: the organization every socket belongs to, and its role.
    pub dev_org: Option<String>,
    pub dev_role: String,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            mode: AuthMode::Jwt,
            jwt_secret_file: None,
            jwt_public_key_file: None,
            jwt_secret: None,
            org_claim: "org_id".into(),
            role_claim: "role".into(),
            sites_claim: "site_ids".into(),
            leeway: Duration::from_secs(30),
            dev_org: None,
            dev_role: "owner".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    pub file: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A tracing filter: `info`, or `sensorcast=debug,info`.
    pub level: String,
    /// `text` (no colours when not on a terminal) or `json`.
    pub format: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
            format: "text".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Largest MQTT payload decoded; larger ones are rejected as `too_large`.
    pub max_payload_bytes: usize,
    /// How many unknown sensors the unmapped list remembers (oldest forgotten first).
    pub unmapped_capacity: usize,
    /// Per-socket outgoing queue, in packets (socketioxide `max_buffer_size`).
    pub socket_buffer: usize,
    /// Largest client → server payload, in bytes.
    pub max_client_payload: u64,
    /// Sockets connected at once; more are refused with `Too many connections`.
    pub max_connections: usize,
    /// Sockets per token subject (`sub`); more are refused.
    pub max_connections_per_subject: usize,
    /// Rooms one socket may subscribe to.
    pub max_subscriptions_per_socket: usize,
    /// Client events per second per socket (token bucket rate) ...
    pub event_rate: f64,
    /// ... and burst size. Over the limit: `{ ok: false, error: "Rate limited" }`.
    pub event_burst: f64,
    /// Time a client has, after the transport opened, to send its Socket.io CONNECT.
    #[serde(with = "duration_str")]
    pub handshake_timeout: Duration,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_payload_bytes: 64 * 1024,
            unmapped_capacity: 256,
            socket_buffer: 256,
            max_client_payload: 16 * 1024,
            max_connections: 5000,
            max_connections_per_subject: 50,
            max_subscriptions_per_socket: 500,
            event_rate: 20.0,
            event_burst: 60.0,
            handshake_timeout: Duration::from_secs(10),
        }
    }
}

/// Subscriber guarantees: resume history, the slow-client policy, heartbeats, batching.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RealtimeConfig {
    /// Readings kept per unit for `subscribe:unit({ since })` (0 turns resume off).
    pub history_readings: usize,
    /// ... and for how long.
    #[serde(with = "duration_str")]
    pub history_age: Duration,
    /// A socket whose queue stays full (or whose writes make no progress) this long is cut off.
    #[serde(with = "duration_str")]
    pub stall_timeout: Duration,
    /// Kernel send buffer (SO_SNDBUF) per client connection, bytes; 0 = kernel autotuning.
    /// Bounds what a stalled client can pin (autotuning grows it to megabytes).
    pub socket_send_buffer: usize,
    /// How often deliveries pending for slow sockets are retried.
    #[serde(with = "duration_str")]
    pub drain_interval: Duration,
    /// Engine.io heartbeat: a client that does not answer a ping within ping_timeout is gone.
    #[serde(with = "duration_str")]
    pub ping_interval: Duration,
    #[serde(with = "duration_str")]
    pub ping_timeout: Duration,
    /// FreshTrack compatibility: also emit `sensor:readings:batch` per unit every interval.
    pub batch: bool,
    #[serde(with = "duration_str")]
    pub batch_interval: Duration,
    /// Most readings one batch holds per unit; older ones are dropped (counted).
    pub batch_max_readings: usize,
}

impl Default for RealtimeConfig {
    fn default() -> Self {
        RealtimeConfig {
            history_readings: 100,
            history_age: Duration::from_secs(15 * 60),
            stall_timeout: Duration::from_secs(30),
            socket_send_buffer: 64 * 1024,
            drain_interval: Duration::from_millis(100),
            ping_interval: Duration::from_secs(25),
            ping_timeout: Duration::from_secs(20),
            batch: false,
            batch_interval: Duration::from_secs(1),
            batch_max_readings: 1000,
        }
    }
}

/// `GET /metrics` (Prometheus text) on a listener of its own, loopback by default: no token,
/// and not reachable from outside the box unless the installer says so.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    pub enabled: bool,
    pub listen: SocketAddr,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            enabled: true,
            listen: "127.0.0.1:9464".parse().expect("static address"),
        }
    }
}

/// The status page (`GET /`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StatusConfig {
    /// A unit whose last reading is older than this is shown as `stale` (while no alert engine
    /// says otherwise).
    #[serde(with = "duration_str")]
    pub stale_after: Duration,
}

impl Default for StatusConfig {
    fn default() -> Self {
        StatusConfig {
            stale_after: Duration::from_secs(15 * 60),
        }
    }
}

/// The environment variables that override file values, and the key each one sets.
pub const ENV_OVERRIDES: &[(&str, &str)] = &[
    ("SENSORCAST_HTTP__LISTEN", "http.listen"),
    ("SENSORCAST_MQTT__URL", "mqtt.url"),
    ("SENSORCAST_MQTT__CLIENT_ID", "mqtt.client_id"),
    ("SENSORCAST_MQTT__USERNAME", "mqtt.username"),
    (
        "SENSORCAST_MQTT__PASSWORD",
        "mqtt.password (the secret itself)",
    ),
    ("SENSORCAST_AUTH__MODE", "auth.mode"),
    (
        "SENSORCAST_AUTH__JWT_SECRET",
        "auth.jwt_secret (the secret itself)",
    ),
    ("SENSORCAST_REGISTRY__FILE", "registry.file"),
    ("SENSORCAST_STATE__DIR", "state.dir"),
    ("SENSORCAST_LOG__LEVEL", "log.level"),
    ("SENSORCAST_LOG__FORMAT", "log.format"),
    ("SENSORCAST_METRICS__LISTEN", "metrics.listen"),
];

impl Config {
    /// Reads, overrides from the process environment, resolves paths, loads secrets, validates.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let env: Vec<(String, String)> = std::env::vars().collect();
        Self::load_with_env(path, &env)
    }

    /// [`Config::load`] with an explicit environment, so tests need not touch the process's.
    pub fn load_with_env(path: &Path, env: &[(String, String)]) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut config = Self::parse(&text, path)?;
        config.apply_env(env)?;
        config.path = path.to_owned();
        config.base_dir = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        config.resolve_paths();
        config.load_secrets(path)?;
        config.validate(path)?;
        Ok(config)
    }

    /// Parses TOML text; the error names the line, column and key.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: toml_error_message(text, &e),
        })
    }

    fn apply_env(&mut self, env: &[(String, String)]) -> Result<(), ConfigError> {
        for (var, value) in env {
            if !var.starts_with("SENSORCAST_") {
                continue;
            }
            let bad = |message: String| ConfigError::Env {
                var: var.clone(),
                message,
            };
            match var.as_str() {
                "SENSORCAST_HTTP__LISTEN" => {
                    self.http.listen = value
                        .parse()
                        .map_err(|e| bad(format!("not an address: {e}")))?
                }
                "SENSORCAST_MQTT__URL" => self.mqtt.url = value.clone(),
                "SENSORCAST_MQTT__CLIENT_ID" => self.mqtt.client_id = value.clone(),
                "SENSORCAST_MQTT__USERNAME" => self.mqtt.username = Some(value.clone()),
                "SENSORCAST_MQTT__PASSWORD" => self.mqtt.password = Some(Secret::new(value)),
                "SENSORCAST_AUTH__MODE" => {
                    self.auth.mode = match value.as_str() {
                        "jwt" => AuthMode::Jwt,
                        "none" => AuthMode::None,
                        _ => return Err(bad("expected \"jwt\" or \"none\"".into())),
                    }
                }
                "SENSORCAST_AUTH__JWT_SECRET" => self.auth.jwt_secret = Some(Secret::new(value)),
                "SENSORCAST_REGISTRY__FILE" => self.registry.file = PathBuf::from(value),
                "SENSORCAST_STATE__DIR" => self.state.dir = PathBuf::from(value),
                "SENSORCAST_LOG__LEVEL" => self.log.level = value.clone(),
                "SENSORCAST_LOG__FORMAT" => self.log.format = value.clone(),
                "SENSORCAST_METRICS__LISTEN" => {
                    self.metrics.listen = value
                        .parse()
                        .map_err(|e| bad(format!("not an address: {e}")))?
                }
                // The config file path itself is read by main, not here.
                "SENSORCAST_CONFIG" => {}
                // Read by the test suite (fixture folder), not by the service.
                "SENSORCAST_FIXTURES" => {}
                _ => {
                    return Err(bad(
                        "unknown override; see ENV_OVERRIDES in the README".into()
                    ))
                }
            }
        }
        Ok(())
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
        ]
        .into_iter()
        .flatten()
        {
            fix(p);
        }
    }

    fn load_secrets(&mut self, path: &Path) -> Result<(), ConfigError> {
        if self.mqtt.password.is_none() {
            if let Some(file) = &self.mqtt.password_file {
                self.mqtt.password = Some(read_secret(path, "mqtt.password_file", file)?);
            }
        }
        if self.auth.jwt_secret.is_none() {
            if let Some(file) = &self.auth.jwt_secret_file {
                self.auth.jwt_secret = Some(read_secret(path, "auth.jwt_secret_file", file)?);
            }
        }
        Ok(())
    }

    fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            path: path.to_owned(),
            key: key.into(),
            message,
        };
        crate::ingest::parse_broker_url(&self.mqtt.url)
            .map_err(|e| invalid("mqtt.url", e.to_string()))?;
        if self.mqtt.client_id.is_empty() {
            return Err(invalid("mqtt.client_id", "must not be empty".into()));
        }
        if self.mqtt.keep_alive < Duration::from_secs(1) {
            return Err(invalid("mqtt.keep_alive", "must be at least 1s".into()));
        }
        if self.mqtt.max_packet_size < 1024 {
            return Err(invalid(
                "mqtt.max_packet_size",
                "must be at least 1024".into(),
            ));
        }
        if self.mqtt.reconnect_min.is_zero() || self.mqtt.reconnect_max < self.mqtt.reconnect_min {
            return Err(invalid(
                "mqtt.reconnect_min",
                "must be > 0 and not above mqtt.reconnect_max".into(),
            ));
        }
        if self.mqtt.cert_file.is_some() != self.mqtt.key_file.is_some() {
            return Err(invalid(
                "mqtt.cert_file",
                "cert_file and key_file go together".into(),
            ));
        }
        if self.mqtt.subscriptions.is_empty() {
            return Err(invalid(
                "mqtt.subscriptions",
                "at least one is needed".into(),
            ));
        }
        for (i, s) in self.mqtt.subscriptions.iter().enumerate() {
            let key = format!("mqtt.subscriptions[{i}]");
            if s.qos > 1 {
                return Err(invalid(&format!("{key}.qos"), "must be 0 or 1".into()));
            }
            validate_topic_filter(&s.topic).map_err(|m| invalid(&format!("{key}.topic"), m))?;
        }
        match self.auth.mode {
            AuthMode::Jwt => {
                let keys = [
                    self.auth.jwt_secret.is_some(),
                    self.auth.jwt_public_key_file.is_some(),
                ];
                if keys.iter().filter(|k| **k).count() != 1 {
                    return Err(invalid(
                        "auth",
                        "jwt mode needs exactly one of jwt_secret_file (or SENSORCAST_AUTH__JWT_SECRET) and jwt_public_key_file".into(),
                    ));
                }
                if let Some(secret) = &self.auth.jwt_secret {
                    if secret.expose().len() < 16 {
                        return Err(invalid(
                            "auth.jwt_secret_file",
                            "secret is shorter than 16 bytes".into(),
                        ));
                    }
                }
            }
            AuthMode::None => {
                if self.auth.dev_org.as_deref().unwrap_or("").is_empty() {
                    return Err(invalid(
                        "auth.dev_org",
                        "mode = \"none\" needs the organization every socket belongs to".into(),
                    ));
                }
            }
        }
        if !matches!(self.log.format.as_str(), "text" | "json") {
            return Err(invalid(
                "log.format",
                "expected \"text\" or \"json\"".into(),
            ));
        }
        tracing_subscriber::EnvFilter::try_new(&self.log.level)
            .map_err(|e| invalid("log.level", e.to_string()))?;
        if self.limits.unmapped_capacity == 0 || self.limits.socket_buffer == 0 {
            return Err(invalid("limits", "capacities must be above 0".into()));
        }
        if !(self.limits.event_rate > 0.0 && self.limits.event_burst >= 1.0) {
            return Err(invalid(
                "limits.event_rate",
                "event_rate must be > 0 and event_burst >= 1".into(),
            ));
        }
        let r = &self.realtime;
        if r.drain_interval.is_zero() || r.batch_interval.is_zero() || r.stall_timeout.is_zero() {
            return Err(invalid(
                "realtime",
                "drain_interval, batch_interval and stall_timeout must be above 0".into(),
            ));
        }
        self.alerts
            .validate()
            .map_err(|(key, m)| invalid(&format!("alerts.{key}"), m))?;
        Ok(())
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

/// MQTT topic filter rules: `#` only last and alone in its level, `+` alone in its level.
fn validate_topic_filter(topic: &str) -> Result<(), String> {
    if topic.is_empty() {
        return Err("must not be empty".into());
    }
    let levels: Vec<&str> = topic.split('/').collect();
    for (i, level) in levels.iter().enumerate() {
        if level.contains('#') && (*level != "#" || i + 1 != levels.len()) {
            return Err("'#' must be the whole last level".into());
        }
        if level.contains('+') && *level != "+" {
            return Err("'+' must be a whole level".into());
        }
    }
    Ok(())
}

/// Formats a TOML error as `line L, column C: message`, keeping toml's own key naming.
pub(crate) fn toml_error_message(text: &str, e: &toml::de::Error) -> String {
    let message = e.message().trim().to_string();
    match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before
                .rfind('\n')
                .map_or(before.len(), |n| before.len() - n - 1)
                + 1;
            format!("line {line}, column {column}: {message}")
        }
        None => message,
    }
}

/// Durations as human strings: `"500ms"`, `"90s"`, `"5m"`, `"1h"`.
pub mod duration_str {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        parse(&s).map_err(serde::de::Error::custom)
    }

    pub fn parse(s: &str) -> Result<Duration, String> {
        let s = s.trim();
        let split = s
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .ok_or_else(|| format!("duration {s:?} needs a unit (ms, s, m, h)"))?;
        let (num, unit) = s.split_at(split);
        let n: f64 = num
            .parse()
            .map_err(|_| format!("duration {s:?} does not start with a number"))?;
        let secs = match unit {
            "ms" => n / 1000.0,
            "s" => n,
            "m" => n * 60.0,
            "h" => n * 3600.0,
            "d" => n * 86400.0,
            _ => return Err(format!("duration {s:?}: unknown unit {unit:?}")),
        };
        if !secs.is_finite() || secs < 0.0 {
            return Err(format!("duration {s:?} out of range"));
        }
        Ok(Duration::from_secs_f64(secs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    const MINIMAL: &str = r#"
[mqtt]
url = "mqtt://127.0.0.1:1883"
password_file = "mqtt.pw"
[[mqtt.subscriptions]]
topic = "sensors/+"
format = "json"
[auth]
jwt_secret_file = "secrets/jwt"
[registry]
file = "registry.toml"
"#;

    fn setup() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("secrets")).unwrap();
        write(dir.path(), "mqtt.pw", "hunter2-mqtt\n");
        write(
            &dir.path().join("secrets"),
            "jwt",
            "s3cret-jwt-value-0123456789\n",
        );
        let path = write(dir.path(), "sensorcast.toml", MINIMAL);
        (dir, path)
    }

    #[test]
    fn relative_paths_resolve_against_the_config_file_and_secrets_stay_masked() {
        let (dir, path) = setup();
        let c = Config::load_with_env(&path, &[]).unwrap();
        assert_eq!(c.registry.file, dir.path().join("registry.toml"));
        assert_eq!(
            c.auth.jwt_secret.as_ref().unwrap().expose(),
            "s3cret-jwt-value-0123456789"
        );
        assert_eq!(c.mqtt.password.as_ref().unwrap().expose(), "hunter2-mqtt");
        let debug = format!("{c:?}");
        assert!(
            !debug.contains("s3cret") && !debug.contains("hunter2"),
            "{debug}"
        );
        assert!(debug.contains("MASKED"));
        assert_eq!(c.mqtt.subscriptions[0].qos, 1);
    }

    #[test]
    fn environment_overrides_win_and_unknown_ones_are_errors() {
        let (_dir, path) = setup();
        let env = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let c = Config::load_with_env(
            &path,
            &env(&[
                ("SENSORCAST_MQTT__URL", "mqtts://broker:8884"),
                ("SENSORCAST_HTTP__LISTEN", "127.0.0.1:9999"),
                ("SENSORCAST_LOG__LEVEL", "debug"),
                ("SENSORCAST_AUTH__JWT_SECRET", "from-the-environment-0123"),
                ("UNRELATED", "x"),
            ]),
        )
        .unwrap();
        assert_eq!(c.mqtt.url, "mqtts://broker:8884");
        assert_eq!(c.http.listen.port(), 9999);
        assert_eq!(c.log.level, "debug");
        assert_eq!(
            c.auth.jwt_secret.unwrap().expose(),
            "from-the-environment-0123"
        );
        let err = Config::load_with_env(&path, &env(&[("SENSORCAST_MQTT_URL", "x")])).unwrap_err();
        assert!(err.to_string().contains("SENSORCAST_MQTT_URL"), "{err}");
        let err =
            Config::load_with_env(&path, &env(&[("SENSORCAST_HTTP__LISTEN", "nope")])).unwrap_err();
        assert!(err.to_string().contains("not an address"), "{err}");
    }

    #[test]
    fn errors_name_file_line_and_key() {
        let (dir, _) = setup();
        let bad = write(
            dir.path(),
            "bad.toml",
            &MINIMAL.replace("[auth]", "[auth]\nmdoe = \"jwt\""),
        );
        let err = Config::load_with_env(&bad, &[]).unwrap_err().to_string();
        assert!(
            err.contains("bad.toml") && err.contains("line 9") && err.contains("mdoe"),
            "{err}"
        );
        let none = write(
            dir.path(),
            "none.toml",
            &MINIMAL.replace("[auth]", "[auth]\nmode = \"none\""),
        );
        let err = Config::load_with_env(&none, &[]).unwrap_err().to_string();
        assert!(err.contains("auth.dev_org"), "{err}");
        let bad_filter = write(
            dir.path(),
            "f.toml",
            &MINIMAL.replace("sensors/+", "sensors/#/x"),
        );
        let err = Config::load_with_env(&bad_filter, &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("mqtt.subscriptions[0].topic"), "{err}");
    }

    #[test]
    fn durations() {
        use duration_str::parse;
        assert_eq!(parse("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse("250ms").unwrap(), Duration::from_millis(250));
        assert!(parse("5").is_err() && parse("5 parsecs").is_err() && parse("").is_err());
    }
}
