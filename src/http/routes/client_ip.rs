//! The client address that per-address limits count: the peer, or what a trusted proxy says.

use std::net::IpAddr;

use actix_web::HttpRequest;

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
