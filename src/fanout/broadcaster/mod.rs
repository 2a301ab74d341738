//! The broadcaster actor: the one place where subscribing, replay and publishing are ordered.
//! It owns the history, asks its membership (`membership.rs`: the subscribers, their counts
//! and limits, the announced subscriptions) and its durable pipeline (`durable.rs`: the updates
//! on their way to the store), and sends each update once to every worker's [`crate::fanout::shard`],
//! which fans it out to the worker's own subscribers.
//!
//! # Slow-consumer policy
//! Nothing awaits a subscriber. Each subscriber has a bounded queue (`--queue-capacity`
//! events) in its worker's shard, and a delivery appends the update's shared bytes to it:
//! - a subscriber whose queue is full is **disconnected**: its queue is closed, so its stream
//!   ends after the bytes already queued and its `EventSource` reconnects (with `Last-Event-ID`,
//!   so it loses nothing still in history); it is counted in `subscribers_dropped_slow`;
//! - a subscriber whose client left is removed at once, by its stream's [`crate::fanout::shard::LocalQueue`] when
//!   actix drops the stream.
//!
//! Subscribing, resuming from history and publishing are all handled by this one actor, so a
//! subscriber is registered and its replay computed in one step: nothing published after its
//! registration is missed and nothing replayed is sent twice.
//!
//! # Durability
//! With a store, an update is delivered and acknowledged only once it is on disk, in publish
//! order; `durable.rs` tells how.
//!
//! # Backpressure
//! A publish is acknowledged only once every shard has fanned its update out
//! ([`crate::fanout::ticket`]), not as soon as it is committed: publishers wait for the
//! fan-out, so when it falls behind they slow down with it and the updates between acceptance
//! and delivery (the fan-out's backlog) are at most as many as the publishes in flight, rather
//! than growing with the overload. `--max-fanout-backlog` bounds those too: past it, a publish
//! is refused (`503`, `Retry-After`, its id) before anything is stored. Updates read from a
//! Redis stream are never refused (another node acknowledged them); the reader takes the next
//! one once this one is fanned out, so a node that falls behind leaves them in the stream.

mod backlog;
mod durable;
mod joined;
mod membership;

use std::{sync::Arc, time::Duration};

use actix::{Actor, Addr, AsyncContext, Context, Handler, Message, ResponseFuture};
use tokio::sync::oneshot;

pub use crate::fanout::registry::SubscriberId;
use crate::fanout::shard::{self, AddShard, ShardId, ShardMsg, ShardSender, Unsubscribe};
use crate::{
    fanout::active::Announced,
    fanout::admission::{Admission, Slot},
    fanout::presence::Presence,
    fanout::subscription::Subscription,
    fanout::ticket::Ticket,
    history::store::{Commit, Loaded, Store, StoreError},
    history::{History, Retention},
    protocol::update::{now_ms, Cursor, EventId, Update, EARLIEST},
    stats::{DropReason, Stats},
};
pub use backlog::{Backlog, BacklogStep};
use durable::{Durable, Pending, Waiter};
pub use joined::Joined;
use membership::Membership;

/// How often updates past `--history-max-age` are looked for.
const EXPIRY_PERIOD: Duration = Duration::from_secs(1);

/// Mailbox size of the actor: publishes and subscribes beyond it wait for room.
const MAILBOX_CAPACITY: usize = 4096;

/// Limits of the broadcaster, from the config.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Subscribers connected at once, beyond which subscribing is refused.
    pub max_subscribers: usize,
    /// Subscribers connected at once from one client address.
    pub max_subscribers_per_ip: usize,
    /// How much history is kept, in memory and in the store alike.
    pub retention: Retention,
    /// Updates accepted and not yet fanned out, past which a publish is refused (0: no bound).
    pub max_fanout_backlog: usize,
}

/// The actor. Start it with [`Broadcaster::new`] (memory only) or [`Broadcaster::durable`],
/// then `.start()`.
#[derive(Debug)]
pub struct Broadcaster {
    /// Every registered subscriber, their places in the limits, the announced subscriptions.
    membership: Membership,
    /// The limits every worker checks (shared with them), and the hub's closing.
    admission: Admission,
    /// Each worker's shard, told of every update.
    shards: Vec<(ShardId, ShardSender)>,
    history: History,
    stats: Arc<Stats>,
    /// `--max-fanout-backlog` (0: no bound).
    max_fanout_backlog: usize,
    closing: bool,
    /// The updates on their way to the store, and what the store holds.
    durable: Durable,
    /// With `--subscriptions` and Redis: where subscribers coming and going are told, so the
    /// events go through the event stream and the list is the cluster's.
    presence: Option<Presence>,
}

impl Broadcaster {
    /// A broadcaster whose history lives in memory only.
    #[must_use]
    pub fn new(limits: Limits, stats: Arc<Stats>) -> Self {
        Self {
            membership: Membership::new(),
            admission: Admission::new(limits.max_subscribers, limits.max_subscribers_per_ip),
            shards: Vec::new(),
            history: History::new(limits.retention),
            stats,
            max_fanout_backlog: limits.max_fanout_backlog,
            closing: false,
            durable: Durable::off(),
            presence: None,
        }
    }

    /// The limits and closing state the workers check before a subscriber costs anything;
    /// give it to every worker before starting the actor.
    #[must_use]
    pub fn admission(&self) -> Admission {
        self.admission.clone()
    }

    /// Tells `presence` of subscribers with announced subscriptions instead of publishing
    /// their events here (a Redis transport writes them to the stream and to its list).
    #[must_use]
    pub fn with_presence(mut self, presence: Option<Presence>) -> Self {
        self.presence = presence;
        self
    }

    /// A broadcaster whose history is `store`'s: `loaded` (read from it, oldest first) is its
    /// history to start with, under the same retention.
    #[must_use]
    pub fn durable(limits: Limits, stats: Arc<Stats>, store: Store, loaded: Vec<Loaded>) -> Self {
        let mut broadcaster = Self::new(limits, stats);
        let trimmed_below = loaded.first().map_or(0, |l| l.key);
        for Loaded { key, update } in loaded {
            broadcaster.history.push(key, Arc::new(update));
        }
        broadcaster.history.expire(now_ms());
        broadcaster.durable = Durable::starting(store, trimmed_below);
        broadcaster.count_history();
        broadcaster
    }

    fn count_subscribers(&self) {
        self.stats
            .set_subscribers(self.membership.len(), self.membership.selectors());
    }

    /// Sends `update` once to every worker's shard, which delivers it to its own subscribers;
    /// `ticket` leaves the backlog once they all have.
    fn fan_out(&mut self, update: &Arc<Update>, ticket: Option<Arc<Ticket>>) {
        self.tell_shards(|| ShardMsg::Update(Arc::clone(update), ticket.clone()));
        // Deliveries are counted by the shards.
        self.stats.published(0);
    }

    /// Sends `msg` (made once per shard) to every shard; forgets shards whose worker is gone.
    fn tell_shards(&mut self, msg: impl Fn() -> ShardMsg) {
        self.shards.retain(|(_, shard)| shard.send(msg()).is_ok());
    }

    fn count_history(&self) {
        self.stats
            .set_history(self.history.len(), self.history.bytes());
    }

    /// Fans `update` out and adds it to history under `key`; `trimmed` is what its commit
    /// deleted from the store; `waiters` hear its id once every shard has fanned it out.
    fn deliver(
        &mut self,
        key: u64,
        update: Arc<Update>,
        trimmed: Option<u64>,
        ticket: Arc<Ticket>,
        waiters: Vec<Waiter>,
    ) {
        if !waiters.is_empty() {
            let id = update.id().clone();
            ticket.then(move || {
                for waiter in waiters {
                    let _ = waiter.send(Ok(id.clone()));
                }
            });
        }
        self.fan_out(&update, Some(ticket));
        self.history.push(key, update);
        self.durable.pushed(&mut self.history, trimmed);
        self.count_history();
    }

    /// Publishes an update the hub makes itself (a subscription event) the way a publisher's
    /// goes: through the store when there is one, so it is in the durable history and the
    /// `lastEventID` of the subscriptions API resumes exactly; in key order with every other
    /// update, so a subscriber's "ended" never comes before its "started". Nobody waits for it.
    fn publish_own(&mut self, update: Update) {
        self.accept(Arc::new(update), Vec::new());
    }

    /// Takes a new update: without a store it is delivered at once; with one it is handed to
    /// the writer and kept pending until its commit. `waiters` hear the outcome either way.
    fn accept(&mut self, update: Arc<Update>, waiters: Vec<Waiter>) {
        let ticket = Ticket::new(&self.stats);
        if !self.durable.is_on() {
            let key = self.history.next_key();
            self.deliver(key, update, None, ticket, waiters);
            return;
        }
        self.durable.append(&self.history, update, waiters, ticket);
    }

    /// Announces that `announced`'s subscriptions started or ended: here, or through the
    /// transport's presence (which never blocks: Redis is written by its own task).
    fn announce(&mut self, announced: &Arc<Announced>, active: bool) {
        // A closing hub takes no updates, its own included.
        if self.closing {
            return;
        }
        match (&self.presence, active) {
            (Some(presence), true) => presence.started(Arc::clone(announced)),
            (Some(presence), false) => presence.ended(Arc::clone(announced)),
            (None, _) => {
                for update in announced.updates(active) {
                    self.publish_own(update);
                }
            }
        }
    }
}

impl From<&Addr<Broadcaster>> for shard::Owner {
    /// The shards report to the broadcaster at `addr`.
    fn from(addr: &Addr<Broadcaster>) -> Self {
        Self::new(addr.clone().recipient(), addr.clone().recipient())
    }
}

impl Actor for Broadcaster {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(MAILBOX_CAPACITY);
        // A weak address: the writer must not keep the actor alive.
        let me = ctx.address().downgrade();
        let started = self.durable.start(move |commit| {
            if let Some(me) = me.upgrade() {
                me.do_send(Committed(commit));
            }
        });
        if let Err(err) = started {
            log::error!("cannot start the store's writer: {err}");
            self.closing = true;
        }
        self.durable.trim_store(&self.history);
        ctx.run_interval(EXPIRY_PERIOD, |this, _| {
            if this.history.expire(now_ms()) {
                this.durable.history_changed();
                this.count_history();
                this.durable.trim_store(&this.history);
            }
        });
    }
}

/// Registers a subscriber and computes its replay, in one step. Sent for a subscriber with a
/// cursor (or whose worker's shard the broadcaster does not know yet); one without is
/// registered by its own worker, which then tells the broadcaster with [`Joined`].
#[derive(Debug, Message)]
#[rtype(result = "Result<Subscribed, SubscribeRefused>")]
pub struct Subscribe {
    /// Where its stream receives: a queue in its worker's shard.
    pub shard: ShardId,
    pub id: SubscriberId,
    pub subscription: Arc<Subscription>,
    /// Where to resume from (`Last-Event-ID`), if the client asked.
    pub cursor: Option<Cursor>,
    /// Its place in the limits, taken on its worker ([`Admission::reserve`]).
    pub slot: Slot,
    /// With `--subscriptions`, a hub-endpoint subscriber: announced now and when it goes.
    pub announced: Option<Announced>,
}

/// A registered subscriber's end of the fan-out.
#[derive(Debug)]
pub struct Subscribed {
    /// The history this subscriber missed, oldest first, not yet filtered: its stream picks
    /// what the subscription wants as it sends, off the broadcaster's thread.
    pub backlog: Backlog,
    /// The `Last-Event-ID` response value, when the request carried a cursor.
    pub resumed_after: Option<String>,
}

/// Why a subscriber was not registered.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SubscribeRefused {
    #[error("the hub is shutting down")]
    ShuttingDown,
    #[error("the subscriber's worker is not known")]
    NoShard,
}

impl Handler<Subscribe> for Broadcaster {
    type Result = Result<Subscribed, SubscribeRefused>;

    fn handle(&mut self, msg: Subscribe, _: &mut Self::Context) -> Self::Result {
        if self.closing {
            return Err(SubscribeRefused::ShuttingDown);
        }
        // Taking the missed part of history is a snapshot in O(log n): no copy, no matching here.
        let (updates, resumed_after) = match &msg.cursor {
            Some(cursor) => {
                let replay = self.history.replay(cursor);
                (replay.updates, Some(replay.resumed_after))
            }
            None => (Default::default(), None),
        };
        let subscription = msg.subscription;
        // From this message on, in the shard's channel, updates reach the subscriber's queue;
        // everything before is in its replay.
        let register = ShardMsg::Register {
            id: msg.id,
            subscription: Arc::clone(&subscription),
        };
        let shard = self.shards.iter().find(|(id, _)| *id == msg.shard);
        if shard.is_none_or(|(_, sender)| sender.send(register).is_err()) {
            return Err(SubscribeRefused::NoShard);
        }
        let selectors = subscription.selectors().len();
        let announced = msg.announced.map(Arc::new);
        if let Some(announced) = &announced {
            // After the registration above: a subscriber of its own subscription events sees
            // them too.
            self.announce(announced, true);
        }
        self.membership
            .join(msg.shard, msg.id, msg.slot, selectors, announced);
        self.count_subscribers();
        Ok(Subscribed {
            backlog: Backlog::new(updates, subscription, Arc::clone(&self.stats)),
            resumed_after,
        })
    }
}

/// Publishes an update: stores it (durably, with a store), adds it to history and queues its
/// bytes to every matching subscriber; answers its id once all that is done (every shard has
/// fanned it out).
///
/// Idempotent: an update whose id is already in history (or on its way there) is answered
/// with its id and neither stored nor delivered again, so a retried publish is harmless.
#[derive(Debug, Message)]
#[rtype(result = "Result<EventId, PublishRefused>")]
pub struct Publish(pub Update, pub Pacing);

/// Whether a publish may be refused when the fan-out is behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pacing {
    /// A publisher's request: refused past `--max-fanout-backlog`, to retry later.
    Bounded,
    /// An update another node already acknowledged (read from the Redis stream): always taken.
    Always,
}

/// Why an update was not published.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum PublishRefused {
    #[error("the hub is shutting down")]
    ShuttingDown,
    #[error("the hub's disk is full: the update was not stored")]
    StorageFull,
    #[error("the hub could not store the update")]
    StorageFailed,
    #[error("the hub's fan-out is behind: the update was not taken")]
    Overloaded,
}

impl From<&StoreError> for PublishRefused {
    fn from(err: &StoreError) -> Self {
        if err.is_full() {
            Self::StorageFull
        } else {
            Self::StorageFailed
        }
    }
}

impl Handler<Publish> for Broadcaster {
    type Result = ResponseFuture<Result<EventId, PublishRefused>>;

    fn handle(&mut self, Publish(update, pacing): Publish, _: &mut Self::Context) -> Self::Result {
        let id = update.id().clone();
        let answer = |result| -> Self::Result { Box::pin(std::future::ready(result)) };
        if self.history.contains(&id) {
            return answer(Ok(id));
        }
        if self.closing {
            return answer(Err(PublishRefused::ShuttingDown));
        }
        let (tx, rx) = oneshot::channel();
        // A retry of an update on its way to disk is answered with it.
        if let Err(tx) = self.durable.wait_for(&id, tx) {
            let bound = self.max_fanout_backlog;
            if pacing == Pacing::Bounded && bound > 0 && self.stats.fanout_backlog() >= bound {
                return answer(Err(PublishRefused::Overloaded));
            }
            self.accept(Arc::new(update), vec![tx]);
        }
        Box::pin(async move { rx.await.unwrap_or(Err(PublishRefused::ShuttingDown)) })
    }
}

/// The store's writer committed (or failed to commit) every pending update up to a key.
#[derive(Debug, Message)]
#[rtype(result = "()")]
struct Committed(Commit);

impl Handler<Committed> for Broadcaster {
    type Result = ();

    fn handle(&mut self, Committed(commit): Committed, _: &mut Self::Context) {
        while let Some(Pending {
            key,
            update,
            trim,
            waiters,
            ticket,
        }) = self.durable.next_committed(&commit)
        {
            match &commit.result {
                Ok(()) => self.deliver(key, update, trim, ticket, waiters),
                Err(err) => {
                    // Out of the backlog (the ticket drops here) before the publisher hears.
                    drop(ticket);
                    for waiter in waiters {
                        let _ = waiter.send(Err(PublishRefused::from(&**err)));
                    }
                }
            }
        }
    }
}

/// Fans an update out to the subscribers now connected, without keeping it: the server-time
/// ticks, which are live-only (stored, they would evict real updates from history).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Broadcast(pub Update);

impl Handler<Broadcast> for Broadcaster {
    type Result = ();

    fn handle(&mut self, Broadcast(update): Broadcast, _: &mut Self::Context) {
        if self.closing {
            return;
        }
        self.stats.ticked();
        self.fan_out(&Arc::new(update), None);
    }
}

// Sent by a shard (the message is defined there: the shard needs nothing from this module).
impl Handler<Unsubscribe> for Broadcaster {
    type Result = ();

    fn handle(&mut self, msg: Unsubscribe, _: &mut Self::Context) {
        let Some(announced) = self.membership.leave(msg.shard, msg.id) else {
            return;
        };
        if let Some(announced) = &announced {
            self.announce(announced, false);
        }
        if !msg.slow {
            self.stats.dropped(DropReason::Left, 1);
        }
        self.count_subscribers();
    }
}

/// Lists this node's active subscriptions (the local transport's list; with Redis the API reads
/// every node's, after [`LastSeen`]), of the API path's scope (one generation's, or one
/// collection's) and subscriber, with the id of the newest update: both taken in one step, so the
/// list is the state as of that id exactly, and a client that subscribes to the events from it
/// gets every change after it and none before.
///
/// With a store, the newest updates may still be pending: the id is then the last pending
/// one's, and the answer waits for its commit, so the id is in history when the client resumes
/// from it. With nothing pending, it is the newest in history (`earliest` when it is empty).
#[derive(Debug, Message)]
#[rtype(result = "ActiveList")]
pub struct ListActive {
    pub scope: crate::fanout::active::Scope,
    pub subscriber: Option<String>,
}

/// The answer to [`ListActive`].
#[derive(Debug)]
pub struct ActiveList {
    pub last_event_id: String,
    /// The subscription objects (`active: true`), by subscriber id (so in connection order)
    /// then selector.
    pub subscriptions: Vec<serde_json::Value>,
}

impl Handler<ListActive> for Broadcaster {
    type Result = ResponseFuture<ActiveList>;

    fn handle(&mut self, msg: ListActive, _: &mut Self::Context) -> Self::Result {
        let subscriptions = self
            .membership
            .listed(&msg.scope, msg.subscriber.as_deref());
        let Some((newest, rx)) = self.durable.wait_for_newest() else {
            let last_event_id = self
                .history
                .last_id()
                .map_or_else(|| EARLIEST.to_owned(), ToString::to_string);
            return Box::pin(std::future::ready(ActiveList {
                last_event_id,
                subscriptions,
            }));
        };
        let last_event_id = newest.to_string();
        Box::pin(async move {
            // Answered once the commit is done, whatever its outcome: had it failed, the id
            // is unknown to history and resuming from it replays all of history, which loses
            // nothing.
            let _ = rx.await;
            ActiveList {
                last_event_id,
                subscriptions,
            }
        })
    }
}

/// The id of the newest update in history (`earliest` when it is empty). With Redis it is the
/// last this node read from the stream: the subscriptions API's `lastEventID`, taken before the
/// cluster's list is read.
#[derive(Debug, Message)]
#[rtype(result = "String")]
pub struct LastSeen;

impl Handler<LastSeen> for Broadcaster {
    type Result = String;

    fn handle(&mut self, _: LastSeen, _: &mut Self::Context) -> String {
        self.history
            .last_id()
            .map_or_else(|| EARLIEST.to_owned(), ToString::to_string)
    }
}

// Sent by a shard before its worker's first subscriber (defined there too).
impl Handler<AddShard> for Broadcaster {
    type Result = ();

    fn handle(&mut self, AddShard { id, sender }: AddShard, _: &mut Self::Context) {
        if self.closing {
            let _ = sender.send(ShardMsg::CloseAll);
        }
        // From here on every update goes to this shard too: its worker may register
        // subscribers without a cursor itself (`LocalQueue::register_here`).
        let _ = sender.send(ShardMsg::Known);
        self.shards.push((id, sender));
    }
}

/// Ends every stream (their queued bytes still go out) and refuses new subscribers and updates;
/// answers the store's writer thread, which ends once what it was given is written and synced.
#[derive(Debug, Message)]
#[rtype(result = "Option<std::thread::JoinHandle<()>>")]
pub struct Shutdown;

impl Handler<Shutdown> for Broadcaster {
    type Result = Option<std::thread::JoinHandle<()>>;

    fn handle(&mut self, _: Shutdown, _: &mut Self::Context) -> Self::Result {
        // Other nodes' watchers hear that this node's subscribers left (their streams end
        // now); a node alone has nobody left to tell.
        if let Some(presence) = &self.presence {
            for announced in self.membership.announced() {
                presence.ended(Arc::clone(announced));
            }
        }
        self.closing = true;
        // Before the shards hear it: a worker that registers a subscriber after its shard
        // ended every stream sees the hub closing (`Admission::close`).
        self.admission.close();
        self.tell_shards(|| ShardMsg::CloseAll);
        self.membership.clear();
        self.count_subscribers();
        self.durable.close()
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
            let key = self.history.next_key();
            self.history.push(key, Arc::new(update));
            self.durable.history_changed();
            self.count_history();
        }
    }
}
