//! Per-socket limits: a token bucket for client events and the set of rooms a socket has
//! subscribed to (bounded by `limits.max_subscriptions_per_socket`).

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Instant;

/// A classic token bucket: `rate` tokens per second up to `burst`.
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub fn new(rate: f64, burst: f64) -> Self {
        TokenBucket {
            rate,
            burst,
            tokens: burst,
            last: Instant::now(),
        }
    }

    /// Takes one token if there is one.
    pub fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Rooms a socket joined through subscribe events.
#[derive(Default)]
pub struct Subscriptions(Mutex<HashSet<String>>);

impl Subscriptions {
    /// Records `room`; `false` when the socket already has `max` other subscriptions.
    pub fn add(&self, room: &str, max: usize) -> bool {
        let mut set = self.0.lock().expect("subscriptions lock");
        if set.contains(room) {
            return true;
        }
        if set.len() >= max {
            return false;
        }
        set.insert(room.to_string());
        true
    }

    pub fn remove(&self, room: &str) {
        self.0.lock().expect("subscriptions lock").remove(room);
    }

    pub fn len(&self) -> usize {
        self.0.lock().expect("subscriptions lock").len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bucket_allows_a_burst_then_the_rate() {
        let start = Instant::now();
        let mut b = TokenBucket::new(10.0, 3.0);
        assert!((0..3).all(|_| b.take(start)));
        assert!(!b.take(start));
        assert!(
            b.take(start + Duration::from_millis(110)),
            "one token after 100 ms"
        );
        assert!(!b.take(start + Duration::from_millis(120)));
    }

    #[test]
    fn subscriptions_are_bounded_and_idempotent() {
        let s = Subscriptions::default();
        assert!(s.add("a", 2) && s.add("a", 2) && s.add("b", 2));
        assert!(!s.add("c", 2));
        s.remove("a");
        assert!(s.add("c", 2));
        assert_eq!(s.len(), 2);
    }
}
