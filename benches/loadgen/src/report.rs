//! The table: every scenario, both stacks, the ratio sensorcast / Node, and the target
//! with a met/missed verdict computed from the same numbers. Markdown, so it can be pasted into
//! `docs/performance.md` as printed.

use std::fmt::Write;

use crate::compare::{StackResults, P99_LIMIT_MS};
use crate::floor::Floor;
use crate::scenario::Window;

pub struct Inputs<'a> {
    pub sc: &'a StackResults,
    pub node: &'a StackResults,
    pub broker: &'a [(Window, &'static str)],
    pub floor: Option<Floor>,
    pub binary_bytes: Option<u64>,
}

struct Table(String);

impl Table {
    fn row(
        &mut self,
        scenario: &str,
        metric: &str,
        sc: Option<f64>,
        node: Option<f64>,
        unit: &str,
        target: &str,
    ) {
        let f = |v: Option<f64>| {
            v.filter(|v| v.is_finite())
                .map_or("n/a".to_string(), |v| fmt(v, unit))
        };
        let ratio = match (sc, node) {
            (Some(a), Some(b)) if b != 0.0 && a.is_finite() && b.is_finite() => {
                format!("{:.2}", a / b)
            }
            _ => "—".into(),
        };
        let _ = writeln!(
            self.0,
            "| {scenario} | {metric} | {} | {} | {ratio} | {target} |",
            f(sc),
            f(node)
        );
    }
}

fn fmt(v: f64, unit: &str) -> String {
    let n = if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    };
    if unit.is_empty() {
        n
    } else {
        format!("{n} {unit}")
    }
}

fn met(ok: Option<bool>) -> &'static str {
    match ok {
        Some(true) => "**met**",
        Some(false) => "**missed**",
        None => "not measurable",
    }
}

fn lat_rows(
    t: &mut Table,
    name: &str,
    sc: Option<&Window>,
    node: Option<&Window>,
    p99_target: &str,
) {
    let g = |w: Option<&Window>, f: fn(&Window) -> f64| w.map(f);
    t.row(
        name,
        "p50",
        g(sc, |w| w.lat.p50),
        g(node, |w| w.lat.p50),
        "ms",
        "",
    );
    t.row(
        name,
        "p90",
        g(sc, |w| w.lat.p90),
        g(node, |w| w.lat.p90),
        "ms",
        "",
    );
    t.row(
        name,
        "p99",
        g(sc, |w| w.lat.p99),
        g(node, |w| w.lat.p99),
        "ms",
        p99_target,
    );
    t.row(
        name,
        "p99.9",
        g(sc, |w| w.lat.p999),
        g(node, |w| w.lat.p999),
        "ms",
        "",
    );
    t.row(
        name,
        "max",
        g(sc, |w| w.lat.max),
        g(node, |w| w.lat.max),
        "ms",
        "",
    );
    t.row(
        name,
        "delivered",
        g(sc, |w| w.delivered_ratio() * 100.0),
        g(node, |w| w.delivered_ratio() * 100.0),
        "%",
        "100 %",
    );
    t.row(
        name,
        "server CPU",
        g(sc, |w| w.server_cpu_s / w.secs * 100.0),
        g(node, |w| w.server_cpu_s / w.secs * 100.0),
        "% of a core",
        "",
    );
    t.row(
        name,
        "server RSS",
        g(sc, |w| w.server_rss_kib as f64 / 1024.0),
        g(node, |w| w.server_rss_kib as f64 / 1024.0),
        "MB",
        "",
    );
    t.row(
        name,
        "harness (loadgen+broker, core 0)",
        g(sc, |w| w.harness_core * 100.0),
        g(node, |w| w.harness_core * 100.0),
        "% of a core",
        "< 100 %",
    );
}

pub fn render(i: &Inputs) -> String {
    let (sc, node) = (i.sc, i.node);
    let mut t = Table(String::new());
    let _ = writeln!(
        t.0,
        "| Scenario | Metric | sensorcast | node-ref | sensorcast / node | Target |"
    );
    let _ = writeln!(t.0, "|---|---|---|---|---|---|");

    lat_rows(
        &mut t,
        "latency (200 clients, 1000/s)",
        sc.latency.as_ref(),
        node.latency.as_ref(),
        "",
    );

    let (fs, fnode) = (sc.fanout.as_ref(), node.fanout.as_ref());
    let cpu_sc = fs.map(Window::cpu_us_per_delivery);
    let cpu_node = fnode.map(Window::cpu_us_per_delivery);
    let floor = i.floor.map(|f| f.us_per_write);
    let half = |a: Option<f64>, b: Option<f64>| Some(a? <= 0.5 * b?);
    let fan = "fan-out (1000 clients, 500/s → 50k deliveries/s)";
    t.row(
        fan,
        "deliveries/s",
        fs.map(|w| w.delivered as f64 / (w.secs)),
        fnode.map(|w| w.delivered as f64 / w.secs),
        "",
        "",
    );
    t.row(
        fan,
        "server CPU per delivery",
        cpu_sc,
        cpu_node,
        "µs",
        &format!(
            "≤ 0.5× node: {}; ≤ 1.3× floor ({}): {}",
            met(half(cpu_sc, cpu_node)),
            floor.map_or("n/a".into(), |f| format!("{f:.2} µs")),
            met(cpu_sc.zip(floor).map(|(c, f)| c <= 1.3 * f))
        ),
    );
    t.row(
        fan,
        "… same, from utime+stime",
        fs.map(|w| w.server_stat_cpu_s * 1e6 / w.delivered.max(1) as f64),
        fnode.map(|w| w.server_stat_cpu_s * 1e6 / w.delivered.max(1) as f64),
        "µs",
        "",
    );
    t.row(
        fan,
        "… as multiple of the kernel floor",
        cpu_sc.zip(floor).map(|(c, f)| c / f),
        cpu_node.zip(floor).map(|(c, f)| c / f),
        "×",
        "≤ 1.3×",
    );
    let p99 = |w: Option<&Window>| w.map(|w| w.lat.p99);
    lat_rows(
        &mut t,
        fan,
        fs,
        fnode,
        &format!("≤ 0.5× node: {}", met(half(p99(fs), p99(fnode)))),
    );
    t.row(
        fan,
        "websocket frame (reading)",
        Some(sc.fanout_frame_bytes),
        Some(node.fanout_frame_bytes),
        "B",
        "",
    );
    if let (Some(a), Some(b)) = (&sc.strace, &node.strace) {
        for name in [
            "sendto",
            "writev",
            "write",
            "sendmsg",
            "epoll_wait",
            "recvfrom",
            "read",
            "futex",
        ] {
            let per = |s: &crate::compare::Strace| {
                let n = s.calls.iter().find(|(c, _)| c == name).map_or(0, |c| c.1);
                n as f64 / s.deliveries.max(1) as f64
            };
            let (x, y) = (per(a), per(b));
            if x > 0.0 || y > 0.0 {
                t.row(
                    "fan-out under strace -c (100/s)",
                    &format!("{name} per delivery"),
                    Some(x),
                    Some(y),
                    "",
                    "",
                );
            }
        }
    }

    let broker_ceiling = i
        .broker
        .iter()
        .filter(|(_, v)| *v == "pass")
        .map(|(w, _)| w.rate)
        .fold(None, |a: Option<f64>, r| Some(a.map_or(r, |a| a.max(r))));
    let broker_limited = i.broker.last().is_some_and(|(_, v)| *v == "pass");
    let (c_sc, c_node) = (sc.ceiling(), node.ceiling());
    let goal = c_node.map(|n| match broker_ceiling {
        Some(b) => (2.0 * n).min(b),
        None => 2.0 * n,
    });
    let tp = "throughput (50 clients × 20 units)";
    t.row(
        tp,
        &format!("ceiling at p99 ≤ {P99_LIMIT_MS} ms, 100 %"),
        c_sc,
        c_node,
        "/s",
        &format!(
            "≥ min(2× node, broker {}{}) = {}: {}",
            broker_ceiling.map_or("n/a".into(), |b| format!("{b:.0}/s")),
            if broker_limited { "+" } else { "" },
            goal.map_or("n/a".into(), |g| format!("{g:.0}/s")),
            met(c_sc.zip(goal).map(|(s, g)| s >= g))
        ),
    );
    if let Some(rate) = c_node {
        let (a, b) = (sc.at_rate(rate), node.at_rate(rate));
        t.row(
            tp,
            &format!("p99 at node's ceiling ({rate:.0}/s)"),
            a.map(|w| w.lat.p99),
            b.map(|w| w.lat.p99),
            "ms",
            &format!(
                "≤ 0.5× node: {}",
                met(half(a.map(|w| w.lat.p99), b.map(|w| w.lat.p99)))
            ),
        );
        t.row(
            tp,
            &format!("server CPU at {rate:.0}/s"),
            a.map(|w| w.server_cpu_s / w.secs * 100.0),
            b.map(|w| w.server_cpu_s / w.secs * 100.0),
            "% of a core",
            "",
        );
    }
    t.row(
        "broker alone (pub → mosquitto → sub)",
        "ceiling at p99 ≤ 10 ms, 100 %",
        broker_ceiling,
        None,
        "/s",
        if broker_limited {
            "harness could not go higher"
        } else {
            ""
        },
    );

    if let (Some(a), Some(b)) = (&sc.idle, &node.idle) {
        let id = "idle (2000 subscribed clients)";
        let per = |x: &crate::compare::Idle| {
            (x.rss_with_clients_kib as f64 - x.rss_no_clients_kib as f64) * 1024.0
                / 1000.0
                / x.clients as f64
        };
        t.row(
            id,
            "RSS, no clients",
            Some(a.rss_no_clients_kib as f64 / 1024.0),
            Some(b.rss_no_clients_kib as f64 / 1024.0),
            "MB",
            &format!(
                "≤ 0.1× node: {}",
                met(Some(
                    (a.rss_no_clients_kib as f64) <= 0.1 * b.rss_no_clients_kib as f64
                ))
            ),
        );
        t.row(
            id,
            "… of which anonymous (RssAnon: heap, stacks)",
            Some(a.rss_anon_no_clients_kib as f64 / 1024.0),
            Some(b.rss_anon_no_clients_kib as f64 / 1024.0),
            "MB",
            "",
        );
        t.row(
            id,
            "RSS, 2000 clients",
            Some(a.rss_with_clients_kib as f64 / 1024.0),
            Some(b.rss_with_clients_kib as f64 / 1024.0),
            "MB",
            "",
        );
        t.row(
            id,
            "RSS per subscribed socket",
            Some(per(a)),
            Some(per(b)),
            "KB",
            &format!("≤ node's: {}", met(Some(per(a) <= per(b)))),
        );
        t.row(
            id,
            "connect + subscribe 2000",
            Some(a.connect_s * 1e3),
            Some(b.connect_s * 1e3),
            "ms",
            &format!(
                "≤ 0.2× node: {}",
                met(Some(a.connect_s <= 0.2 * b.connect_s))
            ),
        );
    }
    let al = |r: &StackResults| {
        r.alert
            .as_ref()
            .filter(|a| a.received > 0)
            .map(|a| a.p99_ms)
    };
    let al50 = |r: &StackResults| {
        r.alert
            .as_ref()
            .filter(|a| a.received > 0)
            .map(|a| a.p50_ms)
    };
    let aln = |r: &StackResults| r.alert.as_ref().map(|a| a.received as f64);
    t.row(
        "alert (1000/s)",
        "alert:triggered events received (all clients)",
        aln(sc),
        aln(node),
        "",
        "",
    );
    t.row(
        "alert (1000/s)",
        "publish → alert:triggered p50",
        al50(sc),
        al50(node),
        "ms",
        "",
    );
    t.row(
        "alert (1000/s)",
        "publish → alert:triggered p99",
        al(sc),
        al(node),
        "ms",
        &format!("≤ 50 ms: {}", met(al(sc).map(|p| p <= 50.0))),
    );
    let median = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied()
    };
    t.row(
        "startup",
        "cold start to ready (median of runs)",
        median(&sc.cold_starts_ms),
        median(&node.cold_starts_ms),
        "ms",
        "reported",
    );
    t.row(
        "startup",
        "release binary (x86_64, stripped)",
        i.binary_bytes.map(|b| b as f64 / 1e6),
        None,
        "MB",
        "reported",
    );

    let mut out = t.0;
    let _ = writeln!(out, "\nThroughput steps (readings/s → p99 ms, delivered %, server CPU % of a core, harness % of core 0, verdict):\n");
    let _ = writeln!(out, "| rate/s | sensorcast | node-ref | broker alone |");
    let _ = writeln!(out, "|---|---|---|---|");
    let cell = |steps: &[(Window, &'static str)], rate: f64, server: bool| {
        steps
            .iter()
            .find(|(w, _)| w.rate == rate)
            .map_or("—".to_string(), |(w, v)| {
                let cpu = if server {
                    format!(", {:.0} %", w.server_cpu_s / w.secs * 100.0)
                } else {
                    String::new()
                };
                format!(
                    "{:.2} ms, {:.2} %{cpu}, h {:.0} %, {v}",
                    w.lat.p99,
                    w.delivered_ratio() * 100.0,
                    w.harness_core * 100.0
                )
            })
    };
    let mut rates: Vec<f64> = sc
        .throughput
        .iter()
        .chain(&node.throughput)
        .chain(i.broker)
        .map(|(w, _)| w.rate)
        .collect();
    rates.sort_by(f64::total_cmp);
    rates.dedup();
    for r in rates {
        let _ = writeln!(
            out,
            "| {r:.0} | {} | {} | {} |",
            cell(&sc.throughput, r, true),
            cell(&node.throughput, r, true),
            cell(i.broker, r, false)
        );
    }
    if let Some(f) = i.floor {
        let _ = writeln!(out, "\nKernel floor: {:.2} µs of CPU per {}-byte websocket frame written with one send (writer pinned to the server core, {} writes).", f.us_per_write, f.frame_bytes, f.writes);
    }
    for note in crate::scenario::NOTES.lock().expect("notes").iter() {
        let _ = writeln!(out, "\nNote: {note}");
    }
    for (name, r) in [("sensorcast", sc), ("node-ref", node)] {
        for e in &r.errors {
            let _ = writeln!(out, "\n{name} error: {e}");
        }
        if let Some(a) = &r.alert {
            if a.received == 0 {
                let _ = writeln!(out, "\n{name}: no `alert:triggered` event in the alert window (the Node reference has no alerting).");
            }
        }
        if let Some(s) = &r.strace {
            let top: Vec<String> = s
                .calls
                .iter()
                .take(8)
                .map(|(c, n)| format!("{c} {n}"))
                .collect();
            let _ = writeln!(
                out,
                "\n{name} strace -c, {} deliveries: {}",
                s.deliveries,
                top.join(", ")
            );
        }
    }
    out
}
