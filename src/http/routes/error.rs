//! The HTTP boundary's error: each variant is one status with a one-line reason for the client.

use actix_web::{
    http::{header, StatusCode},
    HttpResponse, ResponseError,
};

use crate::{
    fanout::admission::Refused,
    fanout::broadcaster::{PublishRefused, SubscribeRefused},
    protocol::topic::{MatcherError, SelectorError},
    protocol::update::EventId,
    protocol::url_pattern::PatternError,
};

/// Seconds a client is asked to wait before retrying a 503.
const RETRY_AFTER_SECS: u32 = 5;

/// Seconds a publisher is asked to wait when the fan-out is behind: it drains in well under
/// a second once publishers pause, so the shortest wait the header can say.
const OVERLOAD_RETRY_AFTER_SECS: u32 = 1;

/// Response header of a publish answered `503` by the transport or because the fan-out is
/// behind: the id the update was given. Redis may have stored it before failing to answer, so
/// the client's only safe retry is one with `id=` this value, which is delivered once whether
/// or not the first attempt landed.
pub const UPDATE_ID_HEADER: &str = "Mercure-Update-Id";

/// The `WWW-Authenticate: Bearer` challenge of a refusal (RFC 6750 §3, RFC 9728 §5.1): the
/// error code, if any, and where the hub's protected resource metadata is.
#[derive(Debug, Clone, Default)]
pub struct Challenge {
    /// `invalid_token`, `insufficient_scope` or `invalid_request`; none when no token was sent.
    pub error: Option<&'static str>,
    /// The metadata URL; none when the hub's resource identifier can't be told.
    pub resource_metadata: Option<String>,
}

impl Challenge {
    /// The header's value.
    #[must_use]
    pub fn header_value(&self) -> String {
        let mut params = Vec::new();
        if let Some(error) = self.error {
            params.push(format!("error=\"{error}\""));
        }
        if let Some(url) = &self.resource_metadata {
            // A URL the hub built from a checked host: no quote or backslash in it.
            params.push(format!("resource_metadata=\"{url}\""));
        }
        if params.is_empty() {
            "Bearer".to_owned()
        } else {
            format!("Bearer {}", params.join(", "))
        }
    }
}

/// A request the hub refused, and why.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    /// `401` with a Bearer challenge (RFC 6750 §3): no token, or one that failed validation.
    #[error("{0}")]
    Unauthorized(String, Challenge),
    /// `403 insufficient_scope`: a valid token that lacks the grant.
    #[error("{0}")]
    InsufficientScope(String, Challenge),
    /// `400 invalid_request`: a token presented in a way the protocol forbids.
    #[error("{0}")]
    InvalidRequest(String, Challenge),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    InsufficientStorage(String),
    #[error("request body or data is larger than {0} bytes")]
    PayloadTooLarge(usize),
    #[error("too many subscribers, retry later")]
    TooManySubscribers,
    #[error("too many subscribers from this address")]
    TooManyFromAddress,
    #[error("publishing too fast, retry in {0} s")]
    RateLimited(u64),
    #[error("too many subscribe attempts from this address, retry in {0} s")]
    SubscribingTooFast(u64),
    #[error("request target is longer than {0} bytes")]
    UriTooLong(usize),
    #[error("request headers are larger than {0} bytes")]
    HeadersTooLarge(usize),
    #[error("the hub is shutting down")]
    ShuttingDown,
    #[error("the hub is unavailable")]
    Unavailable,
    /// The update may or may not be in the event stream: the answer carries its id.
    #[error("the event stream did not confirm update {0}; retry later with this id")]
    TransportDown(EventId),
    /// The fan-out is behind (`--max-fanout-backlog`): the update was not taken.
    #[error("the hub's fan-out is behind; update {0} was not taken, retry later with this id")]
    Overloaded(EventId),
    #[error("the hub could not store the update, retry later")]
    StorageFailed,
    #[error("{0}")]
    TemplatesFull(String),
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) | Self::InvalidRequest(..) => StatusCode::BAD_REQUEST,
            Self::Unauthorized(..) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) | Self::InsufficientScope(..) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::InsufficientStorage(_) => StatusCode::INSUFFICIENT_STORAGE,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::TooManyFromAddress | Self::RateLimited(_) | Self::SubscribingTooFast(_) => {
                StatusCode::TOO_MANY_REQUESTS
            }
            Self::UriTooLong(_) => StatusCode::URI_TOO_LONG,
            Self::HeadersTooLarge(_) => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::TooManySubscribers
            | Self::ShuttingDown
            | Self::Unavailable
            | Self::TransportDown(_)
            | Self::Overloaded(_)
            | Self::StorageFailed
            | Self::TemplatesFull(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        response.content_type(mime_text());
        match self {
            Self::Unauthorized(_, challenge)
            | Self::InsufficientScope(_, challenge)
            | Self::InvalidRequest(_, challenge) => {
                response.insert_header((header::WWW_AUTHENTICATE, challenge.header_value()));
            }
            Self::RateLimited(secs) | Self::SubscribingTooFast(secs) => {
                response.insert_header((header::RETRY_AFTER, *secs));
            }
            Self::TooManyFromAddress => {
                response.insert_header((header::RETRY_AFTER, RETRY_AFTER_SECS));
            }
            Self::TransportDown(id) | Self::Overloaded(id) => {
                let secs = if matches!(self, Self::Overloaded(_)) {
                    OVERLOAD_RETRY_AFTER_SECS
                } else {
                    RETRY_AFTER_SECS
                };
                response.insert_header((header::RETRY_AFTER, secs));
                // An id is never CR, LF or NUL; one with other control characters can't be a
                // header value, and then it is the publisher's own (the hub's are ASCII).
                match header::HeaderValue::from_bytes(id.as_str().as_bytes()) {
                    Ok(value) => {
                        response.insert_header((UPDATE_ID_HEADER, value));
                    }
                    Err(_) => log::debug!("update id {id:?} can't be a header value"),
                }
            }
            _ if self.status_code() == StatusCode::SERVICE_UNAVAILABLE => {
                response.insert_header((header::RETRY_AFTER, RETRY_AFTER_SECS));
            }
            _ => {}
        }
        response.body(format!("{self}\n"))
    }
}

fn mime_text() -> &'static str {
    "text/plain; charset=utf-8"
}

impl From<SubscribeRefused> for ApiError {
    fn from(refused: SubscribeRefused) -> Self {
        match refused {
            SubscribeRefused::ShuttingDown => Self::ShuttingDown,
            SubscribeRefused::NoShard => Self::Unavailable,
        }
    }
}

impl From<Refused> for ApiError {
    fn from(refused: Refused) -> Self {
        match refused {
            Refused::TooMany => Self::TooManySubscribers,
            Refused::TooManyFromAddress => Self::TooManyFromAddress,
            Refused::ShuttingDown => Self::ShuttingDown,
        }
    }
}

impl From<PublishRefused> for ApiError {
    fn from(refused: PublishRefused) -> Self {
        match refused {
            PublishRefused::ShuttingDown => Self::ShuttingDown,
            PublishRefused::StorageFull => Self::InsufficientStorage(refused.to_string()),
            PublishRefused::StorageFailed => Self::StorageFailed,
            // Answered with its id where the id is known (`routes/mercure.rs`).
            PublishRefused::Overloaded => Self::Unavailable,
        }
    }
}

impl From<SelectorError> for ApiError {
    fn from(err: SelectorError) -> Self {
        match err {
            SelectorError::HubFull => Self::TemplatesFull(err.to_string()),
            SelectorError::Topic(_) => Self::BadRequest(format!("invalid topic selector: {err}")),
            SelectorError::TooComplex => Self::BadRequest(err.to_string()),
            SelectorError::Matcher(MatcherError::Pattern(PatternError::HubFull)) => {
                Self::TemplatesFull(err.to_string())
            }
            SelectorError::Matcher(_) => Self::BadRequest(format!("invalid matcher: {err}")),
        }
    }
}

impl From<actix::MailboxError> for ApiError {
    fn from(err: actix::MailboxError) -> Self {
        log::error!("broadcaster unreachable: {err}");
        Self::Unavailable
    }
}
