//! The `[mqtt]` section and its checks: broker URL, credentials, TLS files, session, backoff and
//! subscriptions. The secrets themselves are read by the service config (`*_file` keys or the
//! environment) into [`Secret`].

use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

use super::ledger::is_shared;
use crate::core::duration::duration_str;
use crate::core::secret::Secret;
use crate::decode::{match_filter, validate_topic_filter, Subscription};

/// The `[mqtt]` section: the broker, the session and what to subscribe to.
#[derive(Debug, Clone, PartialEq, Deserialize)]
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

impl MqttConfig {
    /// Checks the section on its own: `Err((key under mqtt., message))`.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let bad = |key: &str, message: &str| Err((key.to_string(), message.to_string()));
        parse_broker_url(&self.url).map_err(|e| ("url".to_string(), e.to_string()))?;
        if self.client_id.is_empty() {
            return bad("client_id", "must not be empty");
        }
        if self.keep_alive < Duration::from_secs(1) {
            return bad("keep_alive", "must be at least 1s");
        }
        if self.max_packet_size < 1024 {
            return bad("max_packet_size", "must be at least 1024");
        }
        if self.reconnect_min.is_zero() || self.reconnect_max < self.reconnect_min {
            return bad(
                "reconnect_min",
                "must be > 0 and not above mqtt.reconnect_max",
            );
        }
        if self.cert_file.is_some() != self.key_file.is_some() {
            return bad("cert_file", "cert_file and key_file go together");
        }
        if self.subscriptions.is_empty() {
            return bad("subscriptions", "at least one is needed");
        }
        for (i, s) in self.subscriptions.iter().enumerate() {
            if s.qos > 1 {
                return bad(&format!("subscriptions[{i}].qos"), "must be 0 or 1");
            }
            validate_topic_filter(&s.topic)
                .map_err(|m| (format!("subscriptions[{i}].topic"), m))?;
            if is_shared(&s.topic) {
                return Err((
                    format!("subscriptions[{i}].topic"),
                    shared_refused(&s.topic),
                ));
            }
        }
        Ok(())
    }
}

/// Why a `$share/<group>/<filter>` subscription is refused, and what to write instead. The
/// broker deals a shared group's messages out one by one (Mosquitto: strict round-robin over
/// the members' sessions), so one unit's readings would be split between instances, each
/// with its own `seq`, history and alert state: gaps for every dashboard, and alert rules
/// judging half of the readings. Cluster mode does not use them either: there every instance
/// subscribes to every topic and the instances share the units among themselves
/// (docs/scaling.md). `decode::match_filter` keeps understanding the prefix.
fn shared_refused(topic: &str) -> String {
    format!(
        "{topic:?} is a shared subscription: the broker would deal each message to one \
         instance of the group in turn, and so split one unit's readings (its seq, history \
         and alert rules) between instances. Subscribe to {:?} instead. To run several \
         instances, use cluster mode: a [cluster] section and an mqtt.client_id of its own \
         for each; every instance then subscribes to everything and they share the units \
         (docs/scaling.md).",
        match_filter(topic)
    )
}

#[derive(Debug, thiserror::Error)]
pub enum BrokerUrlError {
    #[error("expected mqtt://host[:port] or mqtts://host[:port], got {0:?}")]
    Scheme(String),
    #[error("bad port in {0:?}")]
    Port(String),
    #[error("no host in {0:?}")]
    Host(String),
}

/// `mqtt://host:port` / `mqtts://host:port` → (tls, host, port).
pub fn parse_broker_url(url: &str) -> Result<(bool, String, u16), BrokerUrlError> {
    let (tls, rest) = if let Some(r) = url.strip_prefix("mqtt://") {
        (false, r)
    } else if let Some(r) = url.strip_prefix("mqtts://") {
        (true, r)
    } else {
        return Err(BrokerUrlError::Scheme(url.into()));
    };
    let rest = rest.trim_end_matches('/');
    let default_port = if tls { 8883 } else { 1883 };
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => {
            (h, p.parse().map_err(|_| BrokerUrlError::Port(url.into()))?)
        }
        _ => (rest, default_port),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(BrokerUrlError::Host(url.into()));
    }
    Ok((tls, host.to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_urls() {
        assert_eq!(
            parse_broker_url("mqtt://127.0.0.1:1883").unwrap(),
            (false, "127.0.0.1".into(), 1883)
        );
        assert_eq!(
            parse_broker_url("mqtts://broker.local").unwrap(),
            (true, "broker.local".into(), 8883)
        );
        assert_eq!(
            parse_broker_url("mqtt://[::1]:1884").unwrap(),
            (false, "::1".into(), 1884)
        );
        assert!(parse_broker_url("http://x").is_err());
        assert!(parse_broker_url("mqtt://x:notaport").is_err());
        assert!(parse_broker_url("mqtt://:1883").is_err());
    }
}
