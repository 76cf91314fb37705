//! The report: latency percentiles, outcomes, and the server's memory.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::load::{BenchArgs, Op};

#[derive(Debug, Serialize)]
pub struct Report {
    pub op: Op,
    pub concurrency: usize,
    pub connections: usize,
    pub duration_s: f64,
    /// Answered calls (errors are in `errors` and `outcomes`).
    pub calls: u64,
    /// Answered calls per second.
    pub rps: f64,
    pub latency_us: Latency,
    pub outcomes: BTreeMap<String, u64>,
    pub errors: u64,
    pub server_rss_kib: Option<u64>,
    pub server_peak_rss_kib: Option<u64>,
    /// Start and end of the measured window, unix milliseconds, so that
    /// outside tools can match their own samples (CPU, I/O) to it.
    pub window_unix_ms: [u64; 2],
}

#[derive(Debug, Serialize)]
pub struct Latency {
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

/// The report of a run: percentiles of `latencies`, the outcomes, and the
/// server's memory.
pub fn report(
    args: &BenchArgs,
    mut latencies: Vec<u32>,
    outcomes: BTreeMap<String, u64>,
    window: Option<(u64, u64)>,
) -> Report {
    latencies.sort_unstable();
    let pct = |p: f64| -> u64 {
        if latencies.is_empty() {
            return 0;
        }
        let rank = ((p / 100.0) * latencies.len() as f64).ceil() as usize;
        u64::from(latencies[rank.clamp(1, latencies.len()) - 1])
    };
    let calls = latencies.len() as u64;
    let errors = outcomes
        .iter()
        .filter(|(name, _)| name.starts_with("error:"))
        .map(|(_, n)| n)
        .sum();
    let pid = args
        .server_pid
        .or_else(|| pid_listening_on(args.target.port()));
    let (rss, peak) = pid.map_or((None, None), read_rss);
    let window = window.unwrap_or_default();
    Report {
        op: args.op,
        concurrency: args.concurrency,
        connections: args.connections,
        duration_s: args.duration.as_secs_f64(),
        calls,
        rps: calls as f64 / args.duration.as_secs_f64(),
        latency_us: Latency {
            p50: pct(50.0),
            p90: pct(90.0),
            p99: pct(99.0),
            p999: pct(99.9),
            max: latencies.last().copied().map_or(0, u64::from),
        },
        outcomes,
        errors,
        server_rss_kib: rss,
        server_peak_rss_kib: peak,
        window_unix_ms: [window.0, window.1],
    }
}

/// The process whose listening TCP socket has `port` (Linux /proc).
fn pid_listening_on(port: u16) -> Option<u32> {
    let inode = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .find_map(|path| {
            let table = std::fs::read_to_string(path).ok()?;
            table.lines().skip(1).find_map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                let local_port = fields.get(1)?.rsplit(':').next()?;
                let listening = fields.get(3) == Some(&"0A");
                (listening && u16::from_str_radix(local_port, 16).ok()? == port)
                    .then(|| fields.get(9).map(|s| s.to_string()))
                    .flatten()
            })
        })?;
    let needle = format!("socket:[{inode}]");
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let fds = std::fs::read_dir(entry.path().join("fd")).ok()?;
            fds.flatten()
                .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|l| l.to_str() == Some(&needle)))
                .then_some(pid)
        })
}

/// (VmRSS, VmHWM) in KiB.
fn read_rss(pid: u32) -> (Option<u64>, Option<u64>) {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return (None, None);
    };
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
    };
    (field("VmRSS:"), field("VmHWM:"))
}

impl Report {
    pub fn print_text(&self) {
        if self.op == Op::Propagation {
            println!(
                "Propagation: {} revokes in {:.1}s, each polled on the replica until refused",
                self.calls, self.duration_s
            );
            let l = &self.latency_us;
            println!(
                "  visible after  p50 {} us  p90 {} us  p99 {} us  p99.9 {} us  max {} us",
                l.p50, l.p90, l.p99, l.p999, l.max
            );
            return;
        }
        println!(
            "{:?}: {} calls in {:.1}s at {} in flight over {} connections",
            self.op, self.calls, self.duration_s, self.concurrency, self.connections
        );
        println!("  rps      {:.0}", self.rps);
        let l = &self.latency_us;
        println!(
            "  latency  p50 {} us  p90 {} us  p99 {} us  p99.9 {} us  max {} us",
            l.p50, l.p90, l.p99, l.p999, l.max
        );
        for (name, count) in &self.outcomes {
            println!("  {name:<24} {count}");
        }
        println!("  errors   {}", self.errors);
        match (self.server_rss_kib, self.server_peak_rss_kib) {
            (Some(rss), Some(peak)) => println!(
                "  server   RSS {:.1} MiB, peak {:.1} MiB",
                rss as f64 / 1024.0,
                peak as f64 / 1024.0
            ),
            _ => println!("  server   RSS unknown (not on this machine?)"),
        }
    }
}
