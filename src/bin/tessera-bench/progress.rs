//! What a person watching the bench sees on stderr (a terminal only; the
//! report on stdout stays one JSON document): the pre-minting's bar, then
//! the rate of calls each second of the run.

use std::{
    io::{IsTerminal, Write},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use tokio::task::JoinHandle;

/// A bar of `done` out of `total`, redrawn five times a second until full.
pub fn bar(done: Arc<AtomicUsize>, total: usize) -> Option<JoinHandle<()>> {
    std::io::stderr().is_terminal().then(|| {
        tokio::spawn(async move {
            loop {
                let n = done.load(Ordering::Relaxed);
                let filled = n * 30 / total;
                eprint!(
                    "\rminting [{}{}] {n}/{total}",
                    "#".repeat(filled),
                    " ".repeat(30 - filled)
                );
                let _ = std::io::stderr().flush();
                if n >= total {
                    eprintln!();
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    })
}

/// Each second until `end`, the calls started in that second (`started`
/// counts them), marked as warm-up before `measure_from`.
pub fn rate(
    started: Arc<AtomicUsize>,
    measure_from: Instant,
    end: Instant,
) -> Option<JoinHandle<()>> {
    std::io::stderr().is_terminal().then(|| {
        tokio::spawn(async move {
            let begin = Instant::now();
            let mut ticks = tokio::time::interval_at(
                (begin + Duration::from_secs(1)).into(),
                Duration::from_secs(1),
            );
            let mut before = started.load(Ordering::Relaxed);
            while Instant::now() < end {
                let second_began = Instant::now();
                ticks.tick().await;
                let now = started.load(Ordering::Relaxed);
                let phase = if second_began < measure_from {
                    " (warm-up)"
                } else {
                    ""
                };
                eprintln!(
                    "{:>4} s  {:>8} calls/s{phase}",
                    begin.elapsed().as_secs(),
                    now - before
                );
                before = now;
            }
        })
    })
}
