//! Config values the service cannot run with (issue 12, items 15 and 16), through the real
//! binary and real files: `check-config` and a start refuse each with exit 1 and the file,
//! line and key (never a panic's exit 101, never a hang), and SIGHUP refuses them while the
//! reload task stays alive for the next, valid, reload.

mod common;

use common::broker::Broker;
use common::config::{TestConfig, TestRegistry};
use common::http::get_until;
use common::service::{check_config, Mode, Service};
use std::path::Path;
use std::time::Duration;

/// `(what, the config, the key the error must name)` for every bad value of the issue.
fn bad_configs(base: &TestConfig, dir: &Path) -> Vec<(&'static str, TestConfig, &'static str)> {
    let a_file = dir.join("jwt.secret").display().to_string();
    let under_a_file = dir.join("jwt.secret/state").display().to_string();
    vec![
        (
            "an oversized duration",
            base.clone()
                .http("shutdown_timeout", "99999999999999999999s"),
            "http.shutdown_timeout",
        ),
        (
            "ping_interval 0s",
            base.clone().realtime("ping_interval", "0s"),
            "realtime.ping_interval",
        ),
        (
            "handshake_timeout 0s",
            base.clone().limit("handshake_timeout", "0s"),
            "limits.handshake_timeout",
        ),
        (
            "event_rate inf",
            base.clone().limit("event_rate", f64::INFINITY),
            "limits.event_rate",
        ),
        (
            "event_rate nan",
            base.clone().limit("event_rate", f64::NAN),
            "limits.event_rate",
        ),
        (
            "event_burst inf",
            base.clone().limit("event_burst", f64::INFINITY),
            "limits.event_burst",
        ),
        (
            "max_payload_bytes 0",
            base.clone().limit("max_payload_bytes", 0),
            "limits.max_payload_bytes",
        ),
        (
            "max_client_payload 0",
            base.clone().limit("max_client_payload", 0),
            "limits.max_client_payload",
        ),
        (
            "a topic with a NUL byte",
            base.clone().subscription_key(1, "topic", "sensors/\u{0}/x"),
            "mqtt.subscriptions[1].topic",
        ),
        (
            "$share without a filter",
            base.clone().subscription_key(1, "topic", "$share/g"),
            "mqtt.subscriptions[1].topic",
        ),
        (
            "a CORS origin with a newline",
            base.clone()
                .http("cors_origins", vec!["https://a.example\nX-Evil: 1"]),
            "http.cors_origins[0]",
        ),
        (
            "a state dir that cannot be created",
            base.clone().set("state", "dir", under_a_file),
            "state.dir",
        ),
        (
            "a read-only state dir",
            base.clone().set("state", "dir", "/proc/self"),
            "state.dir",
        ),
        (
            "a state dir that is a file",
            base.clone().set("state", "dir", a_file),
            "state.dir",
        ),
        (
            "the registry is /dev/zero",
            base.clone().set("registry", "file", "/dev/zero"),
            "registry.file",
        ),
    ]
}

/// The error names the config file, a line and the key.
fn assert_names_file_line_and_key(what: &str, out: &str, key: &str) {
    assert!(
        out.contains("sensorcast.toml") && out.contains("line ") && out.contains(key),
        "{what}: the error must name the file, the line and {key}:\n{out}"
    );
}

/// `check-config` refuses every bad value with exit 1, the file, the line and the key; so does
/// a start of the service (exit 1 before it serves, no restart loop of panics).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_config_and_start_refuse_each_bad_value_with_file_line_and_key() {
    let base = TestConfig::for_url("mqtt://127.0.0.1:1");
    let dir = base.write_dir();
    for (what, config, key) in bad_configs(&base, dir.path()) {
        config.write_to(dir.path());
        let started = std::time::Instant::now();
        let (code, out) = check_config(&dir.path().join("sensorcast.toml"), &[]);
        assert_eq!(code, Some(1), "{what}: exit code:\n{out}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{what}: took long"
        );
        assert_names_file_line_and_key(what, &out, key);
    }
    for (what, config, key) in bad_configs(&base, dir.path())
        .into_iter()
        .filter(|(what, ..)| what.contains("duration") || what.contains("ping"))
    {
        let mut bin = Service::launch(&config, Mode::Binary(&[]), false).await;
        let status = tokio::time::timeout(Duration::from_secs(10), bin.child().wait())
            .await
            .unwrap_or_else(|_| panic!("{what}: the service did not exit"))
            .unwrap();
        assert_eq!(status.code(), Some(1), "{what}");
        assert_names_file_line_and_key(what, &bin.stderr().await, key);
    }
}

/// SIGHUP with each bad value: refused (reported in `/health` `checks.reload` with the key),
/// the service keeps running on what it had, and the reload task survives: a valid SIGHUP
/// after them all applies a new registry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_refuses_each_bad_value_and_the_next_valid_reload_still_applies() {
    let broker = Broker::start().await;
    let base = TestConfig::new(&broker);
    let mut bin = Service::start_binary(&base, &[]).await;
    let dir = bin.dir.path().to_owned();
    for (n, (what, config, key)) in bad_configs(&base, &dir).into_iter().enumerate() {
        let attempts = n + 1;
        bin.rewrite(&config);
        bin.signal("HUP");
        let (_, h) = get_until(bin.addr, "/health", None, what, |_, h| {
            h["checks"]["reload"]["attempts"] == attempts
        })
        .await;
        let reload = &h["checks"]["reload"];
        assert_eq!(reload["ok"], false, "{what}: {reload}");
        let error = reload["error"].as_str().unwrap_or_default();
        assert!(error.contains(key), "{what}: {error}");
    }
    let grown = TestRegistry::standard().unit("u4", "s1");
    bin.rewrite(&base.clone().registry(&grown));
    bin.signal("HUP");
    get_until(bin.addr, "/health", None, "the valid reload", |_, h| {
        h["checks"]["reload"]["ok"] == true && h["checks"]["registry"]["units"] == 4
    })
    .await;
    bin.stop().await;
}
