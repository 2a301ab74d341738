//! Active subscriptions across nodes (`--subscriptions` with `--transport redis://…`).
//!
//! The broadcaster tells its node's [`Presence`](crate::fanout::presence::Presence) when a subscriber with announced subscriptions
//! comes or goes; one task per node, the writer, turns what is queued into one `MULTI` … `EXEC`:
//! - the subscription events (`active` true or false), added to the event stream like any
//!   publish, so every node delivers them and keeps them in its history;
//! - the node's hash `<stream>:subs:<node>` (field: a subscription's IRI; value: its document,
//!   0.x JSON-LD or 1.0 JSON): one `HSET` per subscriber that comes, one `HDEL` per one that goes;
//! - beside it, the sorted set `<stream>:subs:<node>:iris` of the same IRIs, all of score 0
//!   (`ZADD`, `ZREM`): ordered by IRI, so the subscriptions of one collection (a 0.x topic, a
//!   1.0 matcher), whose IRIs share a prefix, are one range of it;
//! - then a TTL on both (`--subscriptions-ttl`) and the node's id in the set `<stream>:nodes`.
//!
//! Events and hash change in one transaction: a node that has read an event finds its change in
//! the hash, so a list read after taking `lastEventID` is at least as new as that id (a client
//! resuming from it may get a change the list already shows, never miss one).
//!
//! The writer renews the hash's TTL every third of it; a node that crashed renews nothing and
//! Redis drops its hash within the TTL. A write that failed (Redis down) or a hash found gone
//! (it expired during an outage, or Redis restarted empty) is rewritten whole, with its sorted
//! set, from the writer's own record at the next renewal. After a failed write the writer tries
//! Redis again once a second (`RETRY`); in between it takes every queued change into its own
//! record at once (their events are lost, as the failed write's were), so the queue does not
//! grow with an outage's length. A clean stop deletes both.
//!
//! The subscriptions API reads the set, then each node's hash: `HGET` for one subscription; for
//! one topic's or matcher's collection, `ZRANGEBYLEX` over its IRI prefix in each node's sorted set,
//! then `HMGET` of those fields (in O(log n) and the topic's own subscriptions, however many
//! others a node has); for the whole collection, `HSCAN` (a reply holds about `SCAN_COUNT`
//! fields), kept when of the generation asked (by their IRI's segments). Reading the whole collection also takes a node whose hash is gone out of the set,
//! by a script that checks it is still gone (so a node writing at that moment is not dropped).

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use serde_json::Value;
use tokio::sync::oneshot;

use super::{encode, RedisTransport, TransportError};
use crate::{
    fanout::active::{self, Announced, Scope},
    fanout::presence::{Change, Changes},
    protocol::update::EventId,
};

/// Changes the writer takes into one transaction, at most.
const BATCH: usize = 256;
/// Fields per `HSET` when a hash is rewritten whole.
const REWRITE_CHUNK: usize = 1000;
/// Fields a `HSCAN` step asks for.
const SCAN_COUNT: usize = 1000;
/// After a write to Redis failed, how long changes only update the writer's own record before
/// it tries Redis again (by rewriting the list whole).
const RETRY: Duration = Duration::from_secs(1);

/// Removes a node from the set when its hash is gone, in one step (a script runs atomically).
const FORGET_GONE: &str = "if redis.call('EXISTS', KEYS[1]) == 0 then \
                           return redis.call('SREM', KEYS[2], ARGV[1]) end return 0";

fn nodes_key(stream: &str) -> String {
    format!("{stream}:nodes")
}

fn hash_key(stream: &str, node: &str) -> String {
    format!("{stream}:subs:{node}")
}

/// The sorted set of the IRIs in the hash `hash`.
fn iris_key(hash: &str) -> String {
    format!("{hash}:iris")
}

/// The `ZRANGEBYLEX` bounds of the members starting with `prefix`: from `prefix` included to
/// `prefix` with its last byte raised by one excluded, the first string past all of them.
fn lex_range(prefix: &str) -> (Vec<u8>, Vec<u8>) {
    if prefix.is_empty() {
        return (b"-".to_vec(), b"+".to_vec());
    }
    let min = format!("[{prefix}").into_bytes();
    let mut max = format!("({prefix}").into_bytes();
    // UTF-8 holds no byte 0xFF: the last one can always be raised.
    if let Some(last) = max.last_mut() {
        *last += 1;
    }
    (min, max)
}

/// The hash entries of `announced`'s subscriptions: IRI, and the document.
fn entries(announced: &Announced) -> impl Iterator<Item = (String, String)> + '_ {
    announced
        .subscriptions
        .iter()
        .map(|s| (announced.iri(s), announced.object(s, true).to_string()))
}

/// Keeps this node's hash in step with its subscribers.
#[derive(Debug)]
struct Writer {
    redis: Arc<RedisTransport>,
    node: String,
    hash: String,
    /// The sorted set of the hash's fields.
    iris: String,
    nodes: String,
    ttl_ms: u64,
    /// This node's announced subscribers, by id: what its hash should hold.
    members: HashMap<String, Arc<Announced>>,
    /// The hash may differ from `members` (a write failed): rewrite it at the next renewal.
    stale: bool,
    /// When the last write to Redis failed: until [`RETRY`] later, changes are absorbed.
    failed_at: Option<Instant>,
    /// Subscription events absorbed (lost) since Redis last took a write.
    lost: usize,
}

/// Starts the writer of `changes` (on the current actix runtime).
pub(super) fn start(redis: Arc<RedisTransport>, changes: Changes) {
    let node = uuid::Uuid::new_v4().simple().to_string();
    log::info!(
        "active subscriptions: this node is {node} in {}",
        redis.stream
    );
    let writer = Writer {
        hash: hash_key(&redis.stream, &node),
        iris: iris_key(&hash_key(&redis.stream, &node)),
        nodes: nodes_key(&redis.stream),
        node,
        ttl_ms: u64::try_from(changes.ttl.as_millis()).unwrap_or(u64::MAX),
        redis,
        members: HashMap::new(),
        stale: false,
        failed_at: None,
        lost: 0,
    };
    actix_web::rt::spawn(writer.run(changes));
}

impl Writer {
    async fn run(
        mut self,
        Changes {
            mut changes,
            queued,
            ttl,
        }: Changes,
    ) {
        let mut renew = tokio::time::interval(ttl / 3);
        renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut batch = Vec::with_capacity(BATCH);
        loop {
            tokio::select! {
                taken = changes.recv_many(&mut batch, BATCH) => {
                    if taken == 0 {
                        return;
                    }
                    queued.sub(i64::try_from(taken).unwrap_or(i64::MAX));
                    let stop = if self.redis_away().await {
                        // All that is queued, at once.
                        let mut stop = self.absorb(&mut batch);
                        while stop.is_none() && !changes.is_empty() {
                            let taken = changes.recv_many(&mut batch, BATCH).await;
                            queued.sub(i64::try_from(taken).unwrap_or(i64::MAX));
                            stop = self.absorb(&mut batch);
                        }
                        stop
                    } else {
                        self.write(&mut batch).await
                    };
                    if let Some(done) = stop {
                        self.clear().await;
                        let _ = done.send(());
                        return;
                    }
                }
                _ = renew.tick() => self.renew().await,
            }
        }
    }

    /// Whether Redis is away: a write failed less than [`RETRY`] ago, or the list could not be
    /// rewritten now that one is due. A write Redis does not answer takes up to the publish
    /// timeout; trying one per batch while Redis is away would let the queue grow with every
    /// subscriber that comes or goes meanwhile.
    async fn redis_away(&mut self) -> bool {
        let Some(failed_at) = self.failed_at else {
            return false;
        };
        if failed_at.elapsed() < RETRY {
            return true;
        }
        self.rewrite().await;
        self.failed_at.is_some()
    }

    /// While Redis is away: takes `batch` (emptied) into `members` only, at once. Its events
    /// are lost, as they would be in a write Redis does not take; the list is rewritten whole
    /// from `members` once Redis answers. Returns a stop request found in it.
    fn absorb(&mut self, batch: &mut Vec<Change>) -> Option<oneshot::Sender<()>> {
        for change in batch.drain(..) {
            match change {
                Change::Started(announced) => {
                    self.lost += announced.subscriptions.len();
                    self.members.insert(announced.id.clone(), announced);
                }
                Change::Ended(announced) => {
                    self.lost += announced.subscriptions.len();
                    self.members.remove(&announced.id);
                }
                Change::Stop(done) => return Some(done),
            }
        }
        None
    }

    /// Notes that Redis did not take a write: the list may be wrong until rewritten.
    fn failed(&mut self) {
        self.stale = true;
        self.failed_at = Some(Instant::now());
    }

    /// Writes `batch` (emptied) in one transaction; answers a stop request found in it.
    async fn write(&mut self, batch: &mut Vec<Change>) -> Option<oneshot::Sender<()>> {
        let mut pipe = redis::pipe();
        pipe.atomic();
        let (mut events, mut added, mut stop) = (0, false, None);
        for change in batch.drain(..) {
            let (announced, active) = match change {
                Change::Started(announced) => (announced, true),
                Change::Ended(announced) => (announced, false),
                Change::Stop(done) => {
                    stop = Some(done);
                    break;
                }
            };
            for publication in announced.publications(active) {
                let mut xadd = redis::cmd("XADD");
                xadd.arg(&self.redis.stream)
                    .arg("MAXLEN")
                    .arg("~")
                    .arg(self.redis.max_len)
                    .arg("*");
                for (name, value) in encode(&EventId::generate(), &publication) {
                    xadd.arg(name).arg(value);
                }
                pipe.add_command(xadd).ignore();
                events += 1;
            }
            if active {
                let entries: Vec<(String, String)> = entries(&announced).collect();
                if !entries.is_empty() {
                    let fields: Vec<String> = entries.iter().map(|(iri, _)| iri.clone()).collect();
                    pipe.cmd("HSET").arg(&self.hash).arg(entries).ignore();
                    self.index(&mut pipe, &fields);
                }
                self.members.insert(announced.id.clone(), announced);
                added = true;
            } else {
                let fields: Vec<String> = announced
                    .subscriptions
                    .iter()
                    .map(|s| announced.iri(s))
                    .collect();
                if !fields.is_empty() {
                    pipe.cmd("HDEL").arg(&self.hash).arg(&fields).ignore();
                    pipe.cmd("ZREM").arg(&self.iris).arg(&fields).ignore();
                }
                self.members.remove(&announced.id);
            }
        }
        if added {
            self.keep(&mut pipe);
        }
        if events > 0 || added {
            if let Err(err) = self.redis.on_publisher::<()>(&pipe).await {
                log::warn!(
                    "active subscriptions: {events} subscription events lost, Redis did not take \
                     them ({err}); the list is rewritten once Redis answers"
                );
                self.failed();
            }
        }
        stop
    }

    /// Adds `fields` to the sorted set of the hash's fields, all of score 0 (ordered by IRI).
    fn index(&self, pipe: &mut redis::Pipeline, fields: &[String]) {
        let members: Vec<(u8, &String)> = fields.iter().map(|f| (0, f)).collect();
        pipe.cmd("ZADD").arg(&self.iris).arg(members).ignore();
    }

    /// Adds the TTL of the hash and its sorted set, and the node's place in the set, to `pipe`.
    fn keep(&self, pipe: &mut redis::Pipeline) {
        for key in [&self.hash, &self.iris] {
            pipe.cmd("PEXPIRE").arg(key).arg(self.ttl_ms).ignore();
        }
        pipe.cmd("SADD").arg(&self.nodes).arg(&self.node).ignore();
    }

    /// Renews the hash's TTL; rewrites it when it is gone or may be wrong.
    async fn renew(&mut self) {
        if self.members.is_empty() && !self.stale {
            return;
        }
        // Redis did not take a write a moment ago: the next batch of changes tries it again.
        if self.failed_at.is_some_and(|at| at.elapsed() < RETRY) {
            return;
        }
        if !self.stale {
            let mut pipe = redis::pipe();
            pipe.atomic()
                .cmd("PEXPIRE")
                .arg(&self.hash)
                .arg(self.ttl_ms)
                .cmd("PEXPIRE")
                .arg(&self.iris)
                .arg(self.ttl_ms)
                .cmd("SADD")
                .arg(&self.nodes)
                .arg(&self.node)
                .ignore();
            match self.redis.on_publisher::<(bool, bool)>(&pipe).await {
                Ok((true, true)) => return,
                Ok(_) => log::warn!(
                    "active subscriptions: this node's list was gone from Redis (expired while \
                     Redis was away, or Redis restarted empty); writing it again"
                ),
                // Redis is away: the hash may expire meanwhile; the next renewal finds out.
                Err(_) => return,
            }
        }
        self.rewrite().await;
    }

    /// Replaces the hash and its sorted set by what `members` says.
    async fn rewrite(&mut self) {
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("DEL")
            .arg(&self.hash)
            .arg(&self.iris)
            .ignore();
        let fields: Vec<(String, String)> =
            self.members.values().flat_map(|a| entries(a)).collect();
        for chunk in fields.chunks(REWRITE_CHUNK) {
            pipe.cmd("HSET").arg(&self.hash).arg(chunk).ignore();
            let iris: Vec<String> = chunk.iter().map(|(iri, _)| iri.clone()).collect();
            self.index(&mut pipe, &iris);
        }
        if fields.is_empty() {
            pipe.cmd("SREM").arg(&self.nodes).arg(&self.node).ignore();
        } else {
            self.keep(&mut pipe);
        }
        match self.redis.on_publisher::<()>(&pipe).await {
            Ok(()) => {
                self.stale = false;
                self.failed_at = None;
                if self.lost > 0 {
                    log::warn!(
                        "active subscriptions: Redis is back, the list is written again; {} \
                         subscription events were lost while it was away",
                        std::mem::take(&mut self.lost)
                    );
                }
            }
            Err(err) => {
                log::debug!("active subscriptions: rewriting the list failed: {err}");
                self.failed();
            }
        }
    }

    /// Deletes this node's hash, its sorted set and its place in the set (a clean stop).
    async fn clear(&mut self) {
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("DEL")
            .arg(&self.hash)
            .arg(&self.iris)
            .ignore()
            .cmd("SREM")
            .arg(&self.nodes)
            .arg(&self.node)
            .ignore();
        if let Err(err) = self.redis.on_publisher::<()>(&pipe).await {
            log::warn!(
                "active subscriptions: could not delete this node's list ({err}); it expires \
                 by itself"
            );
        }
    }
}

impl RedisTransport {
    /// The active subscriptions of every node in `scope`, of `subscriber` if given, by
    /// subscriber then IRI.
    pub async fn active(
        &self,
        scope: &Scope,
        subscriber: Option<&str>,
    ) -> Result<Vec<Value>, TransportError> {
        let nodes_key = nodes_key(&self.stream);
        let nodes: Vec<String> = self
            .on_publisher(redis::cmd("SMEMBERS").arg(&nodes_key))
            .await?;
        let mut found = Vec::new();
        if let (Scope::Collection(key), Some(subscriber)) = (scope, subscriber) {
            let field = active::iri(key, subscriber);
            let mut pipe = redis::pipe();
            for node in &nodes {
                pipe.cmd("HGET")
                    .arg(hash_key(&self.stream, node))
                    .arg(&field);
            }
            let values: Vec<Option<String>> = self.on_publisher(&pipe).await?;
            found.extend(values.into_iter().flatten());
        } else if let Scope::Collection(key) = scope {
            found = self.collection_active(key, &nodes).await?;
        } else {
            for node in &nodes {
                let hash = hash_key(&self.stream, node);
                let before = found.len();
                let mut cursor = 0u64;
                loop {
                    let mut scan = redis::cmd("HSCAN");
                    scan.arg(&hash).arg(cursor).arg("COUNT").arg(SCAN_COUNT);
                    let (next, page): (u64, Vec<(String, String)>) =
                        self.on_publisher(&scan).await?;
                    let wanted = |iri: &str| {
                        let of = active::generation_of(iri);
                        matches!(scope, Scope::All(g) if of == Some(*g))
                    };
                    found.extend(
                        page.into_iter()
                            .filter(|(iri, _)| wanted(iri))
                            .map(|(_, object)| object),
                    );
                    cursor = next;
                    if cursor == 0 {
                        break;
                    }
                }
                if found.len() == before {
                    self.forget_if_gone(&hash, &nodes_key, node).await;
                }
            }
        }
        let mut objects: Vec<Value> = found
            .iter()
            .filter_map(|object| serde_json::from_str(object).ok())
            .collect();
        objects.sort_by(|a, b| {
            (a["subscriber"].as_str(), a["id"].as_str())
                .cmp(&(b["subscriber"].as_str(), b["id"].as_str()))
        });
        Ok(objects)
    }

    /// The JSON of the collection `key`'s subscriptions on every one of `nodes`: the range of
    /// its IRIs in each node's sorted set (less those of a longer path, see
    /// [`active::in_collection`]), then those fields of the node's hash (two round trips for
    /// all the nodes). A field gone in between (its subscriber left) is left out.
    async fn collection_active(
        &self,
        key: &str,
        nodes: &[String],
    ) -> Result<Vec<String>, TransportError> {
        let (min, max) = lex_range(&active::iri_prefix(key));
        let hashes: Vec<String> = nodes.iter().map(|n| hash_key(&self.stream, n)).collect();
        let mut ranges = redis::pipe();
        for hash in &hashes {
            ranges
                .cmd("ZRANGEBYLEX")
                .arg(iris_key(hash))
                .arg(&min)
                .arg(&max);
        }
        let mut ranges: Vec<Vec<String>> = self.on_publisher(&ranges).await?;
        for fields in &mut ranges {
            fields.retain(|iri| active::in_collection(iri, key));
        }
        let mut objects = redis::pipe();
        // A node without this topic is not a gone node: only the whole list (which reads every
        // hash anyway) takes gone nodes out of the set, so a topic's list stays two round trips.
        for (hash, fields) in hashes.iter().zip(&ranges) {
            if !fields.is_empty() {
                objects.cmd("HMGET").arg(hash).arg(fields);
            }
        }
        if ranges.iter().all(Vec::is_empty) {
            return Ok(Vec::new());
        }
        let objects: Vec<Vec<Option<String>>> = self.on_publisher(&objects).await?;
        Ok(objects.into_iter().flatten().flatten().collect())
    }

    /// Takes `node` out of the set if its hash is gone (it crashed, or has no subscriber: it
    /// comes back with its next one).
    async fn forget_if_gone(&self, hash: &str, nodes_key: &str, node: &str) {
        let mut eval = redis::cmd("EVAL");
        eval.arg(FORGET_GONE)
            .arg(2)
            .arg(hash)
            .arg(nodes_key)
            .arg(node);
        if let Err(err) = self.on_publisher::<i64>(&eval).await {
            log::debug!("active subscriptions: could not forget node {node}: {err}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lex_range_of_a_prefix_holds_what_starts_with_it_and_nothing_else() {
        let key = |s: &str| active::collection(active::Form::Legacy, s);
        let iri = |s: &str| active::iri(&key(s), "urn:uuid:1");
        let prefix = active::iri_prefix(&key("/a"));
        let (min, max) = lex_range(&prefix);
        assert_eq!(min, format!("[{prefix}").into_bytes());
        // `/` raised by one is `0`: `…%2Fa/…` is in, `…%2Fab/…` and `…%2Fa%2Fb/…` are not.
        assert_eq!(max, b"(/.well-known/mercure/subscriptions/%2Fa0".to_vec());
        let inside = |iri: &str| iri.as_bytes() >= &min[1..] && iri.as_bytes() < &max[1..];
        assert!(inside(&iri("/a")));
        assert!(!inside(&iri("/ab")));
        assert!(!inside(&iri("/a/b")));
        assert!(!inside(&iri("/")));
    }
}
