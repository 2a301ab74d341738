//! Command line, environment and file configuration: every flag `--x-y` can also be set as
//! `SSE_HUB_X_Y`, or as `x-y = …` in the TOML file of `--config` (flags win over the
//! environment, which wins over the file).
//!
//! An empty `SSE_HUB_*` variable counts as unset. A list flag's environment variable (or a
//! single string in the file) is split at commas; an element of a TOML array stays whole. A
//! mistake anywhere is one line and exit code 1 ([`load`]).
//!
//! The settings come in sections ([`Config`]'s fields, each under its heading in `--help`),
//! and each part of the hub is given the sections it uses.

mod file;
mod issuer;
mod sections;
mod values;

use std::{ffi::OsString, path::PathBuf, time::Duration};

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};

pub use file::{config_file_arg, ConfigFileError, FileSettings, SettingError};
pub use issuer::IssuerSettings;
pub use sections::{
    Authorization, HistorySettings, Listen, Publishing, Streams, TlsSettings, TransportSettings,
};
use values::positive_duration;
pub use values::{DataDir, JwtAlgorithm, Protocol, Secret, MIN_INTERVAL};

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
    /// (or `SSE_HUB_JWT_KEY`; `--publisher-jwt-key` / `--subscriber-jwt-key` when set): a
    /// Mercure 1.0 access token from the issuer `--issuer`, e.g.
    /// `sse-hub token --jwt-key KEY --issuer https://example.com --publish '*'`; with
    /// `--legacy`, a 0.x token with the `mercure` claim.
    Token(TokenArgs),
}

/// Rights and claims of a token made by `sse-hub token`.
#[derive(Debug, Clone, Args)]
pub struct TokenArgs {
    /// Topic the token may publish to, matched exactly (`*`: every topic); with `--legacy`, a
    /// 0.x topic selector (URI template). Repeatable.
    #[arg(long = "publish", value_name = "TOPIC")]
    pub publish: Vec<String>,
    /// URL pattern of the topics the token may publish to (repeatable; not with `--legacy`).
    #[arg(
        long = "publish-urlpattern",
        value_name = "PATTERN",
        conflicts_with = "legacy"
    )]
    pub publish_urlpattern: Vec<String>,
    /// Topic whose private updates the token may receive, matched exactly (`*`: every
    /// topic); with `--legacy`, a 0.x topic selector. Repeatable.
    #[arg(long = "subscribe", value_name = "TOPIC")]
    pub subscribe: Vec<String>,
    /// URL pattern of the topics whose private updates the token may receive (repeatable;
    /// not with `--legacy`).
    #[arg(
        long = "subscribe-urlpattern",
        value_name = "PATTERN",
        conflicts_with = "legacy"
    )]
    pub subscribe_urlpattern: Vec<String>,
    /// A JSON object kept with the subscriptions the token makes (shown in active
    /// subscriptions).
    #[arg(long, value_name = "JSON", value_parser = payload)]
    pub payload: Option<serde_json::Map<String, serde_json::Value>>,
    /// The `aud` of a 1.0 token: the hub's resource identifier. Default: the hub's
    /// `--resource-identifier`, else `http://<--bind>/.well-known/mercure`.
    #[arg(long, value_name = "URL", conflicts_with = "legacy")]
    pub audience: Option<String>,
    /// Make a Mercure 0.x token (the `mercure` claim) instead of a 1.0 access token.
    #[arg(long)]
    pub legacy: bool,
    /// Lifetime of the token, e.g. `30m` or `30d`: it expires this long after it is made.
    #[arg(long, value_parser = positive_duration, default_value = "1h")]
    pub exp: Duration,
    /// Make a 0.x token that never expires (for a backend that can't renew one; prefer
    /// `--exp`). 1.0 access tokens always expire.
    #[arg(long, conflicts_with = "exp", requires = "legacy")]
    pub no_exp: bool,
    /// The `sub` claim (a 1.0 token gets a fresh `urn:uuid:` without it).
    #[arg(long)]
    pub sub: Option<String>,
}

/// A JSON object, for `--payload`.
fn payload(value: &str) -> Result<serde_json::Map<String, serde_json::Value>, String> {
    match serde_json::from_str(value) {
        Ok(serde_json::Value::Object(map)) => Ok(map),
        Ok(_) => Err("the payload must be a JSON object".to_owned()),
        Err(err) => Err(format!("not JSON: {err}")),
    }
}

/// Everything the hub needs to run, in sections: each part of the hub is given its own.
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

    /// Protocol generations spoken: `both` (Mercure 0.x and 1.0 side by side) or `1.0`
    /// (0.x tokens, `topic=`, `lastEventID` and tokens in the URL refused).
    #[arg(long, env = "SSE_HUB_PROTOCOL", value_enum, default_value = "both")]
    pub protocol: Protocol,

    #[command(flatten, next_help_heading = "Listening and HTTP limits")]
    pub listen: Listen,

    #[command(flatten, next_help_heading = "TLS")]
    pub tls: TlsSettings,

    #[command(flatten, next_help_heading = "Subscribers and streams")]
    pub streams: Streams,

    #[command(flatten, next_help_heading = "Publishing")]
    pub publishing: Publishing,

    #[command(flatten, next_help_heading = "History and store")]
    pub history: HistorySettings,

    #[command(flatten, next_help_heading = "Authorization")]
    pub auth: Authorization,

    #[command(flatten, next_help_heading = "Transport")]
    pub transport: TransportSettings,

    /// The ids of the settings a flag, the environment or the file gave (not their defaults).
    #[arg(skip)]
    pub given: Vec<String>,
}

impl Config {
    /// Settings that were given but do nothing without another one, each said in one line (the
    /// hub warns of them at start).
    #[must_use]
    pub fn unused(&self) -> Vec<String> {
        let given = |id: &str| self.given.iter().any(|g| g == id);
        let redis = matches!(
            self.transport.transport,
            crate::transport::TransportKind::Redis(_)
        );
        let jwks = [
            &self.auth.publisher_jwks_url,
            &self.auth.subscriber_jwks_url,
        ];
        let https = jwks.into_iter().flatten().any(
            |url| matches!(url, crate::auth::jwks::JwksUrl::Remote(u) if u.scheme() == "https"),
        );
        let on_disk = self.history.data_dir.0.is_some() && !redis;
        [
            (
                given("redis_stream") && !redis,
                "--redis-stream is unused: the transport is local (see --transport)",
            ),
            (
                given("subscriptions_ttl") && !(self.streams.subscriptions && redis),
                "--subscriptions-ttl is unused: it is for --subscriptions over a Redis transport",
            ),
            (
                given("jwks_refresh_interval") && jwks.iter().all(|u| u.is_none()),
                "--jwks-refresh-interval is unused: no JWK set is configured",
            ),
            (
                given("jwks_ca_cert") && !https,
                "--jwks-ca-cert is unused: no https:// JWK set URL is configured",
            ),
            (
                (given("fsync") || given("salvage")) && !on_disk,
                "--fsync and --salvage are unused: the history is not on this node's disk \
                 (--data-dir none, or a Redis transport)",
            ),
        ]
        .into_iter()
        .filter(|(unused, _)| *unused)
        .map(|(_, line)| line.to_owned())
        .collect()
    }
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
pub(crate) fn one_line(err: &clap::Error) -> String {
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

/// Reads the configuration from `args` (the process's, program name first), the `SSE_HUB_*`
/// environment variables and the `--config` file, in that order of precedence.
///
/// An empty `SSE_HUB_*` variable counts as unset (as `X=` in a unit file or `docker -e X=`
/// usually means). Nothing here writes the environment.
pub fn load(args: &[OsString]) -> Result<Cli, LoadError> {
    let mut command = Cli::command();
    let file = match config_file_arg(args) {
        Some(path) => Some(FileSettings::read(&path, &command)?),
        None => None,
    };
    let empty: Vec<String> = command
        .get_arguments()
        .filter(|arg| {
            arg.get_env()
                .and_then(std::env::var_os)
                .is_some_and(|value| value.is_empty())
        })
        .map(|arg| arg.get_id().to_string())
        .collect();
    for id in empty {
        command = command.mut_arg(id, |arg| arg.env(None));
    }
    let Some(file) = file else {
        let matches = command.clone().try_get_matches_from(args)?;
        return parsed(&command, &matches, &[]);
    };
    let issuers = file.issuers.clone();
    let with_issuers = |cli: Result<Cli, LoadError>| {
        cli.map(|mut cli| {
            cli.config.auth.issuers = issuers.clone();
            cli
        })
    };
    let command = file.apply(command);
    let matches = command.clone().try_get_matches_from(args)?;
    let from_file: Vec<&str> = file.values.iter().map(|(id, _)| id.as_str()).collect();
    let whole = file.lists_used(&command, &matches);
    if whole.is_empty() {
        return with_issuers(parsed(&command, &matches, &from_file));
    }
    let command = whole.iter().fold(command, |command, id| {
        command.mut_arg(id, |arg| arg.value_delimiter(None))
    });
    let matches = command.clone().try_get_matches_from(args)?;
    with_issuers(parsed(&command, &matches, &from_file))
}

/// The [`Cli`] of `matches`, with the settings that were given (by a flag, the environment, or
/// the file, whose values are defaults to clap) noted in [`Config::given`].
fn parsed(
    command: &clap::Command,
    matches: &clap::ArgMatches,
    from_file: &[&str],
) -> Result<Cli, LoadError> {
    let mut cli = Cli::from_arg_matches(matches)?;
    cli.config.given = command
        .get_arguments()
        .map(|arg| arg.get_id().as_str())
        .filter(|id| {
            from_file.contains(id)
                || matches!(
                    matches.value_source(id),
                    Some(
                        clap::parser::ValueSource::CommandLine
                            | clap::parser::ValueSource::EnvVariable
                    )
                )
        })
        .map(str::to_owned)
        .collect();
    Ok(cli)
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
        assert_eq!(c.listen.bind, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(c.streams.tick_interval, Duration::from_secs(1));
        assert_eq!(c.streams.keep_alive, Duration::from_secs(15));
        assert_eq!(c.listen.shutdown_timeout, Duration::from_secs(5));
        assert_eq!(c.history.history_size, 10_000);
        assert_eq!(c.history.data_dir, DataDir(Some("sse-hub-data".into())));
        assert_eq!(
            parse(&["--data-dir", "none"]).config.history.data_dir,
            DataDir(None)
        );
    }

    #[test]
    fn durations_accept_units_and_zero() {
        let c = parse(&["--tick-interval", "500ms", "--keep-alive", "0"]).config;
        assert_eq!(c.streams.tick_interval, Duration::from_millis(500));
        assert_eq!(c.streams.keep_alive, Duration::ZERO);
        assert!(Cli::try_parse_from(["sse-hub", "--tick-interval", "soon"]).is_err());
    }

    #[test]
    fn the_subscriptions_ttl_is_at_least_a_second() {
        assert_eq!(
            parse(&[]).config.streams.subscriptions_ttl,
            Duration::from_secs(15)
        );
        assert_eq!(
            parse(&["--subscriptions-ttl", "3s"])
                .config
                .streams
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
        assert_eq!(c.streams.keep_alive, MIN_INTERVAL);
        assert_eq!(c.streams.tick_interval, Duration::ZERO);
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
        assert_eq!(
            cli.config.auth.publisher_key().map(Secret::expose),
            Some("k")
        );
        assert!(matches!(cli.command, Some(Command::Token(_))));
    }

    #[test]
    fn jwks_urls_are_checked_when_parsed() {
        let c = parse(&["--publisher-jwks-url", "https://idp.example/jwks.json"]).config;
        assert!(c.auth.publisher_jwks_url.is_some() && c.auth.subscriber_jwks_url.is_none());
        assert_eq!(c.auth.jwks_refresh_interval, Duration::from_secs(300));
        assert_eq!(c.auth.jwks_ca_cert, None);
        let c = parse(&["--jwks-ca-cert", "/etc/sse-hub/idp-ca.pem"]).config;
        assert_eq!(
            c.auth.jwks_ca_cert,
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
    fn access_token_settings_have_their_defaults_and_checked_urls() {
        let c = parse(&[]).config;
        assert_eq!(c.protocol, Protocol::Both);
        assert_eq!(c.auth.access_token_cookie, "__Secure-mercure_access_token");
        assert_eq!((c.auth.issuer, c.auth.resource_identifier), (None, None));
        let c = parse(&[
            "--protocol",
            "1.0",
            "--issuer",
            "https://idp.example",
            "--resource-identifier",
            "https://hub.example/.well-known/mercure",
            "--jwt-algorithm",
            "EdDSA",
        ])
        .config;
        assert_eq!(c.protocol, Protocol::V1);
        assert_eq!(c.auth.issuer.as_deref(), Some("https://idp.example"));
        assert_eq!(c.auth.jwt_algorithm, JwtAlgorithm::EdDSA);
        for (flag, bad) in [
            ("--protocol", "0.x"),
            ("--issuer", "idp.example"),
            ("--issuer", "ftp://idp.example"),
            ("--resource-identifier", "/.well-known/mercure"),
        ] {
            assert!(
                Cli::try_parse_from(["sse-hub", flag, bad]).is_err(),
                "{flag} {bad}"
            );
        }
    }

    #[test]
    fn secrets_do_not_show_in_debug_output() {
        let c = parse(&["--jwt-key", "hunter2"]).config;
        assert!(!format!("{c:?}").contains("hunter2"));
        assert_eq!(c.auth.publisher_key().map(Secret::expose), Some("hunter2"));
    }
}
