//! The durable pipeline: updates on their way to the store, and what their commits delete.
//!
//! # Durability
//! With a [`Store`], a published update is first handed to the store's writer and kept
//! *pending*; only when the writer reports its commit is the update added to history, fanned
//! out and acknowledged, in publish order. So a subscriber never sees an update that a crash
//! could lose, and a `200` means the update is on disk. An update whose id is already in
//! history (or pending) is acknowledged again and not stored or delivered twice. The updates
//! that an update evicts from history are deleted from the store in its commit: the pipeline
//! projects what history will hold once everything pending is pushed.
//!
//! The broadcaster owns the history and the order of events; this module owns the rest of
//! that story: which updates are pending, under which keys, what each commit trims and what
//! the store still holds.

use std::{
    collections::{HashSet, VecDeque},
    io,
    sync::Arc,
    thread::JoinHandle,
};

use tokio::sync::oneshot;

use super::PublishRefused;
use crate::{
    fanout::ticket::Ticket,
    history::store::{Commit, Store, StoreHandle},
    history::{History, Projection},
    protocol::update::{EventId, Update},
};

/// A publish waiting for its update's outcome.
pub(super) type Waiter = oneshot::Sender<Result<EventId, PublishRefused>>;

/// An update handed to the store, waiting for its commit.
#[derive(Debug)]
pub(super) struct Pending {
    pub(super) key: u64,
    pub(super) update: Arc<Update>,
    /// What its commit deletes from the store: every key below this one, evicted by it.
    pub(super) trim: Option<u64>,
    /// Every publish of this update (retries of the same id included).
    pub(super) waiters: Vec<Waiter>,
    /// Its place in the fan-out's backlog, which it joined when it was accepted.
    pub(super) ticket: Arc<Ticket>,
}

/// The store's writer: not started until the actor is (it reports to the actor's address).
#[derive(Debug)]
enum Writer {
    Off,
    Starting(Store),
    On(StoreHandle),
}

/// The updates on their way to the store and what the store holds; inert without a store.
#[derive(Debug)]
pub(super) struct Durable {
    writer: Writer,
    /// Updates handed to the store and not yet committed, in key order.
    pending: VecDeque<Pending>,
    pending_ids: HashSet<EventId>,
    /// The store holds no key below this one (what was last trimmed).
    trimmed_below: u64,
    /// What history will hold once every pending update is pushed, if known (forgotten when
    /// history changes otherwise: a failed commit, expiry).
    projection: Option<Projection>,
}

impl Durable {
    /// No store: history lives in memory only.
    pub(super) fn off() -> Self {
        Self {
            writer: Writer::Off,
            pending: VecDeque::new(),
            pending_ids: HashSet::new(),
            trimmed_below: 0,
            projection: None,
        }
    }

    /// The pipeline of `store`, which holds no key below `trimmed_below`; its writer starts
    /// with [`Durable::start`].
    pub(super) fn starting(store: Store, trimmed_below: u64) -> Self {
        Self {
            writer: Writer::Starting(store),
            trimmed_below,
            ..Self::off()
        }
    }

    /// Starts the store's writer, if there is one not started yet; it reports every commit to
    /// `on_commit`, in order. On an error the pipeline stays off.
    pub(super) fn start(&mut self, on_commit: impl Fn(Commit) + Send + 'static) -> io::Result<()> {
        if let Writer::Starting(store) = std::mem::replace(&mut self.writer, Writer::Off) {
            self.writer = Writer::On(store.start(on_commit)?);
        }
        Ok(())
    }

    /// Whether updates go through the store (its writer runs).
    pub(super) fn is_on(&self) -> bool {
        matches!(self.writer, Writer::On(_))
    }

    /// Hands `update` to the store under the next key, with the deletion of what it evicts
    /// from `history`, and keeps it pending until its commit; `waiters` hear the outcome.
    ///
    /// Call it only when [`Durable::is_on`].
    pub(super) fn append(
        &mut self,
        history: &History,
        update: Arc<Update>,
        waiters: Vec<Waiter>,
        ticket: Arc<Ticket>,
    ) {
        let key = self
            .pending
            .back()
            .map_or(history.next_key(), |p| p.key + 1);
        let trim = self.trim_with(history, key, &update);
        if let Writer::On(store) = &self.writer {
            store.append(key, Arc::clone(&update), trim);
        }
        self.pending_ids.insert(update.id().clone());
        self.pending.push_back(Pending {
            key,
            update,
            trim,
            waiters,
            ticket,
        });
    }

    /// What the store may delete in the same commit as the update `key` (after every pending
    /// one): the updates history will evict when it is pushed, if any are still stored. So an
    /// acknowledged update's evictions are on disk with it.
    fn trim_with(&mut self, history: &History, key: u64, update: &Update) -> Option<u64> {
        let mut projection = self
            .projection
            .take()
            .unwrap_or_else(|| history.project(self.pending.iter().map(|p| p.update.footprint())));
        let footprint = update.footprint();
        let pending = &self.pending;
        projection.push(history.retention(), key, footprint, |from| {
            history.oldest_from(from).or_else(|| {
                let at = pending.partition_point(|p| p.key < from);
                match pending.get(at) {
                    Some(p) => Some((p.key, p.update.footprint())),
                    None => (from <= key).then_some((key, footprint)),
                }
            })
        });
        self.projection = Some(projection);
        let below = projection.below();
        (below > self.trimmed_below).then_some(below)
    }

    /// Adds `waiter` to the pending update with this id (a publish retried while the first is
    /// on its way to disk); gives the waiter back if no such update is pending.
    pub(super) fn wait_for(&mut self, id: &EventId, waiter: Waiter) -> Result<(), Waiter> {
        let pending = self
            .pending_ids
            .contains(id)
            .then(|| self.pending.iter_mut().find(|p| p.update.id() == id))
            .flatten();
        match pending {
            Some(pending) => {
                pending.waiters.push(waiter);
                Ok(())
            }
            None => Err(waiter),
        }
    }

    /// The id of the newest pending update and a receiver of its outcome; `None` when nothing
    /// is pending.
    pub(super) fn wait_for_newest(
        &mut self,
    ) -> Option<(EventId, oneshot::Receiver<Result<EventId, PublishRefused>>)> {
        let pending = self.pending.back_mut()?;
        let (tx, rx) = oneshot::channel();
        pending.waiters.push(tx);
        Some((pending.update.id().clone(), rx))
    }

    /// Takes the oldest pending update if `commit` covers it, so a commit's updates come out
    /// one by one, in key order. A failed commit makes the projection unknown: it counted them.
    pub(super) fn next_committed(&mut self, commit: &Commit) -> Option<Pending> {
        if self.pending.front()?.key > commit.through {
            return None;
        }
        let pending = self.pending.pop_front()?;
        self.pending_ids.remove(pending.update.id());
        if commit.result.is_err() {
            self.projection = None;
        }
        Some(pending)
    }

    /// History changed other than by taking a pending update (expiry, an update remembered
    /// from a transport): what it will hold is projected again when next needed.
    pub(super) fn history_changed(&mut self) {
        self.projection = None;
    }

    /// `history` was just given an update whose commit deleted every key below `trimmed`:
    /// history evicts those too, then the store is told to delete what history no longer holds.
    pub(super) fn pushed(&mut self, history: &mut History, trimmed: Option<u64>) {
        if let Some(below) = trimmed {
            // What the push evicted, unless an update counted in the projection then failed
            // to commit: history then follows the store and holds a little less for a while.
            history.evict_below(below);
            self.trimmed_below = self.trimmed_below.max(below);
        }
        self.trim_store(history);
    }

    /// Deletes from the store what `history` no longer holds.
    pub(super) fn trim_store(&mut self, history: &History) {
        if let Writer::On(store) = &self.writer {
            let below = history.first_kept_key();
            if below > self.trimmed_below {
                store.trim(below);
                self.trimmed_below = below;
            }
        }
    }

    /// Takes no more updates: gives the writer thread, which ends once what it was given is
    /// written and synced.
    pub(super) fn close(&mut self) -> Option<JoinHandle<()>> {
        match std::mem::replace(&mut self.writer, Writer::Off) {
            Writer::On(store) => Some(store.close()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{sync::mpsc, time::Duration};

    use super::*;
    use crate::{history::store::Fsync, history::Retention, protocol::topic::Topic, stats::Stats};

    fn ticket() -> Arc<Ticket> {
        Ticket::new(&Arc::new(Stats::default()))
    }

    fn update(id: &str) -> Arc<Update> {
        Arc::new(Update::new(
            EventId::parse(id).unwrap(),
            vec![Topic::parse("/t").unwrap()],
            "x",
            false,
            None,
            None,
        ))
    }

    fn history(max_len: usize) -> History {
        History::new(Retention {
            max_len,
            max_bytes: usize::MAX,
            max_age_ms: 0,
        })
    }

    /// A started pipeline over a fresh store in `dir`, and where its commits arrive.
    fn started(dir: &std::path::Path) -> (Durable, mpsc::Receiver<Commit>) {
        let store = Store::open(dir, Fsync::Never, false).unwrap();
        let (tx, rx) = mpsc::channel();
        let mut durable = Durable::starting(store, 0);
        durable
            .start(move |commit| {
                let _ = tx.send(commit);
            })
            .unwrap();
        (durable, rx)
    }

    /// The commits up to `key`, all of them successful.
    fn commits_through(commits: &mpsc::Receiver<Commit>, key: u64) -> Vec<Commit> {
        let mut got = Vec::new();
        while got.last().is_none_or(|c: &Commit| c.through < key) {
            let commit = commits.recv_timeout(Duration::from_secs(10)).unwrap();
            assert!(commit.result.is_ok(), "{:?}", commit.result);
            got.push(commit);
        }
        got
    }

    #[test]
    fn without_a_store_the_pipeline_is_off_and_has_nothing_to_close() {
        let mut durable = Durable::off();
        durable.start(|_| {}).unwrap();
        assert!(!durable.is_on());
        assert!(durable.wait_for_newest().is_none());
        assert!(durable.close().is_none());
    }

    #[test]
    fn pending_updates_come_out_of_their_commits_in_key_order_once_each() {
        let dir = tempfile::tempdir().unwrap();
        let (mut durable, commits) = started(dir.path());
        let history = history(10);
        assert!(durable.is_on());
        for id in ["a", "b", "c"] {
            durable.append(&history, update(id), Vec::new(), ticket());
        }
        let mut out = Vec::new();
        for commit in commits_through(&commits, 2) {
            while let Some(pending) = durable.next_committed(&commit) {
                out.push((pending.key, pending.update.id().to_string()));
            }
        }
        assert_eq!(out, [(0, "a".into()), (1, "b".into()), (2, "c".into())]);
        let (tx, _rx) = oneshot::channel();
        assert!(
            durable.wait_for(&EventId::parse("a").unwrap(), tx).is_err(),
            "a committed id is pending no more"
        );
        durable.close().unwrap().join().unwrap();
    }

    #[test]
    fn a_retried_id_waits_for_the_pending_update_rather_than_being_stored_again() {
        let dir = tempfile::tempdir().unwrap();
        let (mut durable, _commits) = started(dir.path());
        let history = history(10);
        let (first, _first_rx) = oneshot::channel();
        durable.append(&history, update("a"), vec![first], ticket());
        let (retry, retry_rx) = oneshot::channel();
        assert!(durable
            .wait_for(&EventId::parse("a").unwrap(), retry)
            .is_ok());
        let (other, _) = oneshot::channel();
        assert!(durable
            .wait_for(&EventId::parse("b").unwrap(), other)
            .is_err());
        assert_eq!(durable.pending.len(), 1);
        assert_eq!(durable.pending[0].waiters.len(), 2);

        let (newest, newest_rx) = durable.wait_for_newest().unwrap();
        assert_eq!(newest.as_str(), "a");
        for waiter in durable.pending.pop_front().unwrap().waiters {
            let _ = waiter.send(Ok(newest.clone()));
        }
        assert_eq!(retry_rx.blocking_recv().unwrap().unwrap().as_str(), "a");
        assert_eq!(newest_rx.blocking_recv().unwrap().unwrap().as_str(), "a");
        durable.close().unwrap().join().unwrap();
    }

    #[test]
    fn an_update_that_evicts_deletes_the_evicted_in_its_own_commit() {
        let dir = tempfile::tempdir().unwrap();
        let (mut durable, commits) = started(dir.path());
        // History holds two updates; the first is already stored.
        let mut history = history(2);
        durable.append(&history, update("a"), Vec::new(), ticket());
        for commit in commits_through(&commits, 0) {
            while let Some(p) = durable.next_committed(&commit) {
                history.push(p.key, p.update);
                durable.pushed(&mut history, p.trim);
            }
        }
        // Two more on their way: the second of them evicts "a" from the projected history.
        durable.append(&history, update("b"), Vec::new(), ticket());
        durable.append(&history, update("c"), Vec::new(), ticket());
        let trims: Vec<_> = durable.pending.iter().map(|p| p.trim).collect();
        assert_eq!(trims, [None, Some(1)]);

        for commit in commits_through(&commits, 2) {
            while let Some(p) = durable.next_committed(&commit) {
                history.push(p.key, p.update);
                durable.pushed(&mut history, p.trim);
            }
        }
        assert_eq!(history.first_kept_key(), 1);
        assert_eq!(durable.trimmed_below, 1);
        durable.close().unwrap().join().unwrap();

        let loaded = Store::open(dir.path(), Fsync::Never, false)
            .unwrap()
            .load()
            .unwrap();
        let ids: Vec<_> = loaded.iter().map(|l| l.update.id().to_string()).collect();
        assert_eq!(
            ids,
            ["b", "c"],
            "what history evicted is gone from the store"
        );
    }

    #[test]
    fn a_failed_commit_forgets_the_projection() {
        let dir = tempfile::tempdir().unwrap();
        let (mut durable, _commits) = started(dir.path());
        let history = history(10);
        durable.append(&history, update("a"), Vec::new(), ticket());
        assert!(durable.projection.is_some());
        let failed = Commit {
            through: 0,
            result: Err(Arc::new(crate::history::store::StoreError::Io(
                std::io::Error::other("test"),
            ))),
        };
        assert!(durable.next_committed(&failed).is_some());
        assert!(durable.projection.is_none());
        assert!(durable.next_committed(&failed).is_none());
        durable.close().unwrap().join().unwrap();
    }
}
