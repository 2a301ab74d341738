//! Signature and claim checks of one role's tokens: one configured key, or the keys of a JWK
//! set picked by `kid`. The algorithm always comes from the key, never from the token, so
//! `alg: none` and HS/RS confusion fail.

use std::sync::Arc;

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use super::{
    jwks::{Jwks, JwksUrl},
    AuthError, Claims, KeyError,
};
use crate::config::{JwtAlgorithm, Secret};

/// The fields of a token's protected header the hub reads itself: jsonwebtoken's `Header` has
/// no `crit`, and ignores it.
#[derive(Debug, Deserialize)]
pub(super) struct Protected {
    pub(super) kid: Option<String>,
    /// The media type: `at+jwt` makes a Mercure 1.0 access token (RFC 9068).
    pub(super) typ: Option<String>,
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
    pub(super) fn of(token: &str) -> Result<Self, AuthError> {
        let encoded = token.split('.').next().unwrap_or_default();
        let json = URL_SAFE_NO_PAD.decode(encoded).map_err(|_| malformed())?;
        let header: Self = serde_json::from_slice(&json).map_err(|_| malformed())?;
        if header.crit {
            return Err(AuthError::Critical);
        }
        Ok(header)
    }

    /// Whether `typ` is `at+jwt` (ASCII case-insensitive, `application/` optional, RFC 9068 §4).
    pub(super) fn is_access_token(&self) -> bool {
        self.typ.as_deref().is_some_and(|typ| {
            let lower = typ.to_ascii_lowercase();
            lower.strip_prefix("application/").unwrap_or(&lower) == "at+jwt"
        })
    }
}

/// The error of a token that is not even a JWS.
pub(super) fn malformed() -> AuthError {
    AuthError::Invalid(jsonwebtoken::errors::ErrorKind::InvalidToken.into())
}

/// The `iss` of a token, read before its signature is checked: it picks the keys that check
/// it. Whatever it says, only the keys of the issuer it names can make the token valid.
pub(super) fn unverified_issuer(token: &str) -> Result<String, AuthError> {
    #[derive(Deserialize)]
    struct Iss {
        iss: Option<serde_json::Value>,
    }
    let encoded = token.split('.').nth(1).ok_or_else(malformed)?;
    let json = URL_SAFE_NO_PAD.decode(encoded).map_err(|_| malformed())?;
    let claims: Iss = serde_json::from_slice(&json).map_err(|_| malformed())?;
    match claims.iss {
        Some(serde_json::Value::String(iss)) => Ok(iss),
        _ => Err(AuthError::Issuer),
    }
}

/// The key of a configured algorithm.
pub(super) fn algorithm(alg: JwtAlgorithm) -> Algorithm {
    match alg {
        JwtAlgorithm::HS256 => Algorithm::HS256,
        JwtAlgorithm::RS256 => Algorithm::RS256,
        JwtAlgorithm::ES256 => Algorithm::ES256,
        JwtAlgorithm::EdDSA => Algorithm::EdDSA,
    }
}

/// Reads `@path` keys from their file; anything else is the key itself.
pub(super) fn key_material(secret: &Secret) -> Result<Vec<u8>, KeyError> {
    match secret.expose().strip_prefix('@') {
        Some(path) => std::fs::read(path).map_err(|source| KeyError::Read {
            path: path.to_owned(),
            source,
        }),
        None => Ok(secret.expose().as_bytes().to_vec()),
    }
}

/// Where a verifier's keys come from.
#[derive(Clone)]
pub(super) enum Keys {
    Key { key: DecodingKey, alg: Algorithm },
    Jwks(Arc<Jwks>),
}

/// Verifies one role's tokens with its keys; the claim checks are the caller's.
#[derive(Clone)]
pub(super) struct Verifier {
    pub(super) keys: Keys,
}

impl Verifier {
    fn new(secret: &Secret, alg: JwtAlgorithm) -> Result<Self, KeyError> {
        let material = key_material(secret)?;
        let parse = |source| KeyError::Parse {
            algorithm: alg,
            source,
        };
        let key = match alg {
            JwtAlgorithm::HS256 => DecodingKey::from_secret(&material),
            JwtAlgorithm::RS256 => DecodingKey::from_rsa_pem(&material).map_err(parse)?,
            JwtAlgorithm::ES256 => DecodingKey::from_ec_pem(&material).map_err(parse)?,
            JwtAlgorithm::EdDSA => DecodingKey::from_ed_pem(&material).map_err(parse)?,
        };
        Ok(Self {
            keys: Keys::Key {
                key,
                alg: algorithm(alg),
            },
        })
    }

    /// A verifier of a role: its JWK set, else its key; an error if it has both.
    pub(super) fn for_role(
        role: &'static str,
        url: Option<&JwksUrl>,
        specific_key: Option<&Secret>,
        key: Option<&Secret>,
        alg: JwtAlgorithm,
        ca: &[reqwest::Certificate],
    ) -> Result<Option<Self>, KeyError> {
        match (url, specific_key) {
            (Some(_), Some(_)) => Err(KeyError::Conflict { role }),
            // The set replaces the shared `--jwt-key` for this role, as a role's own key does.
            (Some(url), None) => {
                let jwks = Jwks::new(url.clone(), ca).map_err(|source| KeyError::Client {
                    url: url.clone(),
                    source,
                })?;
                Ok(Some(Self {
                    keys: Keys::Jwks(Arc::new(jwks)),
                }))
            }
            (None, _) => key.map(|k| Self::new(k, alg)).transpose(),
        }
    }

    /// Verifies a token against `checks` (its claim checks; the algorithm is the key's). With a
    /// JWK set, the header's `kid` picks the key and the header's `alg` must be that key's
    /// algorithm; only an unknown `kid` may wait for the set to be fetched.
    pub(super) async fn verify(
        &self,
        token: &str,
        header: &Protected,
        checks: &Validation,
    ) -> Result<Claims, AuthError> {
        let mut validation = checks.clone();
        match &self.keys {
            Keys::Key { key, alg } => {
                validation.algorithms = vec![*alg];
                Ok(jsonwebtoken::decode::<Claims>(token, key, &validation)?.claims)
            }
            Keys::Jwks(jwks) => {
                let key = jwks
                    .key(header.kid.as_deref())
                    .await
                    .ok_or(AuthError::UnknownKey)?;
                validation.algorithms = vec![key.algorithm];
                Ok(jsonwebtoken::decode::<Claims>(token, &key.key, &validation)?.claims)
            }
        }
    }

    /// The JWK set of this verifier, if it uses one.
    pub(super) fn jwks(&self) -> Option<&Arc<Jwks>> {
        match &self.keys {
            Keys::Jwks(jwks) => Some(jwks),
            Keys::Key { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn only_at_jwt_makes_an_access_token() {
        let typ = |t: &str| {
            let header = format!(r#"{{"alg":"HS256","typ":{t}}}"#);
            Protected::of(&format!("{}.e30.sig", URL_SAFE_NO_PAD.encode(header)))
                .unwrap()
                .is_access_token()
        };
        for yes in [
            r#""at+jwt""#,
            r#""AT+JWT""#,
            r#""application/at+jwt""#,
            r#""Application/At+JWT""#,
        ] {
            assert!(typ(yes), "{yes}");
        }
        for no in [
            r#""JWT""#,
            "null",
            r#""at+jwt2""#,
            r#""text/at+jwt""#,
            r#""application/""#,
        ] {
            assert!(!typ(no), "{no}");
        }
    }

    #[test]
    fn the_issuer_is_read_only_when_it_is_a_string() {
        let token = |claims: &str| format!("e30.{}.sig", URL_SAFE_NO_PAD.encode(claims));
        assert_eq!(
            unverified_issuer(&token(r#"{"iss":"https://a"}"#)).unwrap(),
            "https://a"
        );
        for bad in [r"{}", r#"{"iss":1}"#, r#"{"iss":["https://a"]}"#] {
            assert!(
                matches!(unverified_issuer(&token(bad)), Err(AuthError::Issuer)),
                "{bad}"
            );
        }
        assert!(matches!(
            unverified_issuer("e30"),
            Err(AuthError::Invalid(_))
        ));
    }
}
