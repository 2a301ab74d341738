//! The broadcaster actor: owns the registry of subscribers and the history, and fans each
//! update out.
//!
//! # Slow-consumer policy
//! The actor never awaits a subscriber. Each subscriber has a bounded queue
//! (`--queue-capacity` events) and every delivery is a `try_send` of the update's shared bytes:
//! - a subscriber whose queue is full is **disconnected**: its sender is dropped, so its stream
//!   ends after the bytes already queued and its `EventSource` reconnects (with `Last-Event-ID`,
//!   so it loses nothing still in history); it is counted in `subscribers_dropped_slow`;
//! - a subscriber whose receiver is gone (the client left) is removed where it is seen; in the
//!   normal case sooner, by the [`SubscriberGuard`] its stream drops.
//!
//! The fan-out itself, and the topic index that keeps it proportional to the subscribers an
//! update may reach, is in [`crate::registry`].
//!
//! Subscribing, resuming from history and publishing are all handled by this one actor, so a
//! subscriber is registered and its replay computed in one step: nothing published after its
//! registration is missed and nothing replayed is sent twice.

use std::{net::IpAddr, sync::Arc};

use actix::{Actor, Addr, AsyncContext, Context, Handler, Message};
use bytes::Bytes;
use tokio::sync::mpsc;

pub use crate::registry::SubscriberId;
use crate::{
    history::{Cursor, History},
    registry::Registry,
    stats::{DropReason, Stats},
    subscription::Subscription,
    update::{EventId, Update},
};

/// Mailbox size of the actor: publishes and subscribes beyond it wait for room.
const MAILBOX_CAPACITY: usize = 4096;

/// Limits of the broadcaster, from the config.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Events queued for one subscriber before it counts as slow and is disconnected.
    pub queue_capacity: usize,
    /// Subscribers connected at once, beyond which subscribing is refused.
    pub max_subscribers: usize,
    /// Subscribers connected at once from one client address.
    pub max_subscribers_per_ip: usize,
    /// Updates kept for replay.
    pub history_size: usize,
    /// Bytes of encoded updates kept for replay.
    pub history_bytes: usize,
}

/// The actor. Start it with [`Broadcaster::new`] and `.start()`.
#[derive(Debug)]
pub struct Broadcaster {
    registry: Registry,
    next_id: u64,
    history: History,
    stats: Arc<Stats>,
    limits: Limits,
    closing: bool,
}

impl Broadcaster {
    #[must_use]
    pub fn new(limits: Limits, stats: Arc<Stats>) -> Self {
        Self {
            registry: Registry::default(),
            next_id: 0,
            history: History::new(limits.history_size, limits.history_bytes),
            stats,
            limits,
            closing: false,
        }
    }

    fn count_subscribers(&self) {
        self.stats
            .set_subscribers(self.registry.len(), self.registry.selectors());
    }
}

impl Actor for Broadcaster {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(MAILBOX_CAPACITY);
    }
}

/// Unregisters its subscriber when dropped: held by the subscriber's stream, so a client that
/// goes away is removed at once, whether or not anything is published.
#[derive(Debug)]
pub struct SubscriberGuard {
    id: SubscriberId,
    broadcaster: Addr<Broadcaster>,
}

impl Drop for SubscriberGuard {
    fn drop(&mut self) {
        self.broadcaster.do_send(Unsubscribe(self.id));
    }
}

/// Registers a subscriber and computes its replay.
#[derive(Debug, Message)]
#[rtype(result = "Result<Subscribed, SubscribeRefused>")]
pub struct Subscribe {
    pub subscription: Subscription,
    /// Where to resume from (`Last-Event-ID`), if the client asked.
    pub cursor: Option<Cursor>,
    /// The client's address, for the per-address limit.
    pub ip: Option<IpAddr>,
}

/// A registered subscriber's end of the fan-out.
#[derive(Debug)]
pub struct Subscribed {
    /// Live updates, in publish order, after those in `backlog`.
    pub receiver: mpsc::Receiver<Bytes>,
    /// The history this subscriber missed, oldest first, not yet filtered: its stream picks
    /// what the subscription wants as it sends, off the broadcaster's thread.
    pub backlog: Backlog,
    /// The `Last-Event-ID` response value, when the request carried a cursor.
    pub resumed_after: Option<String>,
    /// Unregisters the subscriber when dropped.
    pub guard: SubscriberGuard,
}

/// Why a subscriber was not registered.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SubscribeRefused {
    #[error("too many subscribers")]
    TooMany,
    #[error("too many subscribers from this address")]
    TooManyFromAddress,
    #[error("the hub is shutting down")]
    ShuttingDown,
}

impl Handler<Subscribe> for Broadcaster {
    type Result = Result<Subscribed, SubscribeRefused>;

    fn handle(&mut self, msg: Subscribe, ctx: &mut Self::Context) -> Self::Result {
        if self.closing {
            return Err(SubscribeRefused::ShuttingDown);
        }
        if self.registry.len() >= self.limits.max_subscribers {
            return Err(SubscribeRefused::TooMany);
        }
        let from_ip = msg.ip.map_or(0, |ip| self.registry.from_ip(ip));
        if from_ip >= self.limits.max_subscribers_per_ip {
            return Err(SubscribeRefused::TooManyFromAddress);
        }
        // Taking the missed part of history is a snapshot in O(log n): no copy, no matching here.
        let (updates, resumed_after) = match &msg.cursor {
            Some(cursor) => {
                let replay = self.history.replay(cursor);
                (replay.updates, Some(replay.resumed_after))
            }
            None => (Default::default(), None),
        };
        let subscription = Arc::new(msg.subscription);
        let id = SubscriberId(self.next_id);
        self.next_id += 1;
        let (tx, receiver) = mpsc::channel(self.limits.queue_capacity.max(1));
        self.registry
            .insert(id, tx, Arc::clone(&subscription), msg.ip);
        self.count_subscribers();
        Ok(Subscribed {
            receiver,
            backlog: Backlog {
                updates,
                subscription,
                stats: Arc::clone(&self.stats),
            },
            resumed_after,
            guard: SubscriberGuard {
                id,
                broadcaster: ctx.address(),
            },
        })
    }
}

/// The part of history a subscriber missed, sent before its live updates.
#[derive(Debug)]
pub struct Backlog {
    updates: imbl::Vector<Arc<Update>>,
    subscription: Arc<Subscription>,
    stats: Arc<Stats>,
}

impl Backlog {
    /// The next missed update this subscriber wants, oldest first.
    pub fn next_bytes(&mut self) -> Option<Bytes> {
        while let Some(update) = self.updates.pop_front() {
            if self.subscription.wants(&update) {
                self.stats.delivered(1);
                return Some(update.encoded().clone());
            }
        }
        None
    }
}

/// Publishes an update: stores it in history and queues its bytes to every matching subscriber.
#[derive(Debug, Message)]
#[rtype(result = "Result<EventId, PublishRefused>")]
pub struct Publish(pub Update);

/// Why an update was not published.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PublishRefused {
    #[error("an update with id {0} is already in history")]
    DuplicateId(EventId),
    #[error("the hub is shutting down")]
    ShuttingDown,
}

impl Handler<Publish> for Broadcaster {
    type Result = Result<EventId, PublishRefused>;

    fn handle(&mut self, Publish(update): Publish, _: &mut Self::Context) -> Self::Result {
        if self.closing {
            return Err(PublishRefused::ShuttingDown);
        }
        if self.history.contains(update.id()) {
            return Err(PublishRefused::DuplicateId(update.id().clone()));
        }
        let update = Arc::new(update);
        let out = self.registry.fan_out(&update);
        if out.slow + out.left > 0 {
            self.stats.dropped(DropReason::Slow, out.slow);
            self.stats.dropped(DropReason::Left, out.left);
            self.count_subscribers();
        }
        self.stats.published(out.delivered);
        let id = update.id().clone();
        self.history.push(update);
        self.stats
            .set_history(self.history.len(), self.history.bytes());
        Ok(id)
    }
}

/// Removes a subscriber (sent by its [`SubscriberGuard`]).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Unsubscribe(pub SubscriberId);

impl Handler<Unsubscribe> for Broadcaster {
    type Result = ();

    fn handle(&mut self, Unsubscribe(id): Unsubscribe, _: &mut Self::Context) {
        if self.registry.remove(id) {
            self.stats.dropped(DropReason::Left, 1);
            self.count_subscribers();
        }
    }
}

/// Ends every stream (their queued bytes still go out) and refuses new subscribers and updates.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Shutdown;

impl Handler<Shutdown> for Broadcaster {
    type Result = ();

    fn handle(&mut self, _: Shutdown, _: &mut Self::Context) {
        self.closing = true;
        self.registry.clear();
        self.count_subscribers();
    }
}

/// Asks whether the broadcaster takes subscribers (for `/readyz`).
#[derive(Debug, Message)]
#[rtype(result = "bool")]
pub struct Ready;

impl Handler<Ready> for Broadcaster {
    type Result = bool;

    fn handle(&mut self, _: Ready, _: &mut Self::Context) -> bool {
        !self.closing
    }
}

/// Whether an update with this id is in history (a duplicate check before a transport publish).
#[derive(Debug, Message)]
#[rtype(result = "bool")]
pub struct Knows(pub EventId);

impl Handler<Knows> for Broadcaster {
    type Result = bool;

    fn handle(&mut self, Knows(id): Knows, _: &mut Self::Context) -> bool {
        self.history.contains(&id)
    }
}

/// Stores an update in history without fanning it out (a transport loading its stream's tail).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Remember(pub Update);

impl Handler<Remember> for Broadcaster {
    type Result = ();

    fn handle(&mut self, Remember(update): Remember, _: &mut Self::Context) {
        if !self.history.contains(update.id()) {
            self.history.push(Arc::new(update));
            self.stats
                .set_history(self.history.len(), self.history.bytes());
        }
    }
}
