//! Environment overrides: `SENSORCAST_<SECTION>__<KEY>` for the keys an installer sets per
//! machine (listen address, broker, secrets). Any other `SENSORCAST_*` variable is an error, so a
//! typo does not silently leave the file's value in force.

use std::path::PathBuf;

use super::{AuthMode, Config, ConfigError, Secret};

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
    (
        "SENSORCAST_CLUSTER__REDIS_URL",
        "cluster.redis_url (turns cluster mode on)",
    ),
    ("SENSORCAST_CLUSTER__NODE_ID", "cluster.node_id"),
];

impl Config {
    pub(super) fn apply_env(&mut self, env: &[(String, String)]) -> Result<(), ConfigError> {
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
                "SENSORCAST_CLUSTER__REDIS_URL" => {
                    self.cluster.get_or_insert_with(Default::default).redis_url = value.clone()
                }
                "SENSORCAST_CLUSTER__NODE_ID" => {
                    self.cluster.get_or_insert_with(Default::default).node_id = Some(value.clone())
                }
                // The config file path itself is read by main, not here.
                "SENSORCAST_CONFIG" => {}
                // Read by the test suite (an extra payload fixture folder), not by the service.
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
}
