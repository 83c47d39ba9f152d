//! Client limits: a token bucket for client events per user (organization and token
//! subject), shared by all that user's sockets so that reconnecting does not refill it, and
//! the set of rooms a socket has subscribed to (bounded by
//! `limits.max_subscriptions_per_socket`).

use dashmap::DashMap;
use std::collections::HashSet;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

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

/// One token bucket per key (a user), created full on first use. An entry idle long enough
/// to have refilled is the same as no entry, so it may go: the map is swept when it grows past
/// its bound, and if it is still full then, the least recently used entries go first (their
/// users get a full bucket, as on a first connect). The bound is set well above the number of
/// users that can be connected at once (`limits.max_connections`).
pub struct Buckets<K: Hash + Eq> {
    map: DashMap<K, TokenBucket>,
    rate: f64,
    burst: f64,
    max_entries: usize,
}

impl<K: Hash + Eq + Clone> Buckets<K> {
    pub fn new(rate: f64, burst: f64, max_entries: usize) -> Self {
        Buckets {
            map: DashMap::new(),
            rate,
            burst,
            max_entries: max_entries.max(16),
        }
    }

    /// Takes one of `key`'s tokens if there is one.
    pub fn take(&self, key: &K, now: Instant) -> bool {
        if let Some(mut b) = self.map.get_mut(key) {
            return b.take(now);
        }
        // A sweep leaves at most three quarters of the bound: one per quarter of new users.
        if self.map.len() >= self.max_entries {
            self.sweep(now);
        }
        let mut b = self
            .map
            .entry(key.clone())
            .or_insert_with(|| TokenBucket::new(self.rate, self.burst));
        b.take(now)
    }

    /// Drops entries that have refilled; then, if still over the bound, the least recently
    /// used down to three quarters of it.
    fn sweep(&self, now: Instant) {
        let refill = Duration::from_secs_f64((self.burst / self.rate).min(86_400.0));
        self.map
            .retain(|_, b| now.saturating_duration_since(b.last) < refill);
        let over = self.map.len().saturating_sub(self.max_entries * 3 / 4);
        if over > 0 {
            let mut by_age: Vec<(Instant, K)> =
                self.map.iter().map(|e| (e.last, e.key().clone())).collect();
            by_age.sort_by_key(|(at, _)| *at);
            for (_, k) in by_age.into_iter().take(over) {
                self.map.remove(&k);
            }
        }
    }

    /// Users with an entry (`/health`, tests).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
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
    fn a_user_bucket_is_shared_bounded_and_forgotten_once_refilled() {
        let start = Instant::now();
        let b: Buckets<String> = Buckets::new(1.0, 2.0, 16);
        let alice = "alice".to_string();
        assert!(b.take(&alice, start) && b.take(&alice, start));
        assert!(!b.take(&alice, start), "spent, whichever socket asks");
        assert!(
            b.take(&"bob".to_string(), start),
            "another user has their own"
        );
        for i in 0..40 {
            b.take(&format!("u{i}"), start + Duration::from_millis(500));
        }
        assert!(b.len() <= 16, "bounded: {}", b.len());
        // Alice's entry was among the oldest: gone, so she starts full again (as on a first
        // connect).
        assert!(b.take(&alice, start + Duration::from_millis(500)));
        // Refilled entries go first: after the refill time every entry may go.
        let later = start + Duration::from_secs(10);
        for i in 0..16 {
            b.take(&format!("v{i}"), later);
        }
        assert!(b.len() <= 16, "bounded: {}", b.len());
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
