//! sensorcast itself, started for a test: in-process through `sensorcast::run` on an ephemeral
//! port (fast, and the test can reach its shutdown token), or as the real binary when a test
//! needs real signals. Also a JWT minter and a tiny HTTP/1.1 GET client, so tests need no
//! extra dependencies.
#![allow(dead_code)]

use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use super::broker::Broker;
use super::wait::{eventually, WAIT};

pub const SECRET: &str = "integration-test-secret-0123456789";

/// Two organizations; o1 has two sites. Sensor ids cover a TTN dev_eui and plain json ids.
pub const REGISTRY: &str = r#"
[[org]]
id = "o1"
[[org]]
id = "o2"
[[site]]
id = "s1"
org = "o1"
[[site]]
id = "s2"
org = "o1"
[[site]]
id = "s3"
org = "o2"
[[unit]]
id = "u1"
site = "s1"
[[unit]]
id = "u2"
site = "s2"
[[unit]]
id = "u3"
site = "s3"
[[sensor]]
id = "AC1F09FFFE01454E"
unit = "u1"
[[sensor]]
id = "probe-1"
unit = "u1"
[[sensor]]
id = "probe-2"
unit = "u2"
[[sensor]]
id = "probe-3"
unit = "u3"
"#;

/// The service config used by tests; `{MQTT}` is the broker URL, `{EXTRA}` extra top-level keys.
pub fn config_text(broker_url: &str) -> String {
    format!(
        r#"
[http]
listen = "127.0.0.1:0"
shutdown_timeout = "3s"
[mqtt]
url = "{broker_url}"
client_id = "sensorcast-test-{id}"
reconnect_min = "100ms"
reconnect_max = "1s"
[[mqtt.subscriptions]]
topic = "v3/+/devices/+/up"
format = "ttn-v3"
qos = 1
[[mqtt.subscriptions]]
topic = "sensors/+"
format = "json"
qos = 1
[auth]
mode = "jwt"
jwt_secret_file = "jwt.secret"
[registry]
file = "registry.toml"
[state]
dir = "state"
# Binaries started by tests must not contend for the default 127.0.0.1:9464; an in-process
# service gets a metrics listener of its own from `Service::start_config` regardless.
[metrics]
enabled = false
"#,
        id = fastrand::u64(..)
    )
}

/// A directory holding config, registry and secret, as an installer would lay them out.
pub fn write_config_dir(config: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("sensorcast.toml"), config).unwrap();
    std::fs::write(dir.path().join("registry.toml"), REGISTRY).unwrap();
    std::fs::write(dir.path().join("jwt.secret"), format!("{SECRET}\n")).unwrap();
    dir
}

pub struct Service {
    pub addr: SocketAddr,
    /// The metrics listener (`GET /metrics`).
    pub metrics_addr: SocketAddr,
    pub dir: tempfile::TempDir,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), sensorcast::RunError>>,
}

impl Service {
    /// Starts on the test config against `broker` and waits until MQTT is subscribed.
    pub async fn start(broker: &Broker) -> Service {
        Self::start_config(&config_text(&broker.url()), true).await
    }

    pub async fn start_config(config: &str, wait_ready: bool) -> Service {
        init_tracing();
        let dir = write_config_dir(config);
        let path = dir.path().join("sensorcast.toml");
        let config = sensorcast::config::Config::load_with_env(&path, &[]).expect("test config");
        let registry =
            sensorcast::core::registry::Registry::load(&config.registry.file).expect("registry");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let metrics = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let metrics_addr = metrics.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(sensorcast::run(
            config,
            registry,
            sensorcast::Listeners {
                http: listener,
                metrics: Some(metrics),
            },
            shutdown.clone(),
        ));
        let service = Service {
            addr,
            metrics_addr,
            dir,
            shutdown,
            task,
        };
        if wait_ready {
            service.wait_ready().await;
        }
        service
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Waits (bounded) until `/health/ready` answers 200.
    pub async fn wait_ready(&self) {
        wait_ready(self.addr, Duration::from_secs(10)).await
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        http_get(self.addr, path, token).await
    }

    /// [`get_until`] on this service.
    pub async fn get_until(
        &self,
        path: &str,
        token: Option<&str>,
        what: &str,
        done: impl Fn(u16, &Value) -> bool,
    ) -> (u16, Value) {
        get_until(self.addr, path, token, what, done).await
    }

    /// Cancels and waits for `run` to return, bounded.
    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(15), self.task)
            .await
            .expect("run() returned within 15 s")
            .expect("run task")
            .expect("run() ok");
    }
}

fn init_tracing() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    }
}

/// A token signed with [`SECRET`]; `claims` are merged over `sub`/`exp` defaults.
pub fn token(claims: Value) -> String {
    let mut all = json!({ "sub": "user-1", "exp": now() + 3600 });
    for (k, v) in claims.as_object().expect("claims object") {
        all[k] = v.clone();
    }
    sign(&all, SECRET)
}

pub fn sign(claims: &Value, secret: &str) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

pub fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

/// `auth` payload for a socket of `org` with `role`.
pub fn auth(org: &str, role: &str) -> Value {
    json!({ "token": token(json!({ "org_id": org, "role": role })) })
}

/// Minimal HTTP/1.1 GET: (status, JSON body or Null). Status 0: no answer (nothing listens,
/// or the connection was reset, as while the service shuts down).
pub async fn http_get(addr: SocketAddr, path: &str, bearer: Option<&str>) -> (u16, Value) {
    let Ok(mut tcp) = tokio::net::TcpStream::connect(addr).await else {
        return (0, Value::Null);
    };
    let auth = bearer.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n");
    if tcp.write_all(req.as_bytes()).await.is_err() {
        return (0, Value::Null);
    }
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut buf))
        .await
        .expect("http response in 5 s");
    if read.is_err() {
        return (0, Value::Null);
    }
    let text = String::from_utf8_lossy(&buf);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

/// The release or debug binary cargo built for this test run.
pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_sensorcast"))
}

pub fn repo_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// A TTN v3 uplink for `dev_eui` carrying `temperature`.
pub fn ttn_uplink(dev_eui: &str, temperature: f64) -> String {
    json!({
        "end_device_ids": { "device_id": "dev", "dev_eui": dev_eui },
        "received_at": "2024-01-15T12:00:00Z",
        "uplink_message": {
            "decoded_payload": { "temperature": temperature, "humidity": 60.2, "battery": 85 },
            "rx_metadata": [{ "rssi": -70, "channel_rssi": -62 }, { "rssi": -90 }],
            "received_at": "2024-01-15T12:00:00Z"
        }
    })
    .to_string()
}

/// The real `sensorcast` binary on a free port, for tests that need real signals.
pub struct Binary {
    pub child: tokio::process::Child,
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
}

impl Binary {
    /// Starts the binary on `config` (its `127.0.0.1:0` replaced by a free port) with `env`.
    pub async fn spawn(config: &str, env: &[(&str, &str)]) -> Binary {
        let port = super::broker::free_port();
        let config = config.replace("127.0.0.1:0", &format!("127.0.0.1:{port}"));
        let dir = write_config_dir(&config);
        let child = tokio::process::Command::new(binary())
            .arg("--config")
            .arg(dir.path().join("sensorcast.toml"))
            .env_remove("SENSORCAST_CONFIG")
            .envs(env.iter().copied())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn sensorcast");
        let addr = format!("127.0.0.1:{port}").parse().unwrap();
        Binary { child, addr, dir }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Waits (bounded) until `/health/ready` answers 200.
    pub async fn wait_ready(&self) {
        wait_ready(self.addr, Duration::from_secs(15)).await
    }

    pub fn signal(&self, sig: &str) {
        let pid = self.child.id().expect("running").to_string();
        let ok = std::process::Command::new("kill")
            .args([&format!("-{sig}"), &pid])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig} {pid}");
    }

    /// Rewrites a file in the config directory (the registry, the config).
    pub fn write(&self, name: &str, text: &str) {
        std::fs::write(self.dir.path().join(name), text).unwrap();
    }
}

/// An HTTP response as text: status, headers (names lower-case), body.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl RawResponse {
    /// The first header of that (lower-case) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Minimal HTTP/1.1 GET with extra request headers, returning the raw text (for HTML and the
/// Prometheus format, and to see `Set-Cookie`).
pub async fn http_get_raw(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> RawResponse {
    let mut tcp = tokio::net::TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{extra}Connection: close\r\n\r\n");
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut buf))
        .await
        .expect("http response in 5 s")
        .unwrap();
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    RawResponse {
        status,
        headers,
        body: body.to_string(),
    }
}

/// Polls `/health/ready` at `addr` until it answers 200; fails after `limit` with the last
/// answer (`/health` says why it is not ready).
pub async fn wait_ready(addr: SocketAddr, limit: Duration) {
    eventually(
        limit,
        &format!("sensorcast at {addr} to be ready"),
        || async {
            match http_get(addr, "/health/ready", None).await {
                (200, _) => Ok(()),
                (code, body) => Err(format!("{code} {body}")),
            }
        },
    )
    .await
}

/// GETs `path` until `done(status, body)` holds (for up to [`WAIT`]) and returns that answer;
/// fails naming `what` with the last answer.
pub async fn get_until(
    addr: SocketAddr,
    path: &str,
    bearer: Option<&str>,
    what: &str,
    done: impl Fn(u16, &Value) -> bool,
) -> (u16, Value) {
    eventually(WAIT, what, || async {
        let (code, body) = http_get(addr, path, bearer).await;
        if done(code, &body) {
            Ok((code, body))
        } else {
            Err(format!("GET {path}: {code} {body}"))
        }
    })
    .await
}
