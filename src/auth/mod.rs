//! Authorization: Mercure 0.x tokens (the `mercure` claim) and Mercure 1.0 access tokens
//! (`typ: at+jwt`, RFC 9068, with `authorization_details`), side by side on one hub; each
//! request is judged by the token it presents ([`Grants`] is what either grants).
//!
//! A token is read from the `Authorization: Bearer` header (which wins: no cookie is then
//! read), else the 0.x `authorization` query parameter, else the 1.0 cookie
//! (`--access-token-cookie`), else the 0.x cookie (`--cookie-name`). A 1.0 token is verified
//! only with the keys of the issuer its `iss` names, and must be for this hub (`aud`); a 0.x
//! token with the hub's keys, as before. The hub understands no JWS extension: a token whose
//! header has `crit` is refused.

mod details;
mod grants;
pub mod jwks;
pub mod mint;
mod presentation;
mod verifier;

use std::{
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use actix_web::HttpRequest;
use jsonwebtoken::{Algorithm, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use url::Url;

pub use details::{Detail, DetailsError, DETAIL_TYPE, MAX_DETAILS};
pub use grants::Grants;
pub use presentation::{Presented, Source};

use crate::{
    auth::{jwks::JwksUrl, verifier::Verifier},
    config::{Authorization, IssuerSettings, JwtAlgorithm, Protocol, Secret},
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
    #[error("invalid access token: its `iss` is missing, not a string, or no configured issuer")]
    Issuer,
    #[error("invalid access token: the hub's resource identifier is unknown (invalid Host)")]
    Audience,
    #[error("invalid access token: its issuer has no key for this role")]
    IssuerRole,
    #[error("invalid token: a Mercure 0.x token, and --protocol is 1.0")]
    Legacy,
    #[error("invalid access token: {0}")]
    Details(#[from] DetailsError),
    #[error("invalid access token: a topic matcher of its authorization_details: {0}")]
    Matchers(SelectorError),
    /// A 0.x token's selectors over the request's budget or the hub's template memory.
    #[error(transparent)]
    Selectors(SelectorError),
    /// The token was presented in a way the protocol forbids (`400 invalid_request`).
    #[error("{0}")]
    Malformed(&'static str),
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
    #[error("issuer {id}: {source}")]
    Issuer { id: String, source: Box<KeyError> },
    #[error("issuer {0} is configured twice")]
    DuplicateIssuer(String),
    #[error("issuer {0} has no key: give it jwt_key, a role's key or a role's JWK set")]
    IssuerWithoutKey(String),
    #[error(transparent)]
    CaCert(#[from] crate::auth::jwks::CaCertError),
    #[error("cannot make an HTTP client for {url}: {source}")]
    Client {
        url: JwksUrl,
        source: reqwest::Error,
    },
}

/// The `mercure` claim of a 0.x token.
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

/// The claims the hub reads, of either generation (a 1.0 token's `mercure` claim and a 0.x
/// token's `authorization_details` are ignored).
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Claims {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mercure: Option<MercureClaim>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// RFC 9396 details of a 1.0 access token, read by [`details`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_details: Option<serde_json::Value>,
}

impl Claims {
    /// Compiles the selectors of one list of the `mercure` claim, sharing templates through
    /// `templates` and charging them to `budget`. Selectors that are invalid match nothing
    /// (logged); going over the budget or the hub's template memory is an error.
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
        grants::time_left(self.exp?, leeway)
    }
}

/// The hub's resource identifier for one request: the `aud` 1.0 tokens must hold, and the base
/// of their relative URL patterns.
#[derive(Debug, Clone)]
pub struct Resource {
    /// As configured (`--resource-identifier`) or derived; compared byte for byte with `aud`.
    pub id: String,
    /// The same, parsed.
    pub url: Arc<Url>,
}

impl Resource {
    /// The URL of its protected resource metadata (RFC 9728 §3): the well-known path inserted
    /// between the host and the resource's path.
    #[must_use]
    pub fn metadata_url(&self) -> String {
        let origin = self.url.origin().ascii_serialization();
        let path = self.url.path().trim_end_matches('/');
        format!("{origin}/.well-known/oauth-protected-resource{path}")
    }
}

/// What the hub needs of a request to judge its token.
#[derive(Debug)]
pub struct Context<'a> {
    /// The `authorization` query parameter.
    pub query_token: Option<&'a str>,
    /// Whether the request uses Mercure 1.0 parameters (`match*`): no token in its URL then.
    pub uses_v1: bool,
    /// The resource identifier; `None` when it can't be derived (1.0 tokens then fail).
    pub resource: Option<Resource>,
    /// Compiles the token's selectors and matchers.
    pub templates: &'a Templates,
}

/// A trusted issuer of 1.0 access tokens and its keys.
#[derive(Clone)]
struct Issuer {
    id: String,
    publisher: Option<Verifier>,
    subscriber: Option<Verifier>,
    authorization_server: bool,
}

/// Which role a token is checked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Publisher,
    Subscriber,
}

/// The hub's token checks.
#[derive(Clone)]
pub struct Auth {
    /// 0.x verifiers, with the 0.x claim checks (`--jwt-issuer`, `--jwt-audience`).
    publisher: Option<Verifier>,
    subscriber: Option<Verifier>,
    legacy_checks: Validation,
    issuers: Vec<Issuer>,
    leeway: u64,
    resource_identifier: Option<String>,
    cookie_name: String,
    access_token_cookie: String,
    allow_anonymous: bool,
    publish_origins: Vec<String>,
    protocol: Protocol,
    max_matchers: usize,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("publisher", &self.publisher.is_some())
            .field("subscriber", &self.subscriber.is_some())
            .field(
                "issuers",
                &self.issuers.iter().map(|i| &i.id).collect::<Vec<_>>(),
            )
            .field("cookie_name", &self.cookie_name)
            .field("access_token_cookie", &self.access_token_cookie)
            .field("allow_anonymous", &self.allow_anonymous)
            .field("publish_origins", &self.publish_origins)
            .field("protocol", &self.protocol)
            .finish_non_exhaustive()
    }
}

/// Who is subscribing.
#[derive(Debug)]
pub enum Subscriber {
    Anonymous,
    Token(Grants),
}

/// The 0.x checks of `config` on a token's claims (the algorithm is set from the key).
fn legacy_checks(config: &Authorization) -> Validation {
    let mut validation = Validation::new(Algorithm::HS256);
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

impl Issuer {
    fn from_settings(s: &IssuerSettings, ca: &[reqwest::Certificate]) -> Result<Self, KeyError> {
        let wrap = |source| KeyError::Issuer {
            id: s.id.clone(),
            source: Box::new(source),
        };
        let publisher = Verifier::for_role(
            "publisher",
            s.publisher_jwks_url.as_ref(),
            s.publisher_jwt_key.as_ref(),
            s.publisher_key(),
            s.jwt_algorithm,
            ca,
        )
        .map_err(wrap)?;
        let subscriber = Verifier::for_role(
            "subscriber",
            s.subscriber_jwks_url.as_ref(),
            s.subscriber_jwt_key.as_ref(),
            s.subscriber_key(),
            s.jwt_algorithm,
            ca,
        )
        .map_err(wrap)?;
        if publisher.is_none() && subscriber.is_none() {
            return Err(KeyError::IssuerWithoutKey(s.id.clone()));
        }
        Ok(Self {
            id: s.id.clone(),
            publisher,
            subscriber,
            authorization_server: s.authorization_server,
        })
    }

    fn verifier(&self, role: Role) -> Option<&Verifier> {
        match role {
            Role::Publisher => self.publisher.as_ref(),
            Role::Subscriber => self.subscriber.as_ref(),
        }
    }
}

impl Auth {
    /// The checks of `config`; `protocol` says whether 0.x tokens are accepted, `max_matchers`
    /// (`--max-topics`) bounds the matchers of a 1.0 token. Refuses duplicate issuers, an
    /// issuer without a key, and a key beside a JWK set for one role.
    pub fn from_config(
        config: &Authorization,
        protocol: Protocol,
        max_matchers: usize,
    ) -> Result<Self, KeyError> {
        let ca = match &config.jwks_ca_cert {
            Some(path) => crate::auth::jwks::ca_certificates(path)?,
            None => Vec::new(),
        };
        let publisher = Verifier::for_role(
            "publisher",
            config.publisher_jwks_url.as_ref(),
            config.publisher_jwt_key.as_ref(),
            config.publisher_key(),
            config.jwt_algorithm,
            &ca,
        )?;
        let subscriber = Verifier::for_role(
            "subscriber",
            config.subscriber_jwks_url.as_ref(),
            config.subscriber_jwt_key.as_ref(),
            config.subscriber_key(),
            config.jwt_algorithm,
            &ca,
        )?;
        let mut issuers: Vec<Issuer> = Vec::new();
        if let Some(id) = &config.issuer {
            // The flags' issuer shares their verifiers (and so their JWK set fetches).
            if publisher.is_none() && subscriber.is_none() {
                return Err(KeyError::IssuerWithoutKey(id.clone()));
            }
            issuers.push(Issuer {
                id: id.clone(),
                publisher: publisher.clone(),
                subscriber: subscriber.clone(),
                authorization_server: false,
            });
        }
        for settings in &config.issuers {
            if issuers.iter().any(|i| i.id == settings.id) {
                return Err(KeyError::DuplicateIssuer(settings.id.clone()));
            }
            issuers.push(Issuer::from_settings(settings, &ca)?);
        }
        Ok(Self {
            publisher,
            subscriber,
            legacy_checks: legacy_checks(config),
            issuers,
            leeway: config.jwt_leeway.as_secs(),
            resource_identifier: config.resource_identifier.clone(),
            cookie_name: config.cookie_name.clone(),
            access_token_cookie: config.access_token_cookie.clone(),
            allow_anonymous: config.allow_anonymous,
            publish_origins: config.publish_origins.clone(),
            protocol,
            max_matchers,
        })
    }

    /// Whether some key could verify publisher tokens (0.x or of an issuer).
    #[must_use]
    pub fn can_publish(&self) -> bool {
        self.publisher.is_some() || self.issuers.iter().any(|i| i.publisher.is_some())
    }

    /// The configured resource identifier (`--resource-identifier`), if any.
    #[must_use]
    pub fn resource_identifier(&self) -> Option<&str> {
        self.resource_identifier.as_deref()
    }

    /// The ids of the issuers to advertise as authorization servers.
    pub fn authorization_servers(&self) -> impl Iterator<Item = &str> {
        self.issuers
            .iter()
            .filter(|i| i.authorization_server)
            .map(|i| i.id.as_str())
    }

    /// The name of the 1.0 access token cookie.
    #[must_use]
    pub fn access_token_cookie(&self) -> &str {
        &self.access_token_cookie
    }

    /// Starts fetching every JWK set in use (at once, then every `every`), each once even when
    /// several roles or issuers share it; abort the tasks to stop.
    pub fn start_jwks(&self, every: Duration) -> Vec<tokio::task::JoinHandle<()>> {
        let mut sets: Vec<&Arc<jwks::Jwks>> = Vec::new();
        let all = [&self.publisher, &self.subscriber].into_iter().chain(
            self.issuers
                .iter()
                .flat_map(|i| [&i.publisher, &i.subscriber]),
        );
        for set in all.flatten().filter_map(Verifier::jwks) {
            if !sets.iter().any(|s| Arc::ptr_eq(s, set)) {
                sets.push(set);
            }
        }
        sets.into_iter().map(|set| set.start(every)).collect()
    }

    /// Verifies `presented` for `role`, as a 1.0 access token or a 0.x token by its `typ`, and
    /// compiles what it grants (charged to `budget`).
    async fn grants(
        &self,
        presented: &Presented,
        role: Role,
        ctx: &Context<'_>,
        budget: &mut Budget,
    ) -> Result<Grants, AuthError> {
        let token = presented.token.as_str();
        let header = verifier::Protected::of(token)?;
        if header.is_access_token() {
            if presented.source == Source::Query {
                return Err(AuthError::Malformed(
                    "an access token must not be sent in the URL",
                ));
            }
            let resource = ctx.resource.as_ref().ok_or(AuthError::Audience)?;
            let iss = verifier::unverified_issuer(token)?;
            let issuer = self
                .issuers
                .iter()
                .find(|i| i.id == iss)
                .ok_or(AuthError::Issuer)?;
            let verifier = issuer.verifier(role).ok_or(AuthError::IssuerRole)?;
            let mut checks = Validation::new(Algorithm::HS256);
            checks.required_spec_claims = ["exp", "iss", "aud"]
                .map(str::to_owned)
                .into_iter()
                .collect();
            checks.validate_exp = true;
            checks.validate_nbf = true;
            checks.leeway = self.leeway;
            checks.set_issuer(&[&issuer.id]);
            checks.set_audience(&[&resource.id]);
            let claims = verifier.verify(token, &header, &checks).await?;
            let base = &resource.url;
            return Grants::access(&claims, ctx.templates, base, budget, self.max_matchers);
        }
        if self.protocol == Protocol::V1 {
            return Err(AuthError::Legacy);
        }
        let verifier = match role {
            Role::Publisher => self.publisher.as_ref(),
            Role::Subscriber => self.subscriber.as_ref(),
        }
        .ok_or(AuthError::NoKey)?;
        let claims = verifier.verify(token, &header, &self.legacy_checks).await?;
        Grants::legacy(&claims, ctx.templates, budget).map_err(AuthError::Selectors)
    }

    /// Checks a publisher: it must present a valid publisher token, and a token sent as a
    /// cookie counts only from an allowed `Origin` (else any page could make a logged-in
    /// browser publish). Returns the grants and the token's signature, which keys rate limits.
    pub async fn publisher(
        &self,
        req: &HttpRequest,
        ctx: &Context<'_>,
    ) -> Result<(Grants, String), AuthError> {
        let presented = self.presented(req, ctx)?.ok_or(AuthError::Missing)?;
        if presented.source.is_cookie() {
            self.check_origin(req)?;
        }
        let grants = self
            .grants(&presented, Role::Publisher, ctx, &mut Budget::default())
            .await?;
        let signature = presented.token.rsplit('.').next().unwrap_or_default();
        Ok((grants, signature.to_owned()))
    }

    /// Checks a subscriber: a token, when present, must be valid; without one, the subscriber
    /// is anonymous if `--allow-anonymous` is set and refused otherwise. The token's matchers
    /// are charged to `budget`, the request's.
    pub async fn subscriber(
        &self,
        req: &HttpRequest,
        ctx: &Context<'_>,
        budget: &mut Budget,
    ) -> Result<Subscriber, AuthError> {
        match self.presented(req, ctx)? {
            None if self.allow_anonymous => Ok(Subscriber::Anonymous),
            None => Err(AuthError::Missing),
            Some(presented) => self
                .grants(&presented, Role::Subscriber, ctx, budget)
                .await
                .map(Subscriber::Token),
        }
    }
}

/// Signs `claims` with an HS256 secret (for `sse-hub token`).
pub fn sign_hs256(claims: &Claims, secret: &Secret) -> Result<String, KeyError> {
    let material = verifier::key_material(secret)?;
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

    #[test]
    fn the_metadata_url_inserts_the_well_known_path() {
        let resource = |id: &str| Resource {
            id: id.to_owned(),
            url: Arc::new(Url::parse(id).unwrap()),
        };
        assert_eq!(
            resource("https://hub.example/.well-known/mercure").metadata_url(),
            "https://hub.example/.well-known/oauth-protected-resource/.well-known/mercure"
        );
        assert_eq!(
            resource("https://hub.example:8443").metadata_url(),
            "https://hub.example:8443/.well-known/oauth-protected-resource"
        );
    }
}
