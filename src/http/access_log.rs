//! The access log (target `sse_hub::access`): actix's default line, with credentials redacted.
//!
//! Browsers can't set headers on an `EventSource`, so the dashboard and Mercure clients send the
//! token as `?authorization=<JWT>`: logged as it is, every request line would hand a working
//! token to whoever reads the logs. The values of `authorization` and `access_token` (any case,
//! every occurrence, also when the name is percent-encoded) are replaced by `[redacted]` in the
//! request line and in the `Referer`.

use std::{
    borrow::Cow,
    fmt::Write as _,
    future::{ready, Ready},
    pin::Pin,
    task::{Context, Poll},
    time::Instant,
};

use actix_web::{
    body::{BodySize, MessageBody},
    dev::{forward_ready, Service, ServiceRequest, ServiceResponse, Transform},
    http::{header, StatusCode},
};
use bytes::Bytes;
use futures_util::future::LocalBoxFuture;

use crate::fanout::direct::Connection;

/// The log target of the access log.
pub const TARGET: &str = "sse_hub::access";

/// Query parameters whose values are never logged.
const SECRET_PARAMETERS: [&str; 2] = ["authorization", "access_token"];
const REDACTED: &str = "[redacted]";

/// The access log middleware: one line per request, written when its response ends or its
/// client leaves, in actix's default format (`%a "%r" %s %b "%{Referer}i" "%{User-Agent}i"
/// %T`) with the request line and `Referer` redacted.
///
/// actix's own `Logger` keeps, for every request until its response ends, a copy of its whole
/// format plus each rendered part: about 800 bytes held by each SSE stream for its life. This one
/// keeps the line's text in one allocation (nothing at all when the target is off) and a
/// counter.
#[derive(Debug, Clone, Copy, Default)]
pub struct AccessLog;

impl<S, B> Transform<S, ServiceRequest> for AccessLog
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<Logged<B>>;
    type Error = actix_web::Error;
    type Transform = AccessLogMiddleware<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(AccessLogMiddleware { service }))
    }
}

/// [`AccessLog`] wrapped around a service.
#[derive(Debug)]
pub struct AccessLogMiddleware<S> {
    service: S,
}

impl<S, B> Service<ServiceRequest> for AccessLogMiddleware<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<Logged<B>>;
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self::Response, Self::Error>>;

    forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let line = log::log_enabled!(target: TARGET, log::Level::Info).then(|| Line::new(&req));
        let response = self.service.call(req);
        Box::pin(async move {
            let res = response.await?;
            Ok(res.map_body(|head, body| Logged {
                body,
                line: line.map(|mut line| {
                    line.status = head.status;
                    line
                }),
            }))
        })
    }
}

/// One request's log line, written when it is dropped (with its response body).
#[derive(Debug)]
struct Line {
    /// `addr "request line"` then `"referer" "user agent"`, split at `split`.
    text: Box<str>,
    split: usize,
    status: StatusCode,
    bytes: u64,
    start: Instant,
    /// A plain connection: the fan-out may write part of the body to it directly, and counts
    /// what it wrote there.
    conn: Option<Connection>,
}

impl Line {
    fn new(req: &ServiceRequest) -> Self {
        let mut text = String::with_capacity(128);
        match req.peer_addr() {
            Some(addr) => write!(text, "{}", addr.ip()),
            None => write!(text, "-"),
        }
        .and_then(|()| write!(text, " \"{}\"", request_line(req)))
        .expect("writing to a String");
        let split = text.len();
        let agent = req
            .headers()
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-");
        write!(text, "\"{}\" \"{agent}\"", referer(req)).expect("writing to a String");
        Self {
            text: text.into_boxed_str(),
            split,
            status: StatusCode::OK,
            bytes: 0,
            start: Instant::now(),
            conn: Connection::of(req.request()),
        }
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        let (request, headers) = self.text.split_at(self.split);
        log::info!(
            target: TARGET,
            "{request} {} {} {headers} {:.6}",
            self.status.as_u16(),
            self.bytes + self.conn.as_ref().map_or(0, Connection::take_direct_bytes),
            self.start.elapsed().as_secs_f64()
        );
    }
}

pin_project_lite::pin_project! {
    /// A response body that counts its bytes for the access log, and has its line written
    /// when it is dropped: at its end, or when its client leaves.
    #[derive(Debug)]
    pub struct Logged<B> {
        #[pin]
        body: B,
        line: Option<Line>,
    }
}

impl<B: MessageBody> MessageBody for Logged<B> {
    type Error = B::Error;

    fn size(&self) -> BodySize {
        self.body.size()
    }

    fn poll_next(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        let this = self.project();
        let item = std::task::ready!(this.body.poll_next(cx));
        if let (Some(Ok(bytes)), Some(line)) = (&item, this.line.as_mut()) {
            line.bytes += bytes.len() as u64;
        }
        Poll::Ready(item)
    }
}

/// `METHOD /path?query HTTP/1.1`, as actix's `%r` writes it, with the query redacted.
fn request_line(req: &ServiceRequest) -> String {
    let query = req.query_string();
    let separator = if query.is_empty() { "" } else { "?" };
    format!(
        "{} {}{separator}{} {:?}",
        req.method(),
        req.path(),
        redact_query(query),
        req.version()
    )
}

/// The `Referer` header (`-` when absent) with its query redacted: a page opened with a token
/// in its address sends that address along.
fn referer(req: &ServiceRequest) -> String {
    let Some(value) = req.headers().get(header::REFERER) else {
        return "-".to_owned();
    };
    let value = String::from_utf8_lossy(value.as_bytes());
    match value.split_once('?') {
        Some((base, query)) => {
            // A fragment is not sent in a Referer, but if one is there it is kept apart.
            let (query, fragment) = query
                .split_once('#')
                .map_or((query, None), |(q, f)| (q, Some(f)));
            let mut out = format!("{base}?{}", redact_query(query));
            if let Some(fragment) = fragment {
                out.push('#');
                out.push_str(fragment);
            }
            out
        }
        None => value.into_owned(),
    }
}

/// `query` with the value of every secret parameter replaced by `[redacted]`; the rest as sent.
fn redact_query(query: &str) -> Cow<'_, str> {
    if !query.split('&').any(is_secret) {
        return Cow::Borrowed(query);
    }
    let pieces: Vec<Cow<'_, str>> = query
        .split('&')
        .map(|piece| {
            if is_secret(piece) {
                let name = piece.split_once('=').map_or(piece, |(name, _)| name);
                Cow::Owned(format!("{name}={REDACTED}"))
            } else {
                Cow::Borrowed(piece)
            }
        })
        .collect();
    Cow::Owned(pieces.join("&"))
}

/// Whether a `name=value` piece of a query carries a secret. The name is compared decoded, as
/// the hub reads it (`%61uthorization` is `authorization`); a name that doesn't decode is
/// compared as sent.
fn is_secret(piece: &str) -> bool {
    let raw = piece.split_once('=').map_or(piece, |(name, _)| name);
    let name = crate::protocol::form::parse(raw)
        .ok()
        .and_then(|mut pairs| pairs.pop())
        .map_or(Cow::Borrowed(raw), |(name, _)| name);
    SECRET_PARAMETERS
        .iter()
        .any(|secret| name.trim().eq_ignore_ascii_case(secret))
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    #[test]
    fn secret_values_are_redacted_whatever_the_case_and_encoding() {
        let cases = [
            ("", ""),
            ("topic=%2Fa", "topic=%2Fa"),
            (
                "topic=%2Fa&authorization=eyJ.x.y",
                "topic=%2Fa&authorization=[redacted]",
            ),
            (
                "Authorization=a&access_token=b&ACCESS_TOKEN=c&authorization",
                "Authorization=[redacted]&access_token=[redacted]&ACCESS_TOKEN=[redacted]&authorization=[redacted]",
            ),
            (
                "%61uthorization=a&access%5Ftoken=b&access+token=c",
                "%61uthorization=[redacted]&access%5Ftoken=[redacted]&access+token=c",
            ),
            // Values that merely mention a secret name are kept.
            ("topic=authorization&x=access_token", "topic=authorization&x=access_token"),
        ];
        for (query, expected) in cases {
            assert_eq!(redact_query(query), expected, "{query}");
        }
    }

    #[test]
    fn the_request_line_and_referer_are_redacted() {
        let req = TestRequest::get()
            .uri("/.well-known/mercure?topic=%2Fa&authorization=eyJ.x.y")
            .insert_header((
                header::REFERER,
                "https://app.example/page?access_token=eyJ.p.q#top",
            ))
            .to_srv_request();
        assert_eq!(
            request_line(&req),
            "GET /.well-known/mercure?topic=%2Fa&authorization=[redacted] HTTP/1.1"
        );
        assert_eq!(
            referer(&req),
            "https://app.example/page?access_token=[redacted]#top"
        );
        let plain = TestRequest::get().uri("/healthz").to_srv_request();
        assert_eq!(request_line(&plain), "GET /healthz HTTP/1.1");
        assert_eq!(referer(&plain), "-");
    }
}
