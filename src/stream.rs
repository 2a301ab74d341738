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
use tokio::{
    sync::mpsc,
    time::{Instant, Sleep},
};

use crate::{
    broadcaster::{Backlog, BacklogStep, Subscribed},
    sse,
};

/// Streams one subscriber's bytes; dropping it (the client left) unregisters the subscriber.
#[derive(Debug)]
pub struct SubscriberStream {
    /// Opening bytes, sent first.
    opening: Option<Bytes>,
    /// Missed updates, sent after the opening bytes and before anything live.
    backlog: Backlog,
    receiver: mpsc::Receiver<Bytes>,
    keep_alive: Duration,
    /// Fires `keep_alive` after the last write; re-armed lazily so a busy stream never touches
    /// the timer per event. `None` when heartbeats are off (`--keep-alive 0`).
    heartbeat: Option<Pin<Box<Sleep>>>,
    last_write: Instant,
    /// The subscriber's token expiry: the stream ends then.
    expires: Option<Pin<Box<Sleep>>>,
    _guard: crate::broadcaster::SubscriberGuard,
}

impl SubscriberStream {
    /// Builds the stream of a registered subscriber.
    #[must_use]
    pub fn new(
        subscribed: Subscribed,
        retry_ms: u64,
        keep_alive: Duration,
        expires: Option<Instant>,
    ) -> Self {
        let now = Instant::now();
        Self {
            opening: Some(sse::opening(retry_ms)),
            backlog: subscribed.backlog,
            receiver: subscribed.receiver,
            keep_alive,
            heartbeat: (!keep_alive.is_zero())
                .then(|| Box::pin(tokio::time::sleep_until(now + keep_alive))),
            last_write: now,
            expires: expires.map(|at| Box::pin(tokio::time::sleep_until(at))),
            _guard: subscribed.guard,
        }
    }

    fn wrote(&mut self, bytes: Bytes) -> Poll<Option<Result<Bytes, Infallible>>> {
        self.last_write = Instant::now();
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
        match self.receiver.poll_recv(cx) {
            Poll::Ready(Some(bytes)) => return self.wrote(bytes),
            // The broadcaster let go: shutdown, or this subscriber was too slow.
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Pending => {}
        }
        let (keep_alive, last_write) = (self.keep_alive, self.last_write);
        let Some(heartbeat) = self.heartbeat.as_mut() else {
            return Poll::Pending;
        };
        while heartbeat.as_mut().poll(cx).is_ready() {
            let now = Instant::now();
            if now >= last_write + keep_alive {
                heartbeat.as_mut().reset(now + keep_alive);
                return self.wrote(sse::HEARTBEAT);
            }
            heartbeat.as_mut().reset(last_write + keep_alive);
        }
        Poll::Pending
    }
}
