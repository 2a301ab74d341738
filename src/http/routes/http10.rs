//! HTTP/1.0 clients: a response of unknown length is delimited by closing the connection.
//!
//! HTTP/1.0 has no chunked transfer coding, so a streamed body (every SSE response) is sent
//! raw and the connection ends with it (RFC 9112, section 6.3).

use actix_web::{
    body::{BodySize, MessageBody},
    dev::{ServiceRequest, ServiceResponse},
    http::{ConnectionType, Version},
    middleware::Next,
};

/// Sends streamed bodies to HTTP/1.0 clients without chunking, on a connection that closes at
/// the end of the body (even if the client asked for keep-alive).
pub async fn close_delimited(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let http10 = req.version() == Version::HTTP_10;
    let mut res = next.call(req).await?;
    if http10 && res.response().body().size() == BodySize::Stream {
        let head = res.response_mut().head_mut();
        head.no_chunking(true);
        head.set_connection_type(ConnectionType::Close);
    }
    Ok(res)
}
