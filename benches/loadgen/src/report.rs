//! The table: every scenario, one column per stack that ran (sensorcast, plain, node-ref), the
//! ratios sensorcast / plain and sensorcast / node, and the issues' targets with a met/missed
//! verdict computed from the same numbers. Markdown, so it can be pasted into
//! `docs/performance.md` as printed.
//!
//! Over 400 lines: The report table: one row builder per scenario, printed as docs/performance.md
//! shows it.

use std::fmt::Write;

use crate::compare::{Idle, StackResults, Strace, P99_LIMIT_MS};
use crate::floor::Floor;
use crate::scenario::Window;
use crate::servers::Stack;

pub struct Inputs<'a> {
    /// The stacks that ran, in table order.
    pub stacks: &'a [(Stack, StackResults)],
    pub broker: &'a [(Window, &'static str)],
    pub floor: Option<Floor>,
    /// Size of each stack's binary, where it has one of its own.
    pub binary_bytes: &'a [(Stack, Option<u64>)],
}

/// The issue 11 target: sensorcast's CPU per fan-out delivery at most this × the plain server's.
pub const PLAIN_FACTOR: f64 = 1.2;

struct Table<'a> {
    out: String,
    stacks: &'a [(Stack, StackResults)],
}

impl<'a> Table<'a> {
    fn has(&self, stack: Stack) -> bool {
        self.stacks.iter().any(|(s, _)| *s == stack)
    }

    /// (column header, other stack) of each ratio column: sensorcast against each other stack.
    fn ratio_columns(&self) -> Vec<(&'static str, Stack)> {
        if !self.has(Stack::Sensorcast) {
            return Vec::new();
        }
        [
            ("sensorcast / plain", Stack::Plain),
            ("sensorcast / node", Stack::Node),
        ]
        .into_iter()
        .filter(|(_, s)| self.has(*s))
        .collect()
    }

    fn header(&mut self) {
        let names: Vec<&str> = self.stacks.iter().map(|(s, _)| s.name()).collect();
        let ratios: Vec<&str> = self.ratio_columns().iter().map(|(h, _)| *h).collect();
        let cols = names.len() + ratios.len();
        let _ = writeln!(
            self.out,
            "| Scenario | Metric | {} | Target |",
            names
                .into_iter()
                .chain(ratios)
                .collect::<Vec<_>>()
                .join(" | ")
        );
        let _ = writeln!(self.out, "|---|---|{}---|", "---|".repeat(cols));
    }

    /// One row, each stack's value from `f`.
    fn row(
        &mut self,
        scenario: &str,
        metric: &str,
        f: impl Fn(Stack, &StackResults) -> Option<f64>,
        unit: &str,
        target: &str,
    ) {
        let values: Vec<(Stack, Option<f64>)> =
            self.stacks.iter().map(|(s, r)| (*s, f(*s, r))).collect();
        self.cells(scenario, metric, &values, unit, target);
    }

    fn cells(
        &mut self,
        scenario: &str,
        metric: &str,
        values: &[(Stack, Option<f64>)],
        unit: &str,
        target: &str,
    ) {
        let value = |s: Stack| values.iter().find(|(x, _)| *x == s).and_then(|(_, v)| *v);
        let shown = values.iter().map(|(_, v)| {
            v.filter(|v| v.is_finite())
                .map_or("n/a".to_string(), |v| fmt(v, unit))
        });
        let ratios = self
            .ratio_columns()
            .into_iter()
            .map(|(_, other)| ratio(value(Stack::Sensorcast), value(other)));
        let _ = writeln!(
            self.out,
            "| {scenario} | {metric} | {} | {target} |",
            shown.chain(ratios).collect::<Vec<_>>().join(" | ")
        );
    }

    /// `label: verdict` for each of sensorcast's targets whose reference stack is in the table
    /// (none without sensorcast), joined by "; ".
    fn targets(&self, parts: &[(Stack, String)]) -> String {
        parts
            .iter()
            .filter(|(s, _)| self.has(Stack::Sensorcast) && self.has(*s))
            .map(|(_, t)| t.as_str())
            .collect::<Vec<_>>()
            .join("; ")
    }
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b != 0.0 && a.is_finite() && b.is_finite() => format!("{:.2}", a / b),
        _ => "—".into(),
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

fn of(stacks: &[(Stack, StackResults)], stack: Stack) -> Option<&StackResults> {
    stacks.iter().find(|(s, _)| *s == stack).map(|(_, r)| r)
}

/// The latency, delivery, CPU and memory rows of one window per stack.
fn window_rows(
    t: &mut Table,
    name: &str,
    w: fn(&StackResults) -> Option<&Window>,
    p99_target: &str,
) {
    let g = |f: fn(&Window) -> f64| move |_: Stack, r: &StackResults| w(r).map(f);
    t.row(name, "p50", g(|w| w.lat.p50), "ms", "");
    t.row(name, "p90", g(|w| w.lat.p90), "ms", "");
    t.row(name, "p99", g(|w| w.lat.p99), "ms", p99_target);
    t.row(name, "p99.9", g(|w| w.lat.p999), "ms", "");
    t.row(name, "max", g(|w| w.lat.max), "ms", "");
    t.row(
        name,
        "delivered",
        g(|w| w.delivered_ratio() * 100.0),
        "%",
        "100 %",
    );
    t.row(
        name,
        "server CPU",
        g(|w| w.server_cpu_s / w.secs * 100.0),
        "% of a core",
        "",
    );
    t.row(
        name,
        "server RSS",
        g(|w| w.server_rss_kib as f64 / 1024.0),
        "MB",
        "",
    );
    t.row(
        name,
        "harness (loadgen+broker, core 0)",
        g(|w| w.harness_core * 100.0),
        "% of a core",
        "< 100 %",
    );
}

pub fn render(i: &Inputs) -> String {
    let stacks = i.stacks;
    let get = |s: Stack| of(stacks, s);
    let (sc, plain, node) = (get(Stack::Sensorcast), get(Stack::Plain), get(Stack::Node));
    let mut t = Table {
        out: String::new(),
        stacks,
    };
    t.header();
    let cpu_per = |w: &Window| w.cpu_us_per_delivery();
    let half = |a: Option<f64>, b: Option<f64>| Some(a? <= 0.5 * b?);
    let within_plain = |a: Option<f64>, b: Option<f64>| Some(a? <= PLAIN_FACTOR * b?);

    let lat = "latency (200 clients, 1000/s)";
    window_rows(&mut t, lat, |r| r.latency.as_ref(), "");
    t.row(
        lat,
        "server CPU per delivery",
        |_, r| r.latency.as_ref().map(cpu_per),
        "µs",
        "",
    );

    fn fanout(r: Option<&StackResults>) -> Option<&Window> {
        r?.fanout.as_ref()
    }
    let cpu = |r: Option<&StackResults>| fanout(r).map(cpu_per);
    let floor = i.floor.map(|f| f.us_per_write);
    let fan = "fan-out (1000 clients, 500/s → 50k deliveries/s)";
    t.row(
        fan,
        "deliveries/s",
        |_, r| r.fanout.as_ref().map(|w| w.delivered as f64 / w.secs),
        "",
        "",
    );
    let cpu_target = t.targets(&[
        (
            Stack::Node,
            format!("≤ 0.5× node: {}", met(half(cpu(sc), cpu(node)))),
        ),
        (
            Stack::Plain,
            format!(
                "≤ {PLAIN_FACTOR}× plain: {}",
                met(within_plain(cpu(sc), cpu(plain)))
            ),
        ),
        (
            Stack::Sensorcast,
            format!(
                "≤ 1.3× floor ({}): {}",
                floor.map_or("n/a".into(), |f| format!("{f:.2} µs")),
                met(cpu(sc).zip(floor).map(|(c, f)| c <= 1.3 * f))
            ),
        ),
    ]);
    t.row(
        fan,
        "server CPU per delivery",
        |_, r| r.fanout.as_ref().map(cpu_per),
        "µs",
        &cpu_target,
    );
    t.row(
        fan,
        "… same, from utime+stime",
        |_, r| {
            r.fanout
                .as_ref()
                .map(|w| w.server_stat_cpu_s * 1e6 / w.delivered.max(1) as f64)
        },
        "µs",
        "",
    );
    t.row(
        fan,
        "… as multiple of the kernel floor",
        |_, r| {
            r.fanout
                .as_ref()
                .map(cpu_per)
                .zip(floor)
                .map(|(c, f)| c / f)
        },
        "×",
        "≤ 1.3×",
    );
    let p99 = |r: Option<&StackResults>| fanout(r).map(|w| w.lat.p99);
    let p99_target = t.targets(&[(
        Stack::Node,
        format!("≤ 0.5× node: {}", met(half(p99(sc), p99(node)))),
    )]);
    window_rows(&mut t, fan, |r| r.fanout.as_ref(), &p99_target);
    t.row(
        fan,
        "websocket frame (reading)",
        |_, r| Some(r.fanout_frame_bytes).filter(|b| *b > 0.0),
        "B",
        "",
    );
    if stacks.iter().any(|(_, r)| r.strace.is_some()) {
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
            let per = |s: &Strace| {
                let n = s.calls.iter().find(|(c, _)| c == name).map_or(0, |c| c.1);
                n as f64 / s.deliveries.max(1) as f64
            };
            if stacks
                .iter()
                .any(|(_, r)| r.strace.as_ref().is_some_and(|s| per(s) > 0.0))
            {
                t.row(
                    "fan-out under strace -c (100/s)",
                    &format!("{name} per delivery"),
                    |_, r| r.strace.as_ref().map(per),
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
    let ceiling = |r: Option<&StackResults>| r.and_then(StackResults::ceiling);
    let (c_sc, c_node) = (ceiling(sc), ceiling(node));
    let goal = c_node.map(|n| match broker_ceiling {
        Some(b) => (2.0 * n).min(b),
        None => 2.0 * n,
    });
    let tp = "throughput (50 clients × 20 units)";
    let tp_target = t.targets(&[(
        Stack::Node,
        format!(
            "≥ min(2× node, broker {}{}) = {}: {}",
            broker_ceiling.map_or("n/a".into(), |b| format!("{b:.0}/s")),
            if broker_limited { "+" } else { "" },
            goal.map_or("n/a".into(), |g| format!("{g:.0}/s")),
            met(c_sc.zip(goal).map(|(s, g)| s >= g))
        ),
    )]);
    t.row(
        tp,
        &format!("ceiling at p99 ≤ {P99_LIMIT_MS} ms, 100 %"),
        |_, r| r.ceiling(),
        "/s",
        &tp_target,
    );
    if let Some(rate) = c_node {
        let at = |r: Option<&StackResults>| r.and_then(|r| r.at_rate(rate)).map(|w| w.lat.p99);
        t.row(
            tp,
            &format!("p99 at node's ceiling ({rate:.0}/s)"),
            |_, r| r.at_rate(rate).map(|w| w.lat.p99),
            "ms",
            &format!("≤ 0.5× node: {}", met(half(at(sc), at(node)))),
        );
        t.row(
            tp,
            &format!("server CPU at {rate:.0}/s"),
            |_, r| r.at_rate(rate).map(|w| w.server_cpu_s / w.secs * 100.0),
            "% of a core",
            "",
        );
    }
    // Not a stack: the figure sits in the first column.
    let first = stacks.first().map(|(s, _)| *s);
    t.row(
        "broker alone (pub → mosquitto → sub)",
        "ceiling at p99 ≤ 10 ms, 100 %",
        |s, _| broker_ceiling.filter(|_| Some(s) == first),
        "/s",
        if broker_limited {
            "harness could not go higher"
        } else {
            ""
        },
    );

    if stacks.iter().any(|(_, r)| r.idle.is_some()) {
        let id = "idle (2000 subscribed clients)";
        let per = |x: &Idle| {
            (x.rss_with_clients_kib as f64 - x.rss_no_clients_kib as f64) * 1024.0
                / 1000.0
                / x.clients as f64
        };
        fn idle(r: Option<&StackResults>) -> Option<&Idle> {
            r?.idle.as_ref()
        }
        let cmp = |f: fn(&Idle) -> f64, k: f64| Some(f(idle(sc)?) <= k * f(idle(node)?));
        let node_target = |label: &str, ok: Option<bool>| {
            t.targets(&[(Stack::Node, format!("{label}: {}", met(ok)))])
        };
        let rss0 = node_target("≤ 0.1× node", cmp(|x| x.rss_no_clients_kib as f64, 0.1));
        let per_socket = node_target("≤ node's", cmp(per, 1.0));
        let connect = node_target("≤ 0.2× node", cmp(|x| x.connect_s, 0.2));
        let g = |f: fn(&Idle) -> f64| move |_: Stack, r: &StackResults| r.idle.as_ref().map(f);
        t.row(
            id,
            "RSS, no clients",
            g(|x| x.rss_no_clients_kib as f64 / 1024.0),
            "MB",
            &rss0,
        );
        t.row(
            id,
            "… of which anonymous (RssAnon: heap, stacks)",
            g(|x| x.rss_anon_no_clients_kib as f64 / 1024.0),
            "MB",
            "",
        );
        t.row(
            id,
            "RSS, 2000 clients",
            g(|x| x.rss_with_clients_kib as f64 / 1024.0),
            "MB",
            "",
        );
        t.row(id, "RSS per subscribed socket", g(per), "KB", &per_socket);
        t.row(
            id,
            "connect + subscribe 2000",
            g(|x| x.connect_s * 1e3),
            "ms",
            &connect,
        );
    }
    // The plain server has no alerting and does not run this scenario: n/a.
    let al = |r: &StackResults, f: fn(&crate::compare::Alert) -> f64| {
        r.alert.as_ref().filter(|a| a.received > 0).map(f)
    };
    t.row(
        "alert (1000/s)",
        "alert:triggered events received (all clients)",
        |_, r| r.alert.as_ref().map(|a| a.received as f64),
        "",
        "",
    );
    t.row(
        "alert (1000/s)",
        "publish → alert:triggered p50",
        |_, r| al(r, |a| a.p50_ms),
        "ms",
        "",
    );
    let al_sc = sc.and_then(|r| al(r, |a| a.p99_ms));
    t.row(
        "alert (1000/s)",
        "publish → alert:triggered p99",
        |_, r| al(r, |a| a.p99_ms),
        "ms",
        &t.targets(&[(
            Stack::Sensorcast,
            format!("≤ 50 ms: {}", met(al_sc.map(|p| p <= 50.0))),
        )]),
    );
    let median = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied()
    };
    t.row(
        "startup",
        "cold start to ready (median of runs)",
        |_, r| median(&r.cold_starts_ms),
        "ms",
        "reported",
    );
    t.row(
        "startup",
        "release binary (x86_64, stripped)",
        |s, _| {
            i.binary_bytes
                .iter()
                .find(|(b, _)| *b == s)
                .and_then(|(_, n)| *n)
                .map(|b| b as f64 / 1e6)
        },
        "MB",
        "reported",
    );

    let mut out = t.out;
    let _ = writeln!(out, "\nThroughput steps (readings/s → p99 ms, delivered %, server CPU % of a core, harness % of core 0, verdict):\n");
    let names: Vec<&str> = stacks.iter().map(|(s, _)| s.name()).collect();
    let _ = writeln!(out, "| rate/s | {} | broker alone |", names.join(" | "));
    let _ = writeln!(out, "|---|{}---|", "---|".repeat(names.len()));
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
    let mut rates: Vec<f64> = stacks
        .iter()
        .flat_map(|(_, r)| &r.throughput)
        .chain(i.broker)
        .map(|(w, _)| w.rate)
        .collect();
    rates.sort_by(f64::total_cmp);
    rates.dedup();
    for r in rates {
        let cells: Vec<String> = stacks
            .iter()
            .map(|(_, s)| cell(&s.throughput, r, true))
            .collect();
        let _ = writeln!(
            out,
            "| {r:.0} | {} | {} |",
            cells.join(" | "),
            cell(i.broker, r, false)
        );
    }
    if let Some(f) = i.floor {
        let _ = writeln!(out, "\nKernel floor: {:.2} µs of CPU per {}-byte websocket frame written with one send (writer pinned to the server core, {} writes).", f.us_per_write, f.frame_bytes, f.writes);
    }
    for note in crate::scenario::NOTES.lock().expect("notes").iter() {
        let _ = writeln!(out, "\nNote: {note}");
    }
    for (stack, r) in stacks {
        let name = stack.name();
        for e in &r.errors {
            let _ = writeln!(out, "\n{name} error: {e}");
        }
        if let Some(a) = &r.alert {
            if a.received == 0 {
                let why = match stack {
                    Stack::Node => " (the Node reference has no alerting)",
                    _ => "",
                };
                let _ = writeln!(
                    out,
                    "\n{name}: no `alert:triggered` event in the alert window{why}."
                );
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

#[cfg(test)]
mod tests {
    use super::*;

    fn fanout(cpu_s: f64, delivered: u64) -> StackResults {
        StackResults {
            fanout: Some(Window {
                rate: 500.0,
                secs: 10.0,
                expected: delivered,
                delivered,
                server_cpu_s: cpu_s,
                ..Window::default()
            }),
            fanout_frame_bytes: 310.0,
            ..StackResults::default()
        }
    }

    /// The row of `metric` in the scenario whose name starts with `scenario`.
    fn line<'a>(table: &'a str, scenario: &str, metric: &str) -> &'a str {
        table
            .lines()
            .find(|l| {
                l.starts_with(&format!("| {scenario}")) && l.contains(&format!("| {metric} |"))
            })
            .unwrap_or_else(|| panic!("no {metric} row in\n{table}"))
    }

    #[test]
    fn three_stacks_with_both_ratios_and_the_plain_target() {
        // 12 µs, 10 µs and 24 µs per delivery: 1.2× plain (met, at the line), 0.5× node (met).
        let stacks = [
            (Stack::Sensorcast, fanout(6.0, 500_000)),
            (Stack::Plain, fanout(5.0, 500_000)),
            (Stack::Node, fanout(12.0, 500_000)),
        ];
        let table = render(&Inputs {
            stacks: &stacks,
            broker: &[],
            floor: None,
            binary_bytes: &[],
        });
        assert!(table.starts_with(
            "| Scenario | Metric | sensorcast | plain | node-ref | sensorcast / plain | sensorcast / node | Target |\n|---|---|---|---|---|---|---|---|\n"
        ));
        let row = line(&table, "fan-out", "server CPU per delivery");
        assert!(
            row.contains("| 12.0 µs | 10.0 µs | 24.0 µs | 1.20 | 0.50 |"),
            "{row}"
        );
        assert!(row.contains("≤ 0.5× node: **met**"), "{row}");
        assert!(row.contains("≤ 1.2× plain: **met**"), "{row}");
        // No latency window: n/a everywhere, no ratio.
        let row = line(&table, "latency", "p50");
        assert!(row.contains("| n/a | n/a | n/a | — | — |"), "{row}");
    }

    #[test]
    fn only_the_selected_stacks_get_columns() {
        let stacks = [
            (Stack::Sensorcast, fanout(6.5, 500_000)),
            (Stack::Plain, fanout(5.0, 500_000)),
        ];
        let table = render(&Inputs {
            stacks: &stacks,
            broker: &[],
            floor: None,
            binary_bytes: &[(Stack::Plain, Some(4_000_000))],
        });
        assert!(table.starts_with(
            "| Scenario | Metric | sensorcast | plain | sensorcast / plain | Target |\n"
        ));
        let row = line(&table, "fan-out", "server CPU per delivery");
        assert!(
            row.contains("| 1.30 | ≤ 1.2× plain: **missed**; ≤ 1.3× floor (n/a): not measurable |"),
            "{row}"
        );
        assert!(!row.contains("node"), "{row}");
        let row = line(&table, "startup", "release binary (x86_64, stripped)");
        assert!(row.contains("| n/a | 4.00 MB | — |"), "{row}");
        assert!(table.contains("| rate/s | sensorcast | plain | broker alone |"));
        // Without sensorcast there is nothing to judge.
        let alone = [(Stack::Plain, fanout(5.0, 500_000))];
        let table = render(&Inputs {
            stacks: &alone,
            broker: &[],
            floor: None,
            binary_bytes: &[],
        });
        let row = line(&table, "fan-out", "server CPU per delivery");
        assert!(row.ends_with("| 10.0 µs |  |"), "{row}");
    }
}
