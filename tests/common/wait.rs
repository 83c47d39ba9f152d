//! Waiting for a condition, the one way tests do it: [`eventually`] polls until the condition
//! holds or a deadline passes, and then fails with what it saw last. A slow machine only makes a
//! test wait longer, and a broken service fails it with a message instead of a guess (a fixed
//! sleep is both too long on a quiet machine and too short on a busy one).
#![allow(dead_code)]

use std::future::Future;
use std::time::Duration;

/// How long a test waits for something that takes milliseconds when all is well.
pub const WAIT: Duration = Duration::from_secs(10);
/// Time between two polls.
const POLL: Duration = Duration::from_millis(50);

/// Polls `probe` until it returns `Ok(value)` and returns that value. While the condition does
/// not hold the probe answers `Err(what it saw)`; once `within` has passed, the test panics
/// with `what` it waited for, for how long, how many polls, and the last answer. The probe runs
/// at least once, and is never cancelled half-way (a slow probe may overrun the deadline).
///
/// ```ignore
/// let health = eventually(WAIT, "/health to count 2 sockets", || async {
///     let (_, h) = service.get("/health/realtime", None).await;
///     if h["websocket"]["connections"] == 2 { Ok(h) } else { Err(h.to_string()) }
/// }).await;
/// ```
pub async fn eventually<T, F, Fut>(within: Duration, what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let started = tokio::time::Instant::now();
    let deadline = started + within;
    let mut polls = 0u32;
    loop {
        polls += 1;
        let seen = match probe().await {
            Ok(value) => return value,
            Err(seen) => seen,
        };
        let now = tokio::time::Instant::now();
        if now >= deadline {
            panic!(
                "gave up waiting for {what} after {:?} ({polls} polls); last seen: {seen}",
                now - started
            );
        }
        tokio::time::sleep_until(deadline.min(now + POLL)).await;
    }
}

/// `Ok(())` when `done`, else `Err(seen)`: the usual shape of a probe's answer.
pub fn check(done: bool, seen: impl std::fmt::Display) -> Result<(), String> {
    if done {
        Ok(())
    } else {
        Err(seen.to_string())
    }
}
