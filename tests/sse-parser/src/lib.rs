//! An incremental Server-Sent Events parser that reads a stream the way the WHATWG
//! `EventSource` does ("Interpreting an event stream" in the HTML standard).
//!
//! Feed it body bytes as they arrive, split anywhere. It handles CR, LF and CRLF line ends (a
//! CRLF split between two reads included), one leading byte order mark, comments, fields
//! without a colon, the one optional space after the colon, and the `id`, `event`, `data` and
//! `retry` fields: `data` lines are joined with LF, an `id` holding NUL is ignored, a `retry`
//! that is not all digits is ignored, and the last event ID outlives the event that set it. An
//! event is dispatched at an empty line if it has data; an incomplete event at the end of the
//! stream never is.
//!
//! It works on bytes and hands values out as the bytes that came: decode them with
//! `String::from_utf8_lossy`. That is what the standard's UTF-8 decoding gives too, since an
//! invalid sequence can't straddle the ASCII CR, LF or colon that delimit values.
//!
//! It is shared by the hub's black-box tests (`tests/api/helpers.rs`), the hub's own wire tests
//! (`src/protocol/sse.rs`) and the load generator (`tests/bench/loadgen/`), which is why items are handed
//! to a callback as borrowed slices: parsing allocates nothing per event once its buffers have
//! grown.
//!
//! ```
//! use std::ops::ControlFlow;
//!
//! let mut parser = sse_parser::Parser::new();
//! let mut seen = Vec::new();
//! for part in [&b"retry: 2000\n: ok\n\nid: 7\nda"[..], b"ta: a\r\ndata: b\r", b"\n\r\n"] {
//!     parser
//!         .feed(part, |item| {
//!             seen.push(format!("{item:?}"));
//!             ControlFlow::Continue(())
//!         })
//!         .unwrap();
//! }
//! assert_eq!(seen.len(), 3); // the retry, the comment, the event
//! assert_eq!(parser.last_event_id(), b"7");
//! ```

use std::ops::ControlFlow;

/// The UTF-8 byte order mark, skipped once at the start of a stream.
const BOM: &[u8; 3] = b"\xEF\xBB\xBF";

/// The longest line, and the most data of one event, a parser buffers by default: 16 MiB.
pub const DEFAULT_MAX_BUFFER: usize = 16 * 1024 * 1024;

/// Buffers larger than this are freed after use rather than kept for the next line or event,
/// so a parser that once saw a big event doesn't hold on to it.
const KEEP_CAPACITY: usize = 64 * 1024;

/// One dispatched event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event<'a> {
    /// The stream's last event ID: set by the latest `id` field up to this event, which may be
    /// an earlier event's (or the one the parser resumed with). Empty when none was set.
    pub last_event_id: &'a [u8],
    /// The last `event` field of this event; empty means the default type, `message`.
    pub event_type: &'a [u8],
    /// The values of this event's `data` fields joined with LF.
    pub data: &'a [u8],
}

/// What the parser hands to the callback, in stream order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Item<'a> {
    /// An empty line ended an event that had data.
    Event(Event<'a>),
    /// A comment line: the text after the colon, as it came (a leading space included).
    Comment(&'a [u8]),
    /// A `retry` field of only ASCII digits: the new reconnection time in milliseconds (a value
    /// too large for `u64` is ignored).
    Retry(u64),
}

/// Why a stream can't be parsed on; the parser should be dropped with the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// A line, or one event's data, is longer than the parser's limit.
    TooLong { limit: usize },
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::TooLong { limit } => write!(f, "SSE line or event data over {limit} bytes"),
        }
    }
}

impl std::error::Error for Error {}

/// Where the parser stands with the byte order mark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bom {
    /// The stream began with the first `n` bytes of a BOM (all of it so far).
    Matched(usize),
    /// Past the start of the stream.
    Done,
}

/// The state of one stream: a partial line, the event being built, the last event ID.
#[derive(Debug, Clone)]
pub struct Parser {
    /// The start of a line whose end hasn't come yet.
    line: Vec<u8>,
    /// The data buffer: every `data` value so far, each followed by LF.
    data: Vec<u8>,
    event_type: Vec<u8>,
    /// The last event ID buffer, and whether it changed since the last dispatch.
    id_buffer: Vec<u8>,
    id_changed: bool,
    /// The last event ID string: the ID buffer as of the last dispatch.
    last_event_id: Vec<u8>,
    /// The previous input ended with CR: an LF that starts the next one belongs to it.
    after_cr: bool,
    bom: Bom,
    max_buffer: usize,
}

impl Default for Parser {
    fn default() -> Self {
        Self::new()
    }
}

impl Parser {
    /// A parser for a new stream.
    #[must_use]
    pub fn new() -> Self {
        Self {
            line: Vec::new(),
            data: Vec::new(),
            event_type: Vec::new(),
            id_buffer: Vec::new(),
            id_changed: false,
            last_event_id: Vec::new(),
            after_cr: false,
            bom: Bom::Matched(0),
            max_buffer: DEFAULT_MAX_BUFFER,
        }
    }

    /// A parser for a reconnection that carries on with the last event ID of the previous
    /// stream (the one sent as `Last-Event-ID`), as `EventSource` does.
    #[must_use]
    pub fn with_last_event_id(last_event_id: Vec<u8>) -> Self {
        Self {
            id_buffer: last_event_id.clone(),
            last_event_id,
            ..Self::new()
        }
    }

    /// Sets the longest line, and the most data of one event, this parser buffers.
    ///
    /// Default [`DEFAULT_MAX_BUFFER`]; beyond it [`feed`](Self::feed) fails with
    /// [`Error::TooLong`].
    #[must_use]
    pub fn max_buffer(mut self, bytes: usize) -> Self {
        self.max_buffer = bytes;
        self
    }

    /// The last event ID as of the last dispatch (empty when none was set).
    pub fn last_event_id(&self) -> &[u8] {
        &self.last_event_id
    }

    /// Ends the stream and keeps its last event ID, for [`with_last_event_id`].
    ///
    /// [`with_last_event_id`]: Self::with_last_event_id
    pub fn into_last_event_id(self) -> Vec<u8> {
        self.last_event_id
    }

    /// Parses `input`, handing each item to `on_item` as soon as its line is complete.
    ///
    /// Returns `Continue` once all of `input` is consumed (a trailing partial line is kept
    /// for the next call), or `Break(n)` as soon as `on_item` breaks: `n` bytes of `input`,
    /// up to the end of the line that ended the event, were consumed; the rest is untouched
    /// and may be fed again.
    pub fn feed(
        &mut self,
        input: &[u8],
        mut on_item: impl FnMut(Item<'_>) -> ControlFlow<()>,
    ) -> Result<ControlFlow<usize>, Error> {
        let mut rest = self.skip_bom(input);
        while let Some(&first) = rest.first() {
            if std::mem::take(&mut self.after_cr) && first == b'\n' {
                rest = &rest[1..];
                continue;
            }
            let Some(end) = rest.iter().position(|&b| b == b'\n' || b == b'\r') else {
                if self.line.len() + rest.len() > self.max_buffer {
                    return Err(Error::TooLong {
                        limit: self.max_buffer,
                    });
                }
                self.line.extend_from_slice(rest);
                break;
            };
            self.after_cr = rest[end] == b'\r';
            let flow = if self.line.is_empty() {
                self.line_done(&rest[..end], &mut on_item)?
            } else {
                let mut line = std::mem::take(&mut self.line);
                line.extend_from_slice(&rest[..end]);
                let flow = self.line_done(&line, &mut on_item);
                line.clear();
                if line.capacity() <= KEEP_CAPACITY {
                    self.line = line;
                }
                flow?
            };
            rest = &rest[end + 1..];
            if flow.is_break() {
                return Ok(ControlFlow::Break(input.len() - rest.len()));
            }
        }
        Ok(ControlFlow::Continue(()))
    }

    /// Skips what belongs to a byte order mark at the start of the stream; returns the rest.
    fn skip_bom<'i>(&mut self, input: &'i [u8]) -> &'i [u8] {
        let Bom::Matched(mut n) = self.bom else {
            return input;
        };
        let mut rest = input;
        while let Some((&b, tail)) = rest.split_first() {
            if b != BOM[n] {
                // Not a BOM after all: what looked like its start is text of the first line.
                self.line.extend_from_slice(&BOM[..n]);
                self.bom = Bom::Done;
                return rest;
            }
            n += 1;
            rest = tail;
            if n == BOM.len() {
                self.bom = Bom::Done;
                return rest;
            }
        }
        self.bom = Bom::Matched(n);
        rest
    }

    /// Interprets one complete line (without its line end).
    fn line_done(
        &mut self,
        line: &[u8],
        on_item: &mut impl FnMut(Item<'_>) -> ControlFlow<()>,
    ) -> Result<ControlFlow<()>, Error> {
        let Some(&first) = line.first() else {
            return Ok(self.dispatch(on_item));
        };
        if first == b':' {
            return Ok(on_item(Item::Comment(&line[1..])));
        }
        let (name, value) = match line.iter().position(|&b| b == b':') {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &b""[..]),
        };
        match name {
            b"event" => {
                self.event_type.clear();
                self.event_type.extend_from_slice(value);
            }
            b"data" => {
                if self.data.len() + value.len() + 1 > self.max_buffer {
                    return Err(Error::TooLong {
                        limit: self.max_buffer,
                    });
                }
                self.data.extend_from_slice(value);
                self.data.push(b'\n');
            }
            b"id" if !value.contains(&0) => {
                self.id_buffer.clear();
                self.id_buffer.extend_from_slice(value);
                self.id_changed = true;
            }
            b"retry" if !value.is_empty() && value.iter().all(u8::is_ascii_digit) => {
                let ms = value.iter().try_fold(0u64, |ms, &d| {
                    ms.checked_mul(10)?.checked_add(u64::from(d - b'0'))
                });
                if let Some(ms) = ms {
                    return Ok(on_item(Item::Retry(ms)));
                }
            }
            _ => {}
        }
        Ok(ControlFlow::Continue(()))
    }

    /// An empty line: dispatches the event if it has data, and starts the next one.
    fn dispatch(
        &mut self,
        on_item: &mut impl FnMut(Item<'_>) -> ControlFlow<()>,
    ) -> ControlFlow<()> {
        if std::mem::take(&mut self.id_changed) {
            self.last_event_id.clone_from(&self.id_buffer);
        }
        // The data buffer ends with the LF that followed its last value, which is not data.
        let flow = match self.data.split_last() {
            None => ControlFlow::Continue(()),
            Some((_, data)) => on_item(Item::Event(Event {
                last_event_id: &self.last_event_id,
                event_type: &self.event_type,
                data,
            })),
        };
        self.data.clear();
        if self.data.capacity() > KEEP_CAPACITY {
            self.data = Vec::new();
        }
        self.event_type.clear();
        flow
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An item with owned text, to compare.
    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Owned {
        Event {
            id: String,
            kind: String,
            data: String,
        },
        Comment(String),
        Retry(u64),
    }

    fn text(bytes: &[u8]) -> String {
        String::from_utf8_lossy(bytes).into_owned()
    }

    fn owned(item: Item<'_>) -> Owned {
        match item {
            Item::Event(e) => Owned::Event {
                id: text(e.last_event_id),
                kind: text(e.event_type),
                data: text(e.data),
            },
            Item::Comment(c) => Owned::Comment(text(c)),
            Item::Retry(ms) => Owned::Retry(ms),
        }
    }

    /// Feeds `parts` one after the other to a new parser; every item it handed out.
    fn parse_parts(parts: &[&[u8]]) -> Vec<Owned> {
        let mut parser = Parser::new();
        let mut items = Vec::new();
        for part in parts {
            let flow = parser
                .feed(part, |item| {
                    items.push(owned(item));
                    ControlFlow::Continue(())
                })
                .expect("parses");
            assert_eq!(flow, ControlFlow::Continue(()));
        }
        items
    }

    fn parse(stream: &[u8]) -> Vec<Owned> {
        parse_parts(&[stream])
    }

    fn event(id: &str, kind: &str, data: &str) -> Owned {
        Owned::Event {
            id: id.into(),
            kind: kind.into(),
            data: data.into(),
        }
    }

    #[test]
    fn an_event_with_every_field() {
        assert_eq!(
            parse(b"id: 42\nevent: time\nretry: 3000\ndata: hello\n\n"),
            [Owned::Retry(3000), event("42", "time", "hello")]
        );
    }

    #[test]
    fn data_lines_are_joined_with_lf_without_a_final_lf() {
        assert_eq!(
            parse(b"data: a\ndata:\ndata: b\ndata:\n\n"),
            [event("", "", "a\n\nb\n")]
        );
    }

    #[test]
    fn an_empty_data_field_still_dispatches_an_event() {
        assert_eq!(
            parse(b"data\n\ndata:\n\n"),
            [event("", "", ""), event("", "", "")]
        );
    }

    #[test]
    fn a_block_without_data_dispatches_nothing_but_resets_the_type() {
        assert_eq!(
            parse(b"event: a\nid: 1\n\ndata: x\n\n"),
            [event("1", "", "x")]
        );
    }

    #[test]
    fn only_one_space_after_the_colon_is_dropped() {
        assert_eq!(
            parse(b"data:x\n\ndata:  y\n\n"),
            [event("", "", "x"), event("", "", " y")]
        );
    }

    #[test]
    fn unknown_and_wrongly_cased_fields_are_ignored() {
        assert_eq!(
            parse(b"Data: no\nfoo: bar\nidx: 3\ndata: yes\n\n"),
            [event("", "", "yes")]
        );
    }

    #[test]
    fn comments_are_items_with_the_text_after_the_colon() {
        assert_eq!(
            parse(b": ok\n:\n:: x\n\n"),
            [
                Owned::Comment(" ok".into()),
                Owned::Comment(String::new()),
                Owned::Comment(": x".into()),
            ]
        );
    }

    #[test]
    fn cr_lf_and_crlf_all_end_lines() {
        let want = [event("1", "", "a\nb\nc")];
        assert_eq!(parse(b"id: 1\rdata: a\r\ndata: b\ndata: c\r\r"), want);
        assert_eq!(
            parse(b"id: 1\r\ndata: a\r\ndata: b\r\ndata: c\r\n\r\n"),
            want
        );
        assert_eq!(
            parse(b"data: a\n\r\ndata: b\r\n\n"),
            [event("", "", "a"), event("", "", "b")]
        );
    }

    #[test]
    fn a_crlf_split_between_reads_is_one_line_end() {
        assert_eq!(
            parse_parts(&[b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n"]),
            [event("", "", "a\nb")]
        );
        // A CR at the end of a read ends its line at once: the event needs no further input.
        assert_eq!(parse_parts(&[b"data: a\r\r"]), [event("", "", "a")]);
    }

    #[test]
    fn a_leading_bom_is_skipped_once() {
        let want = [event("", "", "x")];
        assert_eq!(parse(b"\xEF\xBB\xBFdata: x\n\n"), want);
        assert_eq!(
            parse_parts(&[b"\xEF", b"\xBB", b"\xBF", b"data: x\n\n"]),
            want
        );
        // A second BOM is part of the first field's name, which is then unknown.
        assert_eq!(
            parse(b"\xEF\xBB\xBF\xEF\xBB\xBFdata: x\n\ndata: y\n\n"),
            [event("", "", "y")]
        );
        // Not a BOM after all: its start belongs to the line (else this would be a comment).
        assert_eq!(parse_parts(&[b"\xEF\xBB", b": c\n"]), []);
        assert_eq!(parse(b"\xEF: c\n\n: d\n"), [Owned::Comment(" d".into())]);
    }

    #[test]
    fn the_last_event_id_outlives_its_event_and_ignores_ids_with_nul() {
        assert_eq!(
            parse(b"id: a\ndata: 1\n\ndata: 2\n\nid: b\0\ndata: 3\n\nid\ndata: 4\n\n"),
            [
                event("a", "", "1"),
                event("a", "", "2"),
                event("a", "", "3"),
                event("", "", "4"),
            ]
        );
    }

    #[test]
    fn the_last_event_id_changes_at_dispatch_not_at_the_id_field() {
        let mut parser = Parser::new();
        let ignore = |_: Item<'_>| ControlFlow::Continue(());
        let fed = parser.feed(b"id: 1\ndata: x\n\nid: 2\ndata: y\n", ignore);
        assert_eq!(fed, Ok(ControlFlow::Continue(())));
        assert_eq!(parser.last_event_id(), b"1", "event 2 never ended");
        assert!(parser.feed(b"\n", ignore).is_ok());
        assert_eq!(parser.into_last_event_id(), b"2");
    }

    #[test]
    fn a_resumed_parser_starts_with_the_previous_last_event_id() {
        let mut parser = Parser::with_last_event_id(b"7".to_vec());
        let mut ids = Vec::new();
        let fed = parser.feed(b"data: x\n\n", |item| {
            if let Item::Event(e) = item {
                ids.push(e.last_event_id.to_vec());
            }
            ControlFlow::Continue(())
        });
        assert_eq!(fed, Ok(ControlFlow::Continue(())));
        assert_eq!(ids, [b"7"]);
    }

    #[test]
    fn retry_takes_only_ascii_digits() {
        assert_eq!(
            parse(b"retry: 10\nretry: 1x\nretry: -1\nretry:\nretry: 99999999999999999999999\nretry:0\n\n"),
            [Owned::Retry(10), Owned::Retry(0)]
        );
    }

    #[test]
    fn an_incomplete_event_is_never_dispatched() {
        assert_eq!(parse(b"data: a\n\ndata: b\n"), [event("", "", "a")]);
        assert_eq!(parse(b"data: a\n\ndata: b"), [event("", "", "a")]);
    }

    #[test]
    fn values_are_the_bytes_that_came() {
        assert_eq!(parse("data: é ✓\n\n".as_bytes()), [event("", "", "é ✓")]);
        assert_eq!(parse(b"data: \xFF\n\n"), [event("", "", "\u{FFFD}")]);
    }

    #[test]
    fn any_split_of_a_stream_gives_the_same_items() {
        let stream: &[u8] = b"\xEF\xBB\xBFretry: 2000\r\n: ok\r\n\r\nid: a\revent: t\rdata: 1\r\rdata: x\ndata: y\n\n: hb\n\nid: b\r\ndata:\r\n\r\n";
        let whole = parse(stream);
        assert_eq!(
            whole,
            [
                Owned::Retry(2000),
                Owned::Comment(" ok".into()),
                event("a", "t", "1"),
                event("a", "", "x\ny"),
                Owned::Comment(" hb".into()),
                event("b", "", ""),
            ]
        );
        for size in 1..stream.len() {
            let parts: Vec<&[u8]> = stream.chunks(size).collect();
            assert_eq!(parse_parts(&parts), whole, "parts of {size} bytes");
        }
        for at in 0..=stream.len() {
            let (a, b) = stream.split_at(at);
            assert_eq!(parse_parts(&[a, b]), whole, "split at {at}");
        }
    }

    #[test]
    fn breaking_stops_after_the_event_and_leaves_the_rest() {
        let stream: &[u8] = b"data: 1\n\ndata: 2\n\ndata: 3\n\n";
        let mut parser = Parser::new();
        let mut got = Vec::new();
        let flow = parser
            .feed(stream, |item| {
                got.push(owned(item));
                ControlFlow::Break(())
            })
            .unwrap();
        assert_eq!(flow, ControlFlow::Break(9));
        assert_eq!(got, [event("", "", "1")]);
        let flow = parser
            .feed(&stream[9..], |item| {
                got.push(owned(item));
                ControlFlow::Continue(())
            })
            .unwrap();
        assert_eq!(flow, ControlFlow::Continue(()));
        assert_eq!(
            got,
            [event("", "", "1"), event("", "", "2"), event("", "", "3")]
        );
    }

    #[test]
    fn lines_and_data_over_the_limit_are_errors() {
        let ignore = |_: Item<'_>| ControlFlow::Continue(());
        let mut parser = Parser::new().max_buffer(8);
        assert_eq!(
            parser.feed(b"data: 12345", ignore),
            Err(Error::TooLong { limit: 8 })
        );
        let mut parser = Parser::new().max_buffer(8);
        assert_eq!(
            parser.feed(b"data: 1234\ndata: 1234\n", ignore),
            Err(Error::TooLong { limit: 8 })
        );
        let mut parser = Parser::new().max_buffer(8);
        assert!(parser.feed(b"data: 12\n\ndata: 34\n\n", ignore).is_ok());
    }
}
