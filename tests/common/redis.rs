//! A private `redis-server` per test, the Redis equivalent of [`super::broker`]: its own free
//! loopback port and directory, started and stopped (SIGTERM), killed (SIGKILL) or restarted
//! by the test. Never the shared 6379. By default it keeps nothing on disk, so a restart is a
//! Redis that lost its data (the harder case for cluster mode); [`Redis::start_persistent`]
//! keeps an append-only file instead.
#![allow(dead_code)]

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

use super::broker::free_port;
use super::wait::eventually;

/// Where Debian installs the server.
const REDIS_SERVER: &str = "/usr/bin/redis-server";
/// How long the server gets to start accepting, or to exit after SIGTERM.
const REDIS_TIMEOUT: Duration = Duration::from_secs(10);

/// A running redis-server owned by one test. Dropping it kills the process and removes its
/// directory.
pub struct Redis {
    dir: TempDir,
    port: u16,
    persistent: bool,
    child: Option<Child>,
}

impl Redis {
    /// A server that keeps nothing on disk.
    pub async fn start() -> Redis {
        Self::launch(false).await
    }

    /// A server with an append-only file (fsync every second): a restart keeps its data.
    pub async fn start_persistent() -> Redis {
        Self::launch(true).await
    }

    async fn launch(persistent: bool) -> Redis {
        let dir = tempfile::Builder::new()
            .prefix("sensorcast-redis-")
            .tempdir()
            .expect("tempdir");
        let mut redis = Redis {
            dir,
            port: free_port(),
            persistent,
            child: None,
        };
        redis.spawn().await;
        redis
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// What the server logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default()
    }

    /// The server's process id (its CPU time, for the load generator).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// SIGTERM, and waits for the server to exit.
    pub async fn stop(&mut self) {
        self.signal_and_wait("TERM").await
    }

    /// SIGKILL, and waits for the process to be gone.
    pub async fn kill(&mut self) {
        self.signal_and_wait("KILL").await
    }

    /// Stops the server if it runs, then starts it again on the same port and directory.
    pub async fn restart(&mut self) {
        self.stop().await;
        self.spawn().await;
    }

    /// Starts the server again after [`Redis::stop`] or [`Redis::kill`].
    pub async fn start_again(&mut self) {
        assert!(self.child.is_none(), "redis-server is still running");
        self.spawn().await;
    }

    async fn signal_and_wait(&mut self, sig: &str) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = child.id().expect("running redis has a pid").to_string();
        let ok = std::process::Command::new("kill")
            .args([&format!("-{sig}"), &pid])
            .status()
            .expect("run kill")
            .success();
        assert!(ok, "kill -{sig} {pid} failed");
        match tokio::time::timeout(REDIS_TIMEOUT, child.wait()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => panic!("waiting for redis-server to exit: {e}"),
            Err(_) => panic!("redis-server ignored SIG{sig}; log:\n{}", self.log()),
        }
    }

    async fn spawn(&mut self) {
        let dir = self.dir.path();
        let mut cmd = Command::new(REDIS_SERVER);
        cmd.arg("--port")
            .arg(self.port.to_string())
            .args(["--bind", "127.0.0.1", "--protected-mode", "no"])
            .arg("--dir")
            .arg(dir)
            .args(["--save", ""])
            .arg("--logfile")
            .arg(dir.join("redis.log"));
        if self.persistent {
            cmd.args(["--appendonly", "yes", "--appendfsync", "everysec"]);
        } else {
            cmd.args(["--appendonly", "no"]);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {REDIS_SERVER} (apt-get install redis-server): {e}"));
        self.child = Some(child);
        self.wait_answering().await;
    }

    /// Polls until the server answers PING (a TCP accept alone may come before it loads).
    async fn wait_answering(&mut self) {
        let port = self.port;
        let dir = self.dir.path().to_owned();
        let child = self.child.as_mut().expect("spawned");
        let what = format!("redis-server to answer PING on port {port}");
        eventually(REDIS_TIMEOUT, &what, || {
            let exited = child.try_wait().expect("try_wait redis-server");
            let dir = dir.clone();
            async move {
                if let Some(status) = exited {
                    panic!("redis-server exited with {status}; log:\n{}", log_in(&dir));
                }
                match ping(port).await {
                    Ok(()) => Ok(()),
                    Err(e) => Err(e),
                }
            }
        })
        .await
    }

    /// Runs one command (RESP, inline form) and returns the raw answer: for a test to look
    /// at what the cluster keeps (`HGETALL sensorcast:owner`).
    pub async fn command(&self, args: &[&str]) -> String {
        let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .expect("connect to redis");
        let mut req = format!("*{}\r\n", args.len());
        for a in args {
            req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        tcp.write_all(req.as_bytes()).await.unwrap();
        let mut buf = vec![0u8; 64 * 1024];
        let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf))
            .await
            .expect("redis answers in 5 s")
            .unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }
}

fn log_in(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("redis.log")).unwrap_or_default()
}

async fn ping(port: u16) -> Result<(), String> {
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| e.to_string())?;
    tcp.write_all(b"PING\r\n")
        .await
        .map_err(|e| e.to_string())?;
    let mut buf = [0u8; 64];
    let n = tcp.read(&mut buf).await.map_err(|e| e.to_string())?;
    let answer = String::from_utf8_lossy(&buf[..n]).into_owned();
    if answer.starts_with("+PONG") {
        Ok(())
    } else {
        Err(format!("answered {answer:?}"))
    }
}
