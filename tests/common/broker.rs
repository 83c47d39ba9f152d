//! A private mosquitto per test, and two ways to publish into it.
//!
//! sensorcast's whole job starts at an MQTT broker, so its integration tests run against the
//! real thing rather than a mock: each test gets its own `mosquitto` on a free loopback port,
//! with its config, log and persistence file in a tempdir that disappears with the test. That
//! keeps tests independent (no shared retained messages or sessions) and lets a test stop and
//! restart the broker to exercise reconnects and persistent sessions.
//!
//! Publishing comes in two flavours: [`Broker::publish`] shells out to the real `mosquitto_pub`
//! (a peer sensorcast did not write, one message per process), and [`Publisher`] keeps one
//! rumqttc connection open for bulk publishing and waits for each PUBACK so that a test knows
//! the broker holds the message before it goes on.
//!
//! Over 400 lines: A broker helper many tests share (start, stop, restart, publish, hold): one
//! place, so no test grows its own.
#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttc::{
    AsyncClient, Event, EventLoop, Incoming, MqttOptions, NetworkOptions, Outgoing, QoS,
};
use tempfile::TempDir;
use tokio::io::AsyncWriteExt;
use tokio::process::{Child, Command};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::wait::eventually;

/// Where Debian installs the broker.
const MOSQUITTO: &str = "/usr/sbin/mosquitto";
/// How long a broker gets to start accepting, or to exit after SIGTERM.
const BROKER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a publish gets to be acknowledged by the broker.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(10);

/// Returns a loopback TCP port that was free a moment ago (bound on port 0, then released).
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local_addr").port()
}

/// A running mosquitto owned by one test. Dropping it kills the process (SIGKILL) and removes
/// its directory; call [`Broker::stop`] first when persistence must be written.
pub struct Broker {
    dir: TempDir,
    port: u16,
    child: Option<Child>,
}

impl Broker {
    /// Starts a broker with the default test config (anonymous, persistent, loopback only).
    pub async fn start() -> Broker {
        Broker::start_with("").await
    }

    /// Starts a broker whose config ends with `extra_config` (mosquitto config lines), e.g.
    /// `"max_queued_messages 10\n"`.
    pub async fn start_with(extra_config: &str) -> Broker {
        let dir = tempfile::Builder::new()
            .prefix("sensorcast-mosquitto-")
            .tempdir()
            .expect("tempdir");
        let port = free_port();
        std::fs::write(
            config_path(dir.path()),
            config_text(dir.path(), port, extra_config),
        )
        .expect("write mosquitto.conf");
        let mut broker = Broker {
            dir,
            port,
            child: None,
        };
        broker.spawn().await;
        broker
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn host(&self) -> &'static str {
        "127.0.0.1"
    }

    /// `mqtt://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// The broker's directory: config, log, stderr and `mosquitto.db`.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Everything the broker has logged so far (its log file, then its stderr).
    pub fn log(&self) -> String {
        log_in(self.dir.path())
    }

    /// Sends SIGTERM and waits for the broker to exit, so it saves its persistence file.
    pub async fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = child.id().expect("running broker has a pid").to_string();
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM {pid} failed");
        match tokio::time::timeout(BROKER_TIMEOUT, child.wait()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => panic!("waiting for mosquitto to exit: {e}"),
            Err(_) => panic!(
                "mosquitto ignored SIGTERM for {BROKER_TIMEOUT:?}; log:\n{}",
                self.log()
            ),
        }
    }

    /// Stops the broker if it is running, then starts a new one on the same port, config and
    /// persistence directory, and waits until it accepts connections.
    pub async fn restart(&mut self) {
        self.stop().await;
        self.spawn().await;
    }

    /// Publishes one message with the real `mosquitto_pub` CLI and asserts it exited 0. With
    /// QoS 1 or 2, `mosquitto_pub` only exits after the broker acknowledged the message.
    /// The payload goes through stdin (`-s`), so any bytes work; an empty payload uses `-n`.
    pub async fn publish(&self, topic: &str, payload: impl AsRef<[u8]>, qos: u8) {
        self.mosquitto_pub(topic, payload.as_ref(), qos, false)
            .await
    }

    /// [`Broker::publish`] with the retain flag, QoS 1: the broker keeps the message as the
    /// topic's last value and hands a copy (flagged retained) to every later subscriber.
    pub async fn publish_retained(&self, topic: &str, payload: impl AsRef<[u8]>) {
        self.mosquitto_pub(topic, payload.as_ref(), 1, true).await
    }

    async fn mosquitto_pub(&self, topic: &str, payload: &[u8], qos: u8, retain: bool) {
        let mut cmd = Command::new("mosquitto_pub");
        cmd.args([
            "-h",
            "127.0.0.1",
            "-p",
            &self.port.to_string(),
            "-t",
            topic,
            "-q",
            &qos.to_string(),
        ]);
        if retain {
            cmd.arg("-r");
        }
        cmd.arg(if payload.is_empty() { "-n" } else { "-s" });
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .expect("spawn mosquitto_pub (apt-get install mosquitto-clients)");
        let mut stdin = child.stdin.take().expect("piped stdin");
        stdin
            .write_all(payload)
            .await
            .expect("write payload to mosquitto_pub");
        drop(stdin);
        let out = tokio::time::timeout(PUBLISH_TIMEOUT, child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("mosquitto_pub to {topic} hung for {PUBLISH_TIMEOUT:?}"))
            .expect("wait for mosquitto_pub");
        assert!(
            out.status.success(),
            "mosquitto_pub -t {topic} exited {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    async fn spawn(&mut self) {
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("mosquitto.stderr"))
            .expect("open mosquitto.stderr");
        let child = Command::new(MOSQUITTO)
            .arg("-c")
            .arg(config_path(self.dir.path()))
            .stdin(Stdio::null())
            .stdout(stderr.try_clone().expect("clone file handle"))
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {MOSQUITTO} (apt-get install mosquitto): {e}"));
        self.child = Some(child);
        self.wait_accepting().await;
    }

    /// Polls the port until it accepts TCP connections; panics with the log if the broker
    /// exits or takes too long.
    async fn wait_accepting(&mut self) {
        let (port, dir) = (self.port, self.dir.path().to_owned());
        let child = self.child.as_mut().expect("spawned");
        let what = format!("mosquitto to accept on port {port}");
        eventually(BROKER_TIMEOUT, &what, || {
            let exited = child.try_wait().expect("try_wait mosquitto");
            let dir = dir.clone();
            async move {
                if let Some(status) = exited {
                    panic!(
                        "mosquitto exited with {status} on port {port}; log:\n{}",
                        log_in(&dir)
                    );
                }
                match tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
                    Ok(_) => Ok(()),
                    Err(e) => Err(format!("{e}; log:\n{}", log_in(&dir))),
                }
            }
        })
        .await
    }
}

/// Everything the broker in `dir` has logged so far (its log file, then its stderr).
fn log_in(dir: &Path) -> String {
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap_or_default();
    format!("{}{}", read("mosquitto.log"), read("mosquitto.stderr"))
}

fn config_path(dir: &Path) -> PathBuf {
    dir.join("mosquitto.conf")
}

/// The test broker's config (mosquitto 2.0 keys; see mosquitto.conf(5)).
fn config_text(dir: &Path, port: u16, extra: &str) -> String {
    let dir = dir.display();
    format!(
        "# Written by tests/common/broker.rs for one test.\n\
         listener {port} 127.0.0.1\n\
         allow_anonymous true\n\
         # Sessions and queued messages survive stop()/restart() through mosquitto.db.\n\
         persistence true\n\
         persistence_location {dir}/\n\
         autosave_interval 1\n\
         set_tcp_nodelay true\n\
         # Stay as the invoking user (root in CI) so the broker can write its own tempdir;\n\
         # mosquitto ignores this when not started as root.\n\
         user root\n\
         log_dest file {dir}/mosquitto.log\n\
         log_timestamp_format %H:%M:%S\n\
         {extra}\n"
    )
}

/// Maps an MQTT QoS number to rumqttc's type.
fn qos_of(qos: u8) -> QoS {
    rumqttc::qos(qos).unwrap_or_else(|_| panic!("invalid QoS {qos}"))
}

/// A long-lived rumqttc connection for bulk publishing (clean session, own client id, TCP
/// nodelay). Each publish can be awaited until the broker acknowledged it (PUBACK for QoS 1,
/// PUBCOMP for QoS 2, written to the socket for QoS 0).
pub struct Publisher {
    client: AsyncClient,
    acks: Arc<Mutex<AckBook>>,
    /// Held while queueing a waiter and its publish request, so both queues share one order.
    order: tokio::sync::Mutex<()>,
    task: JoinHandle<()>,
}

/// Confirmation of one publish, from [`Publisher::publish_nowait`].
pub struct Confirm {
    topic: String,
    rx: oneshot::Receiver<()>,
}

impl Confirm {
    /// Waits until the broker acknowledged the publish.
    pub async fn wait(self) {
        match tokio::time::timeout(PUBLISH_TIMEOUT, self.rx).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => panic!(
                "publisher's event loop ended before {} was acknowledged",
                self.topic
            ),
            Err(_) => panic!(
                "no ack from broker for publish to {} within {PUBLISH_TIMEOUT:?}",
                self.topic
            ),
        }
    }
}

/// Waiters for publish acknowledgements. rumqttc reports `Outgoing::Publish(pkid)` in request
/// order, so a FIFO of waiters is matched to packet ids as they are assigned.
#[derive(Default)]
struct AckBook {
    queued: VecDeque<oneshot::Sender<()>>,
    inflight: HashMap<u16, oneshot::Sender<()>>,
}

impl AckBook {
    fn on_outgoing_publish(&mut self, pkid: u16) {
        if pkid != 0 && self.inflight.contains_key(&pkid) {
            return; // a retransmission after reconnect: its waiter is already filed
        }
        let Some(tx) = self.queued.pop_front() else {
            return;
        };
        if pkid == 0 {
            let _ = tx.send(()); // QoS 0: nothing more will come back
        } else {
            self.inflight.insert(pkid, tx);
        }
    }

    fn on_ack(&mut self, pkid: u16) {
        if let Some(tx) = self.inflight.remove(&pkid) {
            let _ = tx.send(());
        }
    }
}

impl Publisher {
    /// Connects to `broker` and waits for its CONNACK.
    pub async fn connect(broker: &Broker) -> Publisher {
        let id = format!("test-publisher-{}", fastrand::u64(..));
        let mut options = MqttOptions::new(id, broker.host(), broker.port());
        options
            .set_clean_session(true)
            .set_keep_alive(Duration::from_secs(30));
        options.set_max_packet_size(16 << 20, 16 << 20);
        let (client, mut eventloop) = AsyncClient::new(options, 64);
        let mut network = NetworkOptions::new();
        network.set_tcp_nodelay(true);
        eventloop.set_network_options(network);
        let acks = Arc::new(Mutex::new(AckBook::default()));
        let (connected_tx, connected_rx) = oneshot::channel();
        let task = tokio::spawn(drive_publisher(eventloop, acks.clone(), connected_tx));
        match tokio::time::timeout(BROKER_TIMEOUT, connected_rx).await {
            Ok(Ok(())) => {}
            _ => panic!(
                "publisher got no CONNACK from {} within {BROKER_TIMEOUT:?}",
                broker.url()
            ),
        }
        Publisher {
            client,
            acks,
            order: tokio::sync::Mutex::new(()),
            task,
        }
    }

    /// Publishes and waits until the broker acknowledged it (panics after 10 s).
    pub async fn publish(&self, topic: &str, payload: impl AsRef<[u8]>, qos: u8) {
        self.publish_nowait(topic, payload, qos).await.wait().await;
    }

    /// Queues a publish and returns its confirmation without waiting for it, so many publishes
    /// can be in flight at once; await each [`Confirm::wait`] afterwards.
    pub async fn publish_nowait(&self, topic: &str, payload: impl AsRef<[u8]>, qos: u8) -> Confirm {
        let (tx, rx) = oneshot::channel();
        let _order = self.order.lock().await;
        self.acks.lock().unwrap().queued.push_back(tx);
        self.client
            .publish(topic, qos_of(qos), false, payload.as_ref().to_vec())
            .await
            .expect("publisher request channel closed");
        Confirm {
            topic: topic.to_owned(),
            rx,
        }
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Polls the publisher's event loop forever, reporting the first CONNACK and every ack.
/// Connection errors are logged and retried: rumqttc reconnects on the next poll.
async fn drive_publisher(
    mut eventloop: EventLoop,
    acks: Arc<Mutex<AckBook>>,
    connected: oneshot::Sender<()>,
) {
    let mut connected = Some(connected);
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Incoming::ConnAck(_))) => {
                if let Some(tx) = connected.take() {
                    let _ = tx.send(());
                }
            }
            Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                acks.lock().unwrap().on_outgoing_publish(pkid)
            }
            Ok(Event::Incoming(Incoming::PubAck(ack))) => acks.lock().unwrap().on_ack(ack.pkid),
            Ok(Event::Incoming(Incoming::PubComp(ack))) => acks.lock().unwrap().on_ack(ack.pkid),
            Ok(_) => {}
            Err(rumqttc::ConnectionError::RequestsDone) => return,
            Err(e) => {
                eprintln!("test publisher: {e}; retrying");
                // Not a wait for a condition: the back-off before rumqttc's next connect
                // attempt, so a broker that is down is not hammered.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}
