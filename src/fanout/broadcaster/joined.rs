//! A subscriber its worker registered itself: the broadcaster records it after the fact.
//!
//! A subscriber without a cursor has no replay, so nothing needs ordering between its
//! registration and the history: its worker registers it with its own shard at once
//! ([`crate::fanout::shard::LocalQueue::register_here`]) and answers, and only then tells the
//! broadcaster, which never makes it wait. Every update the broadcaster fans out after that
//! registration reaches the shard after it, so none is missed; its place in the limits was
//! taken on the worker ([`crate::fanout::admission`]), so the limits stay exact.

use std::sync::Arc;

use actix::{Handler, Message};

use super::{Backlog, Broadcaster, Subscribed};
use crate::{
    fanout::{
        active::Announced, admission::Slot, registry::SubscriberId, shard::ShardId,
        subscription::Subscription,
    },
    stats::Stats,
};

impl Subscribed {
    /// The end of a subscriber its worker registered itself: nothing to replay.
    #[must_use]
    pub fn live(subscription: Arc<Subscription>, stats: Arc<Stats>) -> Self {
        Self {
            backlog: Backlog::new(imbl::Vector::new(), subscription, stats),
            resumed_after: None,
        }
    }
}

/// A subscriber registered by its worker: counted from now on, announced (with
/// `--subscriptions`) and listed until its [`crate::fanout::shard::Unsubscribe`], which its
/// worker sends after this message, so the broadcaster always sees the two in this order.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Joined {
    pub shard: ShardId,
    pub id: SubscriberId,
    /// Its place in the limits, kept while it is a member.
    pub slot: Slot,
    /// How many selectors it has (for the metrics).
    pub selectors: usize,
    /// With `--subscriptions`, a hub-endpoint subscriber: announced now and when it goes.
    pub announced: Option<Announced>,
}

impl Handler<Joined> for Broadcaster {
    type Result = ();

    fn handle(&mut self, msg: Joined, _: &mut Self::Context) {
        // A closing hub ended the subscriber's stream (its worker registered it before its
        // shard ended them all, or it would have seen the hub closing): dropping the message
        // gives its place back.
        if self.closing {
            return;
        }
        let announced = msg.announced.map(Arc::new);
        if let Some(announced) = &announced {
            // After its registration: a subscriber of its own subscription events sees them.
            self.announce(announced, true);
        }
        self.membership
            .join(msg.shard, msg.id, msg.slot, msg.selectors, announced);
        self.count_subscribers();
    }
}
