//! The scenarios of issue 7, each run against one freshly started server: latency, fan-out,
//! throughput with rising rates, idle memory with 2000 clients, alert latency. Every measured
//! window publishes a warm-up first (not counted), then the measured readings, waits for the
//! deliveries to drain, and reads the server's CPU and RSS around it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

use crate::ledger::{percentiles, Ledger, Percentiles};
use crate::mqtt::{self, PublishPlan};
use crate::procstat::{self, Sample};
use crate::servers::{self, Paths, Server, Stack, Topology, JWT_SECRET, ORG};
use crate::sio::{self, ClientEnd, ClientSpec};

/// Things the table must mention (clients that failed to connect), in the order they happened.
pub static NOTES: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// What every scenario needs: the broker, where servers come from, and the cores.
pub struct Env {
    pub paths: Paths,
    pub dir: PathBuf,
    pub mqtt_port: u16,
    pub mosquitto_pid: u32,
    pub server_cpu: usize,
    pub qos: rumqttc::QoS,
    /// Scales every measured duration (1.0 = the documented run).
    pub time_scale: f64,
}

/// One measured window.
#[derive(Debug, Clone, Default)]
pub struct Window {
    pub rate: f64,
    pub secs: f64,
    pub expected: u64,
    pub delivered: u64,
    pub lat: Percentiles,
    /// Server CPU seconds over the window (schedstat; utime+stime beside it).
    pub server_cpu_s: f64,
    pub server_stat_cpu_s: f64,
    pub server_rss_kib: u64,
    /// Load generator + mosquitto CPU over the window, as a share of one core.
    pub harness_core: f64,
    /// Publisher's achieved rate / planned rate.
    pub achieved: f64,
}

impl Window {
    pub fn delivered_ratio(&self) -> f64 {
        if self.expected == 0 {
            0.0
        } else {
            self.delivered as f64 / self.expected as f64
        }
    }
    pub fn cpu_us_per_delivery(&self) -> f64 {
        self.server_cpu_s * 1e6 / self.delivered.max(1) as f64
    }
}

/// Where readings go and who expects them: the ledger, the topology, how many sockets (or
/// subscribers) want each unit, and the process whose CPU is measured.
pub struct Feed {
    pub topo: Topology,
    pub ledger: Arc<Ledger>,
    /// Subscribers per unit.
    pub subs: Vec<u64>,
    pub next_seq: u64,
    pub pid: Option<u32>,
}

/// A server with its clients connected and subscribed.
pub struct Session {
    pub server: Server,
    pub feed: Feed,
    pub connect_time: Duration,
    /// Clients whose handshake or subscribe failed (timed out or refused); also in [`NOTES`].
    #[allow(dead_code)]
    pub connect_failures: usize,
    pub rss_before_clients_kib: u64,
    pub rss_anon_before_clients_kib: u64,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<ClientEnd>>,
}

pub fn token(i: usize) -> String {
    crate::jwt::mint(JWT_SECRET, &format!("bench-user-{i}"), ORG, "viewer")
}

impl Env {
    fn secs(&self, s: f64) -> f64 {
        (s * self.time_scale).max(1.0)
    }

    /// Starts a server for `topo` and connects `clients` sockets, client k subscribed to units
    /// `(k * per_client + j) % units` for j in 0..per_client.
    pub async fn session(
        &self,
        stack: Stack,
        topo: Topology,
        clients: usize,
        per_client: usize,
        ledger_capacity: usize,
    ) -> anyhow::Result<Session> {
        let server = servers::start_server(
            stack,
            &self.paths,
            topo,
            self.mqtt_port,
            &self.dir,
            self.server_cpu,
        )?;
        let ledger = Arc::new(Ledger::new(ledger_capacity));
        let (stop, stop_rx) = watch::channel(false);
        let probe_base = ledger_capacity as u64 - 2000;
        self.probe(&server, &ledger, probe_base, stop_rx.clone())
            .await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let before_clients = procstat::sample(server.proc.pid());
        let rss_before_clients_kib = before_clients.rss_kib;
        let rss_anon_before_clients_kib = before_clients.rss_anon_kib;
        let mut subs = vec![0u64; topo.units as usize];
        let specs: Vec<ClientSpec> = (0..clients)
            .map(|k| {
                let units = (0..per_client)
                    .map(|j| {
                        let u = (k * per_client + j) % topo.units as usize;
                        subs[u] += 1;
                        format!("u{u}")
                    })
                    .collect();
                ClientSpec {
                    port: server.port,
                    token: token(k),
                    units,
                }
            })
            .collect();
        let unit_lists: Vec<Vec<String>> = specs.iter().map(|s| s.units.clone()).collect();
        let connected = sio::connect_all(specs, 256, ledger.clone(), stop_rx).await?;
        // A client that failed is not expecting anything: take its units out of `subs`.
        for &i in &connected.failed {
            for u in &unit_lists[i] {
                subs[u[1..].parse::<usize>()?] -= 1;
            }
        }
        if let Some(e) = &connected.first_error {
            let note = format!(
                "{}: {} of {clients} clients failed to connect; first: {e}",
                stack.name(),
                connected.failed.len()
            );
            eprintln!("[{note}]");
            NOTES.lock().expect("notes").push(note);
        }
        let (connect_time, tasks) = (connected.took, connected.tasks);
        let connect_failures = connected.failed.len();
        let pid = Some(server.proc.pid());
        Ok(Session {
            server,
            feed: Feed {
                topo,
                ledger,
                subs,
                next_seq: 0,
                pid,
            },
            connect_time,
            connect_failures,
            rss_before_clients_kib,
            rss_anon_before_clients_kib,
            stop,
            tasks,
        })
    }

    /// Publishes readings of `s0` until a socket subscribed to `u0` sees one: the server is
    /// connected to the broker and its whole pipeline works.
    async fn probe(
        &self,
        server: &Server,
        ledger: &Arc<Ledger>,
        base: u64,
        stop: watch::Receiver<bool>,
    ) -> anyhow::Result<()> {
        let spec = ClientSpec {
            port: server.port,
            token: token(usize::MAX),
            units: vec!["u0".into()],
        };
        let ws = sio::connect(&spec).await?;
        let (probe_stop, probe_rx) = watch::channel(false);
        let task = tokio::spawn(sio::run(ws, ledger.clone(), probe_rx));
        let _ = stop;
        for attempt in 0..40u64 {
            let plan = PublishPlan {
                port: self.mqtt_port,
                rate: 200.0,
                first_seq: base + attempt * 10,
                count: 1,
                sensors: 1,
                qos: self.qos,
                fixed_temperature: None,
            };
            // seq % sensors(=1) = 0: every probe reading is s0's. Sensor 0 maps to unit 0.
            mqtt::publish(plan, ledger.clone()).await??;
            tokio::time::sleep(Duration::from_millis(100)).await;
            if ledger.delivered_in(base, base + 400) > 0 {
                let _ = probe_stop.send(true);
                let _ = task.await;
                ledger.take_latencies(0, 0);
                return Ok(());
            }
        }
        anyhow::bail!("no reading reached a subscribed socket within 6 s (pipeline not ready)")
    }

    /// Publishes `warm_s` then `measure_s` seconds at `rate`, drains, and measures.
    pub async fn window(
        &self,
        s: &mut Feed,
        rate: f64,
        warm_s: f64,
        measure_s: f64,
        fixed_temperature: Option<fn(u64) -> Option<f64>>,
    ) -> anyhow::Result<Window> {
        let warm = (rate * self.secs(warm_s)) as u64;
        let measured = (rate * self.secs(measure_s)) as u64;
        let first = s.next_seq;
        let lo = first + warm;
        let hi = lo + measured;
        anyhow::ensure!(hi < s.ledger.capacity() - 2000, "ledger too small");
        s.next_seq = hi;
        let plan = PublishPlan {
            port: self.mqtt_port,
            rate,
            first_seq: first,
            count: warm + measured,
            sensors: s.topo.sensors,
            qos: self.qos,
            fixed_temperature,
        };
        let publishing = mqtt::publish(plan, s.ledger.clone());
        tokio::time::sleep(Duration::from_secs_f64(warm as f64 / rate)).await;
        let t0 = Instant::now();
        let before = s.pid.map(procstat::sample).unwrap_or_default();
        let h0 = self.harness_cpu();
        let report = publishing.await??;
        // Drain: until everything expected arrived, or nothing new for 500 ms (max 5 s).
        let expected: u64 = (lo..hi)
            .map(|q| s.subs[((q % s.topo.sensors) % s.topo.units) as usize])
            .sum();
        let mut last = (s.ledger.delivered_in(lo, hi), Instant::now());
        let drain_start = Instant::now();
        while last.0 < expected && drain_start.elapsed() < Duration::from_secs(5) {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let now = s.ledger.delivered_in(lo, hi);
            if now != last.0 {
                last = (now, Instant::now());
            } else if last.1.elapsed() > Duration::from_millis(500) {
                break;
            }
        }
        let after = s.pid.map(procstat::sample).unwrap_or_default();
        let secs = t0.elapsed().as_secs_f64();
        let harness = (self.harness_cpu() - h0) / secs;
        let delivered = s.ledger.delivered_in(lo, hi);
        Ok(Window {
            rate,
            secs,
            expected,
            delivered,
            lat: percentiles(s.ledger.take_latencies(lo, hi)),
            server_cpu_s: after.cpu_since(&before),
            server_stat_cpu_s: after.stat_cpu_since(&before),
            server_rss_kib: after.rss_kib,
            harness_core: harness,
            achieved: report.achieved,
        })
    }

    /// CPU seconds of the load generator itself plus mosquitto.
    fn harness_cpu(&self) -> f64 {
        procstat::sample(std::process::id()).cpu_since(&Sample::default())
            + procstat::sample(self.mosquitto_pid).cpu_since(&Sample::default())
    }
}

impl Session {
    pub fn server_sample(&self) -> Sample {
        procstat::sample(self.server.proc.pid())
    }

    /// Closes every client and stops the server; returns what the clients saw.
    pub async fn close(self) -> Vec<ClientEnd> {
        let _ = self.stop.send(true);
        let mut ends = Vec::with_capacity(self.tasks.len());
        for t in self.tasks {
            if let Ok(e) = t.await {
                ends.push(e);
            }
        }
        drop(self.server);
        ends
    }
}
