//! The Mercure hub endpoint, `/.well-known/mercure`: subscribe with `GET` (or `QUERY` with a
//! form body), publish with `POST`.

use std::sync::Arc;

use actix_cors::Cors;
use actix_web::{http::header, web, HttpRequest, HttpResponse};
use futures_util::StreamExt;

use super::{error::ApiError, single, subscribe, AppState};
use crate::{
    auth::{AuthError, MercureClaim, Subscriber},
    config::Listen,
    fanout::active::Announced,
    fanout::broadcaster::PublishRefused,
    fanout::subscription::Subscription,
    protocol::publication::Publication,
    protocol::topic::{Budget, MatcherType},
    protocol::update::EventId,
    transport::TransportError,
};
use url::Url;

/// Path of the hub endpoint, fixed by the protocol.
pub const PATH: &str = "/.well-known/mercure";

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

pub(super) fn unauthorized(err: AuthError) -> ApiError {
    // The cause (expired, bad signature, wrong algorithm) goes to the log, never the token.
    log::info!("refused a token: {err}");
    match err {
        AuthError::Missing => ApiError::Unauthorized("a token is required".into()),
        AuthError::NoKey => ApiError::Unauthorized("no key is configured for these tokens".into()),
        AuthError::Invalid(_) | AuthError::UnknownKey | AuthError::Critical => {
            ApiError::Unauthorized("invalid token".into())
        }
        AuthError::Origin => ApiError::Forbidden(
            "publishing with a cookie needs an Origin allowed by --publish-origin".into(),
        ),
    }
}

/// The hub's URL as this request reaches it, against which relative URL patterns and topics
/// are resolved: `https` when the hub serves TLS itself, else `http`; the request's authority
/// (HTTP/2) or `Host`, else the listener's; the protocol's path. A client naming another host
/// only changes how its own relative patterns resolve, never what its token allows.
fn hub_url(state: &AppState, req: &HttpRequest) -> Result<Arc<Url>, ApiError> {
    let scheme = if state.config.tls.tls_cert.is_some() {
        "https"
    } else {
        "http"
    };
    let config = req.app_config();
    let host = req
        .uri()
        .authority()
        .map(|a| a.as_str())
        .or_else(|| req.headers().get(header::HOST)?.to_str().ok())
        .unwrap_or_else(|| config.host());
    let plain = host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b".-_:[]".contains(&b));
    plain
        .then(|| Url::parse(&format!("{scheme}://{host}{PATH}")).ok())
        .flatten()
        .filter(|url| url.host().is_some())
        .map(Arc::new)
        .ok_or_else(|| ApiError::BadRequest("invalid Host header".into()))
}

/// `GET /.well-known/mercure?topic=…&match=…`: a stream of the updates matching the selectors.
pub(super) async fn subscribe(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    subscribe_with(&state, &req, "").await
}

/// `QUERY /.well-known/mercure` with a form body: the same as `GET` with the union of the
/// query string's parameters and the body's.
pub(super) async fn subscribe_query(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
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
    let who = state
        .auth
        .subscriber(req, single(&query, "authorization")?)
        .await
        .map_err(unauthorized)?;
    let max = state.config.streams.max_topics;
    // The request's templates and patterns and its token's share one budget, checked as each
    // is compiled.
    let mut budget = Budget::default();
    let mut base = None;
    let mut selectors = Vec::new();
    for (name, value) in query.iter().chain(&body) {
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
        if selectors.len() == max {
            return Err(ApiError::BadRequest(format!(
                "too many topic selectors and matchers (at most {max})"
            )));
        }
        selectors.push(match kind {
            None => state.templates.selector(value, &mut budget)?,
            Some(kind) => {
                if base.is_none() {
                    base = Some(hub_url(state, req)?);
                }
                let base = base.as_ref().expect("set just above");
                state.templates.matcher(kind, value, base, &mut budget)?
            }
        });
    }
    if selectors.is_empty() {
        return Err(ApiError::BadRequest(
            "missing \"topic\" or \"match\" parameter".into(),
        ));
    }
    let last_event_id = match single(&query, "last_event_id")? {
        Some(value) => Some(value),
        None => single(&body, "last_event_id")?,
    };
    let legacy = single(&query, "lastEventID")?;
    let cursor = subscribe::cursor(req, last_event_id.or(legacy))?;
    // Only hub-endpoint subscribers are announced: `/events` is not part of the protocol.
    let announce = |payload: Option<&serde_json::Value>| {
        state.config.streams.subscriptions.then(|| {
            Announced::new(
                selectors.iter().map(|s| s.as_str().to_owned()).collect(),
                payload.cloned(),
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
        Subscriber::Token(claims) => {
            // An expiry too far ahead to represent is no expiry at all.
            let expires = claims
                .time_left(state.config.auth.jwt_leeway)
                .and_then(|left| tokio::time::Instant::now().checked_add(left));
            let authorized =
                claims.selectors(&state.templates, &mut budget, |m| m.subscribe.as_ref())?;
            let payload = claims.mercure.and_then(|m| m.payload);
            let announced = announce(payload.as_ref());
            (
                Subscription::new(selectors, authorized, payload),
                expires,
                announced,
            )
        }
    };
    subscribe::open_stream(state, req, subscription, cursor, expires, announced).await
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
    let (claims, token_key) = state
        .auth
        .publisher(&req, single(&query, "authorization")?)
        .await
        .map_err(unauthorized)?;
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

    let allowed = claims.selectors(
        &state.templates,
        &mut Budget::default(),
        |m: &MercureClaim| m.publish.as_ref(),
    )?;
    let permitted = form
        .topics
        .iter()
        .all(|t| allowed.iter().any(|s| s.matches(t.as_str())));
    if !permitted {
        return Err(ApiError::Forbidden(
            "the token may not publish to every topic of this update".into(),
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
