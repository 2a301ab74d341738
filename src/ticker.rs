//! The server-time ticker: an actor that publishes a public `time` update on an interval.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix::{Actor, Addr, AsyncContext, Context, Handler, Message};

use crate::{
    fanout::broadcaster::{Broadcast, Broadcaster},
    protocol::topic::Topic,
    protocol::update::{EventId, EventType, Update},
};

/// Event type of the server-time updates.
pub const TIME_EVENT: &str = "time";

/// Publishes `{"time": RFC 3339, "unix_ms": …, "seq": …}` to its topic every `interval`.
#[derive(Debug)]
pub struct Ticker {
    broadcaster: Addr<Broadcaster>,
    topic: Topic,
    interval: Duration,
    event_type: EventType,
    seq: u64,
}

impl Ticker {
    #[must_use]
    pub fn new(broadcaster: Addr<Broadcaster>, topic: Topic, interval: Duration) -> Self {
        Self {
            broadcaster,
            topic,
            interval,
            event_type: EventType::parse(TIME_EVENT).expect("a valid constant event type"),
            seq: 0,
        }
    }

    fn tick(&mut self) {
        self.seq += 1;
        let now = SystemTime::now();
        let unix_ms = now
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let data = serde_json::json!({
            "time": humantime::format_rfc3339_millis(now).to_string(),
            "unix_ms": unix_ms,
            "seq": self.seq,
        })
        .to_string();
        let update = Update::new(
            EventId::generate(),
            vec![self.topic.clone()],
            &data,
            false,
            Some(&self.event_type),
            None,
        );
        self.broadcaster.do_send(Broadcast(update));
    }
}

impl Actor for Ticker {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(self.interval, |ticker, _| ticker.tick());
    }
}

/// Stops the ticker (at shutdown).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Stop;

impl Handler<Stop> for Ticker {
    type Result = ();

    fn handle(&mut self, _: Stop, ctx: &mut Self::Context) {
        actix::ActorContext::stop(ctx);
    }
}
