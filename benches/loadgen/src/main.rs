//! sensorcast's load generator: drives a server under test with real MQTT publishes and real
//! Socket.io clients, and compares sensorcast with the Node reference stack side by side.
//! See `docs/performance.md` for what each scenario does and how to read the table.
//!
//! Map: [`compare`] runs the scenarios and the broker/kernel baselines, [`scenario`] measures
//! one window, [`mqtt`] publishes (own thread) and subscribes, [`sio`] is the Socket.io client,
//! [`ledger`] matches deliveries to publishes, [`servers`] starts mosquitto and the servers,
//! [`floor`] measures the kernel cost of one websocket frame, [`procstat`] reads `/proc`,
//! [`report`] prints the table, [`jwt`] mints tokens.

mod compare;
mod floor;
mod jwt;
mod ledger;
mod mqtt;
mod procstat;
mod report;
mod scenario;
mod servers;
mod sio;

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

use compare::StackResults;
use servers::Stack;

#[derive(Parser)]
#[command(
    name = "loadgen",
    about = "Load generator and side-by-side benchmark for sensorcast"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Every scenario against sensorcast and the Node reference, plus baselines; prints a table.
    Compare {
        /// The sensorcast release binary.
        #[arg(long, default_value = "target/release/sensorcast")]
        sensorcast_bin: PathBuf,
        /// A folder with node-ref.js and its installed node_modules (outside the repo).
        #[arg(long, default_value = "/tmp/node-ref")]
        node_dir: PathBuf,
        /// Only these scenarios (latency, fanout, throughput, idle, alert); default all.
        #[arg(long, value_delimiter = ',')]
        scenarios: Vec<String>,
        /// Only these stacks (sensorcast, node); default both.
        #[arg(long, value_delimiter = ',')]
        stacks: Vec<String>,
        /// Skip the broker-ceiling and kernel-floor baselines.
        #[arg(long)]
        no_baselines: bool,
        /// Skip only the broker-ceiling baseline (it takes a minute; the floor takes seconds).
        #[arg(long)]
        no_broker_ceiling: bool,
        /// Skip the fan-out run under `strace -c`.
        #[arg(long)]
        no_strace: bool,
        /// Multiplies every measured duration (0.5 for a quick look).
        #[arg(long, default_value_t = 1.0)]
        time_scale: f64,
        /// MQTT QoS of the publisher (0 or 1; the servers subscribe with QoS 0).
        #[arg(long, default_value_t = 0)]
        qos: u8,
        /// Core for the server under test; the harness and broker use the other one.
        #[arg(long, default_value_t = 1)]
        server_cpu: usize,
        /// Run the harness and mosquitto as SCHED_FIFO 10 (root only; servers stay SCHED_OTHER):
        /// on a machine where other work runs, it keeps that work from delaying the harness.
        #[arg(long)]
        rt: bool,
        /// Also write the table (markdown) here.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let Cmd::Compare {
        sensorcast_bin,
        node_dir,
        scenarios,
        stacks,
        no_baselines,
        no_broker_ceiling,
        no_strace,
        time_scale,
        qos,
        server_cpu,
        rt,
        out,
    } = cli.command;
    let harness_cpu = 1 - server_cpu.min(1);
    // Every thread created from here on inherits the harness core (the broker-ceiling
    // subscriber and the kernel-floor writer re-pin themselves to the server core).
    procstat::pin_current_thread(harness_cpu);
    procstat::raise_nofile();
    if rt {
        let param = libc::sched_param { sched_priority: 10 };
        if unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) } != 0 {
            anyhow::bail!("--rt: sched_setscheduler failed (needs root)");
        }
    }
    let dir = std::env::temp_dir().join(format!("sensorcast-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let sensorcast_bin = std::fs::canonicalize(&sensorcast_bin).with_context(|| {
        format!(
            "{} (build it with cargo build --release)",
            sensorcast_bin.display()
        )
    })?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (mosquitto, mqtt_port) = servers::start_mosquitto(&dir, harness_cpu)?;
    let env = scenario::Env {
        paths: servers::Paths {
            sensorcast_bin: sensorcast_bin.clone(),
            node_dir,
        },
        dir: dir.clone(),
        mqtt_port,
        mosquitto_pid: mosquitto.pid(),
        server_cpu,
        qos: if qos == 0 {
            rumqttc::QoS::AtMostOnce
        } else {
            rumqttc::QoS::AtLeastOnce
        },
        time_scale,
    };
    let want_stack = |s: &str| stacks.is_empty() || stacks.iter().any(|x| x == s);
    let all = ["latency", "fanout", "throughput", "idle", "alert"];
    let (sc, node, broker, floor) = rt.block_on(async {
        let mut broker = Vec::new();
        let mut floor = None;
        if !no_baselines && !no_broker_ceiling {
            eprintln!(
                "[broker] ceiling: publisher -> mosquitto -> subscriber on core {server_cpu}"
            );
            match compare::broker_ceiling(&env).await {
                Ok(b) => broker = b,
                Err(e) => eprintln!("[broker] failed: {e:#}"),
            }
        }
        let mut sc = StackResults::default();
        let mut node = StackResults::default();
        // Scenario by scenario, both stacks back to back, so drift hits both alike.
        for s in all {
            if !scenarios.is_empty() && !scenarios.iter().any(|x| x == s) {
                continue;
            }
            let which = [s.to_string()];
            if want_stack("sensorcast") {
                merge(
                    &mut sc,
                    compare::run_stack(&env, Stack::Sensorcast, &which, !no_strace).await,
                );
            }
            if want_stack("node") {
                merge(
                    &mut node,
                    compare::run_stack(&env, Stack::Node, &which, !no_strace).await,
                );
            }
        }
        if !no_baselines {
            let bytes = if sc.fanout_frame_bytes > 0.0 {
                sc.fanout_frame_bytes as usize + 4
            } else {
                340
            };
            eprintln!(
                "[floor] one send per {bytes}-byte frame, 1000 sockets, 50k/s, core {server_cpu}"
            );
            match floor::measure(1000, bytes, 50_000.0, 5.0 * time_scale.max(0.2), server_cpu).await
            {
                Ok(f) => floor = Some(f),
                Err(e) => eprintln!("[floor] failed: {e:#}"),
            }
        }
        (sc, node, broker, floor)
    });
    drop(mosquitto);
    let table = report::render(&report::Inputs {
        sc: &sc,
        node: &node,
        broker: &broker,
        floor,
        binary_bytes: std::fs::metadata(&sensorcast_bin).ok().map(|m| m.len()),
    });
    println!("{table}");
    if let Some(out) = out {
        std::fs::write(&out, &table)?;
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn merge(into: &mut StackResults, from: StackResults) {
    into.cold_starts_ms.extend(from.cold_starts_ms);
    into.latency = into.latency.take().or(from.latency);
    if from.fanout.is_some() {
        into.fanout = from.fanout;
        into.fanout_frame_bytes = from.fanout_frame_bytes;
    }
    if !from.throughput.is_empty() {
        into.throughput = from.throughput;
    }
    into.idle = into.idle.take().or(from.idle);
    into.alert = into.alert.take().or(from.alert);
    into.strace = into.strace.take().or(from.strace);
    into.errors.extend(from.errors);
}
