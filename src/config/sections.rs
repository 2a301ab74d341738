//! The configuration's sections: each part of the hub is given its own.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::Args;

use super::values::{
    absolute_url, directory, duration, interval, jwks_interval, origin, positive_duration, workers,
    DataDir, JwtAlgorithm, Secret,
};

/// Where the hub listens and what it accepts of a request and a connection.
#[derive(Debug, Clone, Args)]
pub struct Listen {
    /// Address to listen on; port 0 picks a free port (printed in the log).
    #[arg(long, env = "SSE_HUB_BIND", default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,

    /// HTTP worker threads; 0 means one per CPU core; at most 512.
    #[arg(long, env = "SSE_HUB_WORKERS", default_value_t = 0, value_parser = workers)]
    pub workers: usize,

    /// Serve the dashboard from this directory instead of the files built into the binary.
    #[arg(long, env = "SSE_HUB_STATIC_DIR", value_parser = directory)]
    pub static_dir: Option<PathBuf>,

    /// Longest request target (path and query), in bytes; longer answers 414.
    #[arg(long, env = "SSE_HUB_MAX_URL_SIZE", default_value_t = 8 << 10)]
    pub max_url_size: usize,

    /// Largest total size of a request's headers, in bytes; larger answers 431.
    #[arg(long, env = "SSE_HUB_MAX_HEADER_SIZE", default_value_t = 16 << 10)]
    pub max_header_size: usize,

    /// Largest publish (or `QUERY` subscribe) request body, in bytes; larger ones answer 413.
    #[arg(long, env = "SSE_HUB_MAX_BODY_SIZE", default_value_t = 1 << 20)]
    pub max_body_size: usize,

    /// Time a client gets to send its request headers (slowloris guard); 408 after it. 0: no
    /// limit, else at least 100ms.
    #[arg(long, env = "SSE_HUB_REQUEST_HEADER_TIMEOUT", default_value = "5s", value_parser = interval)]
    pub request_header_timeout: Duration,

    /// An idle keep-alive connection is closed after this long; 0 closes a connection after
    /// each response, else at least 100ms.
    #[arg(long, env = "SSE_HUB_IDLE_TIMEOUT", default_value = "15s", value_parser = interval)]
    pub idle_timeout: Duration,

    /// A connection whose sent data stays unread this long is closed (TCP_USER_TIMEOUT); 0
    /// leaves it to the system, else at least 100ms.
    #[arg(long, env = "SSE_HUB_WRITE_TIMEOUT", default_value = "30s", value_parser = interval)]
    pub write_timeout: Duration,

    /// Peers whose `X-Forwarded-For` names the client (for per-IP limits behind a proxy).
    #[arg(
        long = "trusted-proxy",
        env = "SSE_HUB_TRUSTED_PROXY",
        value_delimiter = ',',
        default_value = "127.0.0.1,::1"
    )]
    pub trusted_proxies: Vec<std::net::IpAddr>,

    /// Origin allowed to use the hub endpoint (and the subscriptions API) from a browser,
    /// `scheme://host[:port]` (repeatable, or `*`).
    #[arg(
        long = "cors-origin",
        env = "SSE_HUB_CORS_ORIGIN",
        value_delimiter = ',',
        value_parser = origin
    )]
    pub cors_origins: Vec<String>,

    /// On SIGINT/SIGTERM, how long open requests get to finish before the hub exits.
    #[arg(long, env = "SSE_HUB_SHUTDOWN_TIMEOUT", default_value = "5s", value_parser = duration)]
    pub shutdown_timeout: Duration,
}

/// HTTPS (and HTTP/2) served by the hub itself.
#[derive(Debug, Clone, Args)]
pub struct TlsSettings {
    /// Certificate chain (PEM) to serve HTTPS, with HTTP/2, directly (with `--tls-key`).
    #[arg(long, env = "SSE_HUB_TLS_CERT", value_name = "PEM")]
    pub tls_cert: Option<PathBuf>,

    /// Private key (PEM) of `--tls-cert`.
    #[arg(long, env = "SSE_HUB_TLS_KEY", value_name = "PEM")]
    pub tls_key: Option<PathBuf>,
}

/// What each subscriber's stream gets, and how many there may be.
#[derive(Debug, Clone, Args)]
pub struct Streams {
    /// Period of the server-time `time` events; 0 turns them off, else at least 100ms.
    #[arg(long, env = "SSE_HUB_TICK_INTERVAL", default_value = "1s", value_parser = interval)]
    pub tick_interval: Duration,

    /// Topic of the server-time updates (what `GET /events` subscribes to).
    #[arg(long, env = "SSE_HUB_TIME_TOPIC", default_value = "/time")]
    pub time_topic: String,

    /// A heartbeat comment is sent on a stream idle for this long; 0 turns heartbeats off, else
    /// at least 100ms.
    #[arg(long, env = "SSE_HUB_KEEP_ALIVE", default_value = "15s", value_parser = interval)]
    pub keep_alive: Duration,

    /// Reconnection delay sent to clients in the `retry:` field.
    #[arg(long, env = "SSE_HUB_RETRY", default_value = "2s", value_parser = duration)]
    pub retry: Duration,

    /// Events queued per subscriber; a subscriber whose queue is full is disconnected as slow.
    #[arg(long, env = "SSE_HUB_QUEUE_CAPACITY", default_value_t = 256)]
    pub queue_capacity: usize,

    /// Subscribers connected at once; beyond it subscribing answers 503 with Retry-After.
    #[arg(long, env = "SSE_HUB_MAX_SUBSCRIBERS", default_value_t = 10_000)]
    pub max_subscribers: usize,

    /// Subscribers at once from one client IP; beyond it subscribing answers 429.
    #[arg(long, env = "SSE_HUB_MAX_SUBSCRIBERS_PER_IP", default_value_t = 100)]
    pub max_subscribers_per_ip: usize,

    /// Subscribe attempts per second from one client address (sustained), refused or not;
    /// beyond it 429 with Retry-After, before any other work. 0 turns the limit off.
    #[arg(long, env = "SSE_HUB_SUBSCRIBE_RATE", default_value_t = 50)]
    pub subscribe_rate: u32,

    /// Subscribe attempts from one client address in a burst above the rate (a page of tabs
    /// reconnecting at once, a proxy's clients after a restart). 0 turns the limit off.
    #[arg(long, env = "SSE_HUB_SUBSCRIBE_BURST", default_value_t = 200)]
    pub subscribe_burst: u32,

    /// Topic selectors in one subscription, at most; more answers 400.
    #[arg(long, env = "SSE_HUB_MAX_TOPICS", default_value_t = 64)]
    pub max_topics: usize,

    /// Bytes of compiled URI templates (distinct selectors) the hub holds at once; a
    /// subscription that needs a new one past it answers 503.
    #[arg(long, env = "SSE_HUB_MAX_TEMPLATE_MEMORY", default_value_t = 64 << 20)]
    pub max_template_memory: usize,

    /// Mercure's active subscriptions: publish a private update when a subscription starts or
    /// ends, and serve `/.well-known/mercure/subscriptions`. With `--transport redis://…` the
    /// events reach every node and the list is every node's.
    #[arg(long, env = "SSE_HUB_SUBSCRIPTIONS")]
    pub subscriptions: bool,

    /// With `--subscriptions` and Redis: how long a node's subscriptions stay listed after it
    /// last renewed them (every third of this), so a crashed node's leave the list within it.
    /// At least 1s.
    #[arg(long, env = "SSE_HUB_SUBSCRIPTIONS_TTL", default_value = "15s", value_parser = positive_duration)]
    pub subscriptions_ttl: Duration,
}

/// What one update may hold, and how fast a publisher may go.
#[derive(Debug, Clone, Args)]
pub struct Publishing {
    /// Largest `data` of an update, in bytes; larger answers 413.
    #[arg(long, env = "SSE_HUB_MAX_DATA_SIZE", default_value_t = 512 << 10)]
    pub max_data_size: usize,

    /// Topics (canonical and alternates) of one update, at most; more answers 400.
    #[arg(long, env = "SSE_HUB_MAX_TOPICS_PER_UPDATE", default_value_t = 100)]
    pub max_topics_per_update: usize,

    /// Updates one publisher token may publish per second (sustained); beyond it 429.
    #[arg(long, env = "SSE_HUB_PUBLISH_RATE", default_value_t = 1000)]
    pub publish_rate: u32,

    /// Updates one publisher token may publish in a burst above the rate.
    #[arg(long, env = "SSE_HUB_PUBLISH_BURST", default_value_t = 2000)]
    pub publish_burst: u32,

    /// Updates accepted and not yet fanned out to the subscribers, past which a publish answers
    /// 503 with Retry-After and its Mercure-Update-Id, to retry (0: no bound). A publish is
    /// answered only once fanned out, so this counts the publishes in flight.
    #[arg(long, env = "SSE_HUB_MAX_FANOUT_BACKLOG", default_value_t = 256)]
    pub max_fanout_backlog: usize,
}

/// How much history is kept for replay, and where.
#[derive(Debug, Clone, Args)]
pub struct HistorySettings {
    /// Directory of the durable history (created if missing); `none` keeps history in memory
    /// only, so a restart loses it. Not used with `--transport redis://…` (Redis holds it).
    #[arg(long, env = "SSE_HUB_DATA_DIR", default_value = "sse-hub-data")]
    pub data_dir: DataDir,

    /// When the durable history is synced to disk: `always` (each commit at once: a commit
    /// takes every update queued while the previous one synced), `batch` (a commit first
    /// gathers updates while they keep coming, up to 2 ms), both before answering 200; or
    /// `never` (synced within a second; a crash may lose the last second).
    #[arg(long, env = "SSE_HUB_FSYNC", value_enum, default_value = "always")]
    pub fsync: crate::history::store::Fsync,

    /// Start even if the durable history is damaged: keep every stored update that verifies
    /// and move the damaged files aside (`history.*.damaged-…`, never deleted), logging what
    /// was done. Without it, damage stops the hub with one line saying what is damaged.
    #[arg(long, env = "SSE_HUB_SALVAGE")]
    pub salvage: bool,

    /// Updates kept for replay (`Last-Event-ID`), in memory and on disk alike; 0 keeps none.
    #[arg(long, env = "SSE_HUB_HISTORY_SIZE", default_value_t = 10_000)]
    pub history_size: usize,

    /// Bytes of updates kept for replay, at most: everything an update holds (its SSE bytes,
    /// topics and id), not only what subscribers receive.
    #[arg(long, env = "SSE_HUB_HISTORY_BYTES", default_value_t = 64 << 20)]
    pub history_bytes: usize,

    /// Age past which updates leave history (e.g. `1h`); 0: no limit.
    #[arg(long, env = "SSE_HUB_HISTORY_MAX_AGE", default_value = "0", value_parser = duration)]
    pub history_max_age: Duration,
}

/// Who may publish and subscribe: keys, JWK sets, claims, cookies.
#[derive(Debug, Clone, Args)]
pub struct Authorization {
    /// Let clients without a token subscribe (to public updates only).
    #[arg(long, env = "SSE_HUB_ALLOW_ANONYMOUS")]
    pub allow_anonymous: bool,

    /// Key for both publisher and subscriber tokens (overridden by the specific ones).
    #[arg(long, env = "SSE_HUB_JWT_KEY", hide_env_values = true, global = true)]
    pub jwt_key: Option<Secret>,

    /// Key that verifies publisher tokens: an HS256 secret, or a PEM public key (inline or @path).
    #[arg(
        long,
        env = "SSE_HUB_PUBLISHER_JWT_KEY",
        hide_env_values = true,
        global = true
    )]
    pub publisher_jwt_key: Option<Secret>,

    /// Key that verifies subscriber tokens: an HS256 secret, or a PEM public key (inline or @path).
    #[arg(
        long,
        env = "SSE_HUB_SUBSCRIBER_JWT_KEY",
        hide_env_values = true,
        global = true
    )]
    pub subscriber_jwt_key: Option<Secret>,

    /// JWK set whose keys verify publisher tokens, picked by `kid` (`https://…`, `file://…`, or
    /// `http://` to a loopback address); instead of `--publisher-jwt-key`.
    #[arg(long, env = "SSE_HUB_PUBLISHER_JWKS_URL", value_name = "URL")]
    pub publisher_jwks_url: Option<crate::auth::jwks::JwksUrl>,

    /// JWK set whose keys verify subscriber tokens (same forms); instead of
    /// `--subscriber-jwt-key`.
    #[arg(long, env = "SSE_HUB_SUBSCRIBER_JWKS_URL", value_name = "URL")]
    pub subscriber_jwks_url: Option<crate::auth::jwks::JwksUrl>,

    /// CA certificates (one PEM file, one or more certificates) trusted for `https://` JWK sets,
    /// besides the built-in web roots: for an identity provider behind a private CA.
    #[arg(long, env = "SSE_HUB_JWKS_CA_CERT", value_name = "PEM")]
    pub jwks_ca_cert: Option<PathBuf>,

    /// How often JWK sets are fetched again, at least 10s; an unknown `kid` also fetches, at
    /// most every 10 s.
    #[arg(long, env = "SSE_HUB_JWKS_REFRESH_INTERVAL", default_value = "5m", value_parser = jwks_interval)]
    pub jwks_refresh_interval: Duration,

    /// Algorithm of the tokens (of `--*-jwt-key`; a JWK set's keys carry their own).
    #[arg(
        long,
        env = "SSE_HUB_JWT_ALGORITHM",
        value_enum,
        default_value = "HS256",
        global = true
    )]
    pub jwt_algorithm: JwtAlgorithm,

    /// Clock skew tolerated on a token's `exp` and `nbf`.
    #[arg(long, env = "SSE_HUB_JWT_LEEWAY", default_value = "0", value_parser = duration)]
    pub jwt_leeway: Duration,

    /// Required `aud` of 0.x tokens (repeatable: any of them); unset: `aud` is not checked. Not
    /// used for 1.0 access tokens (see `--resource-identifier`).
    #[arg(
        long = "jwt-audience",
        env = "SSE_HUB_JWT_AUDIENCE",
        value_delimiter = ','
    )]
    pub jwt_audiences: Vec<String>,

    /// Required `iss` of 0.x tokens (repeatable: any of them); unset: `iss` is not checked. Not
    /// used for 1.0 access tokens (see `--issuer`).
    #[arg(long = "jwt-issuer", env = "SSE_HUB_JWT_ISSUER", value_delimiter = ',')]
    pub jwt_issuers: Vec<String>,

    /// Origin allowed to publish with a cookie token, `scheme://host[:port]` (repeatable, or
    /// `*`); CSRF guard.
    #[arg(
        long = "publish-origin",
        env = "SSE_HUB_PUBLISH_ORIGIN",
        value_delimiter = ',',
        value_parser = origin
    )]
    pub publish_origins: Vec<String>,

    /// Name of the cookie that may carry a 0.x token.
    #[arg(
        long,
        env = "SSE_HUB_COOKIE_NAME",
        default_value = "mercureAuthorization"
    )]
    pub cookie_name: String,

    /// Issuer (`iss`) of Mercure 1.0 access tokens verified with the keys above (`--jwt-key`,
    /// `--*-jwt-key`, `--*-jwks-url`, `--jwt-algorithm`); more issuers go in `[[issuer]]` tables
    /// of the config file.
    #[arg(long, env = "SSE_HUB_ISSUER", value_name = "URL", value_parser = absolute_url, global = true)]
    pub issuer: Option<String>,

    /// The hub's resource identifier, the `aud` 1.0 access tokens must hold; unset: the hub's
    /// public URL as each request reaches it (`https://host/.well-known/mercure`).
    #[arg(long, env = "SSE_HUB_RESOURCE_IDENTIFIER", value_name = "URL", value_parser = absolute_url, global = true)]
    pub resource_identifier: Option<String>,

    /// Name of the cookie that may carry a Mercure 1.0 access token.
    #[arg(
        long,
        env = "SSE_HUB_ACCESS_TOKEN_COOKIE",
        default_value = "__Secure-mercure_access_token"
    )]
    pub access_token_cookie: String,

    /// The issuers of the config file's `[[issuer]]` tables.
    #[arg(skip)]
    pub issuers: Vec<super::issuer::IssuerSettings>,
}

/// How updates reach this node's subscribers: locally, or through Redis between nodes.
#[derive(Debug, Clone, Args)]
pub struct TransportSettings {
    /// Where updates travel: `local` (in-process), or `redis://host:port/db` to share one event
    /// stream between several hub nodes.
    #[arg(long, env = "SSE_HUB_TRANSPORT", default_value = "local")]
    pub transport: crate::transport::TransportKind,

    /// Name of the Redis stream (with `--transport redis://…`).
    #[arg(long, env = "SSE_HUB_REDIS_STREAM", default_value = "sse-hub")]
    pub redis_stream: String,
}

impl HistorySettings {
    /// How much history is kept.
    #[must_use]
    pub fn retention(&self) -> crate::history::Retention {
        crate::history::Retention {
            max_len: self.history_size,
            max_bytes: self.history_bytes,
            max_age_ms: u64::try_from(self.history_max_age.as_millis()).unwrap_or(u64::MAX),
        }
    }
}

impl Authorization {
    /// The key for publisher tokens, if any.
    #[must_use]
    pub fn publisher_key(&self) -> Option<&Secret> {
        self.publisher_jwt_key.as_ref().or(self.jwt_key.as_ref())
    }

    /// The key for subscriber tokens, if any.
    #[must_use]
    pub fn subscriber_key(&self) -> Option<&Secret> {
        self.subscriber_jwt_key.as_ref().or(self.jwt_key.as_ref())
    }
}
