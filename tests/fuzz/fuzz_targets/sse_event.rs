//! `sse::event` must survive a WHATWG `EventSource` parser: whatever `data` holds, the
//! output dispatches exactly one event whose data is `data` with CRLF and CR turned into LF,
//! and the `id`, `event` and `retry` fields come back as given.
//!
//! It found one bug (2026-11-23, fixed): data ending in a lone CR lost that line break.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Input {
    id: Option<String>,
    event: Option<String>,
    retry: Option<u64>,
    data: String,
}

/// One dispatched event, as a WHATWG-conformant parser reports it.
#[derive(Debug, PartialEq, Eq)]
struct Dispatched {
    /// The event type buffer, `None` if no `event` field was seen (the browser says "message").
    event: Option<String>,
    data: String,
    /// The last event ID buffer, `None` if no `id` field was seen.
    id: Option<String>,
    /// The reconnection time, `None` if no valid `retry` field was seen.
    retry: Option<u64>,
}

/// The "Interpreting an event stream" algorithm of the HTML standard (section 9.2.6), kept
/// independent of the crate's own test parser: lines end at CRLF, LF or CR; a trailing line
/// with no terminator is discarded at end of stream.
fn parse(stream: &str) -> Vec<Dispatched> {
    let stream = stream.strip_prefix('\u{FEFF}').unwrap_or(stream);
    let mut out = Vec::new();
    let (mut data, mut event, mut id, mut retry) = (String::new(), None, None, None);
    let mut rest = stream;
    while let Some(end) = rest.find(['\r', '\n']) {
        let line = &rest[..end];
        let skip = if rest[end..].starts_with("\r\n") {
            2
        } else {
            1
        };
        rest = &rest[end + skip..];

        if line.is_empty() {
            // Dispatch.
            if data.is_empty() {
                event = None;
                continue;
            }
            data.pop(); // the data buffer always ends in LF here
            out.push(Dispatched {
                event: event.take(),
                data: std::mem::take(&mut data),
                id: id.clone(),
                retry,
            });
            continue;
        }
        if line.starts_with(':') {
            continue; // comment
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "event" => event = Some(value.to_owned()),
            "data" => {
                data.push_str(value);
                data.push('\n');
            }
            "id" if !value.contains('\0') => id = Some(value.to_owned()),
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                retry = value.parse().ok();
            }
            _ => {}
        }
    }
    out
}

fn has_line_break_or_nul(s: &Option<String>) -> bool {
    s.as_deref().is_some_and(|v| v.contains(['\r', '\n', '\0']))
}

fuzz_target!(|input: Input| {
    // Callers only pass validated id/event values (no CR, LF or NUL).
    if has_line_break_or_nul(&input.id) || has_line_break_or_nul(&input.event) {
        return;
    }
    let bytes = sse_hub::protocol::sse::event(
        input.id.as_deref(),
        input.event.as_deref(),
        input.retry,
        &input.data,
    );
    let text = std::str::from_utf8(&bytes).expect("sse::event must write UTF-8");
    let events = parse(text);
    assert_eq!(events.len(), 1, "expected exactly one event from {text:?}");
    let expected = Dispatched {
        event: input.event,
        data: input.data.replace("\r\n", "\n").replace('\r', "\n"),
        id: input.id,
        retry: input.retry,
    };
    assert_eq!(events[0], expected, "stream was {text:?}");
});
