//! Command line, environment and file configuration: every flag `--x-y` can also be set as
//! `SSE_HUB_X_Y`, or as `x-y = …` in the TOML file of `--config` (flags win over the
//! environment, which wins over the file).
//!
//! An empty `SSE_HUB_*` variable counts as unset. A list flag's environment variable (or a
//! single string in the file) is split at commas; an element of a TOML array stays whole. A
//! mistake anywhere is one line and exit code 1 ([`load`]).

use std::{
    ffi::OsString,
    fmt,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use clap::{
    parser::ValueSource, Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum,
};

/// Parses `1s`, `500ms`, `2m`, or `0`.
fn duration(value: &str) -> Result<Duration, humantime::DurationError> {
    if value.trim() == "0" {
        return Ok(Duration::ZERO);
    }
    humantime::parse_duration(value)
}

/// Parses a duration of at least a second (`15s`, `2m`).
fn positive_duration(value: &str) -> Result<Duration, String> {
    at_least(value, Duration::from_secs(1))
}

/// Shortest period of the hub's timers (server-time ticks, heartbeats) and shortest timeout.
///
/// A heartbeat every 100 ms is already ten writes a second to each idle stream, and a tenth of
/// a second is as fast as anyone needs a departed client noticed; below it a timer only burns
/// CPU (`--tick-interval 1ns` sent 19,000 events a second).
pub const MIN_INTERVAL: Duration = Duration::from_millis(100);

/// Parses a period or timeout: `0` (off) or at least [`MIN_INTERVAL`].
fn interval(value: &str) -> Result<Duration, String> {
    match duration(value) {
        Ok(d) if d.is_zero() || d >= MIN_INTERVAL => Ok(d),
        Ok(_) => Err(format!(
            "must be 0 (off) or at least {}",
            fmt_duration(MIN_INTERVAL)
        )),
        Err(err) => Err(err.to_string()),
    }
}

/// Parses the JWK set refresh period: no shorter than the wait between the fetches unknown
/// `kid`s make, so nothing fetches a set more often.
fn jwks_interval(value: &str) -> Result<Duration, String> {
    at_least(value, crate::jwks::MIN_REFETCH_INTERVAL)
}

/// Parses a duration of at least `min`.
fn at_least(value: &str, min: Duration) -> Result<Duration, String> {
    match duration(value) {
        Ok(d) if d >= min => Ok(d),
        Ok(_) => Err(format!("must be at least {}", fmt_duration(min))),
        Err(err) => Err(err.to_string()),
    }
}

fn fmt_duration(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// The most worker threads actix-server runs (it panics past it).
const MAX_WORKERS: usize = 512;

/// Parses `--workers`: 0 (one per core) to [`MAX_WORKERS`].
fn workers(value: &str) -> Result<usize, String> {
    match value.parse::<usize>() {
        Ok(n) if n <= MAX_WORKERS => Ok(n),
        Ok(_) => Err(format!("must be at most {MAX_WORKERS}")),
        Err(err) => Err(err.to_string()),
    }
}

/// Parses an origin as browsers send it in `Origin` (`scheme://host[:port]`, nothing after), or
/// `*`; the host's case does not matter.
///
/// Anything else could never match a request's `Origin`: a path, a trailing `/`, or two origins
/// joined by a comma in one list element, which is refused rather than split.
fn origin(value: &str) -> Result<String, String> {
    if value == "*" {
        return Ok(value.to_owned());
    }
    let written = url::Url::parse(value).ok().and_then(|url| {
        let host = url.host_str()?;
        Some(match url.port() {
            Some(port) => format!("{}://{host}:{port}", url.scheme()),
            None => format!("{}://{host}", url.scheme()),
        })
    });
    match written {
        Some(origin) if origin.eq_ignore_ascii_case(value) && !value.contains(',') => Ok(origin),
        Some(origin) if !value.contains(',') => Err(format!(
            "not an origin as a browser sends it (scheme://host[:port]): did you mean `{origin}`?"
        )),
        _ => Err("not an origin (scheme://host[:port]; one origin per list element)".into()),
    }
}

/// Parses a directory that exists.
fn directory(value: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(value);
    if path.is_dir() {
        Ok(path)
    } else {
        Err("not a directory".into())
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
    /// Lifetime of the token, e.g. `30m` or `30d`: it expires this long after it is made.
    #[arg(long, value_parser = positive_duration, default_value = "1h")]
    pub exp: Duration,
    /// Make a token that never expires (for a backend that can't renew one; prefer `--exp`).
    #[arg(long, conflicts_with = "exp")]
    pub no_exp: bool,
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

    /// A connection whose sent data stays unread this long is closed (TCP_USER_TIMEOUT); 0
    /// leaves it to the system, else at least 100ms.
    #[arg(long, env = "SSE_HUB_WRITE_TIMEOUT", default_value = "30s", value_parser = interval)]
    pub write_timeout: Duration,

    /// Time a client gets to send its request headers (slowloris guard); 408 after it. 0: no
    /// limit, else at least 100ms.
    #[arg(long, env = "SSE_HUB_REQUEST_HEADER_TIMEOUT", default_value = "5s", value_parser = interval)]
    pub request_header_timeout: Duration,

    /// An idle keep-alive connection is closed after this long; 0 closes a connection after
    /// each response, else at least 100ms.
    #[arg(long, env = "SSE_HUB_IDLE_TIMEOUT", default_value = "15s", value_parser = interval)]
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

    /// Origin allowed to publish with a cookie token, `scheme://host[:port]` (repeatable, or
    /// `*`); CSRF guard.
    #[arg(
        long = "publish-origin",
        env = "SSE_HUB_PUBLISH_ORIGIN",
        value_delimiter = ',',
        value_parser = origin
    )]
    pub publish_origins: Vec<String>,

    /// Name of the cookie that may carry the token.
    #[arg(
        long,
        env = "SSE_HUB_COOKIE_NAME",
        default_value = "mercureAuthorization"
    )]
    pub cookie_name: String,

    /// Origin allowed to use the hub endpoint (and the subscriptions API) from a browser,
    /// `scheme://host[:port]` (repeatable, or `*`).
    #[arg(
        long = "cors-origin",
        env = "SSE_HUB_CORS_ORIGIN",
        value_delimiter = ',',
        value_parser = origin
    )]
    pub cors_origins: Vec<String>,

    /// Certificate chain (PEM) to serve HTTPS, with HTTP/2, directly (with `--tls-key`).
    #[arg(long, env = "SSE_HUB_TLS_CERT", value_name = "PEM")]
    pub tls_cert: Option<PathBuf>,

    /// Private key (PEM) of `--tls-cert`.
    #[arg(long, env = "SSE_HUB_TLS_KEY", value_name = "PEM")]
    pub tls_key: Option<PathBuf>,

    /// Serve the dashboard from this directory instead of the files built into the binary.
    #[arg(long, env = "SSE_HUB_STATIC_DIR", value_parser = directory)]
    pub static_dir: Option<PathBuf>,

    /// On SIGINT/SIGTERM, how long open requests get to finish before the hub exits.
    #[arg(long, env = "SSE_HUB_SHUTDOWN_TIMEOUT", default_value = "5s", value_parser = duration)]
    pub shutdown_timeout: Duration,

    /// HTTP worker threads; 0 means one per CPU core; at most 512.
    #[arg(long, env = "SSE_HUB_WORKERS", default_value_t = 0, value_parser = workers)]
    pub workers: usize,
}

/// Why the configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// `--help` or `--version`: clap prints it and exits 0; not an error.
    #[error("{0}")]
    Display(clap::Error),
    #[error(transparent)]
    File(#[from] ConfigFileError),
    /// A flag, variable or file value clap refused, told on one line.
    #[error("{}", one_line(.0))]
    Invalid(clap::Error),
}

impl From<clap::Error> for LoadError {
    fn from(err: clap::Error) -> Self {
        if err.use_stderr() {
            Self::Invalid(err)
        } else {
            Self::Display(err)
        }
    }
}

/// A clap error without its usage and help hints, its lines joined: one log line.
fn one_line(err: &clap::Error) -> String {
    let text = err.render().to_string();
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
        .filter(|l| !l.is_empty())
        .collect();
    let joined = lines.join(" ");
    joined
        .strip_prefix("error: ")
        .map_or_else(|| joined.clone(), str::to_owned)
}

/// Why the `--config` file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not valid TOML: line {line}, column {column}: {message}")]
    Parse {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{path}: {problem}")]
    Setting {
        path: PathBuf,
        problem: SettingError,
    },
}

/// What is wrong with one key of the `--config` file.
#[derive(Debug, thiserror::Error)]
pub enum SettingError {
    #[error("{0:?} is not a setting (a setting is named as its flag, without `--`)")]
    Unknown(String),
    #[error("`{0}` and `{1}` are the same setting: give it once")]
    Twice(String, String),
    #[error("`{0}` must be a string, number, boolean or a list of them")]
    Value(String),
    #[error("`{0}` takes one value, not a list")]
    NotAList(String),
    #[error("`{0}` can't be an empty list (leave it out for its default)")]
    Empty(String),
    /// A NUL can't be passed on (the environment ends a value there), and no setting has a
    /// use for a control character in a list element.
    #[error("`{0}` holds a control character")]
    Control(String),
}

/// The `--config FILE` (or `SSE_HUB_CONFIG`) among `args`, before they are parsed.
#[must_use]
pub fn config_file_arg(args: &[OsString]) -> Option<PathBuf> {
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

/// A setting the file may give: a flag that has an environment variable.
#[derive(Debug)]
struct Setting {
    /// `SSE_HUB_…`.
    env: String,
    /// Clap's id of the argument.
    id: String,
    /// Whether the flag takes a comma-separated list.
    list: bool,
    /// Whether it has a default, which an empty list could not replace.
    default: bool,
}

/// Every setting of [`Cli`], `--config` aside (a file can't name another).
fn settings() -> Vec<Setting> {
    Cli::command()
        .get_arguments()
        .filter_map(|arg| {
            let env = arg.get_env()?.to_str()?.to_owned();
            (env != "SSE_HUB_CONFIG").then(|| Setting {
                env,
                id: arg.get_id().to_string(),
                list: arg.get_value_delimiter().is_some(),
                default: !arg.get_default_values().is_empty(),
            })
        })
        .collect()
}

/// The settings of a `--config` file, each under its environment variable's name.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct FileSettings {
    /// Settings given one value: `(SSE_HUB_NAME, value)`, read as that variable would be.
    pub values: Vec<(String, String)>,
    /// List settings given a TOML array: `(SSE_HUB_NAME, elements)`, each element whole.
    pub lists: Vec<(String, Vec<String>)>,
    /// `(SSE_HUB_NAME, key)` of each key read, to refuse a second spelling of one setting.
    keys: Vec<(String, String)>,
}

/// What separates a file's list elements in the environment variable clap reads them from: a
/// control character no element may hold (commas may be in an element).
const ELEMENT_SEPARATOR: char = '\u{1f}';

impl FileSettings {
    /// Reads `path`: every key must name a setting (`allow-anonymous`; `allow_anonymous` and
    /// upper case are read too, but one setting only once).
    pub fn read(path: &Path) -> Result<Self, ConfigFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigFileError::Read {
            path: path.to_owned(),
            source,
        })?;
        let table: toml::Table = text.parse().map_err(|err: toml::de::Error| {
            // toml's own rendering quotes the line over several lines of the log.
            let before = text
                .get(..err.span().map_or(0, |s| s.start))
                .unwrap_or(&text);
            ConfigFileError::Parse {
                path: path.to_owned(),
                line: before.matches('\n').count() + 1,
                column: before.chars().rev().take_while(|&c| c != '\n').count() + 1,
                message: err.message().replace('\n', " "),
            }
        })?;
        let known = settings();
        let mut file = Self::default();
        for (key, value) in &table {
            file.add(&known, key, value)
                .map_err(|problem| ConfigFileError::Setting {
                    path: path.to_owned(),
                    problem,
                })?;
        }
        Ok(file)
    }

    /// Adds the file's `key = value`, one of the `known` settings.
    fn add(
        &mut self,
        known: &[Setting],
        key: &str,
        value: &toml::Value,
    ) -> Result<(), SettingError> {
        let env = format!("SSE_HUB_{}", key.to_uppercase().replace('-', "_"));
        let setting = known
            .iter()
            .find(|s| s.env == env)
            .ok_or_else(|| SettingError::Unknown(key.to_owned()))?;
        if let Some(first) = self.keys.iter().find(|k| k.0 == env) {
            return Err(SettingError::Twice(first.1.clone(), key.to_owned()));
        }
        self.keys.push((env.clone(), key.to_owned()));
        let toml::Value::Array(items) = value else {
            let text = scalar(value).ok_or_else(|| SettingError::Value(key.to_owned()))?;
            if text.contains('\0') {
                return Err(SettingError::Control(key.to_owned()));
            }
            self.values.push((env, text));
            return Ok(());
        };
        if !setting.list {
            return Err(SettingError::NotAList(key.to_owned()));
        }
        let items = items
            .iter()
            .map(scalar)
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| SettingError::Value(key.to_owned()))?;
        if items.iter().any(|i| i.chars().any(char::is_control)) {
            return Err(SettingError::Control(key.to_owned()));
        }
        match (items.is_empty(), setting.default) {
            (false, _) => self.lists.push((env, items)),
            // No origins, audiences…: as if left out.
            (true, false) => {}
            (true, true) => return Err(SettingError::Empty(key.to_owned())),
        }
        Ok(())
    }
}

/// A TOML value as the environment would give it, if it is a scalar.
fn scalar(value: &toml::Value) -> Option<String> {
    match value {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Reads the configuration from `args` (the process's, program name first), the `SSE_HUB_*`
/// environment variables and the `--config` file, in that order of precedence.
///
/// Call it first thing, while the process has one thread: clap reads the environment, so this
/// edits it. An empty `SSE_HUB_*` variable is removed (it counts as unset, as `X=` in a unit
/// file or `docker -e X=` usually means), and the file's settings are added where the
/// environment has none.
pub fn load(args: &[OsString]) -> Result<Cli, LoadError> {
    for (name, value) in std::env::vars_os() {
        if value.is_empty() && name.to_string_lossy().starts_with("SSE_HUB_") {
            std::env::remove_var(name);
        }
    }
    let file = match config_file_arg(args) {
        Some(path) => FileSettings::read(&path)?,
        None => FileSettings::default(),
    };
    for (name, value) in file.values {
        if std::env::var_os(&name).is_none() {
            std::env::set_var(name, value);
        }
    }
    let matches = Cli::command().try_get_matches_from(args)?;
    // A file's list is used where neither a flag nor the environment gives that setting. Its
    // elements reach clap in the variable, separated by a character no element holds, with
    // that flag split there instead of at commas: a comma inside an element stays in it.
    let known = settings();
    let mut split_apart = Vec::new();
    for (name, items) in file.lists {
        let Some(setting) = known.iter().find(|s| s.env == name) else {
            continue;
        };
        let given = std::env::var_os(&name).is_some()
            || matches.value_source(&setting.id) == Some(ValueSource::CommandLine);
        if !given {
            std::env::set_var(&name, items.join(&ELEMENT_SEPARATOR.to_string()));
            split_apart.push(setting.id.clone());
        }
    }
    if split_apart.is_empty() {
        return Ok(Cli::from_arg_matches(&matches)?);
    }
    // Made after the variables are set: clap reads them as the command is made.
    let command = split_apart.iter().fold(Cli::command(), |command, id| {
        command.mut_arg(id, |arg| arg.value_delimiter(ELEMENT_SEPARATOR))
    });
    let matches = command.try_get_matches_from(args)?;
    Ok(Cli::from_arg_matches(&matches)?)
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
    fn intervals_are_off_or_at_least_their_minimum() {
        let c = parse(&["--keep-alive", "100ms", "--tick-interval", "0"]).config;
        assert_eq!(c.keep_alive, MIN_INTERVAL);
        assert_eq!(c.tick_interval, Duration::ZERO);
        for flag in [
            "--tick-interval",
            "--keep-alive",
            "--write-timeout",
            "--request-header-timeout",
            "--idle-timeout",
        ] {
            let err = Cli::try_parse_from(["sse-hub", flag, "99ms"]).unwrap_err();
            assert!(
                one_line(&err).ends_with("must be 0 (off) or at least 100ms"),
                "{err}"
            );
        }
        let err = Cli::try_parse_from(["sse-hub", "--jwks-refresh-interval", "9s"]).unwrap_err();
        assert!(one_line(&err).ends_with("must be at least 10s"), "{err}");
        assert!(Cli::try_parse_from(["sse-hub", "--workers", "513"]).is_err());
    }

    #[test]
    fn origins_are_written_as_browsers_send_them() {
        assert_eq!(origin("*").unwrap(), "*");
        assert_eq!(
            origin("https://App.example").unwrap(),
            "https://app.example"
        );
        assert_eq!(
            origin("http://127.0.0.1:8080").unwrap(),
            "http://127.0.0.1:8080"
        );
        for bad in [
            "https://a.example/",
            "https://a.example:443",
            "https://a.example/path",
            "https://a.example,https://evil.example",
            "https://a.example,b",
            "a.example",
            "null",
            "",
        ] {
            assert!(origin(bad).is_err(), "{bad}");
        }
        assert!(origin("https://a.example/")
            .unwrap_err()
            .ends_with("did you mean `https://a.example`?"));
    }

    #[test]
    fn a_clap_error_is_one_line_without_the_usage() {
        let err = Cli::try_parse_from(["sse-hub", "--fsync", "x"]).unwrap_err();
        assert_eq!(
            one_line(&err),
            "invalid value 'x' for '--fsync <FSYNC>' [possible values: always, batch, never]"
        );
        let help = Cli::try_parse_from(["sse-hub", "--help"]).unwrap_err();
        assert!(matches!(LoadError::from(help), LoadError::Display(_)));
    }

    #[test]
    fn the_key_may_follow_the_token_command() {
        let cli = parse(&["token", "--jwt-key", "k", "--publish", "*"]);
        assert_eq!(cli.config.publisher_key().map(Secret::expose), Some("k"));
        assert!(matches!(cli.command, Some(Command::Token(_))));
    }

    /// Writes `text` as a config file and reads it.
    fn read(text: &str) -> Result<FileSettings, ConfigFileError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hub.toml");
        std::fs::write(&path, text).unwrap();
        FileSettings::read(&path)
    }

    #[test]
    fn a_config_file_reads_as_environment_variables_with_list_elements_whole() {
        let mut file = read(
            "bind = \"0.0.0.0:9000\"\nallow-anonymous = true\nmax-topics = 8\n\
             cors-origin = [\"https://a\", \"https://b\"]\njwt-audience = [\"x,y\"]\n\
             jwt-issuer = []\n",
        )
        .unwrap();
        file.values.sort();
        let owned = |(a, b): (&str, &str)| (a.to_owned(), b.to_owned());
        assert_eq!(
            file.values,
            [
                ("SSE_HUB_ALLOW_ANONYMOUS", "true"),
                ("SSE_HUB_BIND", "0.0.0.0:9000"),
                ("SSE_HUB_MAX_TOPICS", "8"),
            ]
            .map(owned)
        );
        // An empty list of a setting without default is as if left out.
        assert_eq!(
            file.lists,
            [
                (
                    "SSE_HUB_CORS_ORIGIN".to_owned(),
                    vec!["https://a".to_owned(), "https://b".to_owned()]
                ),
                ("SSE_HUB_JWT_AUDIENCE".to_owned(), vec!["x,y".to_owned()]),
            ]
        );
        let args: Vec<OsString> = ["sse-hub", "--config", "x.toml"].map(Into::into).to_vec();
        assert_eq!(config_file_arg(&args), Some(PathBuf::from("x.toml")));
    }

    #[test]
    fn a_config_file_mistake_is_one_line_naming_it() {
        for (text, expected) in [
            ("bind = { a = 1 }\n", "`bind` must be a string"),
            ("bind = \n", "is not valid TOML"),
            ("\"a=b\" = 1\n", "\"a=b\" is not a setting"),
            (
                "alow-anonymous = true\n",
                "\"alow-anonymous\" is not a setting",
            ),
            ("config = \"other.toml\"\n", "\"config\" is not a setting"),
            (
                "allow-anonymous = true\nallow_anonymous = false\n",
                "`allow-anonymous` and `allow_anonymous` are the same setting",
            ),
            (
                "time-topic = \"/t\\u0000x\"\n",
                "`time-topic` holds a control character",
            ),
            (
                "cors-origin = [\"https://a\\u001fb\"]\n",
                "`cors-origin` holds a control",
            ),
            (
                "bind = [\"127.0.0.1:1\"]\n",
                "`bind` takes one value, not a list",
            ),
            (
                "trusted-proxy = []\n",
                "`trusted-proxy` can't be an empty list",
            ),
        ] {
            let err = read(text).expect_err(text).to_string();
            assert!(err.contains(expected), "{text:?}: {err}");
            assert!(!err.contains('\n'), "{err}");
        }
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
