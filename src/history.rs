//! The replay buffer: the most recent updates, bounded in count and in bytes, looked up by id
//! when a subscriber reconnects with `Last-Event-ID`.
//!
//! The updates are kept in a persistent vector, so the part a reconnecting subscriber needs is
//! taken in O(log n) without copying: the broadcaster hands it over and the subscriber's own
//! stream filters and sends it, off the broadcaster's thread.

use std::{collections::HashMap, sync::Arc};

use imbl::Vector;

use crate::update::{EventId, Update};

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

/// What history gives a reconnecting subscriber.
#[derive(Debug)]
pub struct Replay {
    /// Every stored update after the cursor, oldest first (not yet filtered by subscription):
    /// a snapshot that shares its storage with the history.
    pub updates: Vector<Arc<Update>>,
    /// The value of the `Last-Event-ID` response header: the id the replay starts after.
    pub resumed_after: String,
}

/// The last updates, oldest first.
#[derive(Debug)]
pub struct History {
    entries: Vector<Arc<Update>>,
    /// Sequence number of each stored id, for O(1) resume lookups.
    index: HashMap<EventId, u64>,
    /// Sequence number of the oldest entry; entries are numbered contiguously from it.
    first_seq: u64,
    bytes: usize,
    max_len: usize,
    max_bytes: usize,
}

impl History {
    #[must_use]
    pub fn new(max_len: usize, max_bytes: usize) -> Self {
        Self {
            entries: Vector::new(),
            index: HashMap::new(),
            first_seq: 0,
            bytes: 0,
            max_len,
            max_bytes,
        }
    }

    #[must_use]
    pub fn contains(&self, id: &EventId) -> bool {
        self.index.contains_key(id)
    }

    #[must_use]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes the stored updates hold (their [`Update::footprint`]s).
    #[must_use]
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Stores an update, evicting the oldest ones past either bound.
    pub fn push(&mut self, update: Arc<Update>) {
        if self.max_len == 0 {
            return;
        }
        let seq = self.first_seq + self.entries.len() as u64;
        self.bytes += update.footprint();
        self.index.insert(update.id().clone(), seq);
        self.entries.push_back(update);
        while self.entries.len() > self.max_len
            || (self.bytes > self.max_bytes && self.entries.len() > 1)
        {
            self.evict_oldest();
        }
    }

    fn evict_oldest(&mut self) {
        if let Some(old) = self.entries.pop_front() {
            let seq = self.first_seq;
            self.first_seq += 1;
            self.bytes -= old.footprint();
            if self.index.get(old.id()) == Some(&seq) {
                self.index.remove(old.id());
            }
        }
    }

    /// The updates after `cursor` and the id the replay resumes after.
    ///
    /// An id not in history replays all of it, as `earliest` does: the id was evicted (so every
    /// stored update is newer), or it comes from before a restart of the hub (so is every
    /// stored update). Either way the subscriber loses nothing still held and gets nothing twice.
    /// (The Mercure hub's Bolt transport replays nothing in this case; that loses updates.)
    #[must_use]
    pub fn replay(&self, cursor: &Cursor) -> Replay {
        let everything = || Replay {
            updates: self.entries.clone(),
            resumed_after: EARLIEST.to_owned(),
        };
        match cursor {
            Cursor::Earliest => everything(),
            Cursor::After(id) => match self.index.get(id.as_str()) {
                Some(&seq) => {
                    // Sequence numbers are contiguous, so the position is arithmetic.
                    let start = usize::try_from(seq + 1 - self.first_seq).unwrap_or(usize::MAX);
                    Replay {
                        updates: self.entries.skip(start.min(self.entries.len())),
                        resumed_after: id.clone(),
                    }
                }
                None => everything(),
            },
        }
    }
}

impl std::borrow::Borrow<str> for EventId {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topic::Topic;

    fn update(id: &str, data: &str) -> Arc<Update> {
        Arc::new(Update::new(
            EventId::parse(id).unwrap(),
            vec![Topic::parse("/t").unwrap()],
            data,
            false,
            None,
            None,
        ))
    }

    fn ids(replay: &Replay) -> Vec<&str> {
        replay.updates.iter().map(|u| u.id().as_str()).collect()
    }

    #[test]
    fn replays_everything_after_a_known_id() {
        let mut h = History::new(10, 1 << 20);
        for id in ["a", "b", "c", "d"] {
            h.push(update(id, "x"));
        }
        let r = h.replay(&Cursor::parse("b"));
        assert_eq!(ids(&r), ["c", "d"]);
        assert_eq!(r.resumed_after, "b");
        let r = h.replay(&Cursor::parse("d"));
        assert!(r.updates.is_empty());
        assert_eq!(r.resumed_after, "d");
    }

    #[test]
    fn earliest_replays_all() {
        let mut h = History::new(10, 1 << 20);
        h.push(update("a", "x"));
        h.push(update("b", "x"));
        let r = h.replay(&Cursor::parse(EARLIEST));
        assert_eq!(ids(&r), ["a", "b"]);
        assert_eq!(r.resumed_after, EARLIEST);
    }

    #[test]
    fn unknown_id_replays_everything_like_earliest() {
        let mut h = History::new(10, 1 << 20);
        assert_eq!(h.replay(&Cursor::parse("zz")).resumed_after, EARLIEST);
        h.push(update("a", "x"));
        h.push(update("b", "x"));
        let r = h.replay(&Cursor::parse("zz"));
        assert_eq!(ids(&r), ["a", "b"]);
        assert_eq!(r.resumed_after, EARLIEST);
    }

    #[test]
    fn bounded_in_count() {
        let mut h = History::new(3, 1 << 20);
        for i in 0..10 {
            h.push(update(&i.to_string(), "x"));
        }
        assert_eq!(h.len(), 3);
        assert_eq!(ids(&h.replay(&Cursor::Earliest)), ["7", "8", "9"]);
        assert!(!h.contains(&EventId::parse("6").unwrap()));
        assert_eq!(ids(&h.replay(&Cursor::parse("7"))), ["8", "9"]);
    }

    #[test]
    fn bounded_in_bytes() {
        let one = update("0", &"x".repeat(100)).footprint();
        let mut h = History::new(100, one * 2 + 1);
        for i in 0..5 {
            h.push(update(&i.to_string(), &"x".repeat(100)));
        }
        assert_eq!(h.len(), 2);
        assert!(h.bytes() <= one * 2 + 1);
    }

    #[test]
    fn zero_size_keeps_nothing() {
        let mut h = History::new(0, 1 << 20);
        h.push(update("a", "x"));
        assert!(h.is_empty());
    }
}
