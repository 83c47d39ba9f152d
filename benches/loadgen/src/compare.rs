//! `loadgen compare`: every scenario against sensorcast, the plain socketioxide broadcast server
//! and the Node reference in one run, on one broker, with the same load and pinning, plus the
//! broker's own ceiling and the kernel floor per websocket frame; then one table with the
//! stacks side by side and the ratios sensorcast / plain and sensorcast / node.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::ledger::{self, Ledger};
use crate::mqtt;
use crate::scenario::{Env, Feed, Window};
use crate::servers::{Stack, Topology};

/// Rates of the throughput scenario, readings/s (one subscribed socket per unit).
pub const RATES: &[f64] = &[
    2_000.0, 5_000.0, 10_000.0, 15_000.0, 20_000.0, 30_000.0, 40_000.0, 50_000.0, 60_000.0,
    80_000.0,
];
pub const P99_LIMIT_MS: f64 = 10.0;

/// Every scenario, in the order they run.
pub const SCENARIOS: [&str; 5] = ["latency", "fanout", "throughput", "idle", "alert"];

/// The `--scenarios` to run, in [`SCENARIOS`] order; all when `names` is empty.
pub fn select_scenarios(names: &[String]) -> anyhow::Result<Vec<&'static str>> {
    if let Some(bad) = names.iter().find(|n| !SCENARIOS.contains(&n.trim())) {
        anyhow::bail!("unknown scenario {bad:?} ({})", SCENARIOS.join(", "));
    }
    Ok(SCENARIOS
        .into_iter()
        .filter(|s| names.is_empty() || names.iter().any(|n| n.trim() == *s))
        .collect())
}

#[derive(Debug, Default)]
pub struct Idle {
    pub clients: usize,
    pub rss_no_clients_kib: u64,
    pub rss_anon_no_clients_kib: u64,
    pub rss_with_clients_kib: u64,
    pub connect_s: f64,
}

#[derive(Debug, Default)]
pub struct Strace {
    pub deliveries: u64,
    /// (syscall, calls), most called first.
    pub calls: Vec<(String, u64)>,
}

#[derive(Debug, Default)]
pub struct Alert {
    pub received: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

#[derive(Debug, Default)]
pub struct StackResults {
    pub cold_starts_ms: Vec<f64>,
    pub latency: Option<Window>,
    pub fanout: Option<Window>,
    pub fanout_frame_bytes: f64,
    pub throughput: Vec<(Window, &'static str)>,
    pub idle: Option<Idle>,
    pub alert: Option<Alert>,
    pub strace: Option<Strace>,
    pub errors: Vec<String>,
}

impl StackResults {
    /// Highest rate that kept p99 ≤ 10 ms with every delivery.
    pub fn ceiling(&self) -> Option<f64> {
        self.throughput
            .iter()
            .filter(|(_, v)| *v == "pass")
            .map(|(w, _)| w.rate)
            .fold(None, |a, r| Some(a.map_or(r, |a: f64| a.max(r))))
    }
    pub fn at_rate(&self, rate: f64) -> Option<&Window> {
        self.throughput
            .iter()
            .find(|(w, _)| w.rate == rate)
            .map(|(w, _)| w)
    }
}

pub fn verdict(w: &Window) -> &'static str {
    if w.achieved < 0.97 {
        "harness-limited"
    } else if w.delivered < w.expected {
        "lost"
    } else if w.lat.p99 > P99_LIMIT_MS {
        "p99>10ms"
    } else {
        "pass"
    }
}

fn log(stack: Stack, what: &str) {
    eprintln!("[{}] {what}", stack.name());
}

pub async fn run_stack(env: &Env, stack: Stack, which: &[String], strace: bool) -> StackResults {
    let mut r = StackResults::default();
    let want = |s: &str| which.is_empty() || which.iter().any(|w| w == s);
    macro_rules! attempt {
        ($name:expr, $e:expr) => {
            match $e {
                Ok(v) => Some(v),
                Err(e) => {
                    let msg = format!("{}: {:#}", $name, e);
                    log(stack, &msg);
                    r.errors.push(msg);
                    None
                }
            }
        };
    }
    if want("latency") {
        log(
            stack,
            "latency: 1000 sensors, 100 units, 200 clients x 1 unit, 1000/s",
        );
        r.latency = attempt!("latency", latency(env, stack, &mut r.cold_starts_ms).await);
    }
    if want("fanout") {
        log(
            stack,
            "fan-out: 100 sensors, 10 units, 1000 clients x 1 unit, 500/s",
        );
        if let Some((w, bytes)) =
            attempt!("fanout", fanout(env, stack, &mut r.cold_starts_ms).await)
        {
            r.fanout = Some(w);
            r.fanout_frame_bytes = bytes;
        }
        if strace {
            log(
                stack,
                "fan-out under strace -c (100/s, syscall counts only)",
            );
            r.strace = attempt!("strace", strace_fanout(env, stack).await);
        }
    }
    if want("throughput") {
        log(
            stack,
            "throughput: 1000 sensors, 1000 units, 50 clients x 20 units, rising rates",
        );
        if let Some(t) = attempt!(
            "throughput",
            throughput(env, stack, &mut r.cold_starts_ms).await
        ) {
            r.throughput = t;
        }
    }
    if want("idle") {
        log(stack, "idle memory: 2000 subscribed clients, no traffic");
        r.idle = attempt!("idle", idle(env, stack, 2000, &mut r.cold_starts_ms).await);
    }
    if want("alert") {
        log(stack, "alert latency: 1000/s, s0 hot every 100th reading");
        r.alert = attempt!("alert", alert(env, stack, &mut r.cold_starts_ms).await);
    }
    r
}

async fn latency(env: &Env, stack: Stack, starts: &mut Vec<f64>) -> anyhow::Result<Window> {
    let topo = Topology {
        sensors: 1000,
        units: 100,
    };
    let mut s = env.session(stack, topo, 200, 1, 200_000).await?;
    starts.push(s.server.cold_start.as_secs_f64() * 1e3);
    let w = env.window(&mut s.feed, 1000.0, 2.0, 10.0, None).await;
    s.close().await;
    w
}

async fn fanout(env: &Env, stack: Stack, starts: &mut Vec<f64>) -> anyhow::Result<(Window, f64)> {
    let topo = Topology {
        sensors: 100,
        units: 10,
    };
    let mut s = env.session(stack, topo, 1000, 1, 200_000).await?;
    starts.push(s.server.cold_start.as_secs_f64() * 1e3);
    let w = env.window(&mut s.feed, 500.0, 2.0, 10.0, None).await;
    let ends = s.close().await;
    let (n, bytes) = ends.iter().fold((0u64, 0u64), |a, e| {
        (a.0 + e.readings, a.1 + e.reading_bytes)
    });
    Ok((w?, bytes as f64 / n.max(1) as f64))
}

async fn throughput(
    env: &Env,
    stack: Stack,
    starts: &mut Vec<f64>,
) -> anyhow::Result<Vec<(Window, &'static str)>> {
    let topo = Topology {
        sensors: 1000,
        units: 1000,
    };
    let mut s = env.session(stack, topo, 50, 20, 3_000_000).await?;
    starts.push(s.server.cold_start.as_secs_f64() * 1e3);
    let mut steps = Vec::new();
    for &rate in RATES {
        let w = env.window(&mut s.feed, rate, 1.0, 4.0, None).await?;
        let v = verdict(&w);
        log(
            stack,
            &format!(
                "  {rate}/s: p50 {:.2} p99 {:.2} ms, delivered {:.3}%, server {:.0}% of a core, harness {:.0}% -> {v}",
                w.lat.p50,
                w.lat.p99,
                w.delivered_ratio() * 100.0,
                w.server_cpu_s / w.secs * 100.0,
                w.harness_core * 100.0
            ),
        );
        steps.push((w, v));
        if v != "pass" {
            break;
        }
    }
    s.close().await;
    Ok(steps)
}

async fn idle(
    env: &Env,
    stack: Stack,
    clients: usize,
    starts: &mut Vec<f64>,
) -> anyhow::Result<Idle> {
    let topo = Topology {
        sensors: 1000,
        units: 100,
    };
    let s = env.session(stack, topo, clients, 1, 10_000).await?;
    starts.push(s.server.cold_start.as_secs_f64() * 1e3);
    // Let allocators and Node's GC settle before reading RSS.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let idle = Idle {
        clients,
        rss_no_clients_kib: s.rss_before_clients_kib,
        rss_anon_no_clients_kib: s.rss_anon_before_clients_kib,
        rss_with_clients_kib: s.server_sample().rss_kib,
        connect_s: s.connect_time.as_secs_f64(),
    };
    s.close().await;
    Ok(idle)
}

/// Sensor s0 (seq % 100 == 0) reads 40 °C every other second at 1000/s (a fridge whose door
/// opens and closes), every other reading is 4 °C: a few threshold crossings per window.
fn s0_hot_every_other_second(seq: u64) -> Option<f64> {
    let hot = seq.is_multiple_of(100) && (seq / 1000) % 2 == 1;
    Some(if hot {
        ledger::HOT_BASE + seq as f64 * ledger::T_STEP
    } else {
        4.0
    })
}

async fn alert(env: &Env, stack: Stack, starts: &mut Vec<f64>) -> anyhow::Result<Alert> {
    let topo = Topology {
        sensors: 100,
        units: 10,
    };
    let mut s = env.session(stack, topo, 10, 1, 200_000).await?;
    starts.push(s.server.cold_start.as_secs_f64() * 1e3);
    // Readings do not carry seqs here, so the window's delivery counts are meaningless; the
    // alert latencies come from each alert's own reading time.
    let w = env
        .window(
            &mut s.feed,
            1000.0,
            1.0,
            10.0,
            Some(s0_hot_every_other_second),
        )
        .await;
    let ends = s.close().await;
    w?;
    let mut ms: Vec<f64> = ends.into_iter().flat_map(|e| e.alerts_ms).collect();
    ms.sort_by(f64::total_cmp);
    let at = |q: f64| {
        ms.get(((ms.len() as f64 * q).ceil() as usize).saturating_sub(1))
            .copied()
    };
    Ok(Alert {
        received: ms.len(),
        p50_ms: at(0.5).unwrap_or(f64::NAN),
        p99_ms: at(0.99).unwrap_or(f64::NAN),
    })
}

async fn strace_fanout(env: &Env, stack: Stack) -> anyhow::Result<Strace> {
    let topo = Topology {
        sensors: 100,
        units: 10,
    };
    let mut s = env.session(stack, topo, 1000, 1, 200_000).await?;
    let out = env.dir.join(format!("strace-{}.txt", stack.name()));
    let mut child = std::process::Command::new("taskset")
        .args(["-c", "0", "strace", "-c", "-f", "-o"])
        .arg(&out)
        .arg("-p")
        .arg(s.server.proc.pid().to_string())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let start_seq = s.feed.next_seq;
    env.window(&mut s.feed, 100.0, 1.0, 5.0, None).await?;
    let deliveries = s.feed.ledger.delivered_in(start_seq, s.feed.next_seq);
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let _ = child.wait();
    s.close().await;
    let text = std::fs::read_to_string(&out)?;
    let mut calls: Vec<(String, u64)> = text
        .lines()
        .filter_map(|l| {
            let t: Vec<&str> = l.split_whitespace().collect();
            if t.len() < 5 || t.last() == Some(&"total") {
                return None;
            }
            Some((t.last()?.to_string(), t.get(3)?.parse().ok()?))
        })
        .collect();
    calls.sort_by_key(|c| std::cmp::Reverse(c.1));
    Ok(Strace { deliveries, calls })
}

/// Publisher → mosquitto → one subscriber pinned to the server core, rising rates.
pub async fn broker_ceiling(env: &Env) -> anyhow::Result<Vec<(Window, &'static str)>> {
    let topo = Topology {
        sensors: 1000,
        units: 1000,
    };
    let ledger = Arc::new(Ledger::new(3_000_000));
    let stop = Arc::new(AtomicBool::new(false));
    mqtt::subscriber(env.mqtt_port, env.server_cpu, ledger.clone(), stop.clone()).await??;
    let mut feed = Feed {
        topo,
        ledger,
        subs: vec![1; 1000],
        next_seq: 0,
        pid: None,
    };
    let mut steps = Vec::new();
    for &rate in RATES.iter().chain(&[100_000.0, 120_000.0]) {
        let w = env.window(&mut feed, rate, 1.0, 4.0, None).await?;
        let v = verdict(&w);
        eprintln!(
            "[broker] {rate}/s: p50 {:.2} p90 {:.2} p99 {:.2} ms, delivered {:.3}%, harness {:.0}% -> {v}",
            w.lat.p50,
            w.lat.p90,
            w.lat.p99,
            w.delivered_ratio() * 100.0,
            w.harness_core * 100.0
        );
        steps.push((w, v));
        if v != "pass" {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    Ok(steps)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenarios_are_checked_and_kept_in_run_order() {
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(select_scenarios(&[]).unwrap(), SCENARIOS.to_vec());
        assert_eq!(
            select_scenarios(&names(&["idle", "fanout"])).unwrap(),
            vec!["fanout", "idle"]
        );
        assert!(select_scenarios(&names(&["fan-out"])).is_err());
    }
}
