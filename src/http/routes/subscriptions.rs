//! The subscriptions API (`--subscriptions`), in both generations of the protocol:
//! - 0.x, JSON-LD (`application/ld+json`): `…/subscriptions/{topic}` and
//!   `…/subscriptions/{topic}/{subscriber}`;
//! - 1.0, JSON (`application/json`): `…/subscriptions/{match_type}/{match}` and
//!   `…/subscriptions/{match_type}/{match}/{subscriber}`.
//!
//! Two segments are ambiguous (`{topic}/{subscriber}` or `{match_type}/{match}`): a first
//! segment `exact` or `urlpattern` makes them 1.0, anything else 0.x. The root collection
//! `…/subscriptions` answers in the generation of the request's token: a 1.0 access token (JWS
//! header `typ` `at+jwt`) gets the 1.0 subscriptions in JSON, any other the 0.x ones in JSON-LD.
//! Every answer carries the cursor to resume the events from in a `rel="mercure"` `Link` header.
//!
//! Registered only with the flag: without it these paths are unknown, `404` like any other.
//! With the local transport the broadcaster lists its subscribers; with Redis the list is every
//! node's, read from Redis (`503` when Redis does not answer).

use actix_web::{
    http::header::{self, HeaderValue},
    web, HttpRequest, HttpResponse, ResponseError,
};
use percent_encoding::percent_decode_str;

use super::{bearer, error::ApiError, mercure, AppState};
use crate::{
    auth::Subscriber,
    config::Listen,
    fanout::active::{self, Form, Generation, Scope, PREFIX},
    fanout::broadcaster::{ActiveList, LastSeen, ListActive},
    protocol::topic::{Budget, MatcherType},
    transport::Transport,
};

/// Registers the four paths (one handler reads the raw path itself), with the hub endpoint's
/// CORS: a page of a `--cors-origin` reads the API as it subscribes (its token still decides
/// what it may read), and its `Link` header (the cursor).
pub(super) fn configure(cfg: &mut web::ServiceConfig, listen: &Listen) {
    for path in [
        PREFIX,
        "/.well-known/mercure/subscriptions/{a}",
        "/.well-known/mercure/subscriptions/{a}/{b}",
        "/.well-known/mercure/subscriptions/{a}/{b}/{c}",
    ] {
        cfg.service(
            super::resource(path, "GET")
                .wrap(mercure::cors(listen, &["GET"]).expose_headers([header::LINK]))
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

/// What an API path asks for.
#[derive(Debug, PartialEq, Eq)]
struct Asked {
    scope: Scope,
    subscriber: Option<String>,
    /// The generation of the documents answered.
    generation: Generation,
}

/// Reads the path after [`PREFIX`] (`rest`, still encoded); `root` is the generation the root
/// collection answers in. `None`: no such resource.
fn asked(rest: &str, root: Generation) -> Result<Option<Asked>, ApiError> {
    let segments = rest
        .split('/')
        .skip(1)
        .map(decode)
        .collect::<Result<Vec<_>, _>>()?;
    let legacy = |topic: &str| Scope::Collection(active::collection(Form::Legacy, topic));
    let matcher =
        |kind, matcher: &str| Scope::Collection(active::collection(Form::Matcher(kind), matcher));
    let kind = segments.first().and_then(|s| MatcherType::from_name(s));
    let (scope, subscriber, generation) = match (kind, segments.as_slice()) {
        (_, []) => (Scope::All(root), None, root),
        (_, [topic]) => (legacy(topic), None, Generation::Legacy),
        (Some(kind), [_, m]) => (matcher(kind, m), None, Generation::Current),
        (None, [topic, subscriber]) => {
            (legacy(topic), Some(subscriber.clone()), Generation::Legacy)
        }
        (Some(kind), [_, m, subscriber]) => (
            matcher(kind, m),
            Some(subscriber.clone()),
            Generation::Current,
        ),
        _ => return Ok(None),
    };
    Ok(Some(Asked {
        scope,
        subscriber,
        generation,
    }))
}

/// The `Link` header value naming the hub and the cursor; 0.x answers (JSON-LD) leave out the
/// 1.0 event type and content type.
fn link(hub: &str, last_event_id: &str, generation: Generation) -> Option<HeaderValue> {
    let cursor = last_event_id.replace('\\', "\\\\").replace('"', "\\\"");
    let mut value = format!("<{hub}>; rel=\"mercure\"; last-event-id=\"{cursor}\"");
    if generation == Generation::Current {
        value.push_str("; type=\"mercure\"; content-type=\"application/json\"");
    }
    HeaderValue::from_bytes(value.as_bytes()).ok()
}

async fn list(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let query = super::query_pairs(req.query_string())?;
    // The path as sent (still percent-encoded): it is what the token's selectors must match,
    // as they match the IRIs of the subscription updates, which are encoded the same way.
    let path = req.uri().path();
    // The spec: a subscriber token is required here, even where anonymous subscribers are let in.
    let ctx = bearer::context(&state, &req, &query, false)?;
    let resource = ctx.resource.clone();
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
    // The root collection answers in the generation of the token that asks: it has been
    // verified, so its kind is known.
    let root = if grants.is_access_token() {
        Generation::Current
    } else {
        Generation::Legacy
    };
    let hub = super::bearer::hub_url(&state, &req)?;
    let Some(asked) = asked(path.strip_prefix(PREFIX).unwrap_or_default(), root)? else {
        return Err(ApiError::NotFound("no such subscription".into()));
    };
    let single_one = asked.subscriber.is_some();
    let list = match &state.transport {
        Transport::Local => state
            .broadcaster
            .send(ListActive {
                scope: asked.scope,
                subscriber: asked.subscriber,
            })
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
                .active(&asked.scope, asked.subscriber.as_deref())
                .await
                .map_err(|_| ApiError::Unavailable)?;
            ActiveList {
                last_event_id,
                subscriptions,
            }
        }
    };
    let link = link(hub.as_str(), &list.last_event_id, asked.generation);
    let body = if single_one {
        list.subscriptions.into_iter().next()
    } else if asked.generation == Generation::Legacy {
        Some(active::collection_ld(
            path,
            &list.last_event_id,
            list.subscriptions,
        ))
    } else {
        Some(active::collection_json(path, list.subscriptions))
    };
    let mut response = match body {
        Some(body) => HttpResponse::Ok()
            .content_type(match asked.generation {
                Generation::Legacy => "application/ld+json",
                Generation::Current => "application/json",
            })
            .body(body.to_string()),
        None => ApiError::NotFound("no such subscription".into()).error_response(),
    };
    if let Some(link) = link {
        response.headers_mut().insert(header::LINK, link);
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collection(form: Form, s: &str) -> Scope {
        Scope::Collection(active::collection(form, s))
    }

    #[test]
    fn a_first_segment_naming_a_matcher_type_makes_a_path_1_0() {
        let exact = Form::Matcher(MatcherType::Exact);
        let asked = |rest| asked(rest, Generation::Legacy).unwrap();
        assert_eq!(
            asked("/exact/%2Fa"),
            Some(Asked {
                scope: collection(exact, "/a"),
                subscriber: None,
                generation: Generation::Current,
            })
        );
        assert_eq!(
            asked("/urlpattern/%2Fa/urn%3Ax").map(|a| (a.scope, a.subscriber)),
            Some((
                collection(Form::Matcher(MatcherType::UrlPattern), "/a"),
                Some("urn:x".to_owned())
            ))
        );
        // 0.x: a topic and a subscriber; and the topic `exact` alone.
        assert_eq!(
            asked("/%2Fa/urn%3Ax").map(|a| (a.scope, a.generation)),
            Some((collection(Form::Legacy, "/a"), Generation::Legacy))
        );
        assert_eq!(
            asked("/exact").map(|a| a.scope),
            Some(collection(Form::Legacy, "exact"))
        );
        // Case-sensitive, as paths are; three segments are 1.0 only.
        assert_eq!(
            asked("/Exact/%2Fa").map(|a| a.generation),
            Some(Generation::Legacy)
        );
        assert_eq!(asked("/a/b/c"), None);
        // An escape is read as the same matcher, however it was spelt.
        assert_eq!(asked("/exact/%2fa"), asked("/exact/%2Fa"));
        assert!(matches!(
            super::asked("/exact/%FF", Generation::Legacy),
            Err(ApiError::BadRequest(_))
        ));
    }

    #[test]
    fn the_root_answers_in_the_generation_asked() {
        assert_eq!(
            asked("", Generation::Current).unwrap().map(|a| a.scope),
            Some(Scope::All(Generation::Current))
        );
    }

    #[test]
    fn the_link_quotes_the_cursor() {
        let current = link("http://h/.well-known/mercure", "a\"b", Generation::Current).unwrap();
        assert_eq!(
            current.to_str().unwrap(),
            "<http://h/.well-known/mercure>; rel=\"mercure\"; last-event-id=\"a\\\"b\"; \
             type=\"mercure\"; content-type=\"application/json\""
        );
        let legacy = link("http://h/", "earliest", Generation::Legacy).unwrap();
        assert_eq!(
            legacy.to_str().unwrap(),
            "<http://h/>; rel=\"mercure\"; last-event-id=\"earliest\""
        );
    }
}
