//! Rate limits by key, one token bucket each: publishes per publisher token
//! ([`PublishLimiter`]) and subscribe attempts per client address ([`SubscribeLimiter`]).
//!
//! The buckets live in `governor`'s keyed limiter. Its table is bounded: once it holds twice
//! what the last sweep kept (and at least [`SWEEP_ABOVE`] keys), the keys whose bucket is full
//! again (idle long enough to have refilled) are swept, so sweeping costs a constant per check
//! on average; a table at [`MAX_KEYS`] takes no new key, and an attempt then passes unlimited
//! (the per-address and global subscriber limits still apply) while the table is swept at
//! most once a second. Memory stays under about 64 bytes × [`MAX_KEYS`] whatever the number
//! of clients.

use std::{
    hash::Hash,
    net::IpAddr,
    num::NonZeroU32,
    sync::atomic::{AtomicU64, AtomicUsize, Ordering},
    time::{Duration, Instant},
};

use governor::{clock::Clock, DefaultKeyedRateLimiter, Quota, RateLimiter};

/// Keys kept before the idle ones are swept.
const SWEEP_ABOVE: usize = 10_000;

/// Keys kept at most: a key (an address or a token) and its bucket's state take a few tens of
/// bytes, so the table stays under about 6.4 MB.
pub const MAX_KEYS: usize = 100_000;

/// A token bucket per key: `per_second` sustained, `burst` at once.
#[derive(Debug)]
pub struct KeyedLimiter<K: Hash + Eq + Clone> {
    /// `None`: no limit (a rate of 0 where that means off).
    limiter: Option<DefaultKeyedRateLimiter<K>>,
    /// Keys at which the next sweep happens.
    sweep_at: AtomicUsize,
    /// When the last sweep happened, in milliseconds after `started`.
    swept_ms: AtomicU64,
    started: Instant,
}

/// Publish rate limit, one bucket per publisher token.
pub type PublishLimiter = KeyedLimiter<String>;

/// Subscribe attempts, one bucket per client address ([`super::client_ip`]).
pub type SubscribeLimiter = KeyedLimiter<IpAddr>;

impl<K: Hash + Eq + Clone> KeyedLimiter<K> {
    /// A limit of `per_second` (at least 1) with a burst of `burst` (at least the rate).
    #[must_use]
    pub fn new(per_second: u32, burst: u32) -> Self {
        let rate = NonZeroU32::new(per_second.max(1)).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(burst.max(per_second).max(1)).unwrap_or(NonZeroU32::MIN);
        Self::with_quota(Some(Quota::per_second(rate).allow_burst(burst)))
    }

    fn with_quota(quota: Option<Quota>) -> Self {
        Self {
            limiter: quota.map(RateLimiter::keyed),
            sweep_at: AtomicUsize::new(SWEEP_ABOVE),
            swept_ms: AtomicU64::new(0),
            started: Instant::now(),
        }
    }

    /// Like [`KeyedLimiter::new`], but a rate or burst of 0 turns the limit off.
    #[must_use]
    pub fn or_off(per_second: u32, burst: u32) -> Self {
        if per_second == 0 || burst == 0 {
            return Self::with_quota(None);
        }
        Self::new(per_second, burst)
    }

    /// Takes one attempt from `key`'s bucket, or says how long until one is available.
    pub fn check(&self, key: &K) -> Result<(), Duration> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        if limiter.len() >= self.sweep_at.load(Ordering::Relaxed) {
            self.sweep(limiter);
            if limiter.len() >= MAX_KEYS {
                // Every key is recent: rather than grow, let attempts through until some
                // buckets fill up again and are swept.
                return Ok(());
            }
        }
        limiter
            .check_key(key)
            .map_err(|not_until| not_until.wait_time_from(limiter.clock().now()))
    }
}

impl<K: Hash + Eq + Clone> KeyedLimiter<K> {
    /// Forgets the keys whose bucket is full again; at the bound, at most once a second.
    fn sweep(&self, limiter: &DefaultKeyedRateLimiter<K>) {
        let now = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let last = self.swept_ms.load(Ordering::Relaxed);
        if limiter.len() >= MAX_KEYS && now < last.saturating_add(1000) {
            return;
        }
        self.swept_ms.store(now, Ordering::Relaxed);
        limiter.retain_recent();
        limiter.shrink_to_fit();
        let next = limiter.len().saturating_mul(2).clamp(SWEEP_ABOVE, MAX_KEYS);
        self.sweep_at.store(next, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_over_its_burst_waits_while_another_key_and_an_off_limiter_pass() {
        let limiter = SubscribeLimiter::new(1, 3);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        for _ in 0..3 {
            assert_eq!(limiter.check(&a), Ok(()));
        }
        let wait = limiter.check(&a).expect_err("over the burst");
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(1));
        assert_eq!(limiter.check(&b), Ok(()));
        let off = SubscribeLimiter::or_off(0, 200);
        for _ in 0..1000 {
            assert_eq!(off.check(&a), Ok(()));
        }
    }

    #[test]
    fn the_table_never_holds_more_than_its_bound() {
        // One attempt an hour: no key is idle enough to be swept during the test.
        let quota = Quota::with_period(Duration::from_secs(3600)).unwrap();
        let limiter = KeyedLimiter::<u32>::with_quota(Some(quota));
        let table = || limiter.limiter.as_ref().map_or(0, |l| l.len());
        for key in 0..(MAX_KEYS as u32 + 5_000) {
            assert_eq!(limiter.check(&key), Ok(()));
        }
        let full = table();
        assert!(full <= MAX_KEYS + 1, "{full} keys kept");
        // Past the bound, a new address passes without taking room.
        assert_eq!(limiter.check(&u32::MAX), Ok(()));
        assert_eq!(table(), full);
    }
}
