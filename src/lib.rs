//! sse-hub: a real-time event hub. Publishers post updates over HTTP; browsers and services
//! receive them live as Server-Sent Events. The public API is the Mercure protocol.
//!
//! The modules, in the order an update flows through them (ARCHITECTURE.md tells the same
//! story with the threads and the invariants):
//! - [`config`]: flags, environment and the TOML file, in sections; [`app`] assembles the hub
//!   from them and stops it gracefully;
//! - [`http`], the edge: [`http::routes`] (the Mercure endpoint, the subscriptions API, health,
//!   the dashboard's files), [`http::access_log`] (request lines, tokens redacted) and
//!   [`http::stream`] (one subscriber's response body: opening bytes, replay, live bytes,
//!   heartbeats);
//! - [`auth`]: the JWS tokens of publishers and subscribers, Mercure 0.x tokens and 1.0 access
//!   tokens side by side, both read as [`auth::Grants`], with keys configured or fetched as JWK
//!   sets ([`auth::jwks`]);
//! - [`protocol`], the values: a validated [`protocol::update`] encoded once into SSE bytes
//!   ([`protocol::sse`]); topics and selectors ([`protocol::topic`], with
//!   [`protocol::template`] and [`protocol::url_pattern`]; [`protocol::text`]); publish forms
//!   ([`protocol::publication`], [`protocol::form`]);
//! - [`transport`]: how an accepted update reaches the broadcasters: in process, or through
//!   Redis Streams between nodes ([`transport::presence`] keeps the active subscriptions there);
//! - [`fanout`]: the [`fanout::broadcaster`] actor orders subscribing, replay and publishing and
//!   hands each update, once durable, to every worker's [`fanout::shard`], which matches it
//!   against its [`fanout::subscription`]s ([`fanout::registry`]) and queues it or writes it to
//!   the waiting sockets itself ([`fanout::direct`]), each update counted in the fan-out's
//!   backlog until every shard is done with it ([`fanout::ticket`]); [`fanout::active`] makes the
//!   active-subscriptions events, handed to Redis through [`fanout::presence`];
//! - [`history`]: the replay buffer in memory, made durable by the [`history::store`] (a
//!   [`history::journal`] in front of a redb database);
//! - [`ticker`]: the server-time updates; [`stats`]: counters and Prometheus metrics.

pub mod app;
pub mod auth;
pub mod config;
pub mod fanout;
pub mod history;
pub mod http;
pub mod protocol;
pub mod stats;
pub mod ticker;
pub mod transport;

pub use app::Application;
pub use config::Config;
