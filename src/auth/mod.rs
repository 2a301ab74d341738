//! Authorization: JWS tokens carrying the `mercure` claim, as in the Mercure protocol.
//!
//! A token is read from the `Authorization: Bearer` header, else the `authorization` query
//! parameter, else the cookie (`mercureAuthorization` by default), and only from the first of
//! those present. Publisher and subscriber tokens are verified with separate keys: a configured
//! key (`--jwt-key`, …) or the keys of a JWK set ([`crate::auth::jwks`]). The hub understands no JWS
//! extension: a token whose header has `crit` is refused.

pub mod jwks;

use std::{
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use actix_web::{http::header, HttpRequest};
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::{
    auth::jwks::{Jwks, JwksUrl},
    config::{Authorization, JwtAlgorithm, Secret},
    protocol::topic::{Budget, SelectorError, Templates, TopicSelector},
};

/// Why a token was refused (the client is told only "invalid token"; the cause goes to the log).
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("no token")]
    Missing,
    #[error("invalid token: {0}")]
    Invalid(#[from] jsonwebtoken::errors::Error),
    #[error("no key is configured for these tokens")]
    NoKey,
    #[error("no key of the JWK set matches the token's kid")]
    UnknownKey,
    #[error("a cookie token from an origin not allowed to publish")]
    Origin,
    #[error("invalid token: its header has `crit`, and the hub understands no JWS extension")]
    Critical,
}

/// Why a key in the config could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read key file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid {algorithm:?} key: {source}")]
    Parse {
        algorithm: JwtAlgorithm,
        source: jsonwebtoken::errors::Error,
    },
    #[error("--{role}-jwt-key and --{role}-jwks-url are both given: choose one")]
    Conflict { role: &'static str },
    #[error(transparent)]
    CaCert(#[from] crate::auth::jwks::CaCertError),
    #[error("cannot make an HTTP client for {url}: {source}")]
    Client {
        url: JwksUrl,
        source: reqwest::Error,
    },
}

/// The `mercure` claim.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct MercureClaim {
    /// Selectors of the topics the holder may publish to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publish: Option<Vec<String>>,
    /// Selectors of the topics the holder may receive private updates of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscribe: Option<Vec<String>>,
    /// Free-form data kept with the subscription.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<serde_json::Value>,
}

/// The claims the hub reads.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Claims {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mercure: Option<MercureClaim>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
}

impl Claims {
    /// Compiles the selectors of one list of the claim, sharing templates through
    /// `templates` and charging them to `budget`. Selectors that are invalid match nothing
    /// (they are logged, not fatal: the token was signed by someone trusted); going over the
    /// budget or the hub's template memory is an error.
    pub fn selectors(
        &self,
        templates: &Templates,
        budget: &mut Budget,
        pick: fn(&MercureClaim) -> Option<&Vec<String>>,
    ) -> Result<Vec<TopicSelector>, SelectorError> {
        let mut out = Vec::new();
        for s in self.mercure.as_ref().and_then(pick).into_iter().flatten() {
            match templates.selector(s, budget) {
                Ok(selector) => out.push(selector),
                Err(SelectorError::Topic(err)) => {
                    log::warn!("ignoring selector {s:?} of a token: {err}");
                }
                Err(err) => return Err(err),
            }
        }
        Ok(out)
    }

    /// The time left before `exp` plus `leeway` (the skew verification tolerated), if the
    /// token has an `exp`. Saturates: any `exp` a signer chose, `u64::MAX` included, is fine.
    #[must_use]
    pub fn time_left(&self, leeway: Duration) -> Option<Duration> {
        let exp = Duration::from_secs(self.exp?).saturating_add(leeway);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Some(exp.saturating_sub(now))
    }
}

/// The fields of a token's protected header the hub reads itself: jsonwebtoken's `Header` has
/// no `crit`, and ignores it.
#[derive(Debug, Deserialize)]
struct Protected {
    kid: Option<String>,
    /// Whether the header has `crit`, whatever its value (a list of names, empty or not, or
    /// anything else, which is malformed).
    #[serde(default, deserialize_with = "present")]
    crit: bool,
}

fn present<'de, D: serde::Deserializer<'de>>(value: D) -> Result<bool, D::Error> {
    serde::de::IgnoredAny::deserialize(value).map(|_| true)
}

impl Protected {
    /// Reads the header of `token`; one with `crit` is refused: RFC 7515 §4.1.11 makes a token
    /// naming an extension the recipient does not understand invalid, and the hub understands
    /// none.
    fn of(token: &str) -> Result<Self, AuthError> {
        let malformed = || AuthError::Invalid(jsonwebtoken::errors::ErrorKind::InvalidToken.into());
        let encoded = token.split('.').next().unwrap_or_default();
        let json = URL_SAFE_NO_PAD.decode(encoded).map_err(|_| malformed())?;
        let header: Self = serde_json::from_slice(&json).map_err(|_| malformed())?;
        if header.crit {
            return Err(AuthError::Critical);
        }
        Ok(header)
    }
}

/// Verifies tokens with one configured key, or with the key of a JWK set their `kid` names.
#[derive(Clone)]
enum Verifier {
    Key {
        key: DecodingKey,
        validation: Validation,
    },
    Jwks {
        jwks: Arc<Jwks>,
        /// The claim checks; the algorithm is set per key.
        validation: Validation,
    },
}

fn algorithm(alg: JwtAlgorithm) -> Algorithm {
    match alg {
        JwtAlgorithm::HS256 => Algorithm::HS256,
        JwtAlgorithm::RS256 => Algorithm::RS256,
        JwtAlgorithm::ES256 => Algorithm::ES256,
    }
}

/// Reads `@path` keys from their file; anything else is the key itself.
fn key_material(secret: &Secret) -> Result<Vec<u8>, KeyError> {
    match secret.expose().strip_prefix('@') {
        Some(path) => std::fs::read(path).map_err(|source| KeyError::Read {
            path: path.to_owned(),
            source,
        }),
        None => Ok(secret.expose().as_bytes().to_vec()),
    }
}

/// The checks of `config` on a token's claims, for tokens of `alg` only: `alg: none` and
/// algorithm confusion fail.
fn validation(alg: Algorithm, config: &Authorization) -> Validation {
    let mut validation = Validation::new(alg);
    validation.required_spec_claims.clear();
    validation.validate_exp = true;
    validation.validate_nbf = true;
    validation.validate_aud = false;
    validation.leeway = config.jwt_leeway.as_secs();
    // A configured audience or issuer is required, not merely checked when present.
    if !config.jwt_audiences.is_empty() {
        validation.set_audience(&config.jwt_audiences);
        validation.validate_aud = true;
        validation.required_spec_claims.insert("aud".to_owned());
    }
    if !config.jwt_issuers.is_empty() {
        validation.set_issuer(&config.jwt_issuers);
        validation.required_spec_claims.insert("iss".to_owned());
    }
    validation
}

impl Verifier {
    fn new(secret: &Secret, config: &Authorization) -> Result<Self, KeyError> {
        let alg = config.jwt_algorithm;
        let material = key_material(secret)?;
        let parse = |source| KeyError::Parse {
            algorithm: alg,
            source,
        };
        let key = match alg {
            JwtAlgorithm::HS256 => DecodingKey::from_secret(&material),
            JwtAlgorithm::RS256 => DecodingKey::from_rsa_pem(&material).map_err(parse)?,
            JwtAlgorithm::ES256 => DecodingKey::from_ec_pem(&material).map_err(parse)?,
        };
        // Only the configured algorithm is accepted.
        Ok(Self::Key {
            key,
            validation: validation(algorithm(alg), config),
        })
    }

    /// A verifier of a role: its JWK set, else its key; an error if it has both.
    fn for_role(
        role: &'static str,
        url: Option<&JwksUrl>,
        specific_key: Option<&Secret>,
        key: Option<&Secret>,
        ca: &[reqwest::Certificate],
        config: &Authorization,
    ) -> Result<Option<Self>, KeyError> {
        match (url, specific_key) {
            (Some(_), Some(_)) => Err(KeyError::Conflict { role }),
            // The set replaces the shared `--jwt-key` for this role, as a role's own key does.
            (Some(url), None) => {
                let jwks = Jwks::new(url.clone(), ca).map_err(|source| KeyError::Client {
                    url: url.clone(),
                    source,
                })?;
                Ok(Some(Self::Jwks {
                    jwks: Arc::new(jwks),
                    validation: validation(Algorithm::RS256, config),
                }))
            }
            (None, _) => key.map(|k| Self::new(k, config)).transpose(),
        }
    }

    /// Verifies a token. With a JWK set, the header's `kid` picks the key and the header's `alg`
    /// must be that key's algorithm; only an unknown `kid` may wait for the set to be fetched.
    /// A header with `crit` is refused before any of that.
    async fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        let header = Protected::of(token)?;
        match self {
            Self::Key { key, validation } => {
                Ok(jsonwebtoken::decode::<Claims>(token, key, validation)?.claims)
            }
            Self::Jwks { jwks, validation } => {
                let key = jwks
                    .key(header.kid.as_deref())
                    .await
                    .ok_or(AuthError::UnknownKey)?;
                let mut validation = validation.clone();
                validation.algorithms = vec![key.algorithm];
                Ok(jsonwebtoken::decode::<Claims>(token, &key.key, &validation)?.claims)
            }
        }
    }
}

/// The hub's token checks.
#[derive(Clone)]
pub struct Auth {
    publisher: Option<Verifier>,
    subscriber: Option<Verifier>,
    cookie_name: String,
    allow_anonymous: bool,
    publish_origins: Vec<String>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("publisher", &self.publisher.is_some())
            .field("subscriber", &self.subscriber.is_some())
            .field("cookie_name", &self.cookie_name)
            .field("allow_anonymous", &self.allow_anonymous)
            .field("publish_origins", &self.publish_origins)
            .finish()
    }
}

/// Who is subscribing.
#[derive(Debug)]
pub enum Subscriber {
    Anonymous,
    Token(Claims),
}

impl Auth {
    pub fn from_config(config: &Authorization) -> Result<Self, KeyError> {
        let ca = match &config.jwks_ca_cert {
            Some(path) => crate::auth::jwks::ca_certificates(path)?,
            None => Vec::new(),
        };
        Ok(Self {
            publisher: Verifier::for_role(
                "publisher",
                config.publisher_jwks_url.as_ref(),
                config.publisher_jwt_key.as_ref(),
                config.publisher_key(),
                &ca,
                config,
            )?,
            subscriber: Verifier::for_role(
                "subscriber",
                config.subscriber_jwks_url.as_ref(),
                config.subscriber_jwt_key.as_ref(),
                config.subscriber_key(),
                &ca,
                config,
            )?,
            cookie_name: config.cookie_name.clone(),
            allow_anonymous: config.allow_anonymous,
            publish_origins: config.publish_origins.clone(),
        })
    }

    /// Starts fetching the JWK sets of the roles that use one (at once, then every `every`);
    /// abort the tasks to stop.
    pub fn start_jwks(&self, every: Duration) -> Vec<tokio::task::JoinHandle<()>> {
        [&self.publisher, &self.subscriber]
            .into_iter()
            .filter_map(|v| match v {
                Some(Verifier::Jwks { jwks, .. }) => Some(jwks.start(every)),
                _ => None,
            })
            .collect()
    }

    /// The token of a request: header, else query parameter, else cookie; and whether it
    /// came from the cookie.
    fn token(&self, req: &HttpRequest, query_token: Option<&str>) -> Option<(String, bool)> {
        if let Some(value) = req.headers().get(header::AUTHORIZATION) {
            let value = value.to_str().unwrap_or_default();
            let token = value.strip_prefix("Bearer ").unwrap_or(value).trim();
            return Some((token.to_owned(), false));
        }
        if let Some(token) = query_token {
            return Some((token.to_owned(), false));
        }
        req.cookie(&self.cookie_name)
            .map(|c| (c.value().to_owned(), true))
    }

    /// Checks a publisher: it must present a valid publisher token, and a token sent as a
    /// cookie counts only from an allowed `Origin` (else any page could make a logged-in
    /// browser publish). Returns the claims and the token's signature, which keys rate limits.
    pub async fn publisher(
        &self,
        req: &HttpRequest,
        query_token: Option<&str>,
    ) -> Result<(Claims, String), AuthError> {
        let verifier = self.publisher.as_ref().ok_or(AuthError::NoKey)?;
        let (token, from_cookie) = self.token(req, query_token).ok_or(AuthError::Missing)?;
        if from_cookie {
            self.check_origin(req)?;
        }
        let claims = verifier.verify(&token).await?;
        if let Some(sub) = &claims.sub {
            log::debug!("publisher token of {sub:?} accepted");
        }
        let signature = token.rsplit('.').next().unwrap_or_default().to_owned();
        Ok((claims, signature))
    }

    /// A cookie-authenticated publish must come from an allowed origin (`Origin`, else the
    /// origin of `Referer`).
    fn check_origin(&self, req: &HttpRequest) -> Result<(), AuthError> {
        let headers = req.headers();
        let origin = headers
            .get(header::ORIGIN)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .or_else(|| {
                let referer = headers.get(header::REFERER)?.to_str().ok()?;
                let (scheme, rest) = referer.split_once("://")?;
                let host = rest.split('/').next()?;
                Some(format!("{scheme}://{host}"))
            })
            .ok_or(AuthError::Origin)?;
        let allowed = self
            .publish_origins
            .iter()
            .any(|o| o == "*" || o.eq_ignore_ascii_case(&origin));
        if allowed {
            Ok(())
        } else {
            Err(AuthError::Origin)
        }
    }

    /// Checks a subscriber: a token, when present, must be valid; without one, the subscriber
    /// is anonymous if `--allow-anonymous` is set and refused otherwise.
    pub async fn subscriber(
        &self,
        req: &HttpRequest,
        query_token: Option<&str>,
    ) -> Result<Subscriber, AuthError> {
        match self.token(req, query_token) {
            None if self.allow_anonymous => Ok(Subscriber::Anonymous),
            None => Err(AuthError::Missing),
            Some((token, _)) => {
                let verifier = self.subscriber.as_ref().ok_or(AuthError::NoKey)?;
                verifier.verify(&token).await.map(Subscriber::Token)
            }
        }
    }
}

/// Signs `claims` with an HS256 secret (for `sse-hub token`).
pub fn sign_hs256(claims: &Claims, secret: &Secret) -> Result<String, KeyError> {
    let material = key_material(secret)?;
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(&material),
    )
    .map_err(|source| KeyError::Parse {
        algorithm: JwtAlgorithm::HS256,
        source,
    })
}

/// Seconds since the Unix epoch, `ttl` from now.
#[must_use]
pub fn expiry_in(ttl: Duration) -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .saturating_add(ttl)
        .as_secs()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: u64) -> Claims {
        Claims {
            exp: Some(exp),
            ..Claims::default()
        }
    }

    #[test]
    fn a_header_with_crit_is_refused_whatever_its_value() {
        let token = |header: &str| format!("{}.e30.sig", URL_SAFE_NO_PAD.encode(header));
        let kid = Protected::of(&token(r#"{"alg":"ES256","kid":"k1"}"#)).unwrap();
        assert_eq!(kid.kid.as_deref(), Some("k1"));
        assert!(Protected::of(&token(r#"{"alg":"HS256"}"#)).is_ok());
        for crit in [r#"["exp2"]"#, "[]", r#""exp2""#, "null", "{}"] {
            let header = format!(r#"{{"alg":"HS256","crit":{crit}}}"#);
            assert!(
                matches!(Protected::of(&token(&header)), Err(AuthError::Critical)),
                "{header}"
            );
        }
        for garbage in ["", "not base64!", "bm90IGpzb24"] {
            assert!(
                matches!(Protected::of(garbage), Err(AuthError::Invalid(_))),
                "{garbage:?}"
            );
        }
    }

    #[test]
    fn time_left_saturates_and_counts_the_leeway() {
        let far = claims(u64::MAX).time_left(Duration::from_secs(60));
        assert!(far.is_some_and(|left| left > Duration::from_secs(1 << 40)));
        let now = expiry_in(Duration::ZERO);
        assert_eq!(
            claims(now - 20).time_left(Duration::ZERO),
            Some(Duration::ZERO)
        );
        let lenient = claims(now - 20).time_left(Duration::from_secs(60));
        assert!(lenient.is_some_and(|left| left > Duration::from_secs(30)));
        assert_eq!(Claims::default().time_left(Duration::from_secs(60)), None);
        assert!(expiry_in(Duration::MAX) > now);
    }
}
