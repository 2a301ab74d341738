//! Minting tokens for `sse-hub token`: Mercure 1.0 JWT access tokens (RFC 9068, `typ: at+jwt`,
//! rights in `authorization_details`), or 0.x tokens with the `mercure` claim on request.
//!
//! A 1.0 token carries every claim RFC 9068 asks its issuer to fill in (`iss`, `exp`, `aud`,
//! `sub`, `client_id`, `iat`, `jti`), so any RFC 9068 validator accepts it; the hub itself
//! checks `typ`, `iss`, `aud`, `exp` and the details.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Map, Value};

use crate::auth::{verifier::key_material, KeyError, DETAIL_TYPE};
use crate::config::{JwtAlgorithm, Secret};

/// One topic matcher of a detail: `{"match": …, "match_type": …}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub matcher: String,
    /// `exact` or `urlpattern`.
    pub match_type: &'static str,
}

impl Grant {
    #[must_use]
    pub fn exact(matcher: &str) -> Self {
        Self {
            matcher: matcher.to_owned(),
            match_type: "exact",
        }
    }

    #[must_use]
    pub fn url_pattern(matcher: &str) -> Self {
        Self {
            matcher: matcher.to_owned(),
            match_type: "urlpattern",
        }
    }

    fn to_json(&self) -> Value {
        json!({"match": self.matcher, "match_type": self.match_type})
    }
}

/// What a 1.0 access token says.
#[derive(Debug, Clone)]
pub struct AccessToken {
    /// `iss`: the issuer id the hub binds to the signing key (`--issuer`).
    pub issuer: String,
    /// `aud`: the hub's resource identifier.
    pub audience: String,
    /// `sub`: who holds the token; a fresh `urn:uuid:` when not given.
    pub subject: Option<String>,
    /// Seconds since the Unix epoch; RFC 9068 makes `exp` mandatory.
    pub expires: u64,
    pub publish: Vec<Grant>,
    pub subscribe: Vec<Grant>,
    /// Kept with the subscriptions the subscribe detail covers (a JSON object).
    pub payload: Option<Map<String, Value>>,
}

/// Why a token can't be minted.
#[derive(Debug, thiserror::Error)]
pub enum MintError {
    #[error(
        "a token without rights grants nothing: give at least one topic to publish or subscribe to"
    )]
    NoRights,
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("cannot sign the token: {0}")]
    Sign(#[from] jsonwebtoken::errors::Error),
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

impl AccessToken {
    /// The claims, in the order RFC 9068 lists them.
    #[must_use]
    pub fn claims(&self) -> Value {
        let urn = || format!("urn:uuid:{}", uuid::Uuid::new_v4());
        let mut details = Vec::new();
        if !self.publish.is_empty() {
            details.push(json!({
                "type": DETAIL_TYPE,
                "actions": ["publish"],
                "topics": self.publish.iter().map(Grant::to_json).collect::<Vec<_>>(),
            }));
        }
        if !self.subscribe.is_empty() {
            let mut detail = json!({
                "type": DETAIL_TYPE,
                "actions": ["subscribe"],
                "topics": self.subscribe.iter().map(Grant::to_json).collect::<Vec<_>>(),
            });
            if let (Some(payload), Some(map)) = (&self.payload, detail.as_object_mut()) {
                map.insert("payload".to_owned(), Value::Object(payload.clone()));
            }
            details.push(detail);
        }
        json!({
            "iss": self.issuer,
            "aud": self.audience,
            "sub": self.subject.clone().unwrap_or_else(urn),
            "client_id": self.issuer,
            "iat": now(),
            "exp": self.expires,
            "jti": urn(),
            "authorization_details": details,
        })
    }

    /// Signs the token with an HS256 secret, with the header `{"alg": "HS256", "typ":
    /// "at+jwt"}`.
    pub fn sign_hs256(&self, secret: &Secret) -> Result<String, MintError> {
        if self.publish.is_empty() && self.subscribe.is_empty() {
            return Err(MintError::NoRights);
        }
        let material = key_material(secret)?;
        let mut header = Header::new(Algorithm::HS256);
        header.typ = Some("at+jwt".to_owned());
        let token = jsonwebtoken::encode(
            &header,
            &self.claims(),
            &EncodingKey::from_secret(&material),
        )
        .map_err(|source| KeyError::Parse {
            algorithm: JwtAlgorithm::HS256,
            source,
        })?;
        Ok(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token() -> AccessToken {
        AccessToken {
            issuer: "https://issuer.example".into(),
            audience: "https://hub.example/.well-known/mercure".into(),
            subject: None,
            expires: now() + 60,
            publish: vec![Grant::exact("*")],
            subscribe: vec![Grant::url_pattern("/books/:id")],
            payload: serde_json::from_str(r#"{"tenant":"a"}"#).ok(),
        }
    }

    #[test]
    fn an_access_token_carries_every_claim_rfc_9068_asks_for() {
        let claims = token().claims();
        for name in ["iss", "aud", "sub", "client_id", "iat", "exp", "jti"] {
            assert!(claims.get(name).is_some(), "{name} missing: {claims}");
        }
        let details = claims["authorization_details"].as_array().unwrap();
        assert_eq!(details.len(), 2);
        assert_eq!(details[0]["actions"], json!(["publish"]));
        assert_eq!(
            details[1]["topics"],
            json!([{"match": "/books/:id", "match_type": "urlpattern"}])
        );
        assert_eq!(details[1]["payload"], json!({"tenant": "a"}));
        assert!(details.iter().all(|d| d["type"] == DETAIL_TYPE));
    }

    #[test]
    fn the_header_says_at_jwt_and_the_signature_verifies() {
        let secret: Secret = "k".parse().unwrap();
        let signed = token().sign_hs256(&secret).unwrap();
        let header = jsonwebtoken::decode_header(&signed).unwrap();
        assert_eq!(header.typ.as_deref(), Some("at+jwt"));
        let mut validation = jsonwebtoken::Validation::new(Algorithm::HS256);
        validation.set_audience(&["https://hub.example/.well-known/mercure"]);
        validation.set_issuer(&["https://issuer.example"]);
        let decoded = jsonwebtoken::decode::<Value>(
            &signed,
            &jsonwebtoken::DecodingKey::from_secret(b"k"),
            &validation,
        )
        .unwrap();
        assert_eq!(decoded.claims["client_id"], "https://issuer.example");
    }

    #[test]
    fn a_token_without_rights_is_not_minted() {
        let secret: Secret = "k".parse().unwrap();
        let empty = AccessToken {
            publish: Vec::new(),
            subscribe: Vec::new(),
            ..token()
        };
        assert!(matches!(
            empty.sign_hs256(&secret),
            Err(MintError::NoRights)
        ));
    }
}
