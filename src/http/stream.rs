//! The body of one subscriber's SSE response: opening bytes, replay, then live updates, with a
//! heartbeat when idle and an end at the token's expiry.

use std::{
    convert::Infallible,
    future::Future,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use futures_core::Stream;
use tokio::time::{Instant, Sleep};

use crate::{
    fanout::broadcaster::{Backlog, BacklogStep, Subscribed},
    fanout::shard::LocalQueue,
    protocol::sse,
};

/// Streams one subscriber's bytes; dropping it (the client left) unregisters the subscriber.
#[derive(Debug)]
pub struct SubscriberStream {
    /// Opening bytes, sent first.
    opening: Option<Bytes>,
    /// Missed updates, sent after the opening bytes and before anything live.
    backlog: Backlog,
    /// Live updates, from this worker's shard; dropping it unregisters the subscriber.
    queue: LocalQueue,
    keep_alive: Duration,
    /// Fires every `keep_alive`; a heartbeat goes out when nothing was written since the last
    /// firing (so after `keep_alive` to twice that of silence). A write only sets a flag: no
    /// clock read or timer reset per event. `None` when heartbeats are off (`--keep-alive 0`).
    heartbeat: Option<Pin<Box<Sleep>>>,
    wrote_since_beat: bool,
    /// The subscriber's token expiry: the stream ends then.
    expires: Option<Pin<Box<Sleep>>>,
}

impl SubscriberStream {
    /// Builds the stream of a registered subscriber.
    #[must_use]
    pub fn new(
        subscribed: Subscribed,
        queue: LocalQueue,
        retry_ms: u64,
        keep_alive: Duration,
        expires: Option<Instant>,
    ) -> Self {
        Self {
            opening: Some(sse::opening(retry_ms)),
            backlog: subscribed.backlog,
            queue,
            keep_alive,
            heartbeat: (!keep_alive.is_zero()).then(|| Box::pin(tokio::time::sleep(keep_alive))),
            wrote_since_beat: true,
            expires: expires.map(|at| Box::pin(tokio::time::sleep_until(at))),
        }
    }

    fn wrote(&mut self, bytes: Bytes) -> Poll<Option<Result<Bytes, Infallible>>> {
        self.wrote_since_beat = true;
        Poll::Ready(Some(Ok(bytes)))
    }
}

impl Stream for SubscriberStream {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Some(expires) = self.expires.as_mut() {
            if expires.as_mut().poll(cx).is_ready() {
                return Poll::Ready(None);
            }
        }
        if let Some(bytes) = self.opening.take() {
            return self.wrote(bytes);
        }
        match self.backlog.step() {
            BacklogStep::Send(bytes) => return self.wrote(bytes),
            BacklogStep::Yield => {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            BacklogStep::Done => {}
        }
        match self.queue.poll_next(cx) {
            Poll::Ready(Some(bytes)) => return self.wrote(bytes),
            // The broadcaster let go: shutdown, or this subscriber was too slow.
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Pending => {}
        }
        let keep_alive = self.keep_alive;
        let this = &mut *self;
        let Some(heartbeat) = this.heartbeat.as_mut() else {
            return Poll::Pending;
        };
        while heartbeat.as_mut().poll(cx).is_ready() {
            heartbeat.as_mut().reset(Instant::now() + keep_alive);
            // Both are taken: updates written to the socket directly count as writes.
            let wrote = std::mem::take(&mut this.wrote_since_beat) | this.queue.take_direct_write();
            if !wrote {
                // Nothing since the last firing: the heartbeat is the write.
                return Poll::Ready(Some(Ok(sse::HEARTBEAT)));
            }
        }
        Poll::Pending
    }
}
