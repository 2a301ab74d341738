//! An update's place in the fan-out's backlog, from its acceptance until every worker's shard
//! has fanned it out.
//!
//! The broadcaster makes a [`Ticket`] when it accepts an update, keeps it while the update
//! waits for its commit, and sends a reference with the update to every shard; each shard drops
//! its reference once it has fanned the update out. The last reference to go takes the update
//! out of the backlog counted in [`Stats`] and runs what waited for the fan-out: the
//! publisher's answer. So a publish is acknowledged once its update has reached every
//! subscriber's queue or socket, and publishers are paced by the fan-out, not only by the disk.
//!
//! A shard whose worker is gone drops the message unread, which ends the wait as well: nothing
//! waits for a worker that no longer exists.

use std::sync::{Arc, Mutex};

use crate::stats::Stats;

/// What runs once the update has left the backlog.
type Then = Box<dyn FnOnce() + Send>;

/// One accepted update in the fan-out's backlog. Shared as `Arc<Ticket>`: it leaves the
/// backlog when the last reference is dropped.
pub struct Ticket {
    stats: Arc<Stats>,
    /// Its number in [`Stats::fanout_accepted`]'s order.
    number: u64,
    then: Mutex<Option<Then>>,
}

impl std::fmt::Debug for Ticket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ticket")
            .field("number", &self.number)
            .finish_non_exhaustive()
    }
}

impl Ticket {
    /// An update accepted now, counted in `stats`' backlog until the ticket is dropped.
    #[must_use]
    pub fn new(stats: &Arc<Stats>) -> Arc<Self> {
        Arc::new(Self {
            stats: Arc::clone(stats),
            number: stats.fanout_accepted(),
            then: Mutex::new(None),
        })
    }

    /// Runs `then` once the update has left the backlog (replacing what was set before).
    pub fn then(&self, then: impl FnOnce() + Send + 'static) {
        *self.then.lock().unwrap_or_else(|e| e.into_inner()) = Some(Box::new(then));
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.stats.fanout_done(self.number);
        let then = self
            .then
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(then) = then {
            then();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    #[test]
    fn the_update_leaves_the_backlog_and_its_waiters_run_when_the_last_reference_goes() {
        let stats = Arc::new(Stats::default());
        let ran = Arc::new(AtomicBool::new(false));
        let ticket = Ticket::new(&stats);
        let seen = Arc::clone(&ran);
        ticket.then(move || seen.store(true, Ordering::SeqCst));
        let shards = [Arc::clone(&ticket), Arc::clone(&ticket)];
        drop(ticket);
        assert_eq!(stats.fanout_backlog(), 1);
        let [first, second] = shards;
        drop(first);
        assert!(
            !ran.load(Ordering::SeqCst),
            "one shard has not fanned it out yet"
        );
        assert_eq!(stats.snapshot().fanout_backlog, 1);
        drop(second);
        assert!(ran.load(Ordering::SeqCst));
        assert_eq!(stats.fanout_backlog(), 0);
        assert_eq!(stats.snapshot().fanout_backlog_oldest_ms, 0);
    }

    #[test]
    fn the_oldest_update_still_waiting_gives_the_backlog_its_age() {
        let stats = Arc::new(Stats::default());
        let first = Ticket::new(&stats);
        let second = Ticket::new(&stats);
        drop(first);
        assert_eq!(stats.fanout_backlog(), 1);
        assert!(stats
            .prometheus_text()
            .contains("sse_hub_fanout_backlog_updates 1"));
        drop(second);
        assert!(stats
            .prometheus_text()
            .contains("sse_hub_fanout_backlog_oldest_seconds 0"));
    }
}
