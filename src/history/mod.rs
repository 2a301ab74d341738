//! The replay buffer: the most recent updates, bounded in count and in bytes, looked up by id
//! when a subscriber reconnects with `Last-Event-ID`.
//!
//! The updates are kept in a persistent vector, so the part a reconnecting subscriber needs is
//! taken in O(log n) without copying: the broadcaster hands it over and the subscriber's own
//! stream filters and sends it, off the broadcaster's thread.

use std::{
    collections::{HashMap, VecDeque},
    sync::Arc,
};

use imbl::Vector;

pub mod journal;
pub mod store;

use crate::protocol::update::{Cursor, EventId, Update, EARLIEST};

/// What history gives a reconnecting subscriber.
#[derive(Debug)]
pub struct Replay {
    /// Every stored update after the cursor, oldest first (not yet filtered by subscription):
    /// a snapshot that shares its storage with the history.
    pub updates: Vector<Arc<Update>>,
    /// The value of the `Last-Event-ID` response header: the id the replay starts after.
    pub resumed_after: String,
}

/// How much history is kept: the first bound reached evicts the oldest updates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Updates kept (`--history-size`).
    pub max_len: usize,
    /// Bytes kept, counting all an update holds (`--history-bytes`).
    pub max_bytes: usize,
    /// Age of the oldest update kept, in milliseconds (`--history-max-age`); 0: no limit.
    pub max_age_ms: u64,
}

impl Retention {
    /// Whether `len` updates of `bytes` in all are more than the count and byte bounds allow
    /// (a single update is kept whatever its size).
    fn exceeded_by(&self, len: usize, bytes: usize) -> bool {
        len > self.max_len || (bytes > self.max_bytes && len > 1)
    }
}

/// What a [`History`] will hold once updates on their way to it are pushed: so a store can
/// delete what an update evicts in the same commit as the update, before it is pushed.
/// Advanced one update at a time, each step costs the updates it evicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Projection {
    len: usize,
    bytes: usize,
    /// Every key below this one is evicted.
    below: u64,
}

impl Projection {
    /// Every key below this one is evicted.
    #[must_use]
    pub fn below(&self) -> u64 {
        self.below
    }

    /// Adds the update under `key` (above every key before it) and evicts the oldest past the
    /// count and byte bounds, as [`History::push`] does. `oldest_from(k)` is the key and
    /// footprint of the oldest update with a key from `k` on, among those held and on their
    /// way (this one included).
    pub fn push(
        &mut self,
        retention: Retention,
        key: u64,
        footprint: usize,
        oldest_from: impl Fn(u64) -> Option<(u64, usize)>,
    ) {
        if retention.max_len == 0 {
            *self = Self {
                len: 0,
                bytes: 0,
                below: key + 1,
            };
            return;
        }
        self.len += 1;
        self.bytes += footprint;
        while retention.exceeded_by(self.len, self.bytes) {
            let Some((oldest, footprint)) = oldest_from(self.below) else {
                break;
            };
            self.len -= 1;
            self.bytes -= footprint;
            self.below = oldest + 1;
        }
    }
}

/// The last updates, oldest first, each under its key (increasing, maybe with gaps: the key
/// it has in the store, or a counter without one).
#[derive(Debug)]
pub struct History {
    entries: Vector<Arc<Update>>,
    /// The key of each entry, in the same order.
    keys: VecDeque<u64>,
    /// The key of each stored id, for resume lookups.
    index: HashMap<EventId, u64>,
    /// The key after the newest ever pushed: what the store may trim below when all is gone.
    next_key: u64,
    bytes: usize,
    retention: Retention,
}

impl History {
    #[must_use]
    pub fn new(retention: Retention) -> Self {
        Self {
            entries: Vector::new(),
            keys: VecDeque::new(),
            index: HashMap::new(),
            next_key: 0,
            bytes: 0,
            retention,
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

    /// The key a new update gets when the caller has none of its own.
    #[must_use]
    pub fn next_key(&self) -> u64 {
        self.next_key
    }

    #[must_use]
    pub fn retention(&self) -> Retention {
        self.retention
    }

    /// Every key below this one is evicted: what a store of the same history may delete.
    #[must_use]
    pub fn first_kept_key(&self) -> u64 {
        self.keys.front().copied().unwrap_or(self.next_key)
    }

    /// Stores an update under `key` (above every key pushed before), evicting the oldest ones
    /// past the count and byte bounds.
    pub fn push(&mut self, key: u64, update: Arc<Update>) {
        debug_assert!(key >= self.next_key);
        self.next_key = key + 1;
        if self.retention.max_len == 0 {
            return;
        }
        self.bytes += update.footprint();
        self.index.insert(update.id().clone(), key);
        self.entries.push_back(update);
        self.keys.push_back(key);
        while self.retention.exceeded_by(self.entries.len(), self.bytes) {
            self.evict_oldest();
        }
    }

    /// Evicts the updates older than the age bound at `now_ms`; whether any went.
    pub fn expire(&mut self, now_ms: u64) -> bool {
        if self.retention.max_age_ms == 0 {
            return false;
        }
        let oldest_kept = now_ms.saturating_sub(self.retention.max_age_ms);
        let before = self.entries.len();
        while self
            .entries
            .front()
            .is_some_and(|u| u.published_ms() < oldest_kept)
        {
            self.evict_oldest();
        }
        self.entries.len() < before
    }

    /// Evicts every update with a key below `key`.
    pub fn evict_below(&mut self, key: u64) {
        while self.keys.front().is_some_and(|&k| k < key) {
            self.evict_oldest();
        }
    }

    /// Where a [`Projection`] of this history starts: what it holds now, with updates on their
    /// way to it (keys above every key held, with their footprints) added, none evicted yet.
    #[must_use]
    pub fn project(&self, incoming: impl IntoIterator<Item = usize>) -> Projection {
        let (len, bytes) = incoming
            .into_iter()
            .fold((self.len(), self.bytes), |(len, bytes), footprint| {
                (len + 1, bytes + footprint)
            });
        Projection {
            len,
            bytes,
            below: self.first_kept_key(),
        }
    }

    /// The key and footprint of the oldest update held with a key from `key` on.
    #[must_use]
    pub fn oldest_from(&self, key: u64) -> Option<(u64, usize)> {
        let at = self.keys.partition_point(|&k| k < key);
        Some((*self.keys.get(at)?, self.entries.get(at)?.footprint()))
    }

    fn evict_oldest(&mut self) {
        if let (Some(old), Some(key)) = (self.entries.pop_front(), self.keys.pop_front()) {
            self.bytes -= old.footprint();
            if self.index.get(old.id()) == Some(&key) {
                self.index.remove(old.id());
            }
        }
    }

    /// The id of the newest update held, if any.
    #[must_use]
    pub fn last_id(&self) -> Option<&EventId> {
        self.entries.last().map(|update| update.id())
    }

    /// The updates after `cursor` and the id the replay resumes after.
    ///
    /// An id not in history replays all of it, as `earliest` does: the id was evicted, so every
    /// stored update is newer. The subscriber loses nothing still held and gets nothing twice.
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
                Some(key) => {
                    let start = match self.keys.binary_search(key) {
                        Ok(at) => at + 1,
                        Err(at) => at,
                    };
                    Replay {
                        updates: self.entries.skip(start),
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
    use crate::protocol::topic::Topic;

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

    fn history(max_len: usize, max_bytes: usize) -> History {
        History::new(Retention {
            max_len,
            max_bytes,
            max_age_ms: 0,
        })
    }

    /// Pushes under the next key.
    fn push(h: &mut History, update: Arc<Update>) {
        let key = h.next_key();
        h.push(key, update);
    }

    fn ids(replay: &Replay) -> Vec<&str> {
        replay.updates.iter().map(|u| u.id().as_str()).collect()
    }

    #[test]
    fn replays_everything_after_a_known_id() {
        let mut h = history(10, 1 << 20);
        for id in ["a", "b", "c", "d"] {
            push(&mut h, update(id, "x"));
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
        let mut h = history(10, 1 << 20);
        push(&mut h, update("a", "x"));
        push(&mut h, update("b", "x"));
        let r = h.replay(&Cursor::parse(EARLIEST));
        assert_eq!(ids(&r), ["a", "b"]);
        assert_eq!(r.resumed_after, EARLIEST);
    }

    #[test]
    fn unknown_id_replays_everything_like_earliest() {
        let mut h = history(10, 1 << 20);
        assert_eq!(h.replay(&Cursor::parse("zz")).resumed_after, EARLIEST);
        push(&mut h, update("a", "x"));
        push(&mut h, update("b", "x"));
        let r = h.replay(&Cursor::parse("zz"));
        assert_eq!(ids(&r), ["a", "b"]);
        assert_eq!(r.resumed_after, EARLIEST);
    }

    /// Projects updates on their way one at a time, then pushes them: after each push, history
    /// holds exactly the keys from the projection's bound on.
    fn check_projection(max_len: usize, max_bytes: usize, held: &[&str], incoming: &[&str]) {
        let mut h = history(max_len, max_bytes);
        let mut key = 0;
        for data in held {
            // Keys with gaps, as failed commits leave them.
            key += 3;
            h.push(key, update(&format!("h{key}"), data));
        }
        let incoming: Vec<(u64, Arc<Update>)> = incoming
            .iter()
            .map(|data| {
                key += 2;
                (key, update(&format!("i{key}"), data))
            })
            .collect();
        let mut projection = h.project([]);
        let mut bounds = Vec::new();
        for (i, (key, next)) in incoming.iter().enumerate() {
            projection.push(h.retention(), *key, next.footprint(), |from| {
                h.oldest_from(from).or_else(|| {
                    incoming[..=i]
                        .iter()
                        .find(|(k, _)| *k >= from)
                        .map(|(k, u)| (*k, u.footprint()))
                })
            });
            bounds.push(projection.below());
        }
        let mut pushed: Vec<u64> = (1..=held.len() as u64).map(|n| n * 3).collect();
        for ((key, next), below) in incoming.into_iter().zip(bounds) {
            h.push(key, next);
            pushed.push(key);
            let kept = h.first_kept_key();
            let evicted = pushed.iter().filter(|&&k| k < kept).max();
            assert!(
                evicted.is_none_or(|&e| e < below) && below <= kept,
                "{max_len}/{max_bytes}: after {key}, bound {below}, kept from {kept}"
            );
        }
    }

    #[test]
    fn a_projection_evicts_what_pushing_evicts() {
        let big = "y".repeat(400);
        let one = update("i0", "x").footprint();
        for (max_len, max_bytes) in [
            (3, usize::MAX),
            (100, 3 * one + 10),
            (4, 2 * one),
            (1, 1),
            (0, usize::MAX),
        ] {
            check_projection(max_len, max_bytes, &[], &["x", "x", "x", "x", "x"]);
            check_projection(max_len, max_bytes, &["x", "x"], &["x"]);
            check_projection(
                max_len,
                max_bytes,
                &["x", &big, "x"],
                &["x", &big, "x", "x"],
            );
            check_projection(max_len, max_bytes, &["x"; 6], &[&big, "x", &big]);
        }
    }

    #[test]
    fn bounded_in_count() {
        let mut h = history(3, 1 << 20);
        for i in 0..10 {
            push(&mut h, update(&i.to_string(), "x"));
        }
        assert_eq!(h.len(), 3);
        assert_eq!(ids(&h.replay(&Cursor::Earliest)), ["7", "8", "9"]);
        assert!(!h.contains(&EventId::parse("6").unwrap()));
        assert_eq!(ids(&h.replay(&Cursor::parse("7"))), ["8", "9"]);
    }

    #[test]
    fn bounded_in_bytes() {
        let one = update("0", &"x".repeat(100)).footprint();
        let mut h = history(100, one * 2 + 1);
        for i in 0..5 {
            push(&mut h, update(&i.to_string(), &"x".repeat(100)));
        }
        assert_eq!(h.len(), 2);
        assert!(h.bytes() <= one * 2 + 1);
    }

    #[test]
    fn keys_may_have_gaps_and_age_evicts() {
        let mut h = History::new(Retention {
            max_len: 10,
            max_bytes: 1 << 20,
            max_age_ms: 1000,
        });
        h.push(3, update("a", "x"));
        h.push(7, update("b", "x"));
        h.push(8, update("c", "x"));
        assert_eq!(ids(&h.replay(&Cursor::parse("a"))), ["b", "c"]);
        assert_eq!(ids(&h.replay(&Cursor::parse("b"))), ["c"]);
        assert_eq!((h.first_kept_key(), h.next_key()), (3, 9));
        let now = h.replay(&Cursor::Earliest).updates[0].published_ms();
        assert!(!h.expire(now + 500));
        assert!(h.expire(now + 5000));
        assert!(h.is_empty() && h.bytes() == 0 && !h.contains(&EventId::parse("a").unwrap()));
        assert_eq!(h.first_kept_key(), 9, "the store may delete everything");
    }

    #[test]
    fn zero_size_keeps_nothing() {
        let mut h = history(0, 1 << 20);
        push(&mut h, update("a", "x"));
        assert!(h.is_empty());
    }
}
