//! sse-hub: a real-time event hub. Publishers post updates over HTTP; browsers and services
//! receive them live as Server-Sent Events. The public API is the Mercure protocol.
//!
//! The parts, in the order an event flows through them:
//! - [`ticker`]: an actor that publishes a server-time update every `--tick-interval`;
//! - [`update`]: a validated update, encoded once into SSE bytes ([`sse`]) when it is built;
//! - [`broadcaster`]: the actor that orders subscribing, replay and publishing; it owns the
//!   [`history`] (durable in the [`store`]) and the subscriber counts, and sends each update,
//!   once it is on disk, to every worker's [`shard`], which queues it to the matching
//!   [`subscription`]s of that worker (indexed in a [`registry`]) and wakes their streams, or
//!   writes it to their sockets itself while they wait ([`direct`]);
//! - [`stream`]: one subscriber's response body: opening bytes, replay, live bytes, heartbeats;
//! - [`routes`]: the HTTP handlers; [`topic`] validates topics and compiles selectors;
//!   [`auth`] verifies the JWS tokens of publishers and subscribers, with keys configured or
//!   fetched as JWK sets ([`jwks`]);
//! - [`app`]: startup and graceful shutdown; [`access_log`]: request lines, tokens redacted;
//!   [`config`]: flags, environment variables and the TOML file; [`form`]: strict decoding of publish forms
//!   and query strings; [`stats`]: lock-free counters; [`transport`]: local, or Redis Streams
//!   between nodes; [`active`]: the active-subscriptions events and API (`--subscriptions`),
//!   across nodes with Redis ([`transport::presence`]).

pub mod access_log;
pub mod active;
pub mod app;
pub mod auth;
pub mod broadcaster;
pub mod config;
pub mod direct;
pub mod form;
pub mod history;
pub mod journal;
pub mod jwks;
pub mod presence;
pub mod publication;
pub mod registry;
pub mod routes;
pub mod shard;
pub mod sse;
pub mod stats;
pub mod store;
pub mod stream;
pub mod subscription;
pub mod ticker;
pub mod topic;
pub mod transport;
pub mod update;

pub use app::Application;
pub use config::Config;
