//! The transport: how an accepted update reaches the broadcasters.
//!
//! - `local` (the default): straight to this process's broadcaster; history in memory.
//! - `redis://host:port/db`: every publish is one `XADD` to a Redis stream (trimmed with
//!   `MAXLEN ~` to the history size); every node reads that stream with a blocking `XREAD` and
//!   hands each update to its broadcaster, so an update published on any node reaches the
//!   subscribers of all of them. At start a node loads the stream's tail into its history, so a
//!   client can resume with `Last-Event-ID` on any node.
//!
//! When Redis is unreachable, publishes answer 503 (never a silent loss), subscribers stay
//! connected, and the reader reconnects with backoff and resumes after the last stream entry it
//! delivered. Before it resumes, it checks whether entries it never read were trimmed from the
//! stream meanwhile (it fell further behind than the stream keeps), and logs that gap once.
//! Each transition is logged once. Readiness follows Redis itself, not the backoff:
//! `/readyz` pings Redis on the publishers' connection, and any answer from Redis (to a publish
//! or a ping) wakes the reader at once; the node is ready when both work.

mod entry_id;
pub mod presence;

use std::{borrow::Cow, collections::HashMap, str::FromStr, sync::Arc, time::Duration};

use actix::Addr;
use redis::{
    aio::MultiplexedConnection,
    streams::{StreamId, StreamRangeReply, StreamReadReply},
    AsyncConnectionConfig, Client,
};
use tokio::sync::{watch, Mutex, Notify};

use self::entry_id::EntryId;
use crate::{
    fanout::broadcaster::{Broadcaster, Knows, Pacing, Publish, PublishRefused, Remember},
    protocol::publication::Publication,
    protocol::topic::Topic,
    protocol::update::{Cursor, EventId, EventType, Update},
    stats::Stats,
};

/// How long a publish waits for Redis before answering 503.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one blocking read waits for new entries.
const READ_BLOCK: Duration = Duration::from_secs(5);
/// Entries taken per read.
const READ_COUNT: usize = 512;
/// Reconnection backoff bounds.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How long a readiness check waits for Redis to answer a PING.
const READY_PING_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a readiness check, once Redis answered, waits for the reader to be connected.
const READY_READER_WAIT: Duration = Duration::from_secs(1);
/// How long a subscriber resuming from an id this node does not hold waits for the reader to
/// catch up with the stream, before its id is taken as unknown (evicted).
const CATCH_UP_WAIT: Duration = Duration::from_secs(2);

/// Which transport, as given by `--transport`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransportKind {
    Local,
    Redis(String),
}

impl FromStr for TransportKind {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        if value == "local" {
            Ok(Self::Local)
        } else if value.starts_with("redis://") {
            Ok(Self::Redis(value.to_owned()))
        } else {
            Err("expected `local` or `redis://host:port/db`".into())
        }
    }
}

/// Why a publish did not go through the transport.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error(transparent)]
    Refused(#[from] PublishRefused),
    /// Redis could not be reached, or did not answer in time: the update may or may not be
    /// in the stream (a command sent before a timeout or a dropped connection may still land).
    #[error("the event stream is unavailable")]
    Unavailable,
}

/// The transport in use.
#[derive(Debug, Clone)]
pub enum Transport {
    Local,
    Redis(Arc<RedisTransport>),
}

impl Transport {
    /// Sets up the transport; for Redis, starts the reader (on the current actix runtime), and
    /// the writer of `presence` when given (`--subscriptions`). The local transport has no use
    /// for `presence`: its broadcaster lists its own subscribers.
    pub fn start(
        kind: &TransportKind,
        stream: &str,
        history_size: usize,
        broadcaster: Addr<Broadcaster>,
        stats: Arc<Stats>,
        presence: Option<crate::fanout::presence::Changes>,
    ) -> Result<Self, redis::RedisError> {
        match kind {
            TransportKind::Local => Ok(Self::Local),
            TransportKind::Redis(url) => {
                let redis = Arc::new(RedisTransport {
                    client: Client::open(url.as_str())?,
                    stream: stream.to_owned(),
                    max_len: history_size.max(1),
                    publisher: Mutex::new(None),
                    up: watch::Sender::new(false),
                    delivered: watch::Sender::new(None),
                    wake: Notify::new(),
                    stats,
                });
                redis.stats.set_transport_up(false);
                actix_web::rt::spawn(Arc::clone(&redis).read(broadcaster, history_size));
                if let Some(changes) = presence {
                    presence::start(Arc::clone(&redis), changes);
                }
                Ok(Self::Redis(redis))
            }
        }
    }

    /// Publishes `form` under `id` and answers the id once the transport has it.
    pub async fn publish(
        &self,
        id: EventId,
        form: Publication,
        broadcaster: &Addr<Broadcaster>,
    ) -> Result<EventId, TransportError> {
        match self {
            Self::Local => Ok(broadcaster
                .send(Publish(form.into_update(id), Pacing::Bounded))
                .await
                .map_err(|_| TransportError::Unavailable)??),
            Self::Redis(redis) => {
                // Idempotent: an id this node's history (the stream's tail) holds is answered
                // as published. One it does not hold yet is added; every node's reader drops
                // the second copy alike (the stream's order decides which is first).
                let known = broadcaster.send(Knows(id.clone())).await;
                if known.map_err(|_| TransportError::Unavailable)? {
                    return Ok(id);
                }
                redis.publish(&id, &form).await?;
                Ok(id)
            }
        }
    }

    /// Before a subscriber resuming after `cursor` is registered: when this node's history
    /// does not hold the cursor's id and the transport is Redis, waits (up to `CATCH_UP_WAIT`)
    /// until the reader has delivered the stream's last entry. The id may simply not be read
    /// yet: a client moving from a node that is ahead must not be sent all history again.
    pub async fn catch_up(&self, cursor: Option<&Cursor>, broadcaster: &Addr<Broadcaster>) {
        let Self::Redis(redis) = self else {
            return;
        };
        let Some(Cursor::After(after)) = cursor else {
            return;
        };
        // An id that can't be an update's is never in history: nothing to wait for.
        let Ok(id) = EventId::parse(after) else {
            return;
        };
        if !matches!(broadcaster.send(Knows(id)).await, Ok(false)) {
            return;
        }
        if tokio::time::timeout(CATCH_UP_WAIT, redis.catch_up())
            .await
            .is_err()
        {
            // Per subscriber, so not a warning: many may reconnect at once.
            log::debug!("the reader did not catch up with the stream in {CATCH_UP_WAIT:?}");
        }
    }

    /// Whether publishing and delivery work now. For Redis: Redis answers a PING, and the
    /// reader is connected (waited for up to a second, since the ping has just woken it).
    pub async fn ready(&self) -> bool {
        match self {
            Self::Local => true,
            Self::Redis(redis) => redis.ready().await,
        }
    }
}

/// What [`RedisTransport::on_publisher`] runs: one command, or a pipeline (a transaction).
trait Query {
    async fn run<T: redis::FromRedisValue>(
        &self,
        conn: &mut MultiplexedConnection,
    ) -> redis::RedisResult<T>;
}

impl Query for redis::Cmd {
    async fn run<T: redis::FromRedisValue>(
        &self,
        conn: &mut MultiplexedConnection,
    ) -> redis::RedisResult<T> {
        self.query_async(conn).await
    }
}

impl Query for redis::Pipeline {
    async fn run<T: redis::FromRedisValue>(
        &self,
        conn: &mut MultiplexedConnection,
    ) -> redis::RedisResult<T> {
        self.query_async(conn).await
    }
}

/// The Redis Streams transport.
#[derive(Debug)]
pub struct RedisTransport {
    client: Client,
    stream: String,
    max_len: usize,
    /// Shared by publishes and readiness checks; dropped on error so the next use reconnects.
    publisher: Mutex<Option<MultiplexedConnection>>,
    /// Whether the reader is connected; a watch, so a readiness check can wait for it.
    up: watch::Sender<bool>,
    /// The last stream entry the reader has handed to the broadcaster (its update is in
    /// history once this moves); a watch, so a resuming subscriber can wait for it.
    delivered: watch::Sender<Option<EntryId>>,
    /// Cuts the reader's backoff short when Redis has just answered on the publishers'
    /// connection: without it, a node would stay unready for up to `BACKOFF_MAX` after Redis is
    /// back, while its publishes already succeed.
    wake: Notify,
    stats: Arc<Stats>,
}

impl RedisTransport {
    /// Connects, named `sse-hub-<role>-<pid>` so `CLIENT LIST` tells whose connection is whose
    /// (and an operator or a test can `CLIENT KILL` one of them).
    async fn connect(
        &self,
        role: &str,
        response_timeout: Duration,
    ) -> redis::RedisResult<MultiplexedConnection> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(PUBLISH_TIMEOUT)
            .set_response_timeout(response_timeout);
        let mut conn = self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        let name = format!("sse-hub-{role}-{}", std::process::id());
        // A server that refuses names (an ACL, a proxy) still serves the stream.
        if let Err(err) = redis::cmd("CLIENT")
            .arg("SETNAME")
            .arg(&name)
            .query_async::<()>(&mut conn)
            .await
        {
            log::debug!("redis refused the connection name {name}: {err}");
        }
        Ok(conn)
    }

    /// Runs `cmd` on the publishers' connection, connecting first if there is none. On an
    /// error the connection is dropped so the next use reconnects; on an answer the reader is
    /// woken if it is down, since Redis is evidently back.
    async fn on_publisher<T: redis::FromRedisValue>(
        &self,
        cmd: &impl Query,
    ) -> Result<T, TransportError> {
        let mut slot = self.publisher.lock().await;
        let mut conn = match slot.as_ref() {
            Some(conn) => conn.clone(),
            None => {
                let conn = self
                    .connect("publisher", PUBLISH_TIMEOUT)
                    .await
                    .map_err(|err| {
                        log::debug!("redis publish connection failed: {err}");
                        TransportError::Unavailable
                    })?;
                *slot = Some(conn.clone());
                conn
            }
        };
        drop(slot);
        match cmd.run::<T>(&mut conn).await {
            Ok(answer) => {
                if !*self.up.borrow() {
                    self.wake.notify_one();
                }
                Ok(answer)
            }
            Err(err) => {
                log::debug!("redis command on the publish connection failed: {err}");
                *self.publisher.lock().await = None;
                Err(TransportError::Unavailable)
            }
        }
    }

    /// See [`Transport::ready`]; the ping also wakes the reader when Redis is back.
    async fn ready(&self) -> bool {
        let ping = tokio::time::timeout(
            READY_PING_TIMEOUT,
            self.on_publisher::<String>(&redis::cmd("PING")),
        )
        .await;
        if !matches!(ping, Ok(Ok(_))) {
            return false;
        }
        let mut up = self.up.subscribe();
        let reader_up = tokio::time::timeout(READY_READER_WAIT, up.wait_for(|up| *up)).await;
        matches!(reader_up, Ok(Ok(_)))
    }

    async fn publish(&self, id: &EventId, form: &Publication) -> Result<(), TransportError> {
        let mut cmd = redis::cmd("XADD");
        cmd.arg(&self.stream)
            .arg("MAXLEN")
            .arg("~")
            .arg(self.max_len)
            .arg("*");
        for (name, value) in encode(id, form) {
            cmd.arg(name).arg(value);
        }
        self.on_publisher::<String>(&cmd).await.map(|_| ())
    }

    /// Waits until the reader has delivered the stream's last entry (as of now); returns at
    /// once if Redis does not answer, since the reader can't catch up then either.
    async fn catch_up(&self) {
        let mut cmd = redis::cmd("XREVRANGE");
        cmd.arg(&self.stream).arg("+").arg("-").arg("COUNT").arg(1);
        let Ok(last) = self.on_publisher::<StreamRangeReply>(&cmd).await else {
            return;
        };
        let Some(target) = last.ids.first().and_then(|e| e.id.parse::<EntryId>().ok()) else {
            return;
        };
        let mut delivered = self.delivered.subscribe();
        let _ = delivered.wait_for(|d| d.is_some_and(|d| d >= target)).await;
    }

    /// Records that the reader has delivered the entry `id`.
    fn set_delivered(&self, id: &str) {
        match id.parse::<EntryId>() {
            Ok(id) => {
                self.delivered.send_replace(Some(id));
            }
            Err(err) => log::debug!("{err}"),
        }
    }

    fn set_up(&self, up: bool) {
        if self.up.send_replace(up) != up {
            if up {
                log::info!("redis transport: connected to stream {:?}", self.stream);
            } else {
                log::warn!("redis transport: lost; publishing answers 503 until it is back");
            }
        }
        self.stats.set_transport_up(up);
    }

    /// Reads the stream forever: loads its tail into history once, then delivers every new
    /// entry in order, reconnecting with backoff and resuming after the last delivered entry.
    async fn read(self: Arc<Self>, broadcaster: Addr<Broadcaster>, history_size: usize) {
        let mut last_id: Option<String> = None;
        let mut backoff = BACKOFF_MIN;
        loop {
            match self
                .read_session(&broadcaster, history_size, &mut last_id)
                .await
            {
                Ok(()) => return,
                Err(err) => {
                    // A session that had connected starts the next wait from the minimum;
                    // only failures in a row back off further.
                    if *self.up.borrow() {
                        log::debug!("redis read failed: {err}");
                        backoff = BACKOFF_MIN;
                    }
                    self.set_up(false);
                    // An answer from Redis on the publishers' connection ends the wait early,
                    // but never before `BACKOFF_MIN`: a reader that keeps failing while Redis
                    // answers publishes retries at most that often, not once per publish.
                    tokio::time::sleep(BACKOFF_MIN).await;
                    tokio::select! {
                        () = tokio::time::sleep(backoff.saturating_sub(BACKOFF_MIN)) => {}
                        () = self.wake.notified() => {}
                    }
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
    }

    /// One connection's worth of reading; `Ok` only when the broadcaster is gone (shutdown).
    async fn read_session(
        &self,
        broadcaster: &Addr<Broadcaster>,
        history_size: usize,
        last_id: &mut Option<String>,
    ) -> redis::RedisResult<()> {
        let mut conn = self.connect("reader", READ_BLOCK * 2).await?;
        if let Some(after) = last_id.as_deref() {
            if let Some(resume) = self.check_gap(&mut conn, after).await? {
                *last_id = Some(resume.to_string());
            }
        } else {
            // First connection: the stream's tail becomes this node's history.
            let tail: StreamRangeReply = redis::cmd("XREVRANGE")
                .arg(&self.stream)
                .arg("+")
                .arg("-")
                .arg("COUNT")
                .arg(history_size.max(1))
                .query_async(&mut conn)
                .await?;
            for entry in tail.ids.iter().rev() {
                if let Some(update) = decode(entry) {
                    broadcaster.do_send(Remember(update));
                }
            }
            *last_id = Some(
                tail.ids
                    .first()
                    .map_or_else(|| "0-0".to_owned(), |e| e.id.clone()),
            );
            // The tail went to the broadcaster's mailbox before any later subscriber's request.
            if let Some(newest) = tail.ids.first() {
                self.set_delivered(&newest.id);
            }
        }
        self.set_up(true);
        loop {
            let from = last_id.clone().unwrap_or_else(|| "0-0".to_owned());
            let reply: Option<StreamReadReply> = redis::cmd("XREAD")
                .arg("BLOCK")
                .arg(u64::try_from(READ_BLOCK.as_millis()).unwrap_or(5000))
                .arg("COUNT")
                .arg(READ_COUNT)
                .arg("STREAMS")
                .arg(&self.stream)
                .arg(&from)
                .query_async(&mut conn)
                .await?;
            for entry in reply.into_iter().flat_map(|r| r.keys).flat_map(|k| k.ids) {
                *last_id = Some(entry.id.clone());
                let Some(update) = decode(&entry) else {
                    log::warn!("skipping stream entry {} that is not an update", entry.id);
                    self.set_delivered(&entry.id);
                    continue;
                };
                // Answered once fanned out: this node reads the next entry at its fan-out's
                // pace, and what it has not read yet waits in the stream, not in memory.
                match broadcaster.send(Publish(update, Pacing::Always)).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(refused)) => {
                        log::info!("stream entry {} not delivered: {refused}", entry.id)
                    }
                    Err(_) => return Ok(()),
                }
                self.set_delivered(&entry.id);
            }
        }
    }
}

impl RedisTransport {
    /// Before resuming after entry `after`: whether entries this node never read were trimmed
    /// meanwhile, which it logs once; answers where to resume instead, if not
    /// `after` (past the gap, so a later resume does not report it again; or the start of a
    /// stream that was recreated, whose ids may be lower).
    async fn check_gap(
        &self,
        conn: &mut MultiplexedConnection,
        after: &str,
    ) -> redis::RedisResult<Option<EntryId>> {
        let Ok(after) = after.parse::<EntryId>() else {
            return Ok(None);
        };
        let stream = &self.stream;
        let exists: bool = redis::cmd("EXISTS")
            .arg(stream)
            .query_async(&mut *conn)
            .await?;
        if !exists {
            log::warn!(
                "redis transport: stream {stream:?} is gone (did Redis restart without its \
                 data?): any update added after entry {after} before it went is lost to this \
                 node's subscribers; reading the stream from its start when it reappears"
            );
            return Ok(Some(EntryId::ZERO));
        }
        let info: HashMap<String, redis::Value> = redis::cmd("XINFO")
            .arg("STREAM")
            .arg(stream)
            .query_async(&mut *conn)
            .await?;
        let field = |name: &str| -> Option<EntryId> {
            let value = info.get(name)?;
            let text: String = match value {
                // `first-entry` is `[id, [field, value, …]]`.
                redis::Value::Array(entry) => redis::from_redis_value(entry.first()?).ok()?,
                other => redis::from_redis_value(other).ok()?,
            };
            text.parse().ok()
        };
        if field("last-generated-id").is_some_and(|last| last < after) {
            log::warn!(
                "redis transport: stream {stream:?} was recreated (its last id is below entry \
                 {after}, the last this node read): reading it from its start"
            );
            return Ok(Some(EntryId::ZERO));
        }
        // Redis trims a stream from its head only: when the first entry left is past `after`,
        // with room for ids between them, entries this node never read may have been trimmed.
        // Ids are not contiguous, so whether any existed can't be told: this errs towards a
        // warning. (`max-deleted-entry-id` would be exact, but Redis 7.0 moves it on XDEL only.)
        let gap = match field("first-entry") {
            Some(first) if first.predecessor() > after => Some((first.predecessor(), first)),
            Some(_) => None,
            // Empty: everything added after `after` is gone.
            None => field("last-generated-id")
                .filter(|last| *last > after)
                .map(|last| (last, last)),
        };
        let Some((resume, up_to)) = gap else {
            return Ok(None);
        };
        let what = if up_to == resume {
            format!("entries after {after} up to {up_to}")
        } else {
            format!("entries after {after} and before {up_to} (if there were any)")
        };
        log::warn!(
            "redis transport: gap in stream {stream:?}: {what} were trimmed before this node \
             read them; its subscribers may have missed updates, and a client that reconnects \
             here gets what this node's history holds after its Last-Event-ID (all of it, for \
             an id it does not know), not the missing ones"
        );
        Ok(Some(resume))
    }
}

/// A publication as the named fields of a stream entry (topics joined by LF, which no topic
/// may contain); [`decode`] reads them back.
fn encode<'a>(id: &'a EventId, form: &'a Publication) -> [(&'static str, Cow<'a, str>); 6] {
    let topics: Vec<&str> = form.topics.iter().map(Topic::as_str).collect();
    [
        ("id", Cow::Borrowed(id.as_str())),
        ("topics", Cow::Owned(topics.join("\n"))),
        ("data", Cow::Borrowed(form.data.as_str())),
        (
            "private",
            Cow::Borrowed(if form.private { "1" } else { "0" }),
        ),
        (
            "type",
            Cow::Borrowed(form.event_type.as_ref().map_or("", EventType::as_str)),
        ),
        (
            "retry",
            Cow::Owned(form.retry.map_or_else(String::new, |r| r.to_string())),
        ),
    ]
}

/// Rebuilds an update from a stream entry (written by [`encode`]).
fn decode(entry: &StreamId) -> Option<Update> {
    let text = |name: &str| entry.get::<String>(name);
    let id = EventId::parse(&text("id")?).ok()?;
    let topics = text("topics")?
        .split('\n')
        .map(Topic::parse)
        .collect::<Result<Vec<_>, _>>()
        .ok()?;
    if topics.is_empty() {
        return None;
    }
    let event_type = text("type")
        .filter(|t| !t.is_empty())
        .and_then(|t| EventType::parse(&t).ok());
    let retry = text("retry").and_then(|r| r.parse().ok());
    let private = text("private").as_deref() == Some("1");
    Some(Update::new(
        id,
        topics,
        &text("data").unwrap_or_default(),
        private,
        event_type.as_ref(),
        retry,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_publication_survives_the_stream_entry_round_trip() {
        let body = "topic=%2Fa&topic=%2Fb&data=x%0A%0Ay&private=on&type=t&retry=5&id=i1";
        let form = Publication::parse(body).unwrap();
        let id = form.id.clone().unwrap();
        let entry = StreamId {
            id: "1-0".into(),
            map: encode(&id, &form)
                .into_iter()
                .map(|(k, v)| {
                    (
                        k.to_owned(),
                        redis::Value::BulkString(v.as_bytes().to_vec()),
                    )
                })
                .collect(),
        };
        let decoded = decode(&entry).expect("a valid entry");
        let original = form.into_update(id);
        assert_eq!(decoded.encoded(), original.encoded());
        assert_eq!(decoded.topics(), original.topics());
        assert!(decoded.is_private());
    }

    #[test]
    fn transports_are_named_local_or_a_redis_url() {
        assert_eq!("local".parse(), Ok(TransportKind::Local));
        assert!(matches!(
            "redis://127.0.0.1:6379/0".parse(),
            Ok(TransportKind::Redis(_))
        ));
        assert!("kafka://x".parse::<TransportKind>().is_err());
    }
}
