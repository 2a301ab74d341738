//! The HTTP boundary's error: each variant is one status with a one-line reason for the client.

use actix_web::{
    http::{header, StatusCode},
    HttpResponse, ResponseError,
};

use crate::{
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

/// A request the hub refused, and why.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
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
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::InsufficientStorage(_) => StatusCode::INSUFFICIENT_STORAGE,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::TooManyFromAddress | Self::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
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
            Self::RateLimited(secs) => {
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
            SubscribeRefused::TooMany => Self::TooManySubscribers,
            SubscribeRefused::TooManyFromAddress => Self::TooManyFromAddress,
            SubscribeRefused::ShuttingDown => Self::ShuttingDown,
            SubscribeRefused::NoShard => Self::Unavailable,
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
