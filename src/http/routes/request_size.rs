//! The middleware that refuses oversized request targets and headers before any handler runs.

use actix_web::{
    body::{EitherBody, MessageBody},
    dev::{ServiceRequest, ServiceResponse},
    middleware::Next,
    web, ResponseError,
};

use super::{error::ApiError, AppState};

/// Refuses request targets over `--max-url-size` (414) and headers over `--max-header-size`
/// (431) before any handler runs.
pub async fn request_size(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let limits = req.app_data::<web::Data<AppState>>().map(|s| {
        (
            s.config.listen.max_url_size,
            s.config.listen.max_header_size,
        )
    });
    if let Some((max_url, max_headers)) = limits {
        let target = req.uri().path_and_query().map_or(0, |pq| pq.as_str().len());
        let headers: usize = req
            .headers()
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len() + 4)
            .sum();
        let refusal = if target > max_url {
            Some(ApiError::UriTooLong(max_url))
        } else if headers > max_headers {
            Some(ApiError::HeadersTooLarge(max_headers))
        } else {
            None
        };
        if let Some(err) = refusal {
            let response = err.error_response().map_into_right_body();
            return Ok(req.into_response(response));
        }
    }
    next.call(req)
        .await
        .map(ServiceResponse::map_into_left_body)
}
