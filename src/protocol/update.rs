//! An update: what a publisher sends and every matching subscriber receives.
//!
//! Fields are validated at the boundary ([`EventId`], [`EventType`], [`Topic`]), and the SSE
//! bytes are encoded once when the update is built, so fan-out only clones a `Bytes` handle.

use std::fmt;

use bytes::Bytes;

use crate::{protocol::sse, protocol::text::is_forbidden, protocol::topic::Topic};

/// Longest `id` or `type` accepted, in bytes.
pub const MAX_FIELD_LEN: usize = 1024;

/// Why an `id` or `type` value was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FieldError {
    #[error("must not be empty")]
    Empty,
    #[error("must be at most {MAX_FIELD_LEN} bytes")]
    TooLong,
    #[error("must not contain control or format characters")]
    ControlChar,
    #[error("must not start with '#' (reserved for ids the hub makes)")]
    Reserved,
    #[error("\"earliest\" is reserved: it asks for the whole history")]
    Earliest,
}

/// The rules every SSE field value follows: not empty, bounded, no control or format
/// character ([`is_forbidden`]; CR and LF would be an injection).
pub(crate) fn check_field(value: &str) -> Result<(), FieldError> {
    if value.is_empty() {
        Err(FieldError::Empty)
    } else if value.len() > MAX_FIELD_LEN {
        Err(FieldError::TooLong)
    } else if value.contains(is_forbidden) {
        Err(FieldError::ControlChar)
    } else {
        Ok(())
    }
}

/// The `Last-Event-ID` value that asks for the whole history.
pub const EARLIEST: &str = "earliest";

/// Where a reconnecting subscriber wants to resume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cursor {
    /// Everything still in history (`earliest`).
    Earliest,
    /// Everything after the update with this id.
    After(String),
}

impl Cursor {
    #[must_use]
    pub fn parse(value: &str) -> Self {
        if value == EARLIEST {
            Self::Earliest
        } else {
            Self::After(value.to_owned())
        }
    }
}

/// An event id, safe to write on an `id:` line.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EventId(String);

impl EventId {
    /// Validates an id chosen by a publisher: the specification reserves a leading `#`.
    pub fn parse(value: &str) -> Result<Self, FieldError> {
        check_field(value)?;
        if value.starts_with('#') {
            return Err(FieldError::Reserved);
        }
        if value == EARLIEST {
            return Err(FieldError::Earliest);
        }
        Ok(Self(value.to_owned()))
    }

    /// Makes a fresh id: a UUIDv7 URN, unique and increasing within this process.
    #[must_use]
    pub fn generate() -> Self {
        Self(format!("urn:uuid:{}", uuid::Uuid::now_v7()))
    }

    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An event type, safe to write on an `event:` line.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EventType(String);

impl EventType {
    pub fn parse(value: &str) -> Result<Self, FieldError> {
        check_field(value)?;
        Ok(Self(value.to_owned()))
    }

    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A validated update with its SSE encoding.
#[derive(Debug)]
pub struct Update {
    id: EventId,
    /// The first topic is canonical, the rest are alternates; never empty.
    topics: Vec<Topic>,
    private: bool,
    encoded: Bytes,
    /// When the hub accepted it, in milliseconds since the Unix epoch (for age retention).
    published_ms: u64,
    /// Bytes this update holds, counted once (see [`Update::footprint`]).
    footprint: usize,
}

/// Milliseconds since the Unix epoch, now.
#[must_use]
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Update {
    /// Builds an update and encodes it once.
    ///
    /// `topics` must not be empty: callers check that at the boundary, where the client can be told.
    #[must_use]
    pub fn new(
        id: EventId,
        topics: Vec<Topic>,
        data: &str,
        private: bool,
        event_type: Option<&EventType>,
        retry_ms: Option<u64>,
    ) -> Self {
        debug_assert!(!topics.is_empty());
        let encoded = sse::event(
            Some(id.as_str()),
            event_type.map(EventType::as_str),
            retry_ms,
            data,
        );
        Self::from_parts(id, topics, private, encoded, now_ms())
    }

    /// Rebuilds an update from its parts as the hub stored them (see `crate::history::store`):
    /// `encoded` must be the SSE encoding of an update with this id.
    #[must_use]
    pub fn from_parts(
        id: EventId,
        topics: Vec<Topic>,
        private: bool,
        encoded: Bytes,
        published_ms: u64,
    ) -> Self {
        let footprint = std::mem::size_of::<Self>()
            + encoded.len()
            + id.as_str().len()
            + topics
                .iter()
                .map(|t| std::mem::size_of::<Topic>() + t.as_str().len())
                .sum::<usize>();
        Self {
            id,
            topics,
            private,
            encoded,
            published_ms,
            footprint,
        }
    }

    #[must_use]
    pub fn id(&self) -> &EventId {
        &self.id
    }

    #[must_use]
    pub fn topics(&self) -> &[Topic] {
        &self.topics
    }

    #[must_use]
    pub fn is_private(&self) -> bool {
        self.private
    }

    /// When the hub accepted it, in milliseconds since the Unix epoch.
    #[must_use]
    pub fn published_ms(&self) -> u64 {
        self.published_ms
    }

    /// Every byte this update holds in memory: its SSE encoding, its id, its topics (with
    /// their headers) and its own fields. History limits count this, not the SSE bytes alone,
    /// so an update with many long topics costs what it really costs.
    #[must_use]
    pub fn footprint(&self) -> usize {
        self.footprint
    }

    /// The SSE bytes every subscriber receives.
    #[must_use]
    pub fn encoded(&self) -> &Bytes {
        &self.encoded
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_refuse_line_breaks_nul_and_reserved_prefix() {
        assert_eq!(EventId::parse("a\nb"), Err(FieldError::ControlChar));
        assert_eq!(EventId::parse("a\rb"), Err(FieldError::ControlChar));
        assert_eq!(EventId::parse("a\0b"), Err(FieldError::ControlChar));
        assert_eq!(EventId::parse("#1"), Err(FieldError::Reserved));
        assert_eq!(EventId::parse("earliest"), Err(FieldError::Earliest));
        assert_eq!(EventId::parse(""), Err(FieldError::Empty));
        assert_eq!(EventId::parse(&"x".repeat(1025)), Err(FieldError::TooLong));
        assert_eq!(EventId::parse("urn:x:1").unwrap().as_str(), "urn:x:1");
    }

    #[test]
    fn types_refuse_line_breaks() {
        assert_eq!(EventType::parse("a\r\nb"), Err(FieldError::ControlChar));
        assert!(EventType::parse("#fine-for-types").is_ok());
    }

    #[test]
    fn generated_ids_increase() {
        let ids: Vec<EventId> = (0..1000).map(|_| EventId::generate()).collect();
        assert!(ids.windows(2).all(|w| w[0].as_str() < w[1].as_str()));
    }

    #[test]
    fn update_is_encoded_once_with_its_fields() {
        let topic = Topic::parse("/books/1").unwrap();
        let kind = EventType::parse("book").unwrap();
        let update = Update::new(
            EventId::parse("b1").unwrap(),
            vec![topic],
            "x\ny",
            false,
            Some(&kind),
            Some(100),
        );
        assert_eq!(
            &update.encoded()[..],
            b"id: b1\nevent: book\nretry: 100\ndata: x\ndata: y\n\n"
        );
    }

    #[test]
    fn the_footprint_counts_topics_and_id_not_only_the_encoding() {
        let topics: Vec<Topic> = (0..100)
            .map(|i| Topic::parse(&format!("/{i}/{}", "t".repeat(1000))).unwrap())
            .collect();
        let update = Update::new(EventId::parse("i").unwrap(), topics, "x", false, None, None);
        assert!(update.footprint() > 100 * 1000 + update.encoded().len());
    }
}
