//! Where a request's token is read from, and which presentations are refused as malformed
//! (`400 invalid_request`, RFC 6750 §3.1).
//!
//! Order: the `Authorization` header (scheme `Bearer`, any case; it wins and no cookie is then
//! read), else the 0.x `authorization` query parameter, else the 1.0 cookie, else the 0.x
//! cookie. Refused: two `Authorization` headers, a scheme other than `Bearer`, an empty
//! token, and any token in the URL of a request that uses 1.0 parameters or under
//! `--protocol 1.0`. A bare token without scheme is still read in `both` mode, as 0.x hubs did.

use actix_web::{http::header, HttpRequest};

use super::{verifier::Protected, Auth, AuthError, Context};
use crate::config::Protocol;

/// Where a token came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Header,
    Query,
    /// The Mercure 1.0 cookie (`--access-token-cookie`).
    AccessCookie,
    /// The Mercure 0.x cookie (`--cookie-name`).
    LegacyCookie,
}

impl Source {
    /// Whether a browser may have sent it on its own (CSRF).
    #[must_use]
    pub fn is_cookie(self) -> bool {
        matches!(self, Self::AccessCookie | Self::LegacyCookie)
    }
}

/// A token as a request presented it.
#[derive(Debug)]
pub struct Presented {
    pub token: String,
    pub source: Source,
}

impl Auth {
    /// The token of a request, if any; an error for a malformed presentation.
    pub(super) fn presented(
        &self,
        req: &HttpRequest,
        ctx: &Context<'_>,
    ) -> Result<Option<Presented>, AuthError> {
        let v1_only = self.protocol == Protocol::V1;
        if let Some(query) = ctx.query_token {
            if v1_only || ctx.uses_v1 {
                return Err(AuthError::Malformed(
                    "a token must not be sent in the URL (the `authorization` parameter); \
                     use the Authorization header or the cookie",
                ));
            }
            if Protected::of(query).is_ok_and(|h| h.is_access_token()) {
                return Err(AuthError::Malformed(
                    "an access token must not be sent in the URL",
                ));
            }
        }
        let mut headers = req.headers().get_all(header::AUTHORIZATION);
        if let Some(value) = headers.next() {
            if headers.next().is_some() {
                return Err(AuthError::Malformed("more than one Authorization header"));
            }
            let value = value
                .to_str()
                .map_err(|_| AuthError::Malformed("the Authorization header is not ASCII"))?
                .trim();
            let token = match value.split_once(' ') {
                Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
                Some(_) => {
                    return Err(AuthError::Malformed(
                        "the Authorization scheme must be Bearer",
                    ))
                }
                None if value.eq_ignore_ascii_case("bearer") => "",
                // A bare token, as 0.x hubs read it.
                None if !v1_only => value,
                None => {
                    return Err(AuthError::Malformed(
                        "the Authorization scheme must be Bearer",
                    ))
                }
            };
            if token.is_empty() {
                return Err(AuthError::Malformed("the Bearer token is empty"));
            }
            return Ok(Some(Presented {
                token: token.to_owned(),
                source: Source::Header,
            }));
        }
        if let Some(token) = ctx.query_token {
            return Ok(Some(Presented {
                token: token.to_owned(),
                source: Source::Query,
            }));
        }
        if let Some(cookie) = req.cookie(&self.access_token_cookie) {
            return Ok(Some(Presented {
                token: cookie.value().to_owned(),
                source: Source::AccessCookie,
            }));
        }
        if v1_only {
            return Ok(None);
        }
        Ok(req.cookie(&self.cookie_name).map(|c| Presented {
            token: c.value().to_owned(),
            source: Source::LegacyCookie,
        }))
    }

    /// A cookie-authenticated publish must come from an allowed origin (`Origin`, else the
    /// origin of `Referer`).
    pub(super) fn check_origin(&self, req: &HttpRequest) -> Result<(), AuthError> {
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
}
