//! Loading the service config: paths, secrets, overrides, and errors that name file, line, key.

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

/// A duration too large for `Duration` (the old parser panicked in `from_secs_f64`) is a
/// config error with its file, line and key.
#[test]
fn an_oversized_duration_is_an_error_naming_its_key() {
    let text = MINIMAL.replace("[auth]", "[auth]\nleeway = \"99999999999999999999s\"");
    let err = Config::parse(&text, Path::new("sensorcast.toml"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("sensorcast.toml: line 9, column 10: auth.leeway: duration"),
        "{err}"
    );
    assert!(err.contains("too large"), "{err}");
}

#[test]
fn a_bad_subscription_option_is_a_config_error_with_its_line() {
    let text = "[registry]\nfile = \"r.toml\"\n\n[[mqtt.subscriptions]]\ntopic = \"v3/#\"\nformat = \"ttn-v3\"\nunit = \"F\"\n";
    let err = Config::parse(text, std::path::Path::new("sensorcast.toml"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("sensorcast.toml: line 4"), "{err}");
    assert!(err.contains("unit does not apply"), "{err}");
}

/// A shared subscription (`$share/<group>/<filter>`) makes the broker deal each message to one
/// member of the group in turn, splitting one unit's readings (its seq, history and alert
/// rules) between instances. Cluster mode does not use them either (every instance subscribes to
/// everything), so the config refuses it, naming the key, why, and what to subscribe instead.
#[test]
fn a_shared_subscription_is_refused_with_why_and_what_to_do_instead() {
    let (dir, _) = setup();
    let shared = write(
        dir.path(),
        "shared.toml",
        &MINIMAL.replace("\"sensors/+\"", "\"$share/edge/sensors/+\""),
    );
    let err = Config::load_with_env(&shared, &[]).unwrap_err().to_string();
    assert!(err.contains("mqtt.subscriptions[0].topic"), "{err}");
    for why in ["$share", "split", "cluster", "\"sensors/+\""] {
        assert!(err.contains(why), "{why:?} not in {err}");
    }
}

/// `[cluster]`: absent, nothing of cluster mode; a bad Redis URL or timings that cannot work
/// are one clear error naming the key; the environment can turn it on per instance.
#[test]
fn the_cluster_section_is_checked_and_can_come_from_the_environment() {
    let (dir, path) = setup();
    assert!(Config::load_with_env(&path, &[]).unwrap().cluster.is_none());
    let bad = |extra: &str| {
        let p = write(
            dir.path(),
            "c.toml",
            &format!("{MINIMAL}[cluster]\n{extra}"),
        );
        Config::load_with_env(&p, &[]).unwrap_err().to_string()
    };
    let err = bad("redis_url = \"http://cache:6379\"\n");
    assert!(
        err.contains("cluster.redis_url") && err.contains("redis://"),
        "{err}"
    );
    let err = bad("redis_url = \"redis://cache\"\nheartbeat = \"1s\"\nnode_ttl = \"2s\"\n");
    assert!(
        err.contains("cluster.node_ttl") && err.contains("three heartbeats"),
        "{err}"
    );
    let err = bad("redis_url = \"redis://cache\"\nnode_id = \"\"\n");
    assert!(err.contains("cluster.node_id"), "{err}");
    let env = [
        (
            "SENSORCAST_CLUSTER__REDIS_URL".to_string(),
            "redis://cache:6380/1".to_string(),
        ),
        (
            "SENSORCAST_CLUSTER__NODE_ID".to_string(),
            "edge-2".to_string(),
        ),
    ];
    let c = Config::load_with_env(&path, &env).unwrap();
    let cluster = c.cluster.expect("cluster mode from the environment");
    assert_eq!(cluster.redis_url, "redis://cache:6380/1");
    assert_eq!(cluster.node_id(3000), "edge-2");
    assert_eq!(cluster.held_window(), std::time::Duration::from_secs(15));
    let only_id = [("SENSORCAST_CLUSTER__NODE_ID".to_string(), "x".to_string())];
    let err = Config::load_with_env(&path, &only_id)
        .unwrap_err()
        .to_string();
    assert!(err.contains("cluster.redis_url"), "{err}");
}

/// `log.level` takes levels and `target=level` directives; a bad one is a config error naming
/// `log.level`, and the filter that comes out enables what it says.
#[test]
fn log_levels_are_targets_filters() {
    use tracing::Level;
    let f = log_filter("sensorcast=debug,info").unwrap();
    assert!(f.would_enable("sensorcast::ingest", &Level::DEBUG));
    assert!(!f.would_enable("sensorcast::ingest", &Level::TRACE));
    assert!(f.would_enable("rumqttc", &Level::INFO));
    assert!(!f.would_enable("rumqttc", &Level::DEBUG));
    let f = log_filter("warn").unwrap();
    assert!(!f.would_enable("sensorcast", &Level::INFO));
    // A stray comma is not "errors only".
    let f = log_filter("info, ,").unwrap();
    assert!(f.would_enable("rumqttc", &Level::INFO));
    assert!(f.would_enable("rumqttc", &Level::WARN));
    for bad in [
        "",
        " ",
        ",",
        "sensorcast=loud",
        "a=b=c",
        "sensorcast[ingest]=debug",
    ] {
        assert!(log_filter(bad).is_err(), "{bad:?} accepted");
    }
    let (dir, path) = setup();
    let text = std::fs::read_to_string(&path).unwrap() + "\n[log]\nlevel = \"sensorcast=loud\"\n";
    let bad = write(dir.path(), "bad_level.toml", &text);
    let err = Config::load(&bad).unwrap_err().to_string();
    assert!(err.contains("log.level"), "{err}");
}
