//! The publish rate limit: one token bucket per publisher token.

use std::{num::NonZeroU32, time::Duration};

use governor::{clock::Clock, DefaultKeyedRateLimiter, Quota, RateLimiter};

/// Keys kept by the rate limiter before stale ones are swept.
const SWEEP_ABOVE: usize = 10_000;

/// Publish rate limit, one bucket per publisher token.
#[derive(Debug)]
pub struct PublishLimiter {
    limiter: DefaultKeyedRateLimiter<String>,
}

impl PublishLimiter {
    #[must_use]
    pub fn new(per_second: u32, burst: u32) -> Self {
        let rate = NonZeroU32::new(per_second.max(1)).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(burst.max(per_second).max(1)).unwrap_or(NonZeroU32::MIN);
        Self {
            limiter: RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst)),
        }
    }

    /// Takes one publish from `key`'s bucket, or says how long until one is available.
    pub fn check(&self, key: &str) -> Result<(), Duration> {
        if self.limiter.len() > SWEEP_ABOVE {
            self.limiter.retain_recent();
        }
        self.limiter
            .check_key(&key.to_owned())
            .map_err(|not_until| not_until.wait_time_from(self.limiter.clock().now()))
    }
}
