//! The processes under test and around them: a private mosquitto (Nagle off, on the harness
//! core) and the three servers (sensorcast, the plain socketioxide broadcast server, the Node
//! reference), each pinned to the measured core with `taskset`, each given a
//! registry/mapping for the scenario's topology (sensor i → unit i%U → site → org).

use anyhow::{bail, Context};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const JWT_SECRET: &str = "bench-secret-0123456789abcdef";
pub const ORG: &str = "o0";

/// sensor i → unit i % units → site (unit % sites) → one organization.
#[derive(Debug, Clone, Copy)]
pub struct Topology {
    pub sensors: u64,
    pub units: u64,
}

impl Topology {
    pub fn sites(&self) -> u64 {
        self.units.min(10)
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// A child process that is stopped (SIGTERM, then SIGKILL) when dropped.
pub struct Proc {
    pub child: Child,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn pinned(cpu: usize, program: &Path) -> Command {
    let mut c = Command::new("taskset");
    c.arg("-c").arg(cpu.to_string()).arg(program);
    c
}

/// A server under test: pinned, and always under the normal scheduler, even when the harness
/// runs SCHED_FIFO (`--rt`, inherited by mosquitto). Servers under SCHED_FIFO were tried and
/// rejected: on one core, Node's helper threads (GC, libuv) then cannot time-slice with its
/// main thread, and its CPU per delivery doubled.
pub fn server_command(cpu: usize, program: &Path) -> Command {
    let mut c = Command::new("chrt");
    c.args(["-o", "0", "taskset", "-c"])
        .arg(cpu.to_string())
        .arg(program);
    c
}

pub fn log_file(dir: &Path, name: &str) -> anyhow::Result<Stdio> {
    Ok(std::fs::File::create(dir.join(name))?.into())
}

pub fn start_mosquitto(dir: &Path, cpu: usize) -> anyhow::Result<(Proc, u16)> {
    let port = free_port();
    let conf = dir.join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n\
             set_tcp_nodelay true\nmax_queued_messages 0\nlog_dest stderr\nlog_type error\n\
             log_type warning\n"
        ),
    )?;
    let child = pinned(cpu, Path::new("/usr/sbin/mosquitto"))
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(log_file(dir, "mosquitto.log")?)
        .spawn()
        .context("start mosquitto")?;
    let p = Proc { child };
    wait_for(Duration::from_secs(10), || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    })
    .context("mosquitto did not start listening")?;
    Ok((p, port))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stack {
    Sensorcast,
    /// A plain socketioxide broadcast server (`src/bin/plain`): the yardstick of issue 11.
    Plain,
    Node,
}

impl Stack {
    /// In the order they run within a scenario and appear in the table.
    pub const ALL: [Stack; 3] = [Stack::Sensorcast, Stack::Plain, Stack::Node];

    pub fn name(self) -> &'static str {
        match self {
            Stack::Sensorcast => "sensorcast",
            Stack::Plain => "plain",
            Stack::Node => "node-ref",
        }
    }

    /// `--stacks` names: `sensorcast`, `plain`, `node` (or `node-ref`).
    pub fn parse(name: &str) -> Option<Stack> {
        match name {
            "sensorcast" => Some(Stack::Sensorcast),
            "plain" => Some(Stack::Plain),
            "node" | "node-ref" => Some(Stack::Node),
            _ => None,
        }
    }

    /// The selected stacks in [`Stack::ALL`] order; all three when `names` is empty.
    pub fn select(names: &[String]) -> anyhow::Result<Vec<Stack>> {
        let mut picked = Vec::new();
        for n in names {
            match Stack::parse(n.trim()) {
                Some(s) => picked.push(s),
                None => bail!("unknown stack {n:?} (sensorcast, plain, node)"),
            }
        }
        Ok(Stack::ALL
            .into_iter()
            .filter(|s| names.is_empty() || picked.contains(s))
            .collect())
    }

    /// Whether the stack has something to measure in `scenario`: the plain server has no
    /// alerting, so it skips the alert scenario (Node runs it and reports no events, which is
    /// the comparison the alert rows make).
    pub fn runs(self, scenario: &str) -> bool {
        !(self == Stack::Plain && scenario == "alert")
    }
}

pub struct Server {
    pub proc: Proc,
    pub port: u16,
    /// From spawn to ready (sensorcast and plain: `/health/ready` 200; node:
    /// `/health/realtime` 200).
    pub cold_start: Duration,
}

pub struct Paths {
    pub sensorcast_bin: PathBuf,
    pub plain_bin: PathBuf,
    pub node_dir: PathBuf,
}

pub fn start_server(
    stack: Stack,
    paths: &Paths,
    topo: Topology,
    mqtt_port: u16,
    dir: &Path,
    cpu: usize,
) -> anyhow::Result<Server> {
    let dir = dir.join(format!("{}-{}", stack.name(), free_port()));
    std::fs::create_dir_all(&dir)?;
    let port = free_port();
    let (mut cmd, ready_path) = match stack {
        Stack::Sensorcast => {
            write_sensorcast_config(&dir, topo, port, mqtt_port)?;
            let mut c = server_command(cpu, &paths.sensorcast_bin);
            c.arg("--config").arg(dir.join("sensorcast.toml"));
            (c, "/health/ready")
        }
        // Configured like the Node reference: the same mapping file and environment.
        Stack::Plain => {
            std::fs::write(dir.join("mapping.json"), node_mapping(topo).to_string())?;
            let mut c = server_command(cpu, &paths.plain_bin);
            c.env("PORT", port.to_string())
                .env("MQTT_URL", format!("mqtt://127.0.0.1:{mqtt_port}"))
                .env("MAPPING", dir.join("mapping.json"))
                .env("JWT_SECRET", JWT_SECRET);
            (c, "/health/ready")
        }
        Stack::Node => {
            std::fs::write(dir.join("mapping.json"), node_mapping(topo).to_string())?;
            let mut c = server_command(cpu, Path::new("node"));
            c.arg(paths.node_dir.join("node-ref.js"))
                .current_dir(&paths.node_dir)
                .env("PORT", port.to_string())
                .env("MQTT_URL", format!("mqtt://127.0.0.1:{mqtt_port}"))
                .env("MAPPING", dir.join("mapping.json"))
                .env("JWT_SECRET", JWT_SECRET);
            (c, "/health/realtime")
        }
    };
    let started = Instant::now();
    let child = cmd
        .stdout(log_file(&dir, "stdout.log")?)
        .stderr(log_file(&dir, "stderr.log")?)
        .spawn()
        .with_context(|| format!("start {}", stack.name()))?;
    let mut proc = Proc { child };
    let ok = wait_for(Duration::from_secs(30), || {
        matches!(proc.child.try_wait(), Ok(None)) && http_status(port, ready_path) == Some(200)
    });
    if ok.is_err() {
        let log = std::fs::read_to_string(dir.join("stderr.log")).unwrap_or_default();
        bail!("{} did not become ready: {}", stack.name(), log.trim());
    }
    let cold_start = started.elapsed();
    Ok(Server {
        proc,
        port,
        cold_start,
    })
}

pub fn write_sensorcast_config(
    dir: &Path,
    t: Topology,
    port: u16,
    mqtt: u16,
) -> anyhow::Result<()> {
    std::fs::write(dir.join("jwt.secret"), JWT_SECRET)?;
    // Every unit has alert rules, as in production; no scenario but `alert` leaves the range
    // (its seq-encoded readings are 20.0-20.2 °C). `restore_after = 1`: one reading back in
    // range resolves, so each hot reading of the alert scenario triggers a new alert.
    let mut reg =
        format!("[[org]]\nid = \"{ORG}\"\ntemp_min = -50\ntemp_max = 30\nrestore_after = 1\n");
    for s in 0..t.sites() {
        reg += &format!("[[site]]\nid = \"st{s}\"\norg = \"{ORG}\"\n");
    }
    for u in 0..t.units {
        reg += &format!("[[unit]]\nid = \"u{u}\"\nsite = \"st{}\"\n", u % t.sites());
    }
    for s in 0..t.sensors {
        reg += &format!("[[sensor]]\nid = \"s{s}\"\nunit = \"u{}\"\n", s % t.units);
    }
    std::fs::write(dir.join("registry.toml"), reg)?;
    std::fs::write(
        dir.join("sensorcast.toml"),
        format!(
            r#"# Written by the load generator for one scenario.
[http]
listen = "127.0.0.1:{port}"
cors_origins = []
shutdown_timeout = "2s"

[mqtt]
url = "mqtt://127.0.0.1:{mqtt}"
client_id = "sensorcast-bench-{port}"
clean_session = true

[[mqtt.subscriptions]]
topic = "bench/+"
format = "json"
qos = 0

[auth]
mode = "jwt"
jwt_secret_file = "jwt.secret"
org_claim = "org_id"
role_claim = "role"

[registry]
file = "registry.toml"

[state]
dir = "state"

[log]
# The Node reference logs nothing; sensorcast's default (info) logs every socket connect.
level = "warn"
"#
        ),
    )?;
    Ok(())
}

fn node_mapping(t: Topology) -> serde_json::Value {
    let sensors: serde_json::Map<String, serde_json::Value> = (0..t.sensors)
        .map(|s| {
            let u = s % t.units;
            (
                format!("s{s}"),
                serde_json::json!({"unit": format!("u{u}"), "site": format!("st{}", u % t.sites()), "org": ORG}),
            )
        })
        .collect();
    serde_json::json!({ "sensors": sensors })
}

/// Status code of `GET path` on 127.0.0.1:port, or `None` if nothing answers.
pub fn http_status(port: u16, path: &str) -> Option<u16> {
    let mut s =
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200))
            .ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).ok()?;
    std::str::from_utf8(&buf[..n])
        .ok()?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

pub fn wait_for(limit: Duration, mut ok: impl FnMut() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    bail!("timed out after {limit:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stacks_are_selected_by_name_in_table_order() {
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(Stack::select(&[]).unwrap(), Stack::ALL.to_vec());
        assert_eq!(
            Stack::select(&names(&["node", "sensorcast"])).unwrap(),
            vec![Stack::Sensorcast, Stack::Node]
        );
        assert_eq!(
            Stack::select(&names(&["plain", "node-ref"])).unwrap(),
            vec![Stack::Plain, Stack::Node]
        );
        assert!(Stack::select(&names(&["sensorcast", "nodejs"])).is_err());
        assert!(!Stack::Plain.runs("alert"));
        assert!(Stack::Plain.runs("fanout") && Stack::Node.runs("alert"));
    }
}
