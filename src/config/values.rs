//! The values settings take: how each is parsed and checked, whichever source gives it.

use std::{fmt, path::PathBuf, time::Duration};

use clap::ValueEnum;

/// Parses `1s`, `500ms`, `2m`, or `0`.
pub(super) fn duration(value: &str) -> Result<Duration, humantime::DurationError> {
    if value.trim() == "0" {
        return Ok(Duration::ZERO);
    }
    humantime::parse_duration(value)
}

/// Parses a duration of at least a second (`15s`, `2m`).
pub(super) fn positive_duration(value: &str) -> Result<Duration, String> {
    at_least(value, Duration::from_secs(1))
}

/// Shortest period of the hub's timers (server-time ticks, heartbeats) and shortest timeout.
///
/// A heartbeat every 100 ms is already ten writes a second to each idle stream, and a tenth of
/// a second is as fast as anyone needs a departed client noticed; below it a timer only burns
/// CPU (`--tick-interval 1ns` sent 19,000 events a second).
pub const MIN_INTERVAL: Duration = Duration::from_millis(100);

/// Parses a period or timeout: `0` (off) or at least [`MIN_INTERVAL`].
pub(super) fn interval(value: &str) -> Result<Duration, String> {
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
pub(super) fn jwks_interval(value: &str) -> Result<Duration, String> {
    at_least(value, crate::auth::jwks::MIN_REFETCH_INTERVAL)
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
pub(super) fn workers(value: &str) -> Result<usize, String> {
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
pub(super) fn origin(value: &str) -> Result<String, String> {
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
pub(super) fn directory(value: &str) -> Result<PathBuf, String> {
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
    /// Ed25519 (EdDSA): the key is a PEM public key.
    #[value(name = "EdDSA")]
    EdDSA,
}

/// Which generations of the Mercure protocol the hub speaks (`--protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Protocol {
    /// Mercure 0.x and 1.0 side by side, each request judged by what it uses.
    #[value(name = "both")]
    Both,
    /// Mercure 1.0 only: 0.x tokens, `topic=`, `lastEventID` and tokens in the URL are refused.
    #[value(name = "1.0")]
    V1,
}

/// An absolute `http(s)` URL, kept as written: an issuer id (compared byte for byte with a
/// token's `iss`) or the resource identifier.
pub fn absolute_url(s: &str) -> Result<String, String> {
    match url::Url::parse(s) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {
            Ok(s.to_owned())
        }
        Ok(_) => Err("must be an http:// or https:// URL with a host".into()),
        Err(err) => Err(format!("not an absolute URL: {err}")),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
