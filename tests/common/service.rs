//! sensorcast itself, started for a test from a [`TestConfig`], one way for every test:
//! [`Service::launch`] writes the config directory, picks the address, starts the service
//! in-process through `sensorcast::run` (fast, and the test holds its shutdown token) or as the
//! real binary (for real signals and the systemd notify socket), and waits until it is ready.
//! Also the JWT minter and the other bits tests of the running service share.
#![allow(dead_code)]

use serde_json::{json, Value};
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio_util::sync::CancellationToken;

use super::config::{TestConfig, SECRET};
use super::http::{get_until, http_get, wait_ready};
use super::jsclient::{JsClient, JsDriver};
use super::wait::{eventually, WAIT};

/// How long an in-process service, or the binary, gets to become ready.
const READY_IN_PROCESS: Duration = Duration::from_secs(10);
const READY_BINARY: Duration = Duration::from_secs(15);
/// How long a stop may take (the config's shutdown_timeout is 3 s a step).
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// Where a [`Service`] runs.
#[derive(Clone, Copy)]
pub enum Mode<'a> {
    /// `sensorcast::run` on a task of the test's runtime, with its own metrics listener.
    InProcess,
    /// The `sensorcast` binary cargo built, with these extra environment variables.
    Binary(&'a [(&'a str, &'a str)]),
    /// The binary started by a wrapper command that execs it (`["prlimit", "--nofile=..",
    /// "--"]`), with these extra environment variables.
    BinaryUnder(&'a [&'a str], &'a [(&'a str, &'a str)]),
}

/// A running sensorcast and the directory its config, registry and secret are in.
pub struct Service {
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    /// The config it runs on, `[http] listen` set to [`Service::addr`].
    pub config: TestConfig,
    metrics_addr: Option<SocketAddr>,
    run: Run,
}

enum Run {
    InProcess {
        shutdown: CancellationToken,
        task: tokio::task::JoinHandle<Result<(), sensorcast::RunError>>,
    },
    Binary {
        child: tokio::process::Child,
    },
}

impl Service {
    /// In-process on `config`, ready (MQTT subscribed).
    pub async fn start(config: &TestConfig) -> Service {
        Self::launch(config, Mode::InProcess, true).await
    }

    /// The real binary on `config` with `env`, ready.
    pub async fn start_binary(config: &TestConfig, env: &[(&str, &str)]) -> Service {
        Self::launch(config, Mode::Binary(env), true).await
    }

    /// Writes `config` (on a free port) into a fresh directory, starts sensorcast on it as
    /// `mode` says and, if `wait_ready`, waits (bounded) until `/health/ready` answers 200.
    pub async fn launch(config: &TestConfig, mode: Mode<'_>, wait_ready: bool) -> Service {
        // The service's own JWT provider (ring) for the whole test process, whichever runs first.
        sensorcast::auth::install_jwt_provider();
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sensorcast.toml");
        let (addr, metrics_addr, run, config) = match mode {
            Mode::InProcess => {
                init_tracing();
                let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let metrics = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let addr = http.local_addr().unwrap();
                let metrics_addr = metrics.local_addr().unwrap();
                let config = config.clone().listen(addr);
                config.write_to(dir.path());
                let loaded = sensorcast::config::Config::load_with_env(&path, &[])
                    .expect("test config loads");
                let registry = sensorcast::core::registry::Registry::load(&loaded.registry.file)
                    .expect("test registry loads");
                let shutdown = CancellationToken::new();
                let listeners = sensorcast::Listeners {
                    http,
                    metrics: Some(metrics),
                };
                let task = tokio::spawn(sensorcast::run(
                    loaded,
                    registry,
                    listeners,
                    shutdown.clone(),
                ));
                (
                    addr,
                    Some(metrics_addr),
                    Run::InProcess { shutdown, task },
                    config,
                )
            }
            Mode::Binary(env) | Mode::BinaryUnder(_, env) => {
                let addr: SocketAddr = format!("127.0.0.1:{}", super::broker::free_port())
                    .parse()
                    .unwrap();
                let config = config.clone().listen(addr);
                config.write_to(dir.path());
                let mut command = match mode {
                    Mode::BinaryUnder(wrapper, _) => {
                        let mut c = tokio::process::Command::new(wrapper[0]);
                        c.args(&wrapper[1..]).arg(binary());
                        c
                    }
                    _ => tokio::process::Command::new(binary()),
                };
                let child = command
                    .arg("--config")
                    .arg(&path)
                    .env_remove("SENSORCAST_CONFIG")
                    .envs(env.iter().copied())
                    .stderr(std::process::Stdio::piped())
                    .kill_on_drop(true)
                    .spawn()
                    .expect("spawn sensorcast");
                (addr, None, Run::Binary { child }, config)
            }
        };
        let service = Service {
            addr,
            dir,
            config,
            metrics_addr,
            run,
        };
        if wait_ready {
            service.wait_ready().await;
        }
        service
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The metrics listener (`GET /metrics`) of an in-process service.
    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics_addr
            .expect("metrics listen only in-process (the binary runs with metrics off)")
    }

    /// `sensorcast.toml` in the service's directory.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("sensorcast.toml")
    }

    /// Waits (bounded) until `/health/ready` answers 200.
    pub async fn wait_ready(&self) {
        let limit = match self.run {
            Run::InProcess { .. } => READY_IN_PROCESS,
            Run::Binary { .. } => READY_BINARY,
        };
        wait_ready(self.addr, limit).await
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

    /// Waits until `/health/realtime` counts `n` websocket connections; fails naming `what`.
    pub async fn wait_sockets(&self, n: u64, what: &str) {
        self.get_until("/health/realtime", None, what, |_, rt| {
            rt["websocket"]["connections"] == n
        })
        .await;
    }

    /// Rewrites a file of the service's directory (the registry, the config).
    pub fn write(&self, name: &str, text: &str) {
        std::fs::write(self.dir.path().join(name), text).unwrap();
    }

    /// Rewrites the config and the registry from `config` (on the service's own address), for
    /// a reload to pick up.
    pub fn rewrite(&self, config: &TestConfig) {
        config.clone().listen(self.addr).write_to(self.dir.path());
    }

    /// The binary's process.
    pub fn child(&mut self) -> &mut tokio::process::Child {
        match &mut self.run {
            Run::Binary { child } => child,
            Run::InProcess { .. } => panic!("an in-process service has no process of its own"),
        }
    }

    /// Sends the binary `kill -<sig>`.
    pub fn signal(&mut self, sig: &str) {
        let pid = self.child().id().expect("running").to_string();
        let ok = std::process::Command::new("kill")
            .args([&format!("-{sig}"), &pid])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig} {pid}");
    }

    /// What the binary wrote to stderr, up to its exit (so only once it exited or was killed).
    pub async fn stderr(&mut self) -> String {
        let mut text = String::new();
        self.child()
            .stderr
            .take()
            .expect("stderr is read only once")
            .read_to_string(&mut text)
            .await
            .unwrap();
        text
    }

    /// Stops the service and waits, bounded, for a clean end: in-process, cancels and waits for
    /// `run` to return Ok; the binary gets SIGTERM and must exit 0.
    pub async fn stop(mut self) {
        match &mut self.run {
            Run::InProcess { shutdown, task } => {
                shutdown.cancel();
                tokio::time::timeout(STOP_TIMEOUT, task)
                    .await
                    .expect("run() returned in time")
                    .expect("run task")
                    .expect("run() ok");
            }
            Run::Binary { .. } => {
                self.signal("TERM");
                let status = tokio::time::timeout(STOP_TIMEOUT, self.child().wait())
                    .await
                    .expect("exited in time after SIGTERM")
                    .unwrap();
                assert!(status.success(), "exit status {status:?}");
            }
        }
    }
}

fn init_tracing() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    }
}

/// A socket of the official client on `service`, connected (panics with the connect_error).
pub async fn connected(driver: &JsDriver, service: &Service, auth: Value) -> JsClient {
    let c = driver.connect(&service.url(), Some(auth)).await;
    c.wait_connect().await.expect("socket connects");
    c
}

/// `connected`, then subscribed to each of `units` (each ack must be ok).
pub async fn subscribed(
    driver: &JsDriver,
    service: &Service,
    auth: Value,
    units: &[&str],
) -> JsClient {
    let c = connected(driver, service, auth).await;
    for unit in units {
        let ack = c.emit_ack("subscribe:unit", vec![json!(unit)]).await;
        assert_eq!(ack[0]["ok"], true, "subscribe:unit {unit}: {ack:?}");
    }
    c
}

/// Publishes with `publish` again and again until `c` receives a `sensor:reading`, and returns
/// it: for a subscription sensorcast has only just asked for (the broker drops what comes on the
/// topic before it has the SUBSCRIBE). Fails after [`WAIT`].
pub async fn publish_until_reading<F, Fut>(c: &JsClient, what: &str, mut publish: F) -> Vec<Value>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    eventually(WAIT, what, || {
        let published = publish();
        async move {
            published.await;
            c.next_event_timeout("sensor:reading", Duration::from_millis(100))
                .await
                .ok_or_else(|| "published, no reading within 100 ms".to_string())
        }
    })
    .await
}

/// `VmRSS` and `VmHWM` (peak RSS) of a process, bytes.
pub fn rss(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kb| kb * 1024)
            .unwrap_or_else(|| panic!("{name} in /proc/{pid}/status"))
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Runs `sensorcast check-config` on `config_file` with `env`: (exit code, stdout + stderr).
pub fn check_config(config_file: &Path, env: &[(&str, &str)]) -> (Option<i32>, String) {
    let out = std::process::Command::new(binary())
        .arg("check-config")
        .arg("--config")
        .arg(config_file)
        .envs(env.iter().copied())
        .env_remove("SENSORCAST_CONFIG")
        .output()
        .expect("run sensorcast check-config");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code(), text)
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
    // Before any use of jsonwebtoken: else it makes RustCrypto (a test dependency) the
    // process's provider, and in-process services would not check tokens with ring.
    sensorcast::auth::install_jwt_provider();
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
