//! Hub metrics: Prometheus counters and gauges (atomics, so the fan-out path never takes a lock
//! to count), served as `GET /metrics` and summarised as JSON at `GET /stats`.

use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Mutex,
    },
    time::Instant,
};

use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};
use serde::Serialize;

/// Why a subscriber was removed.
#[derive(Debug, Clone, Copy)]
pub enum DropReason {
    /// Its queue was full: it was not keeping up.
    Slow,
    /// The client went away (or its token expired).
    Left,
}

/// Every metric of the hub, registered in its own registry.
#[derive(Debug)]
pub struct Stats {
    registry: Registry,
    subscribers: IntGauge,
    selectors: IntGauge,
    events_published: IntCounter,
    ticks: IntCounter,
    deliveries: IntCounter,
    direct_writes: IntCounter,
    dropped_slow: IntCounter,
    dropped_left: IntCounter,
    publish_seconds: Histogram,
    history_len: IntGauge,
    history_bytes: IntGauge,
    transport_up: IntGauge,
    presence_queued: IntGauge,
    /// The fan-out's backlog: see [`Stats::fanout_accepted`].
    backlog: Backlog,
}

/// The updates accepted and not yet fanned out by every shard, with when each was accepted
/// (by a number given in acceptance order, so the first entry is the oldest). One lock per
/// update accepted and one per update done, never per delivery.
#[derive(Debug)]
struct Backlog {
    next: AtomicU64,
    since: Mutex<BTreeMap<u64, Instant>>,
    updates: IntGauge,
    oldest_seconds: Gauge,
}

/// A point-in-time copy of the main figures, as served by `GET /stats`.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct Snapshot {
    pub subscribers: u64,
    pub events_published: u64,
    /// Of `events_published`, the server-time updates (`--tick-interval`): the rest are the
    /// publishers' and the hub's own (subscription events).
    pub ticks_published: u64,
    pub events_delivered: u64,
    pub subscribers_dropped_slow: u64,
    pub history_len: u64,
    pub history_bytes: u64,
    /// Updates accepted (taken by this node) and not yet fanned out to every worker's
    /// subscribers: waiting for their commit or for a worker's fan-out.
    pub fanout_backlog: u64,
    /// How long the oldest of them has waited, in milliseconds (0 with none).
    pub fanout_backlog_oldest_ms: u64,
}

fn register<M: prometheus::core::Collector + Clone + 'static>(registry: &Registry, metric: M) -> M {
    registry
        .register(Box::new(metric.clone()))
        .expect("metric names are unique constants");
    metric
}

impl Default for Stats {
    fn default() -> Self {
        let registry =
            Registry::new_custom(Some("sse_hub".into()), None).expect("a valid constant prefix");
        let gauge = |name: &str, help: &str| {
            register(&registry, IntGauge::new(name, help).expect("valid metric"))
        };
        let counter = |name: &str, help: &str| {
            register(
                &registry,
                IntCounter::new(name, help).expect("valid metric"),
            )
        };
        let dropped = register(
            &registry,
            IntCounterVec::new(
                Opts::new(
                    "subscribers_dropped_total",
                    "Subscribers removed, by reason",
                ),
                &["reason"],
            )
            .expect("valid metric"),
        );
        let publish_seconds = register(
            &registry,
            Histogram::with_opts(
                HistogramOpts::new(
                    "publish_duration_seconds",
                    "Time to accept and fan out one publish request",
                )
                .buckets(vec![
                    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05,
                    0.1, 0.25, 1.0,
                ]),
            )
            .expect("valid metric"),
        );
        let transport_up = gauge("transport_up", "1 when the transport can publish");
        transport_up.set(1);
        Self {
            subscribers: gauge("subscribers", "Subscribers connected"),
            selectors: gauge(
                "subscriptions",
                "Topic selectors of the connected subscribers",
            ),
            events_published: counter("events_published_total", "Updates published"),
            ticks: counter(
                "ticks_total",
                "Server-time updates published (counted in events_published_total too)",
            ),
            deliveries: counter("deliveries_total", "Updates queued to subscribers"),
            direct_writes: counter(
                "deliveries_written_directly_total",
                "Deliveries written to the subscriber's socket by the fan-out itself, not queued",
            ),
            dropped_slow: dropped.with_label_values(&["slow"]),
            dropped_left: dropped.with_label_values(&["left"]),
            publish_seconds,
            history_len: gauge("history_updates", "Updates held for replay"),
            history_bytes: gauge("history_bytes", "Bytes of updates held for replay"),
            transport_up,
            presence_queued: gauge(
                "subscription_changes_queued",
                "Subscribers come or gone not yet taken by the writer of the active-subscriptions \
                 list in Redis",
            ),
            backlog: Backlog {
                next: AtomicU64::new(0),
                since: Mutex::new(BTreeMap::new()),
                updates: gauge(
                    "fanout_backlog_updates",
                    "Updates accepted and not yet fanned out to every worker's subscribers \
                     (waiting for their commit or their fan-out)",
                ),
                oldest_seconds: register(
                    &registry,
                    Gauge::new(
                        "fanout_backlog_oldest_seconds",
                        "How long the oldest update of the fan-out's backlog has waited",
                    )
                    .expect("valid metric"),
                ),
            },
            registry,
        }
    }
}

impl Stats {
    pub(crate) fn set_subscribers(&self, subscribers: usize, selectors: usize) {
        self.subscribers
            .set(i64::try_from(subscribers).unwrap_or(i64::MAX));
        self.selectors
            .set(i64::try_from(selectors).unwrap_or(i64::MAX));
    }

    /// A server-time update is about to be published (and counted by [`Stats::published`]).
    pub(crate) fn ticked(&self) {
        self.ticks.inc();
    }

    pub(crate) fn published(&self, deliveries: u64) {
        self.events_published.inc();
        self.deliveries.inc_by(deliveries);
    }

    /// `direct` of the `deliveries` were written to their sockets by the shard.
    pub(crate) fn delivered(&self, deliveries: u64, direct: u64) {
        self.deliveries.inc_by(deliveries);
        self.direct_writes.inc_by(direct);
    }

    pub(crate) fn dropped(&self, reason: DropReason, count: u64) {
        match reason {
            DropReason::Slow => self.dropped_slow.inc_by(count),
            DropReason::Left => self.dropped_left.inc_by(count),
        }
    }

    pub(crate) fn set_history(&self, len: usize, bytes: usize) {
        self.history_len.set(i64::try_from(len).unwrap_or(i64::MAX));
        self.history_bytes
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }

    pub(crate) fn set_transport_up(&self, up: bool) {
        self.transport_up.set(i64::from(up));
    }

    /// The gauge of the changes queued for the active-subscriptions writer (with Redis).
    pub(crate) fn presence_queued(&self) -> IntGauge {
        self.presence_queued.clone()
    }

    /// An update joins the fan-out's backlog; the answer names it for [`Stats::fanout_done`].
    pub(crate) fn fanout_accepted(&self) -> u64 {
        let n = self.backlog.next.fetch_add(1, Ordering::Relaxed);
        let mut since = self.backlog.since.lock().unwrap_or_else(|e| e.into_inner());
        since.insert(n, Instant::now());
        self.backlog
            .updates
            .set(i64::try_from(since.len()).unwrap_or(i64::MAX));
        n
    }

    /// Update `n` of [`Stats::fanout_accepted`] left the backlog: every shard fanned it out,
    /// or it was refused (a failed commit, a hub shutting down).
    pub(crate) fn fanout_done(&self, n: u64) {
        let mut since = self.backlog.since.lock().unwrap_or_else(|e| e.into_inner());
        since.remove(&n);
        self.backlog
            .updates
            .set(i64::try_from(since.len()).unwrap_or(i64::MAX));
    }

    /// Updates in the fan-out's backlog now.
    #[must_use]
    pub fn fanout_backlog(&self) -> usize {
        usize::try_from(self.backlog.updates.get()).unwrap_or(0)
    }

    /// How long the oldest update of the backlog has waited, and sets its gauge.
    fn fanout_oldest(&self) -> std::time::Duration {
        let age = self
            .backlog
            .since
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .next()
            .map(Instant::elapsed)
            .unwrap_or_default();
        self.backlog.oldest_seconds.set(age.as_secs_f64());
        age
    }

    /// Records how long one publish request took.
    pub fn observe_publish(&self, seconds: f64) {
        self.publish_seconds.observe(seconds);
    }

    #[must_use]
    pub fn snapshot(&self) -> Snapshot {
        let count = |v: i64| u64::try_from(v).unwrap_or(0);
        Snapshot {
            subscribers: count(self.subscribers.get()),
            // Publishes, then ticks: the reverse of the order a tick is counted in, so every
            // tick in the first figure is in the second and publishes less ticks is never high.
            events_published: self.events_published.get(),
            ticks_published: self.ticks.get(),
            events_delivered: self.deliveries.get(),
            subscribers_dropped_slow: self.dropped_slow.get(),
            history_len: count(self.history_len.get()),
            history_bytes: count(self.history_bytes.get()),
            fanout_backlog: count(self.backlog.updates.get()),
            fanout_backlog_oldest_ms: u64::try_from(self.fanout_oldest().as_millis())
                .unwrap_or(u64::MAX),
        }
    }

    /// Every metric in the Prometheus text exposition format.
    #[must_use]
    pub fn prometheus_text(&self) -> String {
        self.fanout_oldest();
        let mut out = Vec::new();
        if let Err(err) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            log::error!("cannot encode metrics: {err}");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}
