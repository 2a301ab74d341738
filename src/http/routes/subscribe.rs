//! Subscribing: `GET /events` (the server-time topic) and, with the same stream machinery,
//! `GET /.well-known/mercure`.

use actix_web::{
    http::header::{self, HeaderValue},
    web, HttpRequest, HttpResponse, HttpResponseBuilder,
};

use std::sync::Arc;

use super::{error::ApiError, AppState};
use crate::{
    fanout::admission::Slot,
    fanout::broadcaster::{Joined, Subscribe, Subscribed},
    fanout::direct::{self, Outlet},
    fanout::shard::LocalQueue,
    fanout::subscription::Subscription,
    http::stream::SubscriberStream,
    protocol::update::{check_field, Cursor},
};

/// The response field saying where a replay starts (Mercure 1.0); 0.x clients read the same
/// value from a `Last-Event-ID` response header, which the hub keeps sending beside it.
pub(crate) const MERCURE_LAST_EVENT_ID: &str = "mercure-last-event-id";

/// Sets the headers every SSE response carries.
pub(crate) fn sse_headers(response: &mut HttpResponseBuilder) {
    response
        .content_type("text/event-stream")
        // Nothing may cache or store a live stream.
        .insert_header((header::CACHE_CONTROL, "no-cache, no-store"))
        // Tells nginx not to buffer this response whatever its proxy_buffering says.
        .insert_header(("X-Accel-Buffering", "no"))
        // A compressing layer would hold events back to fill its blocks.
        .insert_header((header::CONTENT_ENCODING, "identity"));
}

/// Reads the resume point: the `Last-Event-ID` header, else the `lastEventID` query parameter.
pub(crate) fn cursor(
    req: &HttpRequest,
    query_value: Option<&str>,
) -> Result<Option<Cursor>, ApiError> {
    let from_header = req
        .headers()
        .get("Last-Event-ID")
        .map(|v| {
            std::str::from_utf8(v.as_bytes())
                .map_err(|_| ApiError::BadRequest("Last-Event-ID is not UTF-8".into()))
        })
        .transpose()?
        .filter(|v| !v.is_empty());
    let Some(value) = from_header.or(query_value.filter(|v| !v.is_empty())) else {
        return Ok(None);
    };
    check_field(value).map_err(|e| ApiError::BadRequest(format!("invalid last event id: {e}")))?;
    Ok(Some(Cursor::parse(value)))
}

/// Takes one subscribe attempt from the client address's bucket (`--subscribe-rate`): the
/// first thing a subscribe route does, before reading a body, a token or a selector, so an
/// address that retries too fast costs a lookup and a one-line `429`.
pub(crate) fn count_attempt(state: &AppState, req: &HttpRequest) -> Result<(), ApiError> {
    let Some(ip) = super::client_ip::client_ip(req, &state.config.listen.trusted_proxies) else {
        return Ok(());
    };
    state
        .subscribe_limiter
        .check(&ip)
        .map_err(|wait| ApiError::SubscribingTooFast(wait.as_secs_f64().ceil().max(1.0) as u64))
}

/// Takes the subscriber's place in the limits (`--max-subscribers`, per address): before any
/// selector is compiled, so a refused subscriber costs next to nothing.
pub(crate) fn admit(state: &AppState, req: &HttpRequest) -> Result<Slot, ApiError> {
    let ip = super::client_ip::client_ip(req, &state.config.listen.trusted_proxies);
    Ok(state.admission.reserve(ip)?)
}

/// Registers a subscriber (which holds `slot`, its place in the limits) and answers with its
/// stream.
///
/// The subscriber is registered before the response starts, so an update published once the
/// client sees the first bytes is never missed. One without a cursor is registered by this
/// worker with its own shard, and the broadcaster told after ([`Joined`]): no round trip to the
/// broadcaster's thread, which may be busy with fan-out and commits. One with a cursor is
/// registered by the broadcaster, which takes its replay in the same step. A cursor this node
/// does not hold may be one its transport has not delivered yet: the node catches up first
/// (bounded), so the replay is computed against a history that has it.
pub(crate) async fn open_stream(
    state: &AppState,
    req: &HttpRequest,
    subscription: Subscription,
    cursor: Option<Cursor>,
    expires: Option<tokio::time::Instant>,
    announced: Option<crate::fanout::active::Announced>,
    slot: Slot,
) -> Result<HttpResponse, ApiError> {
    state
        .transport
        .catch_up(cursor.as_ref(), &state.broadcaster)
        .await;
    let queue = LocalQueue::open(
        &state.shard_owner,
        state.config.streams.queue_capacity,
        &state.stats,
        Outlet::for_request(req),
    );
    let subscription = Arc::new(subscription);
    // The closing check and the registration are one step on this thread (`Admission::close`).
    let here = cursor.is_none()
        && !state.admission.is_closing()
        && queue.register_here(Arc::clone(&subscription));
    let subscribed = if here {
        state.broadcaster.do_send(Joined {
            shard: queue.shard(),
            id: queue.id(),
            slot,
            selectors: subscription.selectors().len(),
            announced,
        });
        // Answering within the same poll as the request left each connection holding about
        // 6 KB more for its whole life (measured, not traced: actix-http's connection state
        // keeps what it had while reading the request); one yield first avoids it and costs no
        // cross-thread round trip. With 10,000 subscribers: 9.4 KB per subscriber without it,
        // 3.3 KB with it (BENCHMARKS.md, "Joining").
        tokio::task::yield_now().await;
        Subscribed::live(subscription, Arc::clone(&state.stats))
    } else {
        state
            .broadcaster
            .send(Subscribe {
                shard: queue.shard(),
                id: queue.id(),
                subscription,
                cursor,
                slot,
                announced,
            })
            .await??
    };
    let resumed_after = subscribed.resumed_after.clone();
    let retry_ms = u64::try_from(state.config.streams.retry.as_millis()).unwrap_or(u64::MAX);
    let stream = SubscriberStream::new(
        subscribed,
        queue,
        retry_ms,
        state.config.streams.keep_alive,
        expires,
    );
    let mut response = HttpResponse::Ok();
    sse_headers(&mut response);
    if let Some(value) = resumed_after.and_then(|v| HeaderValue::from_bytes(v.as_bytes()).ok()) {
        response.insert_header((MERCURE_LAST_EVENT_ID, value.clone()));
        response.insert_header(("Last-Event-ID", value));
    }
    let mut response = response.streaming(stream);
    direct::frame(req, response.head_mut());
    Ok(response)
}

/// `GET /events`: the public server-time updates, for anyone (no token needed).
pub(crate) async fn events(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    count_attempt(&state, &req)?;
    let query = super::query_pairs(req.query_string())?;
    let last_event_id = super::single(&query, "lastEventID")?;
    let cursor = cursor(&req, last_event_id)?;
    let slot = admit(&state, &req)?;
    let subscription = Subscription::new(vec![state.time_selector.clone()], Vec::new(), None);
    open_stream(&state, &req, subscription, cursor, None, None, slot).await
}
