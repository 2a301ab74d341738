//! Server-Sent Events wire format: each event is encoded once into `Bytes` that every
//! subscriber then shares.
//!
//! Framing follows the WHATWG `EventSource` parser: a field per line, an empty line ends the
//! event. Data is split on every line terminator the parser knows (CRLF, LF and CR), so no
//! payload can end an event early or smuggle in a field. `id` and `event` values are typed
//! ([`EventId`](crate::protocol::update::EventId), [`EventType`](crate::protocol::update::EventType)) and can't
//! hold CR, LF or NUL, so their lines can't be broken either.

use std::fmt::Write as _;

use bytes::Bytes;

/// Appends `field: value\n`, dropping the space for an empty value.
fn push_field(out: &mut String, field: &str, value: &str) {
    out.push_str(field);
    out.push(':');
    if !value.is_empty() {
        out.push(' ');
        out.push_str(value);
    }
    out.push('\n');
}

/// Splits on CRLF, LF or CR, the three line terminators of the SSE parser (a CR is half of a
/// CRLF only when an LF follows it: a lone trailing CR still ends a line).
fn lines(data: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(data);
    std::iter::from_fn(move || {
        let text = rest?;
        match text.find(['\r', '\n']) {
            None => {
                rest = None;
                Some(text)
            }
            Some(at) => {
                let terminator = if text[at..].starts_with("\r\n") { 2 } else { 1 };
                rest = Some(&text[at + terminator..]);
                Some(&text[..at])
            }
        }
    })
}

/// Encodes one event: optional `id`, `event` and `retry` fields, then one `data:` line per line of
/// `data`, then the blank line that dispatches it.
///
/// Callers pass `id` and `event` already validated (no CR, LF or NUL); `data` may hold anything.
#[must_use]
pub fn event(id: Option<&str>, event: Option<&str>, retry_ms: Option<u64>, data: &str) -> Bytes {
    debug_assert!(id.is_none_or(|v| !v.contains(['\r', '\n', '\0'])));
    debug_assert!(event.is_none_or(|v| !v.contains(['\r', '\n', '\0'])));
    let mut out = String::with_capacity(data.len() + 64);
    if let Some(id) = id {
        push_field(&mut out, "id", id);
    }
    if let Some(event) = event {
        push_field(&mut out, "event", event);
    }
    if let Some(retry) = retry_ms {
        let _ = writeln!(out, "retry: {retry}");
    }
    for line in lines(data) {
        push_field(&mut out, "data", line);
    }
    out.push('\n');
    Bytes::from(out)
}

/// Encodes a comment line, which `EventSource` ignores: used for the opening bytes and heartbeats.
///
/// Line terminators inside `text` are replaced by spaces so a comment stays one line.
#[must_use]
pub fn comment(text: &str) -> Bytes {
    let text: String = text
        .chars()
        .map(|c| if matches!(c, '\r' | '\n') { ' ' } else { c })
        .collect();
    if text.is_empty() {
        Bytes::from_static(b":\n\n")
    } else {
        Bytes::from(format!(": {text}\n\n"))
    }
}

/// Encodes the opening bytes of a stream: the reconnection delay and a comment, so the response
/// has a body chunk to flush at once and `EventSource.onopen` fires without waiting for an event.
#[must_use]
pub fn opening(retry_ms: u64) -> Bytes {
    Bytes::from(format!("retry: {retry_ms}\n: ok\n\n"))
}

/// The heartbeat sent after a stream has been idle for the keep-alive period.
pub const HEARTBEAT: Bytes = Bytes::from_static(b":\n\n");

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// One dispatched event as a spec-conformant `EventSource` parser sees it.
    #[derive(Debug, PartialEq, Eq)]
    pub(crate) struct Parsed {
        /// The last event ID as of this event (`None` while none was set).
        pub id: Option<String>,
        pub event: Option<String>,
        /// The last `retry` sent since the previous event.
        pub retry: Option<u64>,
        pub data: String,
    }

    /// Parses an SSE byte stream the way the WHATWG parser does, with the workspace's
    /// `sse-parser` (the one the black-box tests and the load generator read streams with).
    pub(crate) fn parse(input: &str) -> Vec<Parsed> {
        let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
        let (mut out, mut retry) = (Vec::new(), None);
        let parsed = sse_parser::Parser::new().feed(input.as_bytes(), |item| {
            match item {
                sse_parser::Item::Event(e) => out.push(Parsed {
                    id: (!e.last_event_id.is_empty()).then(|| text(e.last_event_id)),
                    event: (!e.event_type.is_empty()).then(|| text(e.event_type)),
                    retry: retry.take(),
                    data: text(e.data),
                }),
                sse_parser::Item::Retry(ms) => retry = Some(ms),
                sse_parser::Item::Comment(_) => {}
            }
            std::ops::ControlFlow::Continue(())
        });
        assert!(parsed.is_ok(), "{parsed:?}");
        out
    }

    fn text(bytes: &Bytes) -> &str {
        std::str::from_utf8(bytes).expect("encoder writes UTF-8")
    }

    #[test]
    fn single_line_event_with_every_field() {
        let bytes = event(Some("42"), Some("time"), Some(3000), "hello");
        assert_eq!(
            text(&bytes),
            "id: 42\nevent: time\nretry: 3000\ndata: hello\n\n"
        );
        assert_eq!(
            parse(text(&bytes)),
            [Parsed {
                id: Some("42".into()),
                event: Some("time".into()),
                retry: Some(3000),
                data: "hello".into(),
            }]
        );
    }

    #[test]
    fn data_only_event() {
        assert_eq!(text(&event(None, None, None, "x")), "data: x\n\n");
    }

    #[test]
    fn multi_line_data_becomes_one_data_line_per_line() {
        let bytes = event(Some("1"), None, None, "a\nb\r\nc\rd");
        assert_eq!(
            text(&bytes),
            "id: 1\ndata: a\ndata: b\ndata: c\ndata: d\n\n"
        );
    }

    #[test]
    fn empty_lines_inside_data_are_kept() {
        let bytes = event(None, None, None, "a\n\nb\n");
        assert_eq!(text(&bytes), "data: a\ndata:\ndata: b\ndata:\n\n");
        assert_eq!(parse(text(&bytes))[0].data, "a\n\nb\n");
    }

    #[test]
    fn a_lone_trailing_cr_still_ends_a_line() {
        // Found by the `sse_event` fuzz target: a final CR was taken for half of a CRLF.
        assert_eq!(text(&event(None, None, None, "\r")), "data:\ndata:\n\n");
        assert_eq!(
            parse(text(&event(None, None, None, "a\r\r")))[0].data,
            "a\n\n"
        );
        assert_eq!(
            parse(text(&event(None, None, None, "\0[\r")))[0].data,
            "\0[\n"
        );
    }

    #[test]
    fn empty_data_still_sends_a_data_line() {
        assert_eq!(text(&event(Some("7"), None, None, "")), "id: 7\ndata:\n\n");
    }

    #[test]
    fn leading_space_in_data_survives_the_parser() {
        let bytes = event(None, None, None, " indented");
        assert_eq!(text(&bytes), "data:  indented\n\n");
        assert_eq!(parse(text(&bytes))[0].data, " indented");
    }

    #[test]
    fn comments_are_one_line() {
        assert_eq!(text(&comment("ok")), ": ok\n\n");
        assert_eq!(text(&comment("a\r\nb")), ": a  b\n\n");
        assert_eq!(text(&comment("")), ":\n\n");
        assert_eq!(text(&HEARTBEAT), ":\n\n");
    }

    #[test]
    fn opening_sets_retry_and_dispatches_nothing() {
        let bytes = opening(2500);
        assert_eq!(text(&bytes), "retry: 2500\n: ok\n\n");
        assert!(parse(text(&bytes)).is_empty());
    }

    proptest! {
        #[test]
        fn any_data_round_trips_through_the_parser(
            // Line terminators are rare in arbitrary strings: mix them in on purpose.
            data in prop_oneof![any::<String>(), "[a\\r\\n]{0,12}"],
        ) {
            let bytes = event(Some("id-1"), Some("kind"), None, &data);
            let parsed = parse(text(&bytes));
            prop_assert_eq!(parsed.len(), 1);
            // The parser cannot tell CR, LF and CRLF apart: each comes back as LF.
            let expected = data.replace("\r\n", "\n").replace('\r', "\n");
            prop_assert_eq!(&parsed[0].data, &expected);
            prop_assert_eq!(parsed[0].id.as_deref(), Some("id-1"));
            prop_assert_eq!(parsed[0].event.as_deref(), Some("kind"));
        }
    }
}
