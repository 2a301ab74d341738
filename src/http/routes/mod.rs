//! HTTP routes, registered by [`configure`] so the server and in-process tests share them.

mod assets;
mod bearer;
pub mod client_ip;
pub mod error;
mod health;
pub mod http10;
pub mod mercure;
pub mod rate_limit;
pub mod request_size;
mod subscribe;
mod subscriptions;
mod test_stream;

use std::sync::Arc;

use actix::Addr;
use actix_web::{web, HttpResponse};

use crate::{
    auth::Auth, config::Config, fanout::broadcaster::Broadcaster, protocol::form::Pair,
    protocol::topic::TopicSelector, stats::Stats,
};
use error::ApiError;

/// Path of the hub endpoint, fixed by the protocol ([`mercure::PATH`]).
const HUB_PATH: &str = "/.well-known/mercure";

/// What every handler shares.
#[derive(Debug, Clone)]
pub struct AppState {
    pub broadcaster: Addr<Broadcaster>,
    /// The subscriber limits, checked on the worker before a subscriber costs anything.
    pub admission: crate::fanout::admission::Admission,
    /// Where each worker's shard reports to the broadcaster (made once: shared by every stream).
    pub shard_owner: crate::fanout::shard::Owner,
    pub stats: Arc<Stats>,
    pub config: Arc<Config>,
    pub auth: Arc<Auth>,
    pub publish_limiter: Arc<rate_limit::PublishLimiter>,
    /// Subscribe attempts per client address (`--subscribe-rate`), checked before any other work.
    pub subscribe_limiter: Arc<rate_limit::SubscribeLimiter>,
    pub transport: crate::transport::Transport,
    /// Exact selector of the server-time topic, compiled once.
    pub time_selector: TopicSelector,
    /// Compiled URI templates, shared by every request that uses the same one.
    pub templates: crate::protocol::topic::Templates,
}

/// Registers every route.
pub fn configure(cfg: &mut web::ServiceConfig, state: AppState) {
    let static_dir = state.config.listen.static_dir.clone();
    let hub_cors = mercure::cors(&state.config.listen, &["GET", "POST", "QUERY"]);
    // The safe method that carries subscribe parameters in a body (RFC 10008).
    let query = actix_web::http::Method::from_bytes(b"QUERY").expect("QUERY is a valid token");
    if state.config.streams.subscriptions {
        subscriptions::configure(cfg, &state.config.listen);
    }
    cfg.app_data(web::Data::new(state))
        .service(
            resource(mercure::PATH, "GET, POST, QUERY")
                .wrap(hub_cors)
                .route(web::get().to(mercure::subscribe))
                .route(web::post().to(mercure::publish))
                .route(web::method(query).to(mercure::subscribe_query)),
        )
        .service(
            resource(bearer::METADATA_PATH, "GET")
                .wrap(bearer::metadata_cors())
                .route(web::get().to(bearer::metadata)),
        )
        .service(resource("/events", "GET").route(web::get().to(subscribe::events)))
        .service(
            resource("/api/stream/test", "GET")
                .wrap(test_stream::cors())
                .route(web::get().to(test_stream::handler)),
        )
        .service(resource("/healthz", "GET").route(web::get().to(health::healthz)))
        .service(resource("/readyz", "GET").route(web::get().to(health::readyz)))
        .service(resource("/metrics", "GET").route(web::get().to(health::metrics)))
        .service(resource("/stats", "GET").route(web::get().to(health::stats)));
    assets::configure(cfg, static_dir);
}

/// A resource whose other methods get `405` with an `Allow` header and a one-line reason.
fn resource(path: &str, allow: &'static str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(move || async move {
        HttpResponse::MethodNotAllowed()
            .insert_header((actix_web::http::header::ALLOW, allow))
            .content_type("text/plain; charset=utf-8")
            .body(format!("method not allowed (allowed: {allow})\n"))
    }))
}

/// Answers paths no route knows.
pub async fn not_found() -> HttpResponse {
    HttpResponse::NotFound()
        .content_type("text/plain; charset=utf-8")
        .body("not found\n")
}

/// Decodes a query string into pairs, keeping repeated keys; `400` when a name or value is
/// not UTF-8 once percent-decoded.
pub(crate) fn query_pairs(input: &str) -> Result<Vec<Pair<'_>>, ApiError> {
    crate::protocol::form::parse(input)
        .map_err(|e| ApiError::BadRequest(format!("invalid query: {e}")))
}

/// The value of a parameter that may appear at most once.
pub(crate) fn single<'a>(pairs: &'a [Pair<'_>], name: &str) -> Result<Option<&'a str>, ApiError> {
    crate::protocol::publication::at_most_once(pairs, name)
        .map_err(|_| ApiError::BadRequest(format!("'{name}' may appear only once")))
}
