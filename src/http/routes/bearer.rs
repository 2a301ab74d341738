//! The hub as a protected resource (RFC 6750, RFC 9728): its public URL and resource
//! identifier for one request, the Bearer challenge of each refusal, and the refusals of
//! [`AuthError`]s.
//!
//! A refused token is told only `invalid_token`: saying why (expired, wrong audience, which
//! signature check) would help whoever forges one. The cause goes to the log, at info.

use std::sync::Arc;

use actix_web::{http::header, web, HttpRequest, HttpResponse};
use url::Url;

use super::{
    error::{ApiError, Challenge},
    single, AppState, HUB_PATH as PATH,
};
use crate::{
    auth::{AuthError, Context, Resource, DETAIL_TYPE},
    protocol::form::Pair,
    protocol::topic::SelectorError,
};

/// Path of the hub's protected resource metadata (RFC 9728 §3.1, for the hub endpoint).
pub const METADATA_PATH: &str = "/.well-known/oauth-protected-resource/.well-known/mercure";

/// The first value of header `name`, when the peer is a trusted proxy.
fn forwarded<'a>(state: &AppState, req: &'a HttpRequest, name: &str) -> Option<&'a str> {
    let peer = req.peer_addr()?.ip();
    if !state.config.listen.trusted_proxies.contains(&peer) {
        return None;
    }
    let value = req.headers().get(name)?.to_str().ok()?;
    value
        .split(',')
        .next()
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// The hub's URL as this request reaches it, against which relative URL patterns and topics
/// are resolved: `https` when the hub serves TLS itself, else `http`; the request's authority
/// (HTTP/2) or `Host`, else the listener's; the protocol's path. A trusted proxy
/// (`--trusted-proxy`, recognized as in [`super::client_ip`]) may say the scheme and host the client used, with
/// `X-Forwarded-Proto` and `X-Forwarded-Host`. A client naming another host only changes how
/// its own relative patterns resolve, and which `aud` its 1.0 token must hold, never what a
/// token allows.
pub(super) fn hub_url(state: &AppState, req: &HttpRequest) -> Result<Arc<Url>, ApiError> {
    let scheme = match forwarded(state, req, "X-Forwarded-Proto") {
        Some(proto) if proto.eq_ignore_ascii_case("https") => "https",
        Some(proto) if proto.eq_ignore_ascii_case("http") => "http",
        _ if state.config.tls.tls_cert.is_some() => "https",
        _ => "http",
    };
    let config = req.app_config();
    let host = forwarded(state, req, "X-Forwarded-Host")
        .or_else(|| req.uri().authority().map(|a| a.as_str()))
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

/// The hub's resource identifier for this request: `--resource-identifier`, else the hub's
/// URL; `None` when neither is known (an invalid `Host`).
/// What the token checks of a request need: its query token (0.x), whether it uses 1.0
/// matchers, the hub's resource, the shared templates. `400` when `authorization` is repeated.
pub(super) fn context<'a>(
    state: &'a AppState,
    req: &HttpRequest,
    query: &'a [Pair<'a>],
    uses_v1: bool,
) -> Result<Context<'a>, ApiError> {
    Ok(Context {
        query_token: single(query, "authorization")?,
        uses_v1,
        resource: resource(state, req),
        templates: &state.templates,
    })
}

pub(super) fn resource(state: &AppState, req: &HttpRequest) -> Option<Resource> {
    if let Some(id) = state.auth.resource_identifier() {
        let url = Url::parse(id).ok()?;
        return Some(Resource {
            id: id.to_owned(),
            url: Arc::new(url),
        });
    }
    let url = hub_url(state, req).ok()?;
    Some(Resource {
        id: url.as_str().to_owned(),
        url,
    })
}

/// The challenge of a refusal with `error`.
pub(super) fn challenge(resource: Option<&Resource>, error: Option<&'static str>) -> Challenge {
    Challenge {
        error,
        resource_metadata: resource.map(Resource::metadata_url),
    }
}

/// A `403 insufficient_scope`: the token is valid but does not grant this.
pub(super) fn insufficient_scope(resource: Option<&Resource>, message: &str) -> ApiError {
    ApiError::InsufficientScope(
        message.to_owned(),
        challenge(resource, Some("insufficient_scope")),
    )
}

/// The refusal of a token (or of its absence).
pub(super) fn refuse(err: AuthError, resource: Option<&Resource>) -> ApiError {
    // The cause (expired, bad signature, wrong algorithm) goes to the log, never the token.
    log::info!("refused a token: {err}");
    let invalid = |message: &str| {
        ApiError::Unauthorized(
            message.to_owned(),
            challenge(resource, Some("invalid_token")),
        )
    };
    match err {
        AuthError::Missing => {
            ApiError::Unauthorized("a token is required".into(), challenge(resource, None))
        }
        AuthError::NoKey => invalid("no key is configured for these tokens"),
        AuthError::Invalid(_)
        | AuthError::UnknownKey
        | AuthError::Critical
        | AuthError::Issuer
        | AuthError::IssuerRole
        | AuthError::Audience
        | AuthError::Legacy
        | AuthError::Details(_) => invalid("invalid token"),
        AuthError::Matchers(SelectorError::HubFull) => ApiError::from(SelectorError::HubFull),
        AuthError::Matchers(_) => invalid("invalid token"),
        AuthError::Selectors(err) => ApiError::from(err),
        AuthError::Malformed(message) => ApiError::InvalidRequest(
            message.to_owned(),
            challenge(resource, Some("invalid_request")),
        ),
        AuthError::Origin => ApiError::Forbidden(
            "publishing with a cookie needs an Origin allowed by --publish-origin".into(),
        ),
    }
}

/// CORS of the metadata: public, so any page may read it (no cookies).
pub(super) fn metadata_cors() -> actix_cors::Cors {
    actix_cors::Cors::default()
        .allow_any_origin()
        .send_wildcard()
        .allowed_methods(["GET"])
        .max_age(3600)
}

/// `GET /.well-known/oauth-protected-resource/.well-known/mercure`: what a client needs to get
/// a token for this hub (RFC 9728 §2, and the Mercure fields of the draft).
pub(super) async fn metadata(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let resource = match resource(&state, &req) {
        Some(resource) => resource,
        None => return Err(ApiError::BadRequest("invalid Host header".into())),
    };
    let mut body = serde_json::json!({
        "resource": resource.id,
        "authorization_details_types_supported": [DETAIL_TYPE],
        "bearer_methods_supported": ["header"],
        "mercure_cookie": state.auth.access_token_cookie(),
    });
    let servers: Vec<&str> = state.auth.authorization_servers().collect();
    if !servers.is_empty() {
        body["authorization_servers"] = serde_json::json!(servers);
    }
    if state.config.streams.subscriptions {
        body["mercure_subscriptions"] = serde_json::Value::Bool(true);
    }
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(body.to_string()))
}
