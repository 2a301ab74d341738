//! A subscriber's backlog: the part of history it missed, filtered and sent by its own stream
//! before its live updates, off the broadcaster's thread.

use std::{collections::VecDeque, sync::Arc};

use bytes::Bytes;

use crate::{fanout::subscription::Subscription, protocol::update::Update, stats::Stats};

/// History updates a subscriber's stream looks at per poll before it lets other tasks of its
/// worker run (a reconnect storm must not starve publishes and live streams).
const BACKLOG_SCAN: usize = 1024;

/// The part of history a subscriber missed, sent before its live updates. It is a snapshot
/// (sharing the history's storage), read in place by position: filtering it by the
/// subscription happens here, on the subscriber's worker, a bounded slice per poll.
#[derive(Debug)]
pub struct Backlog {
    updates: imbl::Vector<Arc<Update>>,
    /// Position of the next update to look at.
    next: usize,
    /// Matching updates found by the last scan, not yet sent.
    found: VecDeque<Bytes>,
    subscription: Arc<Subscription>,
    stats: Arc<Stats>,
}

/// What the backlog has for the stream now.
#[derive(Debug)]
pub enum BacklogStep {
    /// The next missed update this subscriber wants.
    Send(Bytes),
    /// A slice was scanned with nothing to send: poll again after other tasks ran.
    Yield,
    /// Nothing more: go on with live updates.
    Done,
}

impl Backlog {
    /// The backlog of `updates` (a snapshot of history, oldest first) for `subscription`.
    pub(super) fn new(
        updates: imbl::Vector<Arc<Update>>,
        subscription: Arc<Subscription>,
        stats: Arc<Stats>,
    ) -> Self {
        Self {
            updates,
            next: 0,
            found: VecDeque::new(),
            subscription,
            stats,
        }
    }

    /// What to do next: send the next missed update this subscriber wants, yield, or go live.
    pub fn step(&mut self) -> BacklogStep {
        if let Some(bytes) = self.found.pop_front() {
            return BacklogStep::Send(bytes);
        }
        let len = self.updates.len();
        if self.next >= len {
            if len > 0 {
                // Let go of the snapshot: it may hold updates history has since evicted.
                self.updates = imbl::Vector::new();
                self.next = 0;
            }
            return BacklogStep::Done;
        }
        let Self {
            updates,
            next,
            found,
            subscription,
            ..
        } = self;
        let end = (*next + BACKLOG_SCAN).min(len);
        let mut focus = updates.focus();
        while *next < end {
            // Whole leaves at a time: a slice walk, no lookup or reference count per update.
            let (range, leaf) = focus.chunk_at(*next);
            let upto = range.end.min(end);
            for update in &leaf[*next - range.start..upto - range.start] {
                if subscription.wants(update) {
                    found.push_back(update.encoded().clone());
                }
            }
            *next = upto;
        }
        match self.found.pop_front() {
            Some(bytes) => {
                self.stats.delivered(1 + self.found.len() as u64, 0);
                BacklogStep::Send(bytes)
            }
            None => BacklogStep::Yield,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        protocol::topic::{Topic, TopicSelector},
        protocol::update::EventId,
    };

    #[test]
    fn a_backlog_sends_what_matches_in_order_and_yields_between_slices() {
        let updates: imbl::Vector<Arc<Update>> = (0..3000)
            .map(|i| {
                let topic = if i == 999 || i == 2999 {
                    "/want"
                } else {
                    "/other"
                };
                let id = EventId::parse(&i.to_string()).unwrap();
                Arc::new(Update::new(
                    id,
                    vec![Topic::parse(topic).unwrap()],
                    "x",
                    false,
                    None,
                    None,
                ))
            })
            .collect();
        let selector = TopicSelector::parse("/want").unwrap();
        let mut backlog = Backlog::new(
            updates,
            Arc::new(Subscription::new(vec![selector], Vec::new(), None)),
            Arc::new(Stats::default()),
        );
        let mut steps = Vec::new();
        loop {
            match backlog.step() {
                BacklogStep::Send(bytes) => {
                    steps.push(String::from_utf8_lossy(&bytes)[4..7].to_owned())
                }
                BacklogStep::Yield => steps.push("yield".to_owned()),
                BacklogStep::Done => break,
            }
        }
        // Slices of 1,024: the first holds 999, the second nothing, the third 2999.
        assert_eq!(steps, ["999", "yield", "299"]);
        assert!(backlog.updates.is_empty(), "the snapshot is let go");
    }
}
