//! The subscriptions API (`--subscriptions`): `GET /.well-known/mercure/subscriptions`,
//! `…/{topic}` and `…/{topic}/{subscriber}`, as JSON-LD.
//!
//! Registered only with the flag: without it these paths are unknown, `404` like any other.
//! With the local transport the broadcaster lists its subscribers; with Redis the list is every
//! node's, read from Redis (`503` when Redis does not answer).

use actix_web::{web, HttpRequest, HttpResponse};
use percent_encoding::percent_decode_str;

use super::{bearer, error::ApiError, mercure, single, AppState};
use crate::{
    auth::{Context, Subscriber},
    config::Listen,
    fanout::active::{self, PREFIX},
    fanout::broadcaster::{ActiveList, LastSeen, ListActive},
    protocol::topic::Budget,
    transport::Transport,
};

/// Registers the three paths (one handler reads the raw path itself), with the hub endpoint's
/// CORS: a page of a `--cors-origin` reads the API as it subscribes (its token still decides
/// what it may read).
pub(super) fn configure(cfg: &mut web::ServiceConfig, listen: &Listen) {
    for path in [
        PREFIX,
        "/.well-known/mercure/subscriptions/{topic}",
        "/.well-known/mercure/subscriptions/{topic}/{subscriber}",
    ] {
        cfg.service(
            super::resource(path, "GET")
                .wrap(mercure::cors(listen, &["GET"]))
                .route(web::get().to(list)),
        );
    }
}

/// Decodes one path segment; `400` when it is not UTF-8 once decoded.
fn decode(segment: &str) -> Result<String, ApiError> {
    percent_decode_str(segment)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| ApiError::BadRequest("a path segment is not UTF-8 once decoded".into()))
}

async fn list(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let query = super::query_pairs(req.query_string())?;
    // The path as sent (still percent-encoded): it is what the token's selectors must match,
    // as they match the IRIs of the subscription updates, which are encoded the same way.
    let path = req.uri().path();
    // The spec: a subscriber token is required here, even where anonymous subscribers are let in.
    let resource = bearer::resource(&state, &req);
    let ctx = Context {
        query_token: single(&query, "authorization")?,
        uses_v1: false,
        resource: resource.clone(),
        templates: &state.templates,
    };
    let refuse = |err| bearer::refuse(err, resource.as_ref());
    let grants = match state
        .auth
        .subscriber(&req, &ctx, &mut Budget::default())
        .await
        .map_err(refuse)?
    {
        Subscriber::Token(grants) => grants,
        Subscriber::Anonymous => return Err(refuse(crate::auth::AuthError::Missing)),
    };
    if !grants.may_subscribe(path) {
        return Err(bearer::insufficient_scope(
            resource.as_ref(),
            "the token's subscribe grants do not match this path",
        ));
    }
    let mut segments = path
        .strip_prefix(PREFIX)
        .unwrap_or_default()
        .split('/')
        .skip(1)
        .map(decode);
    let topic = segments.next().transpose()?;
    let subscriber = segments.next().transpose()?;
    let single_one = subscriber.is_some();
    let list = match &state.transport {
        Transport::Local => state
            .broadcaster
            .send(ListActive { topic, subscriber })
            .await
            .map_err(|_| ApiError::ShuttingDown)?,
        Transport::Redis(redis) => {
            // The id first: the list read after it is at least as new (see `presence`).
            let last_event_id = state
                .broadcaster
                .send(LastSeen)
                .await
                .map_err(|_| ApiError::ShuttingDown)?;
            let subscriptions = redis
                .active(topic.as_deref(), subscriber.as_deref())
                .await
                .map_err(|_| ApiError::Unavailable)?;
            ActiveList {
                last_event_id,
                subscriptions,
            }
        }
    };
    let body = if single_one {
        list.subscriptions
            .into_iter()
            .next()
            .ok_or(ApiError::NotFound("no such subscription".into()))?
    } else {
        active::collection(path, &list.last_event_id, list.subscriptions)
    };
    Ok(HttpResponse::Ok()
        .content_type("application/ld+json")
        .body(body.to_string()))
}
