//! The Mercure hub endpoint, `/.well-known/mercure`: subscribe with `GET` (or `QUERY` with a
//! form body), publish with `POST`.

use std::sync::Arc;

use actix_cors::Cors;
use actix_web::{http::header, web, HttpRequest, HttpResponse};
use futures_util::StreamExt;

use super::{
    bearer::{self, hub_url},
    error::ApiError,
    single, subscribe, AppState,
};
use crate::{
    auth::{Grants, Subscriber},
    config::{Listen, Protocol},
    fanout::active::{Announced, Announcement, Form},
    fanout::broadcaster::PublishRefused,
    fanout::subscription::Subscription,
    protocol::publication::Publication,
    protocol::topic::{Budget, MatcherType},
    protocol::update::EventId,
    transport::TransportError,
};

/// Path of the hub endpoint, fixed by the protocol.
pub const PATH: &str = super::HUB_PATH;

/// CORS of the hub endpoint and the subscriptions API, for their `methods`: the
/// `--cors-origin` list; with `*`, any origin but no cookies. Requests from other origins are
/// not refused here (same-origin browsers send `Origin` too): they just get no CORS headers, so
/// a browser keeps the response from the page.
pub(super) fn cors(listen: &Listen, methods: &[&'static str]) -> Cors {
    let mut cors = Cors::default()
        .block_on_origin_mismatch(false)
        .allowed_methods(methods.iter().copied())
        .allowed_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::CACHE_CONTROL,
            header::HeaderName::from_static("last-event-id"),
        ])
        // A page's script must be able to read the id of a publish answered 503, to retry it,
        // and where a subscription's replay starts, to detect lost updates.
        .expose_headers([
            header::HeaderName::from_static("mercure-update-id"),
            header::HeaderName::from_static(subscribe::MERCURE_LAST_EVENT_ID),
            header::HeaderName::from_static("last-event-id"),
            // A page must be able to tell a missing token from an expired one, and find the
            // protected resource metadata.
            header::WWW_AUTHENTICATE,
        ])
        .max_age(3600);
    if listen.cors_origins.iter().any(|o| o == "*") {
        cors = cors.allow_any_origin().send_wildcard();
    } else {
        for origin in &listen.cors_origins {
            cors = cors.allowed_origin(origin);
        }
        if !listen.cors_origins.is_empty() {
            cors = cors.supports_credentials();
        }
    }
    cors
}

/// `GET /.well-known/mercure?topic=…&match=…`: a stream of the updates matching the selectors.
pub(super) async fn subscribe(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    subscribe::count_attempt(&state, &req)?;
    subscribe_with(&state, &req, "").await
}

/// `QUERY /.well-known/mercure` with a form body: the same as `GET` with the union of the
/// query string's parameters and the body's.
pub(super) async fn subscribe_query(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    subscribe::count_attempt(&state, &req)?;
    let limit = state.config.listen.max_body_size;
    if declared_length(&req).is_some_and(|len| len > limit) {
        return Err(ApiError::PayloadTooLarge(limit));
    }
    let body = read_form(&req, payload, limit).await?;
    let body = body.as_str();
    subscribe_with(&state, &req, body).await
}

/// Subscribes with the parameters of the query string and of `body` together.
///
/// 0.x `topic` selectors and 1.0 matchers may be mixed: the subscriber gets what any of them
/// selects, and they count together against `--max-topics`. The cursor is the `Last-Event-ID`
/// header, else `last_event_id` (the query string's before the body's), else 0.x `lastEventID`.
async fn subscribe_with(
    state: &AppState,
    req: &HttpRequest,
    body: &str,
) -> Result<HttpResponse, ApiError> {
    let query = super::query_pairs(req.query_string())?;
    let body = crate::protocol::form::parse(body)
        .map_err(|e| ApiError::BadRequest(format!("invalid body: {e}")))?;
    let params = || query.iter().chain(&body);
    if state.config.protocol == Protocol::V1 {
        if let Some((name, _)) = params().find(|(n, _)| n == "topic" || n == "lastEventID") {
            return Err(ApiError::BadRequest(format!(
                "Mercure 0.x is off (--protocol 1.0): {name:?} is not accepted; use match and \
                 last_event_id"
            )));
        }
    }
    let uses_v1 = params().any(|(n, _)| MatcherType::from_param(n).is_some());
    let ctx = bearer::context(state, req, &query, uses_v1)?;
    let resource = ctx.resource.clone();
    // The request's templates and patterns and its token's share one budget, checked as each
    // is compiled (and each compilation stops once it would exceed what is left).
    let mut budget = Budget::default();
    let who = state
        .auth
        .subscriber(req, &ctx, &mut budget)
        .await
        .map_err(|err| bearer::refuse(err, resource.as_ref()))?;
    let max = state.config.streams.max_topics;
    // What needs no compiling is checked before anything is compiled: the parameter names,
    // how many selectors there are, each value's text, and the subscriber's place in the
    // limits. A refused request then costs a parse and a lookup.
    let mut wanted = Vec::new();
    for (name, value) in params() {
        let kind = match MatcherType::from_param(name) {
            None if name == "topic" => None,
            None => continue,
            Some(Ok(kind)) => Some(kind),
            Some(Err(())) => {
                return Err(ApiError::BadRequest(format!(
                    "unknown matcher parameter {name:?} (known: match, match_exact, \
                     match_urlpattern)"
                )))
            }
        };
        if wanted.len() == max {
            return Err(ApiError::BadRequest(format!(
                "too many topic selectors and matchers (at most {max})"
            )));
        }
        crate::protocol::topic::check_text(kind, value)?;
        wanted.push((kind, value));
    }
    if wanted.is_empty() {
        return Err(ApiError::BadRequest(
            "missing \"topic\" or \"match\" parameter".into(),
        ));
    }
    let slot = subscribe::admit(state, req)?;
    // Each selector's generation, which decides how it is announced.
    let forms: Vec<Form> = wanted
        .iter()
        .map(|(kind, _)| kind.map_or(Form::Legacy, Form::Matcher))
        .collect();
    let mut base = None;
    let mut selectors = Vec::with_capacity(wanted.len());
    for (kind, value) in wanted {
        selectors.push(match kind {
            None => state.templates.selector(value, &mut budget)?,
            Some(kind) => {
                if base.is_none() {
                    // The resource identifier when configured: the hub's public URL.
                    base = Some(match &resource {
                        Some(resource) => Arc::clone(&resource.url),
                        None => hub_url(state, req)?,
                    });
                }
                let base = base.as_ref().expect("set just above");
                state.templates.matcher(kind, value, base, &mut budget)?
            }
        });
    }
    let last_event_id = match single(&query, "last_event_id")? {
        Some(value) => Some(value),
        None => single(&body, "last_event_id")?,
    };
    let legacy = single(&query, "lastEventID")?;
    let cursor = subscribe::cursor(req, last_event_id.or(legacy))?;
    // Only hub-endpoint subscribers are announced: `/events` is not part of the protocol.
    // Each announced subscription carries its own payload: a 0.x token's `mercure.payload`, or
    // that of the first subscribe detail of an access token whose topics match its matcher.
    let announce = |grants: Option<&Grants>| {
        state.config.streams.subscriptions.then(|| {
            Announced::new(
                selectors
                    .iter()
                    .zip(&forms)
                    .map(|(selector, &form)| {
                        let selector = selector.as_str();
                        let payload = grants.and_then(|g| g.payload_for(selector)).cloned();
                        Announcement::new(form, selector.to_owned(), payload)
                    })
                    .collect(),
            )
        })
    };
    let (subscription, expires, announced) = match who {
        Subscriber::Anonymous => {
            let announced = announce(None);
            (
                Subscription::new(selectors, Vec::new(), None),
                None,
                announced,
            )
        }
        Subscriber::Token(grants) => {
            // An expiry too far ahead to represent is no expiry at all.
            let expires = grants
                .time_left(state.config.auth.jwt_leeway)
                .and_then(|left| tokio::time::Instant::now().checked_add(left));
            let authorized = grants.subscribe_matchers().to_vec();
            // One payload per subscription for now: that of its first matcher that has one.
            let payload = selectors
                .iter()
                .find_map(|s| grants.payload_for(s.as_str()))
                .cloned();
            let announced = announce(Some(&grants));
            (
                Subscription::new(selectors, authorized, payload),
                expires,
                announced,
            )
        }
    };
    subscribe::open_stream(state, req, subscription, cursor, expires, announced, slot).await
}

/// The `Content-Length` the client declared, if any.
fn declared_length(req: &HttpRequest) -> Option<usize> {
    req.headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok())
}

/// Whether the body is declared `application/x-www-form-urlencoded`.
fn form_encoded(req: &HttpRequest) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}

/// Reads a form-encoded body of at most `limit` bytes, as text: what publishing and a `QUERY`
/// subscription both take.
async fn read_form(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<String, ApiError> {
    if !form_encoded(req) {
        return Err(ApiError::BadRequest(
            "the body must be application/x-www-form-urlencoded".into(),
        ));
    }
    let mut body = Vec::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| ApiError::BadRequest(format!("unreadable body: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::PayloadTooLarge(limit));
        }
        body.extend_from_slice(&chunk);
    }
    String::from_utf8(body).map_err(|_| ApiError::BadRequest("the body is not UTF-8".into()))
}

/// `POST /.well-known/mercure` (form-encoded): publishes an update, answers its id.
pub(super) async fn publish(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let started = std::time::Instant::now();
    let limit = state.config.listen.max_body_size;
    if declared_length(&req).is_some_and(|len| len > limit) {
        return Err(ApiError::PayloadTooLarge(limit));
    }
    let query = super::query_pairs(req.query_string())?;
    let ctx = bearer::context(&state, &req, &query, false)?;
    let resource = ctx.resource.clone();
    let (grants, token_key) = state
        .auth
        .publisher(&req, &ctx)
        .await
        .map_err(|err| bearer::refuse(err, resource.as_ref()))?;
    state
        .publish_limiter
        .check(&token_key)
        .map_err(|wait| ApiError::RateLimited(wait.as_secs().max(1)))?;
    let body = read_form(&req, payload, limit).await?;
    let body = body.as_str();
    let form = Publication::parse(body).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    if form.topics.len() > state.config.publishing.max_topics_per_update {
        return Err(ApiError::BadRequest(format!(
            "too many topics in one update (at most {})",
            state.config.publishing.max_topics_per_update
        )));
    }
    if form.data.len() > state.config.publishing.max_data_size {
        return Err(ApiError::PayloadTooLarge(
            state.config.publishing.max_data_size,
        ));
    }

    if !grants.may_publish(form.topics.iter().map(|t| t.as_str())) {
        return Err(bearer::insufficient_scope(
            resource.as_ref(),
            "the token may not publish to every topic of this update",
        ));
    }

    // The id is chosen before the transport is tried, so a failure whose outcome is unknown
    // can still name it, and a retry under it is deduplicated.
    let id = form.id.clone().unwrap_or_else(EventId::generate);
    let id = state
        .transport
        .publish(id.clone(), form, &state.broadcaster)
        .await
        .map_err(|err| match err {
            TransportError::Refused(PublishRefused::Overloaded) => ApiError::Overloaded(id),
            TransportError::Refused(refused) => ApiError::from(refused),
            TransportError::Unavailable => ApiError::TransportDown(id),
        })?;
    state.stats.observe_publish(started.elapsed().as_secs_f64());
    Ok(HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .body(id.to_string()))
}
