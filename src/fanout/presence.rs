//! The hand-off of subscriptions coming and going, from the broadcaster to the writer that
//! keeps them in Redis (`transport::presence`): a channel that never blocks the broadcaster.

use std::{sync::Arc, time::Duration};

use prometheus::IntGauge;
use tokio::sync::{mpsc, oneshot};

use crate::fanout::active::Announced;

/// What the broadcaster tells the writer.
#[derive(Debug)]
pub(crate) enum Change {
    Started(Arc<Announced>),
    Ended(Arc<Announced>),
    /// Delete this node's hash and answer; the writer ends.
    Stop(oneshot::Sender<()>),
}

/// The broadcaster's end: tells the writer of subscribers coming and going. Never blocks: the
/// queue is unbounded, and stays short however long Redis is away, since the writer then takes
/// changes into its own record at once rather than one transaction at a time (see
/// `transport::presence`'s `Writer::absorb`).
#[derive(Debug, Clone)]
pub struct Presence {
    changes: mpsc::UnboundedSender<Change>,
    /// Changes sent and not yet taken by the writer (a metric).
    queued: IntGauge,
}

/// The writer's end of a [`Presence`], handed to the Redis transport's start.
#[derive(Debug)]
pub struct Changes {
    pub(crate) changes: mpsc::UnboundedReceiver<Change>,
    pub(crate) queued: IntGauge,
    pub(crate) ttl: Duration,
}

impl Presence {
    /// A presence whose writer keeps this node's hash alive for `ttl` past its last renewal;
    /// `queued` counts the changes waiting for the writer.
    #[must_use]
    pub fn channel(ttl: Duration, queued: IntGauge) -> (Self, Changes) {
        let (tx, rx) = mpsc::unbounded_channel();
        let changes = Changes {
            changes: rx,
            queued: queued.clone(),
            ttl,
        };
        (
            Self {
                changes: tx,
                queued,
            },
            changes,
        )
    }

    /// `announced` subscribed: its events go out and its subscriptions are listed.
    pub fn started(&self, announced: Arc<Announced>) {
        self.send(Change::Started(announced));
    }

    /// `announced` left.
    pub fn ended(&self, announced: Arc<Announced>) {
        self.send(Change::Ended(announced));
    }

    fn send(&self, change: Change) {
        if self.changes.send(change).is_ok() {
            self.queued.inc();
        }
    }

    /// Writes what is queued, deletes this node's hash and stops the writer; returns when done
    /// (at once if the writer is gone).
    pub async fn stop(&self) {
        let (tx, rx) = oneshot::channel();
        if self.changes.send(Change::Stop(tx)).is_ok() {
            let _ = rx.await;
        }
    }
}
