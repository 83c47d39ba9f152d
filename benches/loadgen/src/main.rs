//! sensorcast's load generator: drives a server under test with real MQTT publishes and real
//! Socket.io clients, and compares sensorcast side by side with a plain socketioxide broadcast
//! server (`src/bin/plain`, the yardstick of issue 11) and the Node reference stack.
//! See `docs/performance.md` for what each scenario does and how to read the table.
//!
//! Map: [`compare`] runs the scenarios and the broker/kernel baselines, [`scenario`] measures
//! one window, [`mqtt`] publishes (own thread) and subscribes, [`sio`] is the Socket.io client,
//! [`ledger`] matches deliveries to publishes, [`servers`] starts mosquitto and the servers,
//! [`floor`] measures the kernel cost of one websocket frame, [`procstat`] reads `/proc`,
//! [`report`] prints the table, [`jwt`] mints tokens. [`cluster`] runs sensorcast's cluster
//! mode with 1, 2 and 3 instances on a private Redis.

mod cluster;
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
    /// Every scenario against sensorcast, the plain server and the Node reference, plus
    /// baselines; prints a table.
    Compare {
        /// The sensorcast release binary.
        #[arg(long, default_value = "target/release/sensorcast")]
        sensorcast_bin: PathBuf,
        /// The plain socketioxide server (`cargo build --profile bench-server --bin plain` in
        /// benches/loadgen).
        #[arg(long, default_value = "benches/loadgen/target/bench-server/plain")]
        plain_bin: PathBuf,
        /// A folder with node-ref.js and its installed node_modules (outside the repo).
        #[arg(long, default_value = "/tmp/node-ref")]
        node_dir: PathBuf,
        /// Only these scenarios (latency, fanout, throughput, idle, alert); default all.
        #[arg(long, value_delimiter = ',')]
        scenarios: Vec<String>,
        /// Only these stacks (sensorcast, plain, node); default all three.
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
    /// Cluster mode (docs/scaling.md): the fan-out load (100 sensors, 10 units, each client on
    /// one unit) with a single box, then 1, 2, 3 instances on a private redis-server, clients
    /// spread over the instances; prints a table.
    Cluster {
        /// The sensorcast release binary.
        #[arg(long, default_value = "target/release/sensorcast")]
        sensorcast_bin: PathBuf,
        /// Instance counts to run; 0 is a single box without `[cluster]`.
        #[arg(long, value_delimiter = ',', default_value = "0,1,2,3")]
        instances: Vec<usize>,
        #[arg(long, default_value_t = 1000)]
        clients: usize,
        /// Readings per second.
        #[arg(long, default_value_t = 500.0)]
        rate: f64,
        /// Measured seconds (after 2 s of warm-up).
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
        /// Core for the instances and Redis; the harness and broker use the other one.
        #[arg(long, default_value_t = 1)]
        server_cpu: usize,
        /// Also write the table (markdown) here.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Sensors and units of the registry (each unit's readings come from its sensors in
        /// turn; client k subscribes to unit k mod units). A typical site: 500 and 500 with
        /// `--rate 50 --clients 50 --instances 0`.
        #[arg(long, default_value_t = 100)]
        sensors: u64,
        #[arg(long, default_value_t = 10)]
        units: u64,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Cluster {
            sensorcast_bin,
            instances,
            clients,
            rate,
            seconds,
            server_cpu,
            out,
            sensors,
            units,
        } => cluster_main(
            sensorcast_bin,
            &instances,
            (clients, rate, seconds),
            servers::Topology { sensors, units },
            server_cpu,
            out,
        ),
        compare @ Cmd::Compare { .. } => compare_main(compare),
    }
}

fn cluster_main(
    bin: PathBuf,
    instances: &[usize],
    (clients, rate, seconds): (usize, f64, f64),
    topo: servers::Topology,
    server_cpu: usize,
    out: Option<PathBuf>,
) -> anyhow::Result<()> {
    let bin = std::fs::canonicalize(&bin)
        .with_context(|| format!("{} (build it with cargo build --release)", bin.display()))?;
    let harness_cpu = 1 - server_cpu.min(1);
    procstat::pin_current_thread(harness_cpu);
    procstat::raise_nofile();
    let (dir, rt, mosquitto, mqtt_port) = bench_setup(harness_cpu)?;
    let env = scenario::Env {
        paths: servers::Paths {
            sensorcast_bin: bin.clone(),
            plain_bin: PathBuf::new(),
            node_dir: PathBuf::new(),
        },
        dir: dir.clone(),
        mqtt_port,
        mosquitto_pid: mosquitto.pid(),
        server_cpu,
        qos: rumqttc::QoS::AtMostOnce,
        time_scale: 1.0,
    };
    let rows = rt.block_on(cluster::run(
        &env, &bin, instances, clients, rate, seconds, topo,
    ))?;
    drop(mosquitto);
    let table = cluster::render(&rows);
    println!("{table}");
    if let Some(out) = out {
        std::fs::write(&out, &table)?;
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn compare_main(command: Cmd) -> anyhow::Result<()> {
    let Cmd::Compare {
        sensorcast_bin,
        plain_bin,
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
    } = command
    else {
        unreachable!("compare_main is called with Cmd::Compare")
    };
    let stacks = Stack::select(&stacks)?;
    let scenarios = compare::select_scenarios(&scenarios)?;
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
    // A binary is only required for a stack that runs.
    let binary = |stack: Stack, path: &PathBuf, how: &str| -> anyhow::Result<PathBuf> {
        if !stacks.contains(&stack) {
            return Ok(path.clone());
        }
        std::fs::canonicalize(path)
            .with_context(|| format!("{} (build it with {how})", path.display()))
    };
    let sensorcast_bin = binary(Stack::Sensorcast, &sensorcast_bin, "cargo build --release")?;
    let plain_bin = binary(
        Stack::Plain,
        &plain_bin,
        "cargo build --profile bench-server --bin plain --manifest-path benches/loadgen/Cargo.toml",
    )?;
    let (dir, rt, mosquitto, mqtt_port) = bench_setup(harness_cpu)?;
    let env = scenario::Env {
        paths: servers::Paths {
            sensorcast_bin: sensorcast_bin.clone(),
            plain_bin: plain_bin.clone(),
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
    let (results, broker, floor) = rt.block_on(async {
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
        let mut results: Vec<(Stack, StackResults)> = stacks
            .iter()
            .map(|&s| (s, StackResults::default()))
            .collect();
        // Scenario by scenario, the stacks back to back, so drift hits them alike.
        for s in &scenarios {
            let which = [s.to_string()];
            for (stack, r) in results.iter_mut() {
                if stack.runs(s) {
                    merge(
                        r,
                        compare::run_stack(&env, *stack, &which, !no_strace).await,
                    );
                }
            }
        }
        if !no_baselines {
            // The floor writes frames of the size the servers sent (sensorcast's, else the
            // plain server's: the same JSON shape), plus the 4-byte websocket header.
            let measured = [Stack::Sensorcast, Stack::Plain]
                .into_iter()
                .find_map(|want| {
                    results
                        .iter()
                        .find(|(s, r)| *s == want && r.fanout_frame_bytes > 0.0)
                        .map(|(_, r)| r.fanout_frame_bytes)
                });
            let bytes = measured.map_or(340, |b| b as usize + 4);
            eprintln!(
                "[floor] one send per {bytes}-byte frame, 1000 sockets, 50k/s, core {server_cpu}"
            );
            match floor::measure(1000, bytes, 50_000.0, 5.0 * time_scale.max(0.2), server_cpu).await
            {
                Ok(f) => floor = Some(f),
                Err(e) => eprintln!("[floor] failed: {e:#}"),
            }
        }
        (results, broker, floor)
    });
    drop(mosquitto);
    let size = |p: &PathBuf| std::fs::metadata(p).ok().map(|m| m.len());
    let table = report::render(&report::Inputs {
        stacks: &results,
        broker: &broker,
        floor,
        binary_bytes: &[
            (Stack::Sensorcast, size(&sensorcast_bin)),
            (Stack::Plain, size(&plain_bin)),
        ],
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

/// The bench's temp folder, its runtime, and mosquitto on the harness core.
fn bench_setup(
    harness_cpu: usize,
) -> anyhow::Result<(PathBuf, tokio::runtime::Runtime, servers::Proc, u16)> {
    let dir = std::env::temp_dir().join(format!("sensorcast-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (mosquitto, mqtt_port) = servers::start_mosquitto(&dir, harness_cpu)?;
    Ok((dir, rt, mosquitto, mqtt_port))
}
