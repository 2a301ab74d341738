//! Command line, environment and file configuration: every flag `--x-y` can also be set as
//! `SSE_HUB_X_Y`, or as `x-y = …` in the TOML file of `--config` (flags win over the
//! environment, which wins over the file).

use std::{fmt, net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Parses `1s`, `500ms`, `2m`, or `0`.
fn duration(value: &str) -> Result<Duration, humantime::DurationError> {
    if value.trim() == "0" {
        return Ok(Duration::ZERO);
    }
    humantime::parse_duration(value)
}

/// Parses a duration of at least a second (`15s`, `2m`).
fn positive_duration(value: &str) -> Result<Duration, String> {
    match duration(value) {
        Ok(d) if d >= Duration::from_secs(1) => Ok(d),
        Ok(_) => Err("must be at least 1s".into()),
        Err(err) => Err(err.to_string()),
    }
}

/// A secret that never shows in `Debug` output or logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

/// JWS algorithms accepted for tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "UPPER")]
pub enum JwtAlgorithm {
    /// HMAC with SHA-256: the key is a shared secret.
    HS256,
    /// RSA PKCS#1 v1.5 with SHA-256: the key is a PEM public key.
    RS256,
    /// ECDSA P-256 with SHA-256: the key is a PEM public key.
    ES256,
}

/// sse-hub: publish events over HTTP, receive them as Server-Sent Events (Mercure protocol).
#[derive(Debug, Parser)]
#[command(name = "sse-hub", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub config: Config,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print a token for publishing or subscribing, signed (HS256) with the key of `--jwt-key`
    /// (or `SSE_HUB_JWT_KEY`; `--publisher-jwt-key` / `--subscriber-jwt-key` when set), e.g.
    /// `sse-hub token --jwt-key KEY --publish '*'`.
    Token(TokenArgs),
}

/// Claims of a token made by `sse-hub token`.
#[derive(Debug, Clone, Args)]
pub struct TokenArgs {
    /// Topic selector the token may publish to (repeatable).
    #[arg(long = "publish", value_name = "SELECTOR")]
    pub publish: Vec<String>,
    /// Topic selector the token may receive private updates of (repeatable).
    #[arg(long = "subscribe", value_name = "SELECTOR")]
    pub subscribe: Vec<String>,
    /// Lifetime of the token, e.g. `1h`; none means it never expires.
    #[arg(long, value_parser = duration)]
    pub exp: Option<Duration>,
    /// The `sub` claim.
    #[arg(long)]
    pub sub: Option<String>,
}

/// Everything the hub needs to run.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// A TOML file of settings, `flag-name = value` (e.g. `bind = "0.0.0.0:8080"`,
    /// `allow-anonymous = true`, `cors-origin = ["https://app.example"]`); flags and
    /// environment variables override it.
    #[arg(
        long = "config",
        env = "SSE_HUB_CONFIG",
        value_name = "FILE",
        global = true
    )]
    pub config_file: Option<PathBuf>,

    /// Address to listen on; port 0 picks a free port (printed in the log).
    #[arg(long, env = "SSE_HUB_BIND", default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,

    /// Period of the server-time `time` events; 0 turns them off.
    #[arg(long, env = "SSE_HUB_TICK_INTERVAL", default_value = "1s", value_parser = duration)]
    pub tick_interval: Duration,

    /// Topic of the server-time updates (what `GET /events` subscribes to).
    #[arg(long, env = "SSE_HUB_TIME_TOPIC", default_value = "/time")]
    pub time_topic: String,

    /// A heartbeat comment is sent on a stream idle for this long.
    #[arg(long, env = "SSE_HUB_KEEP_ALIVE", default_value = "15s", value_parser = duration)]
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

    /// Topic selectors in one subscription, at most; more answers 400.
    #[arg(long, env = "SSE_HUB_MAX_TOPICS", default_value_t = 64)]
    pub max_topics: usize,

    /// Bytes of compiled URI templates (distinct selectors) the hub holds at once; a
    /// subscription that needs a new one past it answers 503.
    #[arg(long, env = "SSE_HUB_MAX_TEMPLATE_MEMORY", default_value_t = 64 << 20)]
    pub max_template_memory: usize,

    /// Peers whose `X-Forwarded-For` names the client (for per-IP limits behind a proxy).
    #[arg(
        long = "trusted-proxy",
        env = "SSE_HUB_TRUSTED_PROXY",
        value_delimiter = ',',
        default_value = "127.0.0.1,::1"
    )]
    pub trusted_proxies: Vec<std::net::IpAddr>,

    /// Where updates travel: `local` (in-process), or `redis://host:port/db` to share one event
    /// stream between several hub nodes.
    #[arg(long, env = "SSE_HUB_TRANSPORT", default_value = "local")]
    pub transport: crate::transport::TransportKind,

    /// Name of the Redis stream (with `--transport redis://…`).
    #[arg(long, env = "SSE_HUB_REDIS_STREAM", default_value = "sse-hub")]
    pub redis_stream: String,

    /// Directory of the durable history (created if missing); `none` keeps history in memory
    /// only, so a restart loses it. Not used with `--transport redis://…` (Redis holds it).
    #[arg(long, env = "SSE_HUB_DATA_DIR", default_value = "sse-hub-data")]
    pub data_dir: DataDir,

    /// When the durable history is synced to disk: `always` (each commit at once: a commit
    /// takes every update queued while the previous one synced), `batch` (a commit first
    /// gathers updates while they keep coming, up to 2 ms), both before answering 200; or
    /// `never` (synced within a second; a crash may lose the last second).
    #[arg(long, env = "SSE_HUB_FSYNC", value_enum, default_value = "always")]
    pub fsync: crate::store::Fsync,

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

    /// Topics (canonical and alternates) of one update, at most; more answers 400.
    #[arg(long, env = "SSE_HUB_MAX_TOPICS_PER_UPDATE", default_value_t = 100)]
    pub max_topics_per_update: usize,

    /// Age past which updates leave history (e.g. `1h`); 0: no limit.
    #[arg(long, env = "SSE_HUB_HISTORY_MAX_AGE", default_value = "0", value_parser = duration)]
    pub history_max_age: Duration,

    /// Largest publish request body, in bytes; larger ones answer 413.
    #[arg(long, env = "SSE_HUB_MAX_BODY_SIZE", default_value_t = 1 << 20)]
    pub max_body_size: usize,

    /// Largest `data` of an update, in bytes; larger answers 413.
    #[arg(long, env = "SSE_HUB_MAX_DATA_SIZE", default_value_t = 512 << 10)]
    pub max_data_size: usize,

    /// Longest request target (path and query), in bytes; longer answers 414.
    #[arg(long, env = "SSE_HUB_MAX_URL_SIZE", default_value_t = 8 << 10)]
    pub max_url_size: usize,

    /// Largest total size of a request's headers, in bytes; larger answers 431.
    #[arg(long, env = "SSE_HUB_MAX_HEADER_SIZE", default_value_t = 16 << 10)]
    pub max_header_size: usize,

    /// Updates one publisher token may publish per second (sustained); beyond it 429.
    #[arg(long, env = "SSE_HUB_PUBLISH_RATE", default_value_t = 1000)]
    pub publish_rate: u32,

    /// Updates one publisher token may publish in a burst above the rate.
    #[arg(long, env = "SSE_HUB_PUBLISH_BURST", default_value_t = 2000)]
    pub publish_burst: u32,

    /// A connection whose sent data stays unread this long is closed (TCP_USER_TIMEOUT).
    #[arg(long, env = "SSE_HUB_WRITE_TIMEOUT", default_value = "30s", value_parser = duration)]
    pub write_timeout: Duration,

    /// Time a client gets to send its request headers (slowloris guard); 408 after it.
    #[arg(long, env = "SSE_HUB_REQUEST_HEADER_TIMEOUT", default_value = "5s", value_parser = duration)]
    pub request_header_timeout: Duration,

    /// An idle keep-alive connection is closed after this long.
    #[arg(long, env = "SSE_HUB_IDLE_TIMEOUT", default_value = "15s", value_parser = duration)]
    pub idle_timeout: Duration,

    /// Let clients without a token subscribe (to public updates only).
    #[arg(long, env = "SSE_HUB_ALLOW_ANONYMOUS")]
    pub allow_anonymous: bool,

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
    pub publisher_jwks_url: Option<crate::jwks::JwksUrl>,

    /// JWK set whose keys verify subscriber tokens (same forms); instead of
    /// `--subscriber-jwt-key`.
    #[arg(long, env = "SSE_HUB_SUBSCRIBER_JWKS_URL", value_name = "URL")]
    pub subscriber_jwks_url: Option<crate::jwks::JwksUrl>,

    /// CA certificates (one PEM file, one or more certificates) trusted for `https://` JWK sets,
    /// besides the built-in web roots: for an identity provider behind a private CA.
    #[arg(long, env = "SSE_HUB_JWKS_CA_CERT", value_name = "PEM")]
    pub jwks_ca_cert: Option<PathBuf>,

    /// How often JWK sets are fetched again; an unknown `kid` also fetches, at most every 10 s.
    #[arg(long, env = "SSE_HUB_JWKS_REFRESH_INTERVAL", default_value = "5m", value_parser = duration)]
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

    /// Required `aud` of tokens (repeatable: any of them); unset: `aud` is not checked.
    #[arg(
        long = "jwt-audience",
        env = "SSE_HUB_JWT_AUDIENCE",
        value_delimiter = ','
    )]
    pub jwt_audiences: Vec<String>,

    /// Required `iss` of tokens (repeatable: any of them); unset: `iss` is not checked.
    #[arg(long = "jwt-issuer", env = "SSE_HUB_JWT_ISSUER", value_delimiter = ',')]
    pub jwt_issuers: Vec<String>,

    /// Origin allowed to publish with a cookie token (repeatable, or `*`); CSRF guard.
    #[arg(
        long = "publish-origin",
        env = "SSE_HUB_PUBLISH_ORIGIN",
        value_delimiter = ','
    )]
    pub publish_origins: Vec<String>,

    /// Name of the cookie that may carry the token.
    #[arg(
        long,
        env = "SSE_HUB_COOKIE_NAME",
        default_value = "mercureAuthorization"
    )]
    pub cookie_name: String,

    /// Origin allowed to use the hub endpoint (and the subscriptions API) from a browser
    /// (repeatable, or `*`).
    #[arg(
        long = "cors-origin",
        env = "SSE_HUB_CORS_ORIGIN",
        value_delimiter = ','
    )]
    pub cors_origins: Vec<String>,

    /// Certificate chain (PEM) to serve HTTPS, with HTTP/2, directly (with `--tls-key`).
    #[arg(long, env = "SSE_HUB_TLS_CERT", value_name = "PEM")]
    pub tls_cert: Option<PathBuf>,

    /// Private key (PEM) of `--tls-cert`.
    #[arg(long, env = "SSE_HUB_TLS_KEY", value_name = "PEM")]
    pub tls_key: Option<PathBuf>,

    /// Serve the dashboard from this directory instead of the files built into the binary.
    #[arg(long, env = "SSE_HUB_STATIC_DIR")]
    pub static_dir: Option<PathBuf>,

    /// On SIGINT/SIGTERM, how long open requests get to finish before the hub exits.
    #[arg(long, env = "SSE_HUB_SHUTDOWN_TIMEOUT", default_value = "5s", value_parser = duration)]
    pub shutdown_timeout: Duration,

    /// HTTP worker threads; 0 means one per CPU core.
    #[arg(long, env = "SSE_HUB_WORKERS", default_value_t = 0)]
    pub workers: usize,
}

/// Why the `--config` file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not valid TOML: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("{path}: `{key}` must be a string, number, boolean or a list of them")]
    Value { path: PathBuf, key: String },
}

/// The `--config FILE` (or `SSE_HUB_CONFIG`) among `args`, before they are parsed.
#[must_use]
pub fn config_file_arg(args: &[std::ffi::OsString]) -> Option<PathBuf> {
    let mut args = args.iter().skip(1).map(|a| a.to_string_lossy());
    while let Some(arg) = args.next() {
        if arg == "--config" {
            return args.next().map(|v| PathBuf::from(v.as_ref()));
        }
        if let Some(value) = arg.strip_prefix("--config=") {
            return Some(PathBuf::from(value));
        }
    }
    std::env::var_os("SSE_HUB_CONFIG").map(PathBuf::from)
}

/// The settings of a TOML file as `(SSE_HUB_NAME, value)` pairs, as the environment would
/// give them: lists are joined by commas, which list flags split.
pub fn config_file_env(path: &std::path::Path) -> Result<Vec<(String, String)>, ConfigFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigFileError::Read {
        path: path.to_owned(),
        source,
    })?;
    let table: toml::Table = text.parse().map_err(|source| ConfigFileError::Parse {
        path: path.to_owned(),
        source,
    })?;
    let scalar = |value: &toml::Value| match value {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        _ => None,
    };
    table
        .iter()
        .map(|(key, value)| {
            let text = match value {
                toml::Value::Array(items) => items
                    .iter()
                    .map(scalar)
                    .collect::<Option<Vec<_>>>()
                    .map(|v| v.join(",")),
                other => scalar(other),
            };
            let text = text.ok_or_else(|| ConfigFileError::Value {
                path: path.to_owned(),
                key: key.clone(),
            })?;
            Ok((
                format!("SSE_HUB_{}", key.to_uppercase().replace('-', "_")),
                text,
            ))
        })
        .collect()
}

/// Where the durable history lives (`--data-dir`): a directory, or nowhere (`none`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataDir(pub Option<PathBuf>);

impl std::str::FromStr for DataDir {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self((s != "none").then(|| PathBuf::from(s))))
    }
}

impl Config {
    /// How much history is kept.
    #[must_use]
    pub fn retention(&self) -> crate::history::Retention {
        crate::history::Retention {
            max_len: self.history_size,
            max_bytes: self.history_bytes,
            max_age_ms: u64::try_from(self.history_max_age.as_millis()).unwrap_or(u64::MAX),
        }
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("sse-hub").chain(args.iter().copied()))
            .expect("valid arguments")
    }

    #[test]
    fn defaults_are_documented_values() {
        let c = parse(&[]).config;
        assert_eq!(c.bind, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(c.tick_interval, Duration::from_secs(1));
        assert_eq!(c.keep_alive, Duration::from_secs(15));
        assert_eq!(c.shutdown_timeout, Duration::from_secs(5));
        assert_eq!(c.history_size, 10_000);
        assert_eq!(c.data_dir, DataDir(Some("sse-hub-data".into())));
        assert_eq!(
            parse(&["--data-dir", "none"]).config.data_dir,
            DataDir(None)
        );
    }

    #[test]
    fn durations_accept_units_and_zero() {
        let c = parse(&["--tick-interval", "500ms", "--keep-alive", "0"]).config;
        assert_eq!(c.tick_interval, Duration::from_millis(500));
        assert_eq!(c.keep_alive, Duration::ZERO);
        assert!(Cli::try_parse_from(["sse-hub", "--tick-interval", "soon"]).is_err());
    }

    #[test]
    fn the_subscriptions_ttl_is_at_least_a_second() {
        assert_eq!(parse(&[]).config.subscriptions_ttl, Duration::from_secs(15));
        assert_eq!(
            parse(&["--subscriptions-ttl", "3s"])
                .config
                .subscriptions_ttl,
            Duration::from_secs(3)
        );
        for short in ["0", "500ms"] {
            assert!(Cli::try_parse_from(["sse-hub", "--subscriptions-ttl", short]).is_err());
        }
    }

    #[test]
    fn the_key_may_follow_the_token_command() {
        let cli = parse(&["token", "--jwt-key", "k", "--publish", "*"]);
        assert_eq!(cli.config.publisher_key().map(Secret::expose), Some("k"));
        assert!(matches!(cli.command, Some(Command::Token(_))));
    }

    #[test]
    fn a_config_file_reads_as_environment_variables() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hub.toml");
        std::fs::write(
            &path,
            "bind = \"0.0.0.0:9000\"\nallow-anonymous = true\nmax-topics = 8\ncors-origin = [\"https://a\", \"https://b\"]\n",
        )
        .unwrap();
        let mut env = config_file_env(&path).unwrap();
        env.sort();
        assert_eq!(
            env,
            [
                ("SSE_HUB_ALLOW_ANONYMOUS".to_owned(), "true".to_owned()),
                ("SSE_HUB_BIND".to_owned(), "0.0.0.0:9000".to_owned()),
                (
                    "SSE_HUB_CORS_ORIGIN".to_owned(),
                    "https://a,https://b".to_owned()
                ),
                ("SSE_HUB_MAX_TOPICS".to_owned(), "8".to_owned()),
            ]
        );
        std::fs::write(&path, "bind = { a = 1 }\n").unwrap();
        assert!(config_file_env(&path).is_err());
        std::fs::write(&path, "bind = \n").unwrap();
        assert!(config_file_env(&path).is_err());
        let args: Vec<std::ffi::OsString> =
            ["sse-hub", "--config", "x.toml"].map(Into::into).to_vec();
        assert_eq!(config_file_arg(&args), Some(PathBuf::from("x.toml")));
    }

    #[test]
    fn jwks_urls_are_checked_when_parsed() {
        let c = parse(&["--publisher-jwks-url", "https://idp.example/jwks.json"]).config;
        assert!(c.publisher_jwks_url.is_some() && c.subscriber_jwks_url.is_none());
        assert_eq!(c.jwks_refresh_interval, Duration::from_secs(300));
        assert_eq!(c.jwks_ca_cert, None);
        let c = parse(&["--jwks-ca-cert", "/etc/sse-hub/idp-ca.pem"]).config;
        assert_eq!(
            c.jwks_ca_cert,
            Some(PathBuf::from("/etc/sse-hub/idp-ca.pem"))
        );
        for bad in [
            "http://idp.example/jwks",
            "jwks.json",
            "ftp://idp.example/jwks",
        ] {
            let args = ["sse-hub", "--subscriber-jwks-url", bad];
            assert!(Cli::try_parse_from(args).is_err(), "{bad}");
        }
    }

    #[test]
    fn secrets_do_not_show_in_debug_output() {
        let c = parse(&["--jwt-key", "hunter2"]).config;
        assert!(!format!("{c:?}").contains("hunter2"));
        assert_eq!(c.publisher_key().map(Secret::expose), Some("hunter2"));
    }
}
