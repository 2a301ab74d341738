//! Hub counters: plain atomics so the fan-out path never takes a lock to count.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use serde::Serialize;

/// Counters shared by the broadcaster (the only writer of most) and the stats endpoint.
#[derive(Debug, Default)]
pub struct Stats {
    subscribers: AtomicU64,
    events_published: AtomicU64,
    events_delivered: AtomicU64,
    subscribers_dropped_slow: AtomicU64,
    history_len: AtomicU64,
    history_bytes: AtomicU64,
}

/// A point-in-time copy of [`Stats`], as served by `GET /stats`.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct Snapshot {
    pub subscribers: u64,
    pub events_published: u64,
    pub events_delivered: u64,
    pub subscribers_dropped_slow: u64,
    pub history_len: u64,
    pub history_bytes: u64,
}

impl Stats {
    pub(crate) fn set_subscribers(&self, n: usize) {
        self.subscribers.store(n as u64, Relaxed);
    }

    pub(crate) fn published(&self, deliveries: u64) {
        self.events_published.fetch_add(1, Relaxed);
        self.events_delivered.fetch_add(deliveries, Relaxed);
    }

    pub(crate) fn delivered(&self, deliveries: u64) {
        self.events_delivered.fetch_add(deliveries, Relaxed);
    }

    pub(crate) fn dropped_slow(&self) {
        self.subscribers_dropped_slow.fetch_add(1, Relaxed);
    }

    pub(crate) fn set_history(&self, len: usize, bytes: usize) {
        self.history_len.store(len as u64, Relaxed);
        self.history_bytes.store(bytes as u64, Relaxed);
    }

    #[must_use]
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            subscribers: self.subscribers.load(Relaxed),
            events_published: self.events_published.load(Relaxed),
            events_delivered: self.events_delivered.load(Relaxed),
            subscribers_dropped_slow: self.subscribers_dropped_slow.load(Relaxed),
            history_len: self.history_len.load(Relaxed),
            history_bytes: self.history_bytes.load(Relaxed),
        }
    }
}
