//! The access log (target `sse_hub::access`): actix's default line, with credentials redacted.
//!
//! Browsers can't set headers on an `EventSource`, so the dashboard and Mercure clients send the
//! token as `?authorization=<JWT>`: logged as it is, every request line would hand a working
//! token to whoever reads the logs. The values of `authorization` and `access_token` (any case,
//! every occurrence, also when the name is percent-encoded) are replaced by `[redacted]` in the
//! request line and in the `Referer`.

use std::borrow::Cow;

use actix_web::{dev::ServiceRequest, http::header, middleware::Logger};

/// Query parameters whose values are never logged.
const SECRET_PARAMETERS: [&str; 2] = ["authorization", "access_token"];
const REDACTED: &str = "[redacted]";

/// actix's default format, with the request line and `Referer` redacted.
#[must_use]
pub fn logger() -> Logger {
    Logger::new(r#"%a "%{request}xi" %s %b "%{referer}xi" "%{User-Agent}i" %T"#)
        .custom_request_replace("request", request_line)
        .custom_request_replace("referer", referer)
        .log_target("sse_hub::access")
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
    let name = crate::form::parse(raw)
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
