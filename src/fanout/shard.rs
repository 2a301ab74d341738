//! Per-worker fan-out shards.
//!
//! Each HTTP worker thread has one shard: the registry of the subscribers whose streams run on
//! that thread, and their queues. The broadcaster sends an update once per shard (one
//! cross-thread message per worker, not per subscriber); the shard's task, on its worker,
//! matches it against its registry, appends the shared bytes to each matching queue and wakes
//! those streams, which live on the same thread: no lock, no atomic and no cross-thread wake
//! per delivery.
//!
//! Each local subscriber's queue is an [`Outlet`] ([`crate::fanout::direct`]): while the stream of a
//! subscriber on a plain HTTP/1 connection waits, the update goes to its socket directly and
//! nobody is woken; only what the socket does not take at once is queued for the stream.
//!
//! Ordering stays the broadcaster's: it decides when a subscriber with a cursor starts
//! receiving by sending [`ShardMsg::Register`] through the same channel as the updates, in the
//! same step as it takes the subscriber's replay, so nothing is missed or sent twice across the
//! switch. A subscriber without a cursor has no replay: once the broadcaster knows the shard
//! ([`ShardMsg::Known`]), its worker registers it here at once ([`LocalQueue::register_here`]),
//! with no round trip to the broadcaster's thread, whose work (publishes, commits, fan-out,
//! other subscribers' replays) it would otherwise queue behind.

use std::{
    cell::RefCell,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    task::{Context, Poll},
};

use actix::{Message, Recipient};
use bytes::Bytes;
use indexmap::IndexMap;
use tokio::sync::mpsc;

use crate::{
    fanout::direct::{Offered, Outlet},
    fanout::registry::{Delivery, Registry, SubscriberId},
    fanout::subscription::Subscription,
    fanout::ticket::Ticket,
    protocol::update::Update,
    stats::{DropReason, Stats},
};

/// Identifies one shard (one worker thread).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ShardId(pub usize);

/// What the broadcaster tells a shard, in order.
#[derive(Debug)]
pub enum ShardMsg {
    /// Deliver to every local subscriber that wants it; the ticket (none for a server-time
    /// tick) is dropped once that is done, so the update leaves the fan-out's backlog when the
    /// last shard is done with it.
    Update(Arc<Update>, Option<Arc<Ticket>>),
    /// Start delivering to this local subscriber (registered, its replay taken).
    Register {
        id: SubscriberId,
        subscription: Arc<Subscription>,
    },
    /// End every local stream after what it holds (shutdown).
    CloseAll,
    /// The broadcaster knows this shard: every update from now on comes here.
    Known,
}

/// The broadcaster's end of a shard.
pub type ShardSender = mpsc::UnboundedSender<ShardMsg>;

/// A worker's shard announces itself (before its worker's first subscriber).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct AddShard {
    pub id: ShardId,
    pub sender: ShardSender,
}

/// Removes a subscriber: sent by its stream's [`LocalQueue`] when the stream goes, and by the
/// fan-out when it lets the subscriber go as slow.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Unsubscribe {
    pub shard: ShardId,
    pub id: SubscriberId,
    /// It was dropped as slow (counted as such by its shard), rather than it left.
    pub slow: bool,
}

/// Where shards report back: the broadcaster, known here only by the two messages it takes
/// ([`AddShard`], [`Unsubscribe`]), so this module does not depend on it.
///
/// Cloned for every subscriber: a shared reference, no allocation.
#[derive(Debug, Clone)]
pub struct Owner(Arc<Recipients>);

#[derive(Debug)]
struct Recipients {
    added: Recipient<AddShard>,
    left: Recipient<Unsubscribe>,
}

impl Owner {
    #[must_use]
    pub fn new(added: Recipient<AddShard>, left: Recipient<Unsubscribe>) -> Self {
        Self(Arc::new(Recipients { added, left }))
    }

    fn add_shard(&self, msg: AddShard) {
        self.0.added.do_send(msg);
    }

    fn unsubscribe(&self, msg: Unsubscribe) {
        self.0.left.do_send(msg);
    }
}

/// The shard of the current worker thread.
#[derive(Debug)]
struct Local {
    id: ShardId,
    registry: Registry,
    /// Indexed, so the fan-out's second pass finds an outlet by its position, without
    /// hashing. Ids are the shard's own counter, nothing a client chooses: a fast hash is safe.
    queues: IndexMap<SubscriberId, Outlet, foldhash::fast::RandomState>,
    next_id: u64,
    capacity: usize,
    stats: Arc<Stats>,
    owner: Owner,
    /// Reused between fan-outs: who was let go as slow by the last one.
    slow: Vec<SubscriberId>,
    /// Reused between fan-outs: the waiting streams the update is offered to directly (their
    /// places in `queues`, which nothing removes during a fan-out).
    direct: Vec<usize>,
    /// The broadcaster sends every update here ([`ShardMsg::Known`] came).
    known: bool,
}

thread_local! {
    static LOCAL: RefCell<Option<Local>> = const { RefCell::new(None) };
}

static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

impl Local {
    fn handle(&mut self, msg: ShardMsg) {
        match msg {
            ShardMsg::Update(update, ticket) => {
                self.fan_out(&update);
                drop(ticket);
            }
            ShardMsg::Register { id, subscription } => {
                // A stream that already went (its client left at once) is not registered.
                if self.queues.contains_key(&id) {
                    self.registry.insert(id, subscription);
                }
            }
            ShardMsg::CloseAll => {
                self.registry.clear();
                for outlet in self.queues.values_mut() {
                    outlet.close();
                }
            }
            ShardMsg::Known => self.known = true,
        }
    }

    fn fan_out(&mut self, update: &Update) {
        let Self {
            registry,
            queues,
            capacity,
            slow,
            direct,
            ..
        } = self;
        // First pass: who gets the update how. Waiting streams are only noted here, by their
        // place in `queues`, so this pass reads the shard's own tables with no system call in
        // between (the kernel's work on each write would push them out of the caches again),
        // and the second touches each connection once, to write to it.
        let out = registry.fan_out(update, |id| {
            let Some((index, _, outlet)) = queues.get_full_mut(&id) else {
                return Delivery::Closed;
            };
            if outlet.queued() >= *capacity {
                // Never wait for a subscriber: one that can't keep up is let go (its stream
                // ends after what it holds; it reconnects and resumes from history).
                outlet.close_slow();
                slow.push(id);
                return Delivery::Full;
            }
            if outlet.is_waiting() {
                direct.push(index);
                return Delivery::Sent;
            }
            outlet.push(update.encoded().clone());
            Delivery::Sent
        });
        // Second pass: the writes, back to back.
        let bytes = update.encoded();
        let mut written_directly = 0;
        for index in direct.drain(..) {
            if let Some((_, outlet)) = queues.get_index_mut(index) {
                if outlet.offer(bytes) == Offered::Taken {
                    written_directly += 1;
                }
            }
        }
        self.stats.delivered(out.delivered, written_directly);
        if out.slow > 0 {
            self.stats.dropped(DropReason::Slow, out.slow);
            // It stops counting at once, though its stream may linger until its connection
            // is written to or times out.
            for id in self.slow.drain(..) {
                self.owner.unsubscribe(Unsubscribe {
                    shard: self.id,
                    id,
                    slow: true,
                });
            }
        }
    }
}

/// A subscriber's place in its worker's shard, before and after registration. Dropped with
/// the subscriber's stream (its client left, or the stream ended): it leaves the shard and
/// tells the broadcaster.
#[derive(Debug)]
pub struct LocalQueue {
    shard: ShardId,
    id: SubscriberId,
    owner: Owner,
}

impl LocalQueue {
    /// Puts `outlet` in the current worker's shard, starting the shard (and telling the
    /// broadcaster about it) if this is the worker's first subscriber.
    pub fn open(owner: &Owner, capacity: usize, stats: &Arc<Stats>, outlet: Outlet) -> Self {
        LOCAL.with(|local| {
            let mut local = local.borrow_mut();
            let local = local.get_or_insert_with(|| start(owner, capacity, Arc::clone(stats)));
            let id = SubscriberId(local.next_id);
            local.next_id += 1;
            local.queues.insert(id, outlet);
            Self {
                shard: local.id,
                id,
                owner: owner.clone(),
            }
        })
    }

    /// Registers the subscriber with this worker's shard now, when that is safe without the
    /// broadcaster: the broadcaster knows the shard (every update it fans out from now on
    /// comes here, after this registration) and the stream is still here. `false`: the caller
    /// registers through the broadcaster ([`crate::fanout::broadcaster::Subscribe`]).
    ///
    /// Only for a subscriber without a cursor: one with a cursor needs its replay taken in the
    /// same step, by the broadcaster. The caller checks the hub is not closing just before, on
    /// this thread (see [`crate::fanout::admission::Admission::close`]).
    #[must_use]
    pub fn register_here(&self, subscription: Arc<Subscription>) -> bool {
        LOCAL.with(|local| {
            let mut local = local.borrow_mut();
            let Some(local) = local.as_mut().filter(|l| l.known) else {
                return false;
            };
            if !local.queues.contains_key(&self.id) {
                return false;
            }
            local.registry.insert(self.id, subscription);
            true
        })
    }

    #[must_use]
    pub fn shard(&self) -> ShardId {
        self.shard
    }

    #[must_use]
    pub fn id(&self) -> SubscriberId {
        self.id
    }

    /// The stream's next bytes: [`Outlet::poll_next`]; `Ready(None)` also once the shard
    /// let the subscriber go.
    pub fn poll_next(&self, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        self.with_outlet(|outlet| outlet.poll_next(cx))
            .unwrap_or(Poll::Ready(None))
    }

    /// Whether bytes went to the connection directly since the last call:
    /// [`Outlet::take_wrote`].
    #[must_use]
    pub fn take_direct_write(&self) -> bool {
        self.with_outlet(Outlet::take_wrote).unwrap_or(false)
    }

    fn with_outlet<R>(&self, f: impl FnOnce(&mut Outlet) -> R) -> Option<R> {
        LOCAL.with(|local| {
            let mut local = local.borrow_mut();
            local
                .as_mut()
                .and_then(|l| l.queues.get_mut(&self.id))
                .map(f)
        })
    }
}

impl Drop for LocalQueue {
    fn drop(&mut self) {
        // The stream is dropped on the worker that polled it: its shard's thread.
        let slow = LOCAL
            .try_with(|local| {
                let mut local = local.borrow_mut();
                let local = local.as_mut()?;
                local.registry.remove(self.id);
                local.queues.swap_remove(&self.id).map(|o| o.was_slow())
            })
            .ok()
            .flatten()
            .unwrap_or(false);
        self.owner.unsubscribe(Unsubscribe {
            shard: self.shard,
            id: self.id,
            slow,
        });
    }
}

/// Starts this worker's shard: its state and the task that applies the broadcaster's messages.
fn start(owner: &Owner, capacity: usize, stats: Arc<Stats>) -> Local {
    let id = ShardId(NEXT_SHARD.fetch_add(1, Ordering::Relaxed));
    let (tx, mut rx) = mpsc::unbounded_channel();
    // Sent before this worker's first `Subscribe`, so the broadcaster knows the shard by then.
    owner.add_shard(AddShard { id, sender: tx });
    actix_web::rt::spawn(async move {
        while let Some(msg) = rx.recv().await {
            LOCAL.with(|local| {
                if let Some(local) = local.borrow_mut().as_mut() {
                    local.handle(msg);
                }
            });
        }
    });
    Local {
        id,
        registry: Registry::default(),
        queues: IndexMap::default(),
        next_id: 0,
        capacity: capacity.max(1),
        stats,
        owner: owner.clone(),
        slow: Vec::new(),
        direct: Vec::new(),
        known: false,
    }
}
