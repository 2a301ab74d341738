//! Limits that protect the hub from its clients: publish rate per token, request size, and the
//! client address used for per-IP limits.

use std::{net::IpAddr, num::NonZeroU32, time::Duration};

use actix_web::{
    body::{EitherBody, MessageBody},
    dev::{ServiceRequest, ServiceResponse},
    middleware::Next,
    web, HttpRequest, ResponseError,
};
use governor::{clock::Clock, DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::routes::{error::ApiError, AppState};

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

/// The client's address: the peer, or, when the peer is a trusted proxy, the address that
/// proxy appended to `X-Forwarded-For` (the rightmost, the only one it vouches for).
#[must_use]
pub fn client_ip(req: &HttpRequest, trusted_proxies: &[IpAddr]) -> Option<IpAddr> {
    let peer = req.peer_addr()?.ip();
    if !trusted_proxies.contains(&peer) {
        return Some(peer);
    }
    let forwarded = req
        .headers()
        .get_all("X-Forwarded-For")
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|a| a.trim().parse::<IpAddr>().ok())
        .last();
    Some(forwarded.unwrap_or(peer))
}

/// Refuses request targets over `--max-url-size` (414) and headers over `--max-header-size`
/// (431) before any handler runs.
pub async fn request_size(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let limits = req
        .app_data::<web::Data<AppState>>()
        .map(|s| (s.config.max_url_size, s.config.max_header_size));
    if let Some((max_url, max_headers)) = limits {
        let target = req.uri().path_and_query().map_or(0, |pq| pq.as_str().len());
        let headers: usize = req
            .headers()
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len() + 4)
            .sum();
        let refusal = if target > max_url {
            Some(ApiError::UriTooLong(max_url))
        } else if headers > max_headers {
            Some(ApiError::HeadersTooLarge(max_headers))
        } else {
            None
        };
        if let Some(err) = refusal {
            let response = err.error_response().map_into_right_body();
            return Ok(req.into_response(response));
        }
    }
    next.call(req)
        .await
        .map(ServiceResponse::map_into_left_body)
}
