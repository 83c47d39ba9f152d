//! Rust side of `tests/js/driver.js`: real `socket.io-client` sockets driven from tests.
//!
//! sensorcast's users are browsers and Node dashboards running the official Socket.io client,
//! so the integration tests talk to the server through that same client instead of a Rust
//! re-implementation that could share our misreadings of the protocol. One Node process
//! ([`JsDriver`]) hosts any number of sockets; commands go to it as JSON lines on stdin and its
//! reports come back as JSON lines on stdout.
//!
//! A reader task files each report into the named client's inbox (a `Mutex<VecDeque>` per kind
//! plus a `Notify`), or completes the pending ack with that request id. Waiting methods on
//! [`JsClient`] take from the inbox and panic after a bounded time with a message naming the
//! client and what it waited for, so a broken server fails a test instead of hanging it.
//! Events of other names stay buffered in arrival order for later `next_event` calls.
//!
//! Over 400 lines: The driver of the official socket.io-client every test uses: its protocol with
//! the Node side stays in one file.
#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::{oneshot, Notify};

/// How long any waiting method waits before it panics.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the client waits for a server ack in [`JsClient::emit_ack`].
pub const ACK_TIMEOUT: Duration = Duration::from_secs(5);

/// One `node tests/js/driver.js` process. Dropping it kills the process, after which every
/// [`JsClient`] created from it panics on its next wait.
pub struct JsDriver {
    shared: Arc<Shared>,
    child: Child,
}

/// A named socket inside the driver. Cheap to clone; clones share one inbox.
#[derive(Clone)]
pub struct JsClient {
    name: String,
    inbox: Arc<ClientInbox>,
    shared: Arc<Shared>,
}

/// State shared by the driver handle, its clients and the stdout reader task.
struct Shared {
    stdin: tokio::sync::Mutex<ChildStdin>,
    clients: Mutex<HashMap<String, Arc<ClientInbox>>>,
    acks: Mutex<HashMap<u64, oneshot::Sender<AckOutcome>>>,
    /// `driver_error` reports and unparseable stdout lines, shown in timeout panics.
    errors: Mutex<Vec<String>>,
    exited: AtomicBool,
    next_client: AtomicU64,
    next_req: AtomicU64,
}

#[derive(Default)]
struct ClientInbox {
    queues: Mutex<Queues>,
    /// Woken (`notify_waiters`) whenever a report lands or the driver exits.
    changed: Notify,
}

#[derive(Default)]
struct Queues {
    connects: VecDeque<Result<String, String>>,
    disconnects: VecDeque<String>,
    closed: usize,
    events: VecDeque<(String, Vec<Value>, u64)>,
}

enum AckOutcome {
    Args(Vec<Value>),
    TimedOut,
}

/// One stdout line of the driver.
#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Report {
    Connect {
        client: String,
        id: String,
    },
    ConnectError {
        client: String,
        message: String,
    },
    Disconnect {
        client: String,
        reason: String,
    },
    Event {
        client: String,
        event: String,
        args: Vec<Value>,
        /// When the driver received it, epoch ms (`Date.now()`).
        #[serde(default)]
        at: u64,
    },
    Ack {
        req: u64,
        args: Vec<Value>,
    },
    AckTimeout {
        req: u64,
    },
    Closed {
        client: String,
    },
    DriverError {
        message: String,
    },
}

fn js_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("js")
}

impl JsDriver {
    /// Starts the Node driver. Panics if `tests/js/node_modules` was never installed.
    pub async fn spawn() -> JsDriver {
        let dir = js_dir();
        assert!(
            dir.join("node_modules").join("socket.io-client").is_dir(),
            "{}/node_modules is missing: run `npm ci --prefix tests/js` in the repository root",
            dir.display()
        );
        let mut child = Command::new("node")
            .arg(dir.join("driver.js"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn `node` (Node 20 must be on PATH)");
        let shared = Arc::new(Shared {
            stdin: tokio::sync::Mutex::new(child.stdin.take().expect("piped stdin")),
            clients: Mutex::default(),
            acks: Mutex::default(),
            errors: Mutex::default(),
            exited: AtomicBool::new(false),
            next_client: AtomicU64::new(1),
            next_req: AtomicU64::new(1),
        });
        tokio::spawn(read_reports(
            child.stdout.take().expect("piped stdout"),
            shared.clone(),
        ));
        tokio::spawn(forward_stderr(child.stderr.take().expect("piped stderr")));
        JsDriver { shared, child }
    }

    /// Opens a socket to `url` with the client's default transports (polling, then upgrade).
    pub async fn connect(&self, url: &str, auth: Option<Value>) -> JsClient {
        self.connect_with(url, auth, None).await
    }

    /// Opens a socket; `transports` is passed to `io()` as is (e.g. `Some(vec!["websocket"])`).
    /// Returns at once: call [`JsClient::wait_connect`] for the outcome.
    pub async fn connect_with(
        &self,
        url: &str,
        auth: Option<Value>,
        transports: Option<Vec<&str>>,
    ) -> JsClient {
        let n = self.shared.next_client.fetch_add(1, Ordering::Relaxed);
        let name = format!("c{n}");
        let inbox = Arc::new(ClientInbox::default());
        self.shared
            .clients
            .lock()
            .unwrap()
            .insert(name.clone(), inbox.clone());
        let client = JsClient {
            name,
            inbox,
            shared: self.shared.clone(),
        };
        client
            .send(json!({
                "op": "connect", "client": client.name, "url": url,
                "auth": auth, "transports": transports, "reconnection": false,
            }))
            .await;
        client
    }

    /// The driver's process id, for tests that want to kill it.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }
}

impl JsClient {
    /// The name the driver knows this socket by (`c1`, `c2`, ...).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Waits for the next connection outcome: `Ok(socket id)` or `Err(connect_error message)`.
    pub async fn wait_connect(&self) -> Result<String, String> {
        self.wait("connect or connect_error", DEFAULT_TIMEOUT, |q| {
            q.connects.pop_front()
        })
        .await
    }

    /// Emits with an ack and returns the ack's arguments; panics if the server does not ack
    /// within [`ACK_TIMEOUT`].
    pub async fn emit_ack(&self, event: &str, args: Vec<Value>) -> Vec<Value> {
        self.emit_ack_within(event, args, ACK_TIMEOUT)
            .await
            .unwrap_or_else(|| {
                panic!(
                    "client {}: no ack for {event:?} within {ACK_TIMEOUT:?}",
                    self.name
                )
            })
    }

    /// Emits with an ack; `None` if the server did not ack within `within`.
    pub async fn emit_ack_within(
        &self,
        event: &str,
        args: Vec<Value>,
        within: Duration,
    ) -> Option<Vec<Value>> {
        let req = self.shared.next_req.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.shared.acks.lock().unwrap().insert(req, tx);
        let timeout_ms = within.as_millis() as u64;
        self.send(json!({
            "op": "emit", "client": self.name, "event": event, "args": args,
            "ack": true, "req": req, "timeout_ms": timeout_ms,
        }))
        .await;
        match tokio::time::timeout(within + DEFAULT_TIMEOUT, rx).await {
            Ok(Ok(AckOutcome::Args(args))) => Some(args),
            Ok(Ok(AckOutcome::TimedOut)) => None,
            Ok(Err(_)) => self.panic_waiting(&format!("ack for {event:?} (driver exited)")),
            Err(_) => self.panic_waiting(&format!("ack or ack_timeout for {event:?}")),
        }
    }

    /// Emits without an ack.
    pub async fn emit(&self, event: &str, args: Vec<Value>) {
        let cmd = json!({ "op": "emit", "client": self.name, "event": event, "args": args });
        self.send(cmd).await;
    }

    /// Returns the arguments of the next server event called `name`, waiting up to 10 s.
    pub async fn next_event(&self, name: &str) -> Vec<Value> {
        match self.next_event_timeout(name, DEFAULT_TIMEOUT).await {
            Some(args) => args,
            None => self.panic_waiting(&format!("event {name:?}")),
        }
    }

    /// Like [`JsClient::next_event`], but `None` after `timeout` instead of a panic.
    pub async fn next_event_timeout(&self, name: &str, timeout: Duration) -> Option<Vec<Value>> {
        self.try_wait(timeout, |q| take_event(&mut q.events, name))
            .await
    }

    /// Like [`JsClient::next_event`], with the driver's receive time (epoch ms).
    pub async fn next_event_timed(&self, name: &str) -> (Vec<Value>, u64) {
        match self
            .try_wait(DEFAULT_TIMEOUT, |q| take_timed_event(&mut q.events, name))
            .await
        {
            Some(v) => v,
            None => self.panic_waiting(&format!("event {name:?}")),
        }
    }

    /// Panics if an event called `name` is buffered or arrives within `within`.
    pub async fn assert_no_event(&self, name: &str, within: Duration) {
        if let Some(args) = self.next_event_timeout(name, within).await {
            panic!(
                "client {}: unexpected event {name:?} with args {args:?}",
                self.name
            );
        }
    }

    /// Removes and returns every buffered event called `name`, oldest first, without waiting.
    pub fn drain_events(&self, name: &str) -> Vec<Vec<Value>> {
        let mut q = self.inbox.queues.lock().unwrap();
        let (matched, rest) = q
            .events
            .drain(..)
            .partition::<VecDeque<_>, _>(|(e, _, _)| e == name);
        q.events = rest;
        matched.into_iter().map(|(_, args, _)| args).collect()
    }

    /// Waits for the socket's next disconnect and returns its reason
    /// (e.g. `"io server disconnect"`, `"transport close"`).
    pub async fn wait_disconnect(&self) -> String {
        self.wait("disconnect", DEFAULT_TIMEOUT, |q| q.disconnects.pop_front())
            .await
    }

    /// Disconnects the socket from the client side and waits until the driver did it. The
    /// resulting `"io client disconnect"` report is consumed, so a later `wait_disconnect`
    /// only sees disconnects the server caused.
    pub async fn close(&self) {
        self.send(json!({ "op": "close", "client": self.name }))
            .await;
        self.wait("closed", DEFAULT_TIMEOUT, |q| {
            (q.closed > 0).then(|| {
                q.closed -= 1;
                q.disconnects.retain(|r| r != "io client disconnect");
            })
        })
        .await;
    }

    /// Connects the same socket object again (after `close` or a server disconnect). Connect
    /// outcomes not yet awaited are forgotten, so the next `wait_connect` reports this attempt.
    pub async fn reconnect(&self) {
        self.inbox.queues.lock().unwrap().connects.clear();
        self.send(json!({ "op": "reconnect", "client": self.name }))
            .await;
    }

    async fn send(&self, cmd: Value) {
        let mut line = serde_json::to_vec(&cmd).expect("serialize driver command");
        line.push(b'\n');
        let written = {
            let mut stdin = self.shared.stdin.lock().await;
            match stdin.write_all(&line).await {
                Ok(()) => stdin.flush().await,
                Err(e) => Err(e),
            }
        };
        if let Err(e) = written {
            self.panic_waiting(&format!("the driver to accept a command ({e})"));
        }
    }

    /// Takes from the inbox with `take`, waiting until it yields or `timeout` passes.
    async fn try_wait<T>(
        &self,
        timeout: Duration,
        mut take: impl FnMut(&mut Queues) -> Option<T>,
    ) -> Option<T> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let changed = self.inbox.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable(); // registered before checking, so no wake-up is missed
            if let Some(found) = take(&mut self.inbox.queues.lock().unwrap()) {
                return Some(found);
            }
            if self.shared.exited.load(Ordering::Acquire) {
                self.panic_waiting("a report, but the driver process exited");
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return None;
            }
        }
    }

    async fn wait<T>(
        &self,
        what: &str,
        timeout: Duration,
        take: impl FnMut(&mut Queues) -> Option<T>,
    ) -> T {
        match self.try_wait(timeout, take).await {
            Some(found) => found,
            None => self.panic_waiting(what),
        }
    }

    fn panic_waiting(&self, what: &str) -> ! {
        let buffered: Vec<String> = {
            let q = self.inbox.queues.lock().unwrap();
            q.events.iter().map(|(e, _, _)| e.clone()).collect()
        };
        let errors = self.shared.errors.lock().unwrap().clone();
        panic!(
            "client {}: gave up waiting for {what}; buffered events: {buffered:?}; driver errors: {errors:?}",
            self.name
        )
    }
}

/// Removes the first event called `name`, leaving the others in order.
fn take_event(events: &mut VecDeque<(String, Vec<Value>, u64)>, name: &str) -> Option<Vec<Value>> {
    take_timed_event(events, name).map(|(args, _)| args)
}

fn take_timed_event(
    events: &mut VecDeque<(String, Vec<Value>, u64)>,
    name: &str,
) -> Option<(Vec<Value>, u64)> {
    let at = events.iter().position(|(e, _, _)| e == name)?;
    events.remove(at).map(|(_, args, t)| (args, t))
}

/// Reads the driver's stdout until it closes, filing every report.
async fn read_reports(stdout: ChildStdout, shared: Arc<Shared>) {
    let mut lines = BufReader::new(stdout).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        match serde_json::from_str::<Report>(&line) {
            Ok(report) => file_report(&shared, report),
            Err(e) => shared
                .errors
                .lock()
                .unwrap()
                .push(format!("unparseable line {line:?}: {e}")),
        }
    }
    shared.exited.store(true, Ordering::Release);
    shared.acks.lock().unwrap().clear(); // wakes ack waiters with a closed channel
    for inbox in shared.clients.lock().unwrap().values() {
        inbox.changed.notify_waiters();
    }
}

fn file_report(shared: &Shared, report: Report) {
    match report {
        Report::Ack { req, args } => complete_ack(shared, req, AckOutcome::Args(args)),
        Report::AckTimeout { req } => complete_ack(shared, req, AckOutcome::TimedOut),
        Report::DriverError { message } => {
            eprintln!("[js driver] driver_error: {message}");
            shared.errors.lock().unwrap().push(message);
        }
        Report::Connect { client, id } => {
            file_into(shared, &client, |q| q.connects.push_back(Ok(id)))
        }
        Report::ConnectError { client, message } => {
            file_into(shared, &client, |q| q.connects.push_back(Err(message)))
        }
        Report::Disconnect { client, reason } => {
            file_into(shared, &client, |q| q.disconnects.push_back(reason))
        }
        Report::Closed { client } => file_into(shared, &client, |q| q.closed += 1),
        Report::Event {
            client,
            event,
            args,
            at,
        } => file_into(shared, &client, |q| q.events.push_back((event, args, at))),
    }
}

/// Applies `file` to the client's queues and wakes its waiters.
fn file_into(shared: &Shared, client: &str, file: impl FnOnce(&mut Queues)) {
    let Some(inbox) = shared.clients.lock().unwrap().get(client).cloned() else {
        return shared
            .errors
            .lock()
            .unwrap()
            .push(format!("report for unknown client {client}"));
    };
    file(&mut inbox.queues.lock().unwrap());
    inbox.changed.notify_waiters();
}

fn complete_ack(shared: &Shared, req: u64, outcome: AckOutcome) {
    if let Some(tx) = shared.acks.lock().unwrap().remove(&req) {
        let _ = tx.send(outcome);
    }
}

/// Copies the driver's diagnostics to the test's stderr (captured by the test harness).
async fn forward_stderr(stderr: tokio::process::ChildStderr) {
    let mut lines = BufReader::new(stderr).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        eprintln!("[js driver] {line}");
    }
}
