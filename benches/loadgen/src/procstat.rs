//! CPU time and memory of a process, read from `/proc`: what the server under test costs.
//! `utime + stime` from `/proc/<pid>/stat` is the figure the issue asks for (10 ms ticks); the
//! sum of `/proc/<pid>/task/*/schedstat` (nanoseconds on CPU) is kept beside it as a precise
//! cross-check for short windows.

use std::fs;

#[derive(Debug, Clone, Copy, Default)]
pub struct Sample {
    /// utime + stime, seconds.
    pub cpu_s: f64,
    /// Sum of the threads' run time from schedstat, seconds (0 when unavailable).
    pub sched_s: f64,
    /// Resident set size, KiB.
    pub rss_kib: u64,
    /// The anonymous part of it (heap, stacks: `RssAnon`), KiB; the rest is file pages
    /// (the binary's and the libraries' code, clean and shared) and shared memory.
    pub rss_anon_kib: u64,
}

impl Sample {
    /// CPU seconds between two samples: schedstat when both have it, else utime + stime.
    pub fn cpu_since(&self, before: &Sample) -> f64 {
        if self.sched_s > 0.0 && before.sched_s > 0.0 {
            self.sched_s - before.sched_s
        } else {
            self.cpu_s - before.cpu_s
        }
    }
    pub fn stat_cpu_since(&self, before: &Sample) -> f64 {
        self.cpu_s - before.cpu_s
    }
}

pub fn sample(pid: u32) -> Sample {
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let cpu_s = fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            // Fields after the command name (which may contain spaces) start at field 3.
            let rest = &s[s.rfind(')')? + 2..];
            let f: Vec<&str> = rest.split_whitespace().collect();
            let utime: f64 = f.get(11)?.parse().ok()?;
            let stime: f64 = f.get(12)?.parse().ok()?;
            Some((utime + stime) / ticks)
        })
        .unwrap_or(0.0);
    let mut sched_ns = 0u64;
    if let Ok(dir) = fs::read_dir(format!("/proc/{pid}/task")) {
        for task in dir.flatten() {
            if let Ok(s) = fs::read_to_string(task.path().join("schedstat")) {
                sched_ns += s
                    .split_whitespace()
                    .next()
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
    }
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib = |key: &str| -> u64 {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Sample {
        cpu_s,
        sched_s: sched_ns as f64 / 1e9,
        rss_kib: kib("VmRSS:"),
        rss_anon_kib: kib("RssAnon:"),
    }
}

/// Pins the calling thread to one CPU (the process may be pinned elsewhere by `taskset`).
pub fn pin_current_thread(cpu: usize) {
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// CPU time of the calling thread, seconds.
pub fn thread_cpu_s() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

/// Raises the open-file limit to its hard maximum (thousands of sockets).
pub fn raise_nofile() {
    unsafe {
        let mut r: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 {
            r.rlim_cur = r.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
}
