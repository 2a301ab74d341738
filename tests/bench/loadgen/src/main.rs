//! `loadgen`: the load generator for sse-hub (and, for comparison, nginx + Nchan).
//!
//! It connects many SSE subscribers, publishes numbered and timestamped events at a fixed
//! rate, and reports connect times, delivery latency, missing / duplicate / out-of-order
//! events and the server's CPU and memory. It is built to stay cheap next to the server it
//! measures: raw `TcpStream`s, a hand-written HTTP/1.1 client, one shared read buffer per
//! worker thread, a bitset per subscriber and one shared latency histogram.
//!
//! Traffic only ever goes to 127.0.0.0/8, every run ends by itself (`--max-duration`) and
//! every read has a timeout.

mod proto;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::ops::ControlFlow;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{Parser, ValueEnum};
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::time::{sleep, sleep_until, timeout, timeout_at, Instant};

use proto::{BodyDecoder, BodyStatus, ChunkDecoder, Framing, Histogram, ProcSample, Target};
use sse_parser::{Item, Parser as SseParser};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum PubMode {
    /// `POST` form-encoded `topic` and `data`, with `Authorization: Bearer <token>`.
    Mercure,
    /// `POST` the payload as the raw `text/plain` body.
    Nchan,
}

/// Load generator for sse-hub (Mercure) and nginx + Nchan. Loopback addresses only.
#[derive(Debug, Parser)]
#[command(name = "loadgen", version)]
struct Args {
    /// SSE subscribe URL (http://127.x.x.x or localhost only).
    #[arg(long, value_name = "URL")]
    sub_url: String,
    /// Publish URL.
    #[arg(long, value_name = "URL")]
    pub_url: String,
    /// How to publish.
    #[arg(long, value_enum, default_value_t = PubMode::Mercure)]
    pub_mode: PubMode,
    /// Mercure topic of the published updates.
    #[arg(long, default_value = "/bench")]
    topic: String,
    /// Publisher JWT (mercure mode).
    #[arg(long, env = "LOADGEN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Measured subscribers.
    #[arg(long, default_value_t = 100)]
    subscribers: usize,
    /// Events to publish.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(0..=100_000_000))]
    events: u64,
    /// Events per second (0: as fast as the publishers can go).
    #[arg(long, default_value_t = 100.0)]
    rate: f64,
    /// Payload size in bytes (padded with `x`).
    #[arg(long, default_value_t = 64)]
    data_size: usize,
    /// Publisher connections (keep-alive, one request at a time each).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1024))]
    publishers: u32,
    /// Spread subscribers over source addresses 127.0.0.1..127.0.0.K.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u8).range(1..=254))]
    sources: u8,
    /// Subscriber connects in flight at once.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..))]
    connect_concurrency: u32,
    /// Share of the subscribers (percent) that connect and then never read.
    #[arg(long, default_value_t = 0.0)]
    stalled_percent: f64,
    /// Extra subscribers on --idle-url that should receive nothing (not measured).
    #[arg(long, default_value_t = 0, requires = "idle_url")]
    idle_subscribers: usize,
    /// Subscribe URL of the idle subscribers; `{n}` in it becomes each one's number, so each
    /// can have a selector of its own (e.g. `match_urlpattern=/other/{n}/:id`).
    #[arg(long, value_name = "URL")]
    idle_url: Option<String>,
    /// Each measured subscriber disconnects once mid-run and resumes with Last-Event-ID.
    #[arg(long)]
    drop_resume: bool,
    /// Updates published on --prefill-topic before any subscriber connects, as fast as the
    /// publishers go, so the hub's history holds them (e.g. for a reconnect storm to replay).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=1_000_000))]
    prefill: u64,
    /// Mercure topic of the pre-fill updates.
    #[arg(long, default_value = "/fill")]
    prefill_topic: String,
    /// Reconnect-storm subscribers (not measured): from the first publish on, each connects
    /// with `Last-Event-ID`, reads its opening bytes and replay, disconnects and reconnects,
    /// --storm-rounds times or until publishing ends.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=100_000))]
    storm_subscribers: u32,
    /// Subscribe URL of the storm subscribers (default: --sub-url).
    #[arg(long, value_name = "URL")]
    storm_url: Option<String>,
    /// `Last-Event-ID` the storm subscribers send (`earliest`: replay the whole history).
    #[arg(long, value_name = "ID", default_value = "earliest")]
    storm_last_event_id: String,
    /// Connections each storm subscriber makes at most.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    storm_rounds: u32,
    /// Replayed events a storm connection waits for after its opening bytes (0: none).
    #[arg(long, default_value_t = 0)]
    storm_replay_events: u64,
    /// Longest a storm connection waits for its opening bytes and replay before it hangs up.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    storm_hold: Duration,
    /// Storm connects (connect + response head) in flight at once.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    storm_concurrency: u32,
    /// Resume storm: once --resume-storm-after events are acknowledged, every measured
    /// subscriber drops its connection; once --resume-storm-missed more are, each reconnects
    /// with its `Last-Event-ID` at a random moment within --resume-storm-spread. Reports the
    /// time until the last one has its replay, and the server's exact CPU meanwhile; lost and
    /// duplicated events are the run's `missing` and `duplicates`.
    #[arg(long)]
    resume_storm: bool,
    /// Acknowledged events before the resume storm's subscribers drop.
    #[arg(long, default_value_t = 100)]
    resume_storm_after: u64,
    /// Events acknowledged while they are away (what their replay holds, at least).
    #[arg(long, default_value_t = 1000)]
    resume_storm_missed: u64,
    /// Their reconnects are spread over this long.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    resume_storm_spread: Duration,
    /// Server process to measure (repeatable; CPU and RSS are summed).
    #[arg(long = "server-pid", value_name = "PID")]
    server_pids: Vec<u32>,
    /// Wait after connecting before publishing, and at most this long for deliveries to drain.
    #[arg(long, default_value_t = 1000)]
    settle_ms: u64,
    /// Total time limit of the run.
    #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
    max_duration: Duration,
    /// Time limit of a connect + response head, and of a publish request.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    io_timeout: Duration,
    /// A subscriber that receives nothing (not even a heartbeat) this long gives up.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    read_timeout: Duration,
    /// Runtime worker threads (0: one per CPU).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Print only the JSON line.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Measured,
    Stalled,
    Idle,
}

/// What every subscriber task shares.
#[derive(Debug)]
struct Ctx {
    sub_target: Target,
    idle_target: Option<Target>,
    events: u64,
    io_timeout: Duration,
    read_timeout: Duration,
    hist: Histogram,
    /// Live measured subscribers that have not yet received the last event.
    pending: AtomicI64,
    last_delivery_us: AtomicU64,
    reconnects: AtomicU64,
    reconnect_failures: AtomicU64,
    sem: Semaphore,
    connect_tx: mpsc::UnboundedSender<ConnectMsg>,
    shutdown: watch::Receiver<bool>,
    /// With --resume-storm.
    resume: Option<Arc<Resume>>,
}

/// The resume storm's shared state (--resume-storm).
#[derive(Debug)]
struct Resume {
    /// 0: connected; 1: drop now; 2: reconnect now.
    phase: watch::Receiver<u8>,
    spread: Duration,
    /// Publishes acknowledged so far, and the highest acknowledged sequence number + 1.
    acked: AtomicU64,
    top: AtomicU64,
    /// When phase 2 began.
    reconnect_at: std::sync::OnceLock<Instant>,
    /// Subscribers that dropped and have not had their replay yet.
    waiting: AtomicI64,
    reconnected: AtomicU64,
    /// From phase 2 to the last replay done, and each subscriber's reconnect to its replay.
    last_done_us: AtomicU64,
    replay_us: Histogram,
    all_done: tokio::sync::Notify,
}

impl Resume {
    fn done(&self, since_reconnect: Duration) {
        self.replay_us.record(since_reconnect.as_micros() as u64);
        if let Some(at) = self.reconnect_at.get() {
            self.last_done_us
                .fetch_max(at.elapsed().as_micros() as u64, Ordering::Relaxed);
        }
        if self.waiting.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.all_done.notify_one();
        }
    }
}

#[derive(Debug)]
struct ConnectMsg {
    role: Role,
    result: Result<Duration, String>,
}

/// What one subscriber task hands back.
#[derive(Debug, Default)]
struct SubReport {
    connected: bool,
    end: &'static str,
    deliveries: u64,
    duplicates: u64,
    out_of_order: u64,
    foreign: u64,
    /// Bitset of the sequence numbers received.
    seen: Vec<u64>,
}

/// Per-subscriber bookkeeping while reading.
#[derive(Debug)]
struct Tally {
    measured: bool,
    seen: Vec<u64>,
    deliveries: u64,
    duplicates: u64,
    out_of_order: u64,
    foreign: u64,
    max_seq: Option<u64>,
    /// Distinct sequence numbers received.
    distinct: u64,
    /// Whether every sequence number has come (the subscriber no longer counts as pending).
    has_last: bool,
    drop_after: Option<u64>,
    /// After a resume-storm reconnect: the sequence number its replay ends with (the highest
    /// acknowledged when it reconnected, + 1) and when it reconnected.
    replay_until: Option<(u64, Instant)>,
}

impl Tally {
    /// Counts one event (its payload, if it is one of loadgen's); returns true when the
    /// subscriber should now drop its connection.
    fn event(&mut self, ctx: &Ctx, payload: Option<(u64, u64)>, now_us: u64) -> bool {
        let (seq, sent_us) = match payload {
            Some((seq, sent_us)) if !self.measured || seq < ctx.events => (seq, sent_us),
            _ => {
                self.foreign += 1;
                return false;
            }
        };
        self.deliveries += 1;
        if !self.measured {
            return false;
        }
        let (word, bit) = ((seq / 64) as usize, 1u64 << (seq % 64));
        if self.seen[word] & bit != 0 {
            self.duplicates += 1;
        } else {
            self.seen[word] |= bit;
            ctx.hist.record(now_us.saturating_sub(sent_us));
            if self.max_seq.is_some_and(|m| seq < m) {
                self.out_of_order += 1;
            }
            self.distinct += 1;
            // Complete once every update has come, not once the last number has: with several
            // publishers an update may overtake one published just before it.
            if self.distinct == ctx.events && !self.has_last {
                self.has_last = true;
                ctx.pending.fetch_sub(1, Ordering::Relaxed);
            }
        }
        self.max_seq = self.max_seq.max(Some(seq));
        if let Some((until, since)) = self.replay_until {
            if seq + 1 >= until {
                self.replay_until = None;
                if let Some(resume) = &ctx.resume {
                    resume.done(since.elapsed());
                }
            }
        }
        match self.drop_after {
            Some(n) if self.deliveries >= n => {
                self.drop_after = None;
                true
            }
            _ => false,
        }
    }
}

/// One subscriber connection's decoding state.
#[derive(Debug)]
struct Conn {
    body: BodyDecoder,
    sse: SseParser,
}

#[derive(Debug)]
enum Flow {
    Continue,
    Drop,
    /// The resume storm's drop: wait for its reconnect phase, then resume.
    StormDrop,
    End(&'static str),
}

thread_local! {
    /// One read buffer per runtime thread: a waiting subscriber holds no buffer at all.
    static READ_BUF: RefCell<Vec<u8>> = RefCell::new(vec![0; 64 * 1024]);
}

fn unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Decodes and counts what was just read.
fn handle_bytes(ctx: &Ctx, conn: &mut Conn, tally: &mut Tally, bytes: &[u8]) -> Flow {
    let mut now_us = None;
    let mut drop_now = false;
    let mut error = None;
    let Conn { body, sse } = conn;
    let status = body.feed(bytes, &mut |chunk| {
        let r = sse.feed(chunk, |item| {
            let Item::Event(ev) = item else {
                return ControlFlow::Continue(());
            };
            let now = *now_us.get_or_insert_with(unix_micros);
            drop_now = tally.event(ctx, proto::parse_payload(ev.data), now);
            if drop_now {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        });
        r.unwrap_or_else(|e| {
            error = Some(e.to_string());
            ControlFlow::Break(0)
        })
        .is_continue()
    });
    if let Some(now) = now_us {
        ctx.last_delivery_us.fetch_max(now, Ordering::Relaxed);
    }
    match (status, error) {
        (Err(e), _) | (_, Some(e)) => {
            log::debug!("subscriber protocol error: {e}");
            Flow::End("protocol error")
        }
        _ if drop_now => Flow::Drop,
        (Ok(BodyStatus::Complete), _) => Flow::End("response ended"),
        _ => Flow::Continue,
    }
}

/// Connects from `src`, sends the SSE request and reads the response head. Returns the
/// stream, its body decoder and the body bytes that came with the head.
async fn open_stream(
    target: &Target,
    src: Ipv4Addr,
    last_id: Option<&[u8]>,
    limit: Duration,
) -> Result<(TcpStream, BodyDecoder, Vec<u8>), String> {
    let deadline = Instant::now() + limit;
    let sock = TcpSocket::new_v4().map_err(|e| format!("socket: {}", e.kind()))?;
    sock.bind(SocketAddr::V4(SocketAddrV4::new(src, 0)))
        .map_err(|e| format!("bind {src}: {}", e.kind()))?;
    let mut stream = timeout_at(deadline, sock.connect(target.addr))
        .await
        .map_err(|_| "connect timeout".to_string())?
        .map_err(|e| format!("connect: {}", e.kind()))?;
    let _ = stream.set_nodelay(true);
    let mut req = Vec::with_capacity(256);
    req.extend_from_slice(
        format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\nUser-Agent: sse-hub-loadgen\r\n",
            target.path, target.host_header
        )
        .as_bytes(),
    );
    if let Some(id) = last_id {
        req.extend_from_slice(b"Last-Event-ID: ");
        req.extend_from_slice(id);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"\r\n");
    timeout_at(deadline, stream.write_all(&req))
        .await
        .map_err(|_| "request timeout".to_string())?
        .map_err(|e| format!("write: {}", e.kind()))?;
    let mut buf = Vec::with_capacity(1024);
    let (head, len) = proto::read_head(&mut stream, &mut buf, deadline).await?;
    if head.status != 200 {
        return Err(format!("HTTP {}", head.status));
    }
    buf.drain(..len);
    buf.shrink_to_fit();
    Ok((stream, BodyDecoder::new(head.framing), buf))
}

/// One subscriber: connect (within the connect concurrency), then read until shutdown.
async fn subscriber(
    ctx: Arc<Ctx>,
    role: Role,
    src: Ipv4Addr,
    drop_after: Option<u64>,
    number: usize,
) -> SubReport {
    let mut shutdown = ctx.shutdown.clone();
    let mut rep = SubReport {
        end: "not connected",
        ..SubReport::default()
    };
    let numbered;
    let target = match (role, &ctx.idle_target) {
        (Role::Idle, Some(t)) if t.path.contains("{n}") => {
            numbered = Target {
                path: t.path.replace("{n}", &number.to_string()),
                ..t.clone()
            };
            &numbered
        }
        (Role::Idle, Some(t)) => t,
        _ => &ctx.sub_target,
    };
    let permit = tokio::select! {
        biased;
        _ = shutdown.wait_for(|s| *s) => None,
        p = ctx.sem.acquire() => p.ok(),
    };
    let Some(permit) = permit else {
        let _ = ctx.connect_tx.send(ConnectMsg {
            role,
            result: Err("cancelled".into()),
        });
        return rep;
    };
    let started = Instant::now();
    let opened = open_stream(target, src, None, ctx.io_timeout).await;
    drop(permit);
    let (mut stream, body, leftover) = match opened {
        Ok(x) => x,
        Err(e) => {
            let _ = ctx.connect_tx.send(ConnectMsg {
                role,
                result: Err(e),
            });
            return rep;
        }
    };
    let measured = role == Role::Measured;
    if measured {
        ctx.pending.fetch_add(1, Ordering::Relaxed);
    }
    let _ = ctx.connect_tx.send(ConnectMsg {
        role,
        result: Ok(started.elapsed()),
    });
    rep.connected = true;
    if role == Role::Stalled {
        // Hold the connection and never read.
        let _ = shutdown.wait_for(|s| *s).await;
        drop(stream);
        rep.end = "shutdown";
        return rep;
    }

    let mut tally = Tally {
        measured,
        seen: if measured {
            vec![0; ctx.events.div_ceil(64) as usize]
        } else {
            Vec::new()
        },
        deliveries: 0,
        duplicates: 0,
        out_of_order: 0,
        foreign: 0,
        max_seq: None,
        distinct: 0,
        has_last: false,
        drop_after,
        replay_until: None,
    };
    let mut conn = Conn {
        body,
        sse: proto::sse_parser(None),
    };
    let mut flow = handle_bytes(&ctx, &mut conn, &mut tally, &leftover);
    drop(leftover);
    let mut stormed = false;
    let mut rng = unix_micros() ^ (u64::from(u32::from(src)) << 20);
    let end = loop {
        match flow {
            Flow::Continue => {}
            Flow::End(reason) => break reason,
            Flow::Drop | Flow::StormDrop => {
                // Disconnect, and resume at once from the last id received (in a storm: at a
                // random moment of its reconnect phase).
                drop(stream);
                if matches!(flow, Flow::StormDrop) {
                    let Some(resume) = ctx.resume.as_deref() else {
                        break "resume storm";
                    };
                    stormed = true;
                    resume.waiting.fetch_add(1, Ordering::Relaxed);
                    let mut phase = resume.phase.clone();
                    let delay = Duration::from_micros(
                        splitmix(&mut rng) % (resume.spread.as_micros() as u64).max(1),
                    );
                    let ready = async {
                        let _ = phase.wait_for(|p| *p >= 2).await;
                        sleep(delay).await;
                    };
                    tokio::select! {
                        biased;
                        _ = shutdown.wait_for(|s| *s) => break "shutdown",
                        () = ready => {}
                    }
                    let until = resume.top.load(Ordering::Relaxed);
                    resume.reconnected.fetch_add(1, Ordering::Relaxed);
                    if until == 0 || tally.max_seq.is_some_and(|m| m + 1 >= until) {
                        resume.done(Duration::ZERO);
                    } else {
                        tally.replay_until = Some((until, Instant::now()));
                    }
                }
                ctx.reconnects.fetch_add(1, Ordering::Relaxed);
                let mut last_id = conn.sse.last_event_id().to_vec();
                if last_id.is_empty() {
                    // Told to drop before its first event (a storm on a loaded machine): it
                    // connected before any was published, so it missed all of history.
                    last_id = b"earliest".to_vec();
                }
                let mut reopened = None;
                for attempt in 0..3 {
                    if attempt > 0 {
                        sleep(Duration::from_millis(100)).await;
                    }
                    match open_stream(target, src, Some(&last_id), ctx.io_timeout).await {
                        Ok(x) => {
                            reopened = Some(x);
                            break;
                        }
                        Err(e) => log::warn!("resume failed: {e}"),
                    }
                }
                let Some((s, body, leftover)) = reopened else {
                    ctx.reconnect_failures.fetch_add(1, Ordering::Relaxed);
                    break "reconnect failed";
                };
                stream = s;
                conn = Conn {
                    body,
                    sse: proto::sse_parser(Some(last_id)),
                };
                flow = handle_bytes(&ctx, &mut conn, &mut tally, &leftover);
                continue;
            }
        }
        // Read straight into this thread's buffer and count what came, all inside one poll
        // (tokio's poll_read also clears the readiness after a short read, which saves the
        // extra read() that ends in EAGAIN).
        let read = std::future::poll_fn(|cx| {
            READ_BUF.with(|cell| {
                let mut buf = cell.borrow_mut();
                let mut rb = ReadBuf::new(&mut buf);
                match Pin::new(&mut stream).poll_read(cx, &mut rb) {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(Err(_)) => Poll::Ready(Flow::End("read error")),
                    Poll::Ready(Ok(())) if rb.filled().is_empty() => {
                        Poll::Ready(Flow::End("closed by server"))
                    }
                    Poll::Ready(Ok(())) => {
                        Poll::Ready(handle_bytes(&ctx, &mut conn, &mut tally, rb.filled()))
                    }
                }
            })
        });
        let storm_drop = async {
            match (&ctx.resume, stormed || !measured) {
                (Some(resume), false) => {
                    let _ = resume.phase.clone().wait_for(|p| *p >= 1).await;
                }
                _ => std::future::pending().await,
            }
        };
        flow = tokio::select! {
            biased;
            _ = shutdown.wait_for(|s| *s) => break "shutdown",
            () = storm_drop => Flow::StormDrop,
            r = timeout(ctx.read_timeout, read) => match r {
                Err(_) => break "read timeout",
                Ok(flow) => flow,
            },
        };
    };
    if measured && end != "shutdown" && !tally.has_last {
        ctx.pending.fetch_sub(1, Ordering::Relaxed);
    }
    rep.end = end;
    rep.deliveries = tally.deliveries;
    rep.duplicates = tally.duplicates;
    rep.out_of_order = tally.out_of_order;
    rep.foreign = tally.foreign;
    rep.seen = tally.seen;
    rep
}

// ---------------------------------------------------------------------------------------------
// Publishing

#[derive(Debug)]
struct PubCfg {
    target: Target,
    mode: PubMode,
    topic_enc: Vec<u8>,
    token: Option<String>,
    events: u64,
    rate: f64,
    data_size: usize,
    io_timeout: Duration,
    start: Instant,
    deadline: Instant,
    next: AtomicU64,
    /// Round trip of each answered publish request, as the publisher sees it.
    rtt: Histogram,
    /// With --resume-storm: told of every acknowledged publish.
    resume: std::sync::OnceLock<Arc<Resume>>,
}

impl PubCfg {
    /// Publishing `events` to `topic` at `rate` (0: as fast as possible) from now, with the
    /// mode, token, payload size and timeouts of `args`.
    fn new(
        args: &Args,
        target: Target,
        topic: &str,
        events: u64,
        rate: f64,
        deadline: Instant,
    ) -> Arc<Self> {
        let mut topic_enc = Vec::new();
        proto::form_encode(&mut topic_enc, topic.as_bytes());
        Arc::new(Self {
            target,
            mode: args.pub_mode,
            topic_enc,
            token: args.token.clone(),
            events,
            rate,
            data_size: args.data_size,
            io_timeout: args.io_timeout,
            start: Instant::now(),
            deadline,
            next: AtomicU64::new(0),
            rtt: Histogram::default(),
            resume: std::sync::OnceLock::new(),
        })
    }
}

#[derive(Debug, Default)]
struct PubReport {
    ok: Vec<u64>,
    ok_count: u64,
    errors: u64,
    reasons: BTreeMap<String, u64>,
    last_done: Option<Instant>,
}

#[derive(Debug)]
struct PubConn {
    stream: TcpStream,
    buf: Vec<u8>,
    used: bool,
}

async fn pub_connect(cfg: &PubCfg) -> Result<PubConn, String> {
    let stream = timeout(cfg.io_timeout, TcpStream::connect(cfg.target.addr))
        .await
        .map_err(|_| "connect timeout".to_string())?
        .map_err(|e| format!("connect: {}", e.kind()))?;
    let _ = stream.set_nodelay(true);
    Ok(PubConn {
        stream,
        buf: Vec::with_capacity(4096),
        used: false,
    })
}

async fn read_more(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    deadline: Instant,
) -> Result<usize, String> {
    buf.reserve(8192);
    match timeout_at(deadline, stream.read_buf(buf)).await {
        Err(_) => Err("response timeout".to_string()),
        Ok(Err(e)) => Err(format!("read: {}", e.kind())),
        Ok(Ok(n)) => Ok(n),
    }
}

/// Sends one request and reads the whole response. Returns the status and whether the
/// connection can be reused.
async fn pub_exchange(
    conn: &mut PubConn,
    req: &[u8],
    deadline: Instant,
) -> Result<(u16, bool), String> {
    let PubConn { stream, buf, .. } = conn;
    timeout_at(deadline, stream.write_all(req))
        .await
        .map_err(|_| "request timeout".to_string())?
        .map_err(|e| format!("write: {}", e.kind()))?;
    buf.clear();
    let (head, len) = proto::read_head(stream, buf, deadline).await?;
    match head.framing {
        Framing::Empty => {}
        Framing::Length(n) => {
            while ((buf.len() - len) as u64) < n {
                if read_more(stream, buf, deadline).await? == 0 {
                    return Err("connection closed inside the response body".into());
                }
            }
        }
        Framing::Chunked => {
            let mut dec = ChunkDecoder::default();
            let mut pos = len;
            loop {
                if dec.feed(&buf[pos..], &mut |_| true)? == BodyStatus::Complete {
                    break;
                }
                pos = buf.len();
                if read_more(stream, buf, deadline).await? == 0 {
                    return Err("connection closed inside the response body".into());
                }
            }
        }
        Framing::Close => {
            while read_more(stream, buf, deadline).await? > 0 {
                if buf.len() > 1 << 20 {
                    buf.clear();
                }
            }
        }
    }
    buf.clear();
    Ok((head.status, !head.close))
}

fn build_request(
    cfg: &PubCfg,
    seq: u64,
    req: &mut Vec<u8>,
    payload: &mut Vec<u8>,
    body: &mut Vec<u8>,
) {
    proto::build_payload(payload, seq, unix_micros(), cfg.data_size);
    body.clear();
    let content_type = match cfg.mode {
        PubMode::Mercure => {
            body.extend_from_slice(b"topic=");
            body.extend_from_slice(&cfg.topic_enc);
            body.extend_from_slice(b"&data=");
            proto::form_encode(body, payload);
            "application/x-www-form-urlencoded"
        }
        PubMode::Nchan => {
            body.extend_from_slice(payload);
            "text/plain"
        }
    };
    req.clear();
    req.extend_from_slice(
        format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: sse-hub-loadgen\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n",
            cfg.target.path,
            cfg.target.host_header,
            body.len()
        )
        .as_bytes(),
    );
    if let (PubMode::Mercure, Some(token)) = (cfg.mode, &cfg.token) {
        req.extend_from_slice(format!("Authorization: Bearer {token}\r\n").as_bytes());
    }
    req.extend_from_slice(b"\r\n");
    req.extend_from_slice(body);
}

/// One publisher connection: takes the next sequence number, waits for its slot, publishes
/// and waits for the answer.
async fn publisher(cfg: Arc<PubCfg>) -> PubReport {
    let mut rep = PubReport {
        ok: vec![0; cfg.events.div_ceil(64) as usize],
        ..PubReport::default()
    };
    let mut conn: Option<PubConn> = None;
    let (mut req, mut payload, mut body) = (Vec::new(), Vec::new(), Vec::new());
    loop {
        let seq = cfg.next.fetch_add(1, Ordering::Relaxed);
        if seq >= cfg.events {
            break;
        }
        if cfg.rate > 0.0 {
            let due = cfg.start + Duration::from_secs_f64(seq as f64 / cfg.rate);
            if due >= cfg.deadline {
                break;
            }
            sleep_until(due).await;
        }
        if Instant::now() >= cfg.deadline {
            break;
        }
        let sent = Instant::now();
        let mut result = Err(String::new());
        for _attempt in 0..2 {
            let c = match conn.take() {
                Some(c) => c,
                None => match pub_connect(&cfg).await {
                    Ok(c) => c,
                    Err(e) => {
                        result = Err(e);
                        sleep(Duration::from_millis(50)).await;
                        break;
                    }
                },
            };
            let mut c = c;
            build_request(&cfg, seq, &mut req, &mut payload, &mut body);
            let deadline = (Instant::now() + cfg.io_timeout).min(cfg.deadline + cfg.io_timeout);
            result = pub_exchange(&mut c, &req, deadline).await;
            match &result {
                Ok((_, reuse)) => {
                    if *reuse {
                        c.used = true;
                        conn = Some(c);
                    }
                    break;
                }
                // A kept-alive connection the server had closed (EOF or reset before any
                // byte of a response): retry once on a new connection.
                Err(e) if c.used && c.buf.is_empty() && !e.contains("timeout") => continue,
                Err(_) => break,
            }
        }
        if result.is_ok() {
            cfg.rtt.record(sent.elapsed().as_micros() as u64);
        }
        match result {
            Ok((status, _)) if (200..300).contains(&status) => {
                rep.ok[(seq / 64) as usize] |= 1 << (seq % 64);
                rep.ok_count += 1;
                if let Some(resume) = cfg.resume.get() {
                    resume.top.fetch_max(seq + 1, Ordering::Relaxed);
                    resume.acked.fetch_add(1, Ordering::Relaxed);
                }
            }
            Ok((status, _)) => {
                rep.errors += 1;
                *rep.reasons.entry(format!("HTTP {status}")).or_default() += 1;
            }
            Err(e) => {
                rep.errors += 1;
                *rep.reasons.entry(e).or_default() += 1;
            }
        }
        rep.last_done = Some(Instant::now());
    }
    rep
}

/// Publishes `--prefill` numbered updates on `--prefill-topic` as fast as the publishers go;
/// returns how many were accepted and how many failed.
async fn prefill(args: &Args, target: &Target, deadline: Instant) -> (u64, u64) {
    let cfg = PubCfg::new(
        args,
        target.clone(),
        &args.prefill_topic,
        args.prefill,
        0.0,
        deadline,
    );
    let pubs: Vec<_> = (0..args.publishers)
        .map(|_| tokio::spawn(publisher(cfg.clone())))
        .collect();
    let (mut ok, mut errors) = (0, 0);
    for h in pubs {
        if let Ok(r) = h.await {
            ok += r.ok_count;
            errors += r.errors;
        }
    }
    (ok, errors)
}

// ---------------------------------------------------------------------------------------------
// Reconnect storm

/// What every storm subscriber shares.
#[derive(Debug)]
struct Storm {
    target: Target,
    last_id: Vec<u8>,
    rounds: u32,
    replay_events: u64,
    hold: Duration,
    io_timeout: Duration,
    sem: Semaphore,
    /// Time from the start of a connect to its response head.
    head_us: Histogram,
    /// Connections whose opening bytes and wanted replay arrived.
    completed: AtomicU64,
    /// Connections that ended or hit --storm-hold before that.
    incomplete: AtomicU64,
    /// Connects that failed (refused, timed out, not 200).
    failures: AtomicU64,
    /// Events the storm connections received (replayed or live).
    events: AtomicU64,
    reasons: std::sync::Mutex<BTreeMap<String, u64>>,
    stop: watch::Receiver<bool>,
    start: Instant,
    /// When the last storm subscriber finished, in µs after `start`.
    finished_us: AtomicU64,
}

/// Counts a storm connection's body bytes and events; true once its opening bytes and
/// `want` events have come, or the body ended or broke (nothing more will come).
fn storm_feed(
    body: &mut BodyDecoder,
    sse: &mut SseParser,
    got: &mut (usize, u64),
    want: u64,
    bytes: &[u8],
) -> bool {
    let status = body.feed(bytes, &mut |chunk| {
        got.0 += chunk.len();
        sse.feed(chunk, |item| {
            if let Item::Event(_) = item {
                got.1 += 1;
            }
            ControlFlow::Continue(())
        })
        .is_ok()
    });
    !matches!(status, Ok(BodyStatus::More)) || (got.0 > 0 && got.1 >= want)
}

/// One storm subscriber: up to `rounds` times, connect with `Last-Event-ID`, read the opening
/// bytes and the replay (at most `hold` long), and hang up; stops when the storm is stopped.
async fn storm_subscriber(storm: Arc<Storm>, src: Ipv4Addr) {
    storm_rounds(&storm, src).await;
    let done = storm.start.elapsed().as_micros() as u64;
    storm.finished_us.fetch_max(done, Ordering::Relaxed);
}

async fn storm_rounds(storm: &Storm, src: Ipv4Addr) {
    let mut stop = storm.stop.clone();
    for _ in 0..storm.rounds {
        let permit = tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => return,
            p = storm.sem.acquire() => p,
        };
        let Ok(permit) = permit else { return };
        let started = Instant::now();
        let opened = open_stream(&storm.target, src, Some(&storm.last_id), storm.io_timeout).await;
        drop(permit);
        let (mut stream, mut body, leftover) = match opened {
            Ok(x) => x,
            Err(e) => {
                storm.failures.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut reasons) = storm.reasons.lock() {
                    *reasons.entry(e).or_default() += 1;
                }
                // Pause as a client would rather than spin on an error.
                tokio::select! {
                    biased;
                    _ = stop.wait_for(|s| *s) => return,
                    () = sleep(Duration::from_millis(100)) => continue,
                }
            }
        };
        storm.head_us.record(started.elapsed().as_micros() as u64);
        let (mut sse, mut got, want) = (proto::sse_parser(None), (0, 0), storm.replay_events);
        let mut done = storm_feed(&mut body, &mut sse, &mut got, want, &leftover);
        drop(leftover);
        let hold_until = Instant::now() + storm.hold;
        while !done {
            let read =
                std::future::poll_fn(|cx| {
                    READ_BUF.with(|cell| {
                        let mut buf = cell.borrow_mut();
                        let mut rb = ReadBuf::new(&mut buf);
                        match Pin::new(&mut stream).poll_read(cx, &mut rb) {
                            Poll::Pending => Poll::Pending,
                            Poll::Ready(Ok(())) if !rb.filled().is_empty() => Poll::Ready(
                                storm_feed(&mut body, &mut sse, &mut got, want, rb.filled()),
                            ),
                            Poll::Ready(_) => Poll::Ready(true),
                        }
                    })
                });
            match timeout_at(hold_until, read).await {
                Ok(d) => done = d,
                Err(_) => break,
            }
        }
        drop(stream);
        let ok = got.0 > 0 && got.1 >= want;
        let counter = if ok {
            &storm.completed
        } else {
            &storm.incomplete
        };
        counter.fetch_add(1, Ordering::Relaxed);
        storm.events.fetch_add(got.1, Ordering::Relaxed);
    }
}

// ---------------------------------------------------------------------------------------------
// The run

/// The JSON line (exactly these keys).
#[derive(Debug, Serialize)]
struct Report {
    subscribers: usize,
    connected: usize,
    connect_failures: usize,
    connect_ms_p50: Option<f64>,
    connect_ms_p99: Option<f64>,
    events_published: u64,
    publish_errors: u64,
    publish_duration_s: f64,
    deliveries: u64,
    deliveries_per_s: f64,
    latency_us_p50: Option<u64>,
    latency_us_p90: Option<u64>,
    latency_us_p99: Option<u64>,
    latency_us_max: Option<u64>,
    missing: u64,
    duplicates: u64,
    out_of_order: u64,
    stalled: usize,
    idle_subscribers: usize,
    server_rss_kib_before: Option<u64>,
    server_rss_kib_idle: Option<u64>,
    server_rss_kib_after: Option<u64>,
    server_bytes_per_subscriber: Option<f64>,
    server_cpu_ms: Option<f64>,
    server_cpu_us_per_delivery: Option<f64>,
    server_cpu_us_per_publish: Option<f64>,
    /// The same CPU time from the threads' exact `schedstat` times, not tick samples.
    server_cpu_exact_ms: Option<f64>,
    server_cpu_exact_us_per_delivery: Option<f64>,
    server_cpu_exact_us_per_publish: Option<f64>,
    publish_rtt_us_p50: Option<u64>,
    publish_rtt_us_p99: Option<u64>,
    publish_rtt_us_max: Option<u64>,
    prefilled: u64,
    storm_subscribers: u32,
    /// Storm connections whose opening bytes and wanted replay arrived.
    storm_connects: u64,
    storm_incomplete: u64,
    storm_failures: u64,
    storm_connects_per_s: f64,
    storm_events: u64,
    storm_head_ms_p50: Option<f64>,
    storm_head_ms_p99: Option<f64>,
    storm_duration_s: f64,
    /// --resume-storm: subscribers that reconnected, those still without their replay at the
    /// end (should be 0), from the reconnect phase's start to the last one's replay, each
    /// one's reconnect to its replay, and the server's exact CPU from the reconnect phase's
    /// start to the last replay.
    resume_storm_reconnected: Option<u64>,
    /// Resumes that failed (3 attempts) and streams that ended otherwise than at shutdown:
    /// their subscribers' missing updates are counted in `missing`.
    reconnect_failures: u64,
    streams_ended_early: u64,
    resume_storm_without_replay: Option<u64>,
    resume_storm_last_replay_s: Option<f64>,
    resume_storm_replay_ms_p50: Option<f64>,
    resume_storm_replay_ms_p99: Option<f64>,
    resume_storm_cpu_exact_ms: Option<f64>,
}

/// Counts that only the human summary shows.
#[derive(Debug, Default)]
struct Extra {
    requested_idle: usize,
    prefill_errors: u64,
    storm_reasons: BTreeMap<String, u64>,
    connect_reasons: BTreeMap<String, u64>,
    publish_reasons: BTreeMap<String, u64>,
    ends: BTreeMap<&'static str, u64>,
    reconnects: u64,
    reconnect_failures: u64,
    foreign: u64,
    idle_events: u64,
    deadline_hit: bool,
    loadgen_cpu_ms: Option<f64>,
    lost_tasks: usize,
}

/// Drives the resume storm's phases: the drop once `after` publishes are acknowledged, the
/// reconnects once `missed` more are (or publishing ended); answers the server's exact CPU
/// time (ns) from the reconnects' start to the last replay.
async fn resume_storm(
    resume: Arc<Resume>,
    phase: watch::Sender<u8>,
    after: u64,
    missed: u64,
    pids: Vec<u32>,
    mut pubs_done: watch::Receiver<bool>,
    human: bool,
) -> Option<u64> {
    for (p, target) in [(1u8, after), (2, after.saturating_add(missed))] {
        while resume.acked.load(Ordering::Relaxed) < target && !*pubs_done.borrow() {
            tokio::select! {
                _ = sleep(Duration::from_millis(2)) => {}
                _ = pubs_done.changed() => {}
            }
        }
        if p == 2 {
            // Every subscriber has dropped (it was told long before).
            let _ = resume.reconnect_at.set(Instant::now());
        }
        if human {
            eprintln!(
                "loadgen: resume storm phase {p} ({} acknowledged)",
                resume.acked.load(Ordering::Relaxed)
            );
        }
        let _ = phase.send(p);
    }
    let before = proto::sample(&pids);
    // Until the last replay, at most 60 s.
    let _ = timeout(Duration::from_secs(60), resume.all_done.notified()).await;
    let after = proto::sample(&pids);
    Some(after?.cpu_ns?.saturating_sub(before?.cpu_ns?))
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Splits `n` subscribers so that `stalled` of them, evenly spread, are stalled.
fn role_of(i: usize, n: usize, stalled: usize) -> Role {
    if (i + 1) * stalled / n > i * stalled / n {
        Role::Stalled
    } else {
        Role::Measured
    }
}

/// SplitMix64, for the drop points.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

async fn run(
    args: &Args,
    sub_target: Target,
    pub_target: Target,
    idle_target: Option<Target>,
    storm_target: Option<Target>,
) -> (Report, Extra) {
    let run_start = Instant::now();
    let deadline = run_start + args.max_duration;
    let human = !args.json;
    let clk = proto::clock_ticks();
    let self_cpu_before = proto::proc_cpu_ticks("self");
    let mut extra = Extra {
        requested_idle: args.idle_subscribers,
        ..Extra::default()
    };
    let sample = || proto::sample(&args.server_pids);
    let mut prefilled = 0;
    if args.prefill > 0 {
        if human {
            eprintln!(
                "loadgen: pre-filling {} updates on {} ...",
                args.prefill, args.prefill_topic
            );
        }
        (prefilled, extra.prefill_errors) = prefill(args, &pub_target, deadline).await;
    }
    let s_before = sample();

    // Subscribe.
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let (connect_tx, mut connect_rx) = mpsc::unbounded_channel();
    let (phase_tx, phase_rx) = watch::channel(0u8);
    let resume = args.resume_storm.then(|| {
        Arc::new(Resume {
            phase: phase_rx,
            spread: args.resume_storm_spread,
            acked: AtomicU64::new(0),
            top: AtomicU64::new(0),
            reconnect_at: std::sync::OnceLock::new(),
            waiting: AtomicI64::new(0),
            reconnected: AtomicU64::new(0),
            last_done_us: AtomicU64::new(0),
            replay_us: Histogram::default(),
            all_done: tokio::sync::Notify::new(),
        })
    });
    let ctx = Arc::new(Ctx {
        sub_target,
        idle_target,
        events: args.events,
        io_timeout: args.io_timeout,
        read_timeout: args.read_timeout,
        hist: Histogram::default(),
        pending: AtomicI64::new(0),
        last_delivery_us: AtomicU64::new(0),
        reconnects: AtomicU64::new(0),
        reconnect_failures: AtomicU64::new(0),
        sem: Semaphore::new(args.connect_concurrency as usize),
        connect_tx,
        shutdown: shutdown_rx,
        resume: resume.clone(),
    });
    let n = args.subscribers;
    let stalled =
        ((n as f64 * args.stalled_percent.clamp(0.0, 100.0) / 100.0).round() as usize).min(n);
    let total = n + args.idle_subscribers;
    let mut rng = unix_micros() ^ u64::from(std::process::id()) << 32;
    let mut handles = Vec::with_capacity(total);
    let mut roles = Vec::with_capacity(total);
    if human {
        eprintln!(
            "loadgen: connecting {n} subscribers ({stalled} stalled) and {} idle ...",
            args.idle_subscribers
        );
    }
    for i in 0..total {
        let role = if i < n {
            role_of(i, n, stalled)
        } else {
            Role::Idle
        };
        let src = Ipv4Addr::new(127, 0, 0, 1 + (i % usize::from(args.sources)) as u8);
        let drop_after =
            (args.drop_resume && role == Role::Measured && args.events > 0).then(|| {
                let (lo, width) = (args.events / 4, (args.events / 2).max(1));
                (lo + splitmix(&mut rng) % width).max(1)
            });
        roles.push(role);
        handles.push(tokio::spawn(subscriber(
            ctx.clone(),
            role,
            src,
            drop_after,
            i,
        )));
    }
    let mut connect_us = Vec::with_capacity(total);
    let (mut connected, mut idle_connected, mut failures) = (0, 0, 0);
    let mut last_progress = Instant::now();
    for _ in 0..total {
        let Ok(Some(msg)) = timeout_at(deadline, connect_rx.recv()).await else {
            extra.deadline_hit = true;
            break;
        };
        match msg.result {
            Ok(d) => {
                connect_us.push(d.as_micros() as u64);
                match msg.role {
                    Role::Idle => idle_connected += 1,
                    Role::Stalled | Role::Measured => connected += 1,
                }
            }
            Err(e) => {
                failures += 1;
                *extra.connect_reasons.entry(e).or_default() += 1;
            }
        }
        if human && last_progress.elapsed() > Duration::from_secs(2) {
            last_progress = Instant::now();
            eprintln!(
                "loadgen: {} connected, {failures} failed",
                connected + idle_connected
            );
        }
    }
    connect_us.sort_unstable();

    // Settle, then sample the idle server.
    sleep_until((Instant::now() + Duration::from_millis(args.settle_ms)).min(deadline)).await;
    let s_idle = sample();

    // Publish.
    if human && !extra.deadline_hit {
        eprintln!(
            "loadgen: publishing {} events at {} ...",
            args.events,
            if args.rate > 0.0 {
                format!("{}/s", args.rate)
            } else {
                "full speed".into()
            }
        );
    }
    // The storm starts with the publishing and stops when it ends.
    let (storm_stop_tx, storm_stop_rx) = watch::channel(false);
    let storm = storm_target.map(|target| {
        Arc::new(Storm {
            target,
            last_id: args.storm_last_event_id.clone().into_bytes(),
            rounds: args.storm_rounds,
            replay_events: args.storm_replay_events,
            hold: args.storm_hold,
            io_timeout: args.io_timeout,
            sem: Semaphore::new(args.storm_concurrency as usize),
            head_us: Histogram::default(),
            completed: AtomicU64::new(0),
            incomplete: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            events: AtomicU64::new(0),
            reasons: std::sync::Mutex::default(),
            stop: storm_stop_rx,
            start: Instant::now(),
            finished_us: AtomicU64::new(0),
        })
    });
    let storm_handles: Vec<_> = match &storm {
        Some(storm) if !extra.deadline_hit => {
            if human {
                eprintln!(
                    "loadgen: storm of {} subscribers, {} rounds each, Last-Event-ID {}",
                    args.storm_subscribers, args.storm_rounds, args.storm_last_event_id
                );
            }
            (0..args.storm_subscribers as usize)
                .map(|i| {
                    let src = Ipv4Addr::new(127, 0, 0, 1 + (i % usize::from(args.sources)) as u8);
                    tokio::spawn(storm_subscriber(storm.clone(), src))
                })
                .collect()
        }
        _ => Vec::new(),
    };

    let first_publish_us = unix_micros();
    let events = if extra.deadline_hit { 0 } else { args.events };
    let cfg = PubCfg::new(args, pub_target, &args.topic, events, args.rate, deadline);
    let pub_start = cfg.start;
    let (pubs_done_tx, pubs_done_rx) = watch::channel(false);
    let storm_monitor = resume.clone().map(|resume| {
        let _ = cfg.resume.set(Arc::clone(&resume));
        let (after, missed) = (args.resume_storm_after, args.resume_storm_missed);
        let pids = args.server_pids.clone();
        tokio::spawn(resume_storm(
            resume,
            phase_tx,
            after,
            missed,
            pids,
            pubs_done_rx,
            human,
        ))
    });
    let pubs: Vec<_> = (0..args.publishers)
        .map(|_| tokio::spawn(publisher(cfg.clone())))
        .collect();
    let mut published = vec![0u64; args.events.div_ceil(64) as usize];
    let (mut events_published, mut publish_errors) = (0, 0);
    let mut last_publish = pub_start;
    for h in pubs {
        let Ok(r) = h.await else { continue };
        for (w, o) in published.iter_mut().zip(&r.ok) {
            *w |= o;
        }
        events_published += r.ok_count;
        publish_errors += r.errors;
        for (k, v) in r.reasons {
            *extra.publish_reasons.entry(k).or_default() += v;
        }
        last_publish = last_publish.max(r.last_done.unwrap_or(pub_start));
    }
    let publish_duration = last_publish - pub_start;
    let _ = pubs_done_tx.send(true);
    let resume_cpu_ns = match storm_monitor {
        Some(h) => timeout_at(deadline, h)
            .await
            .ok()
            .and_then(Result::ok)
            .flatten(),
        None => None,
    };
    let _ = storm_stop_tx.send(true);
    let storm_join = Instant::now() + args.storm_hold + args.io_timeout;
    for h in storm_handles {
        let abort = h.abort_handle();
        if timeout_at(storm_join, h).await.is_err() {
            abort.abort();
            extra.lost_tasks += 1;
        }
    }
    if let Some(reasons) = storm.as_ref().and_then(|s| s.reasons.lock().ok()) {
        extra.storm_reasons = reasons.clone();
    }
    // From the first storm connect to the end of the last storm subscriber.
    let storm_span = storm.as_ref().map_or(Duration::ZERO, |s| {
        Duration::from_micros(s.finished_us.load(Ordering::Relaxed))
    });
    if Instant::now() >= deadline || events_published + publish_errors < args.events {
        extra.deadline_hit = true;
    }

    // Drain: until every live measured subscriber has the last event, or settle time.
    if events_published > 0 {
        let drain_end = (Instant::now() + Duration::from_millis(args.settle_ms)).min(deadline);
        while Instant::now() < drain_end && ctx.pending.load(Ordering::Relaxed) > 0 {
            sleep(Duration::from_millis(5)).await;
        }
    }
    let s_after = sample();

    // Stop the subscribers and collect their tallies.
    let _ = shutdown_tx.send(true);
    let join_deadline = Instant::now() + Duration::from_secs(10);
    let (mut deliveries, mut missing, mut duplicates, mut out_of_order) = (0u64, 0u64, 0u64, 0u64);
    for (h, role) in handles.into_iter().zip(roles) {
        let abort = h.abort_handle();
        let rep = match timeout_at(join_deadline, h).await {
            Ok(Ok(rep)) => rep,
            _ => {
                abort.abort();
                extra.lost_tasks += 1;
                continue;
            }
        };
        if !rep.connected {
            continue;
        }
        *extra.ends.entry(rep.end).or_default() += 1;
        match role {
            Role::Idle => extra.idle_events += rep.deliveries + rep.foreign,
            Role::Stalled => {}
            Role::Measured => {
                deliveries += rep.deliveries;
                duplicates += rep.duplicates;
                out_of_order += rep.out_of_order;
                extra.foreign += rep.foreign;
                missing += published
                    .iter()
                    .zip(&rep.seen)
                    .map(|(p, s)| u64::from((p & !s).count_ones()))
                    .sum::<u64>();
            }
        }
    }
    extra.reconnects = ctx.reconnects.load(Ordering::Relaxed);
    extra.reconnect_failures = ctx.reconnect_failures.load(Ordering::Relaxed);
    extra.loadgen_cpu_ms = self_cpu_before
        .zip(proto::proc_cpu_ticks("self"))
        .map(|(b, a)| (a - b) as f64 * 1000.0 / clk as f64);

    let last_delivery_us = ctx.last_delivery_us.load(Ordering::Relaxed);
    let delivery_span_s = last_delivery_us.saturating_sub(first_publish_us) as f64 / 1e6;
    let cpu_ms = s_idle
        .zip(s_after)
        .map(|(i, a)| a.cpu_ticks.saturating_sub(i.cpu_ticks) as f64 * 1000.0 / clk as f64);
    let cpu_exact_ms = s_idle
        .zip(s_after)
        .and_then(|(i, a)| Some(a.cpu_ns?.saturating_sub(i.cpu_ns?) as f64 / 1e6));
    let per = |cpu_ms: Option<f64>, n: u64| {
        cpu_ms
            .filter(|_| n > 0)
            .map(|c| round3(c * 1000.0 / n as f64))
    };
    let all_connected = connected + idle_connected;
    let storm_count = |field: fn(&Storm) -> &AtomicU64| {
        storm
            .as_deref()
            .map_or(0, |s| field(s).load(Ordering::Relaxed))
    };
    let storm_ms = |q| {
        storm
            .as_ref()
            .and_then(|s| s.head_us.quantile(q))
            .map(|u| round3(u as f64 / 1000.0))
    };
    let resumed = |f: fn(&Resume) -> u64| resume.as_deref().map(f);
    let report = Report {
        resume_storm_reconnected: resumed(|r| r.reconnected.load(Ordering::Relaxed)),
        reconnect_failures: extra.reconnect_failures,
        streams_ended_early: extra
            .ends
            .iter()
            .filter(|(end, _)| **end != "shutdown")
            .map(|(_, n)| n)
            .sum(),
        resume_storm_without_replay: resumed(|r| {
            u64::try_from(r.waiting.load(Ordering::Relaxed)).unwrap_or(0)
        }),
        resume_storm_last_replay_s: resumed(|r| r.last_done_us.load(Ordering::Relaxed))
            .map(|us| round3(us as f64 / 1e6)),
        resume_storm_replay_ms_p50: resume
            .as_deref()
            .and_then(|r| r.replay_us.quantile(0.5))
            .map(|us| round3(us as f64 / 1000.0)),
        resume_storm_replay_ms_p99: resume
            .as_deref()
            .and_then(|r| r.replay_us.quantile(0.99))
            .map(|us| round3(us as f64 / 1000.0)),
        resume_storm_cpu_exact_ms: resume_cpu_ns.map(|ns| round3(ns as f64 / 1e6)),
        subscribers: n,
        connected,
        connect_failures: failures,
        connect_ms_p50: proto::sorted_quantile(&connect_us, 0.5).map(|u| round3(u as f64 / 1000.0)),
        connect_ms_p99: proto::sorted_quantile(&connect_us, 0.99)
            .map(|u| round3(u as f64 / 1000.0)),
        events_published,
        publish_errors,
        publish_duration_s: round3(publish_duration.as_secs_f64()),
        deliveries,
        deliveries_per_s: if delivery_span_s > 0.0 {
            round3(deliveries as f64 / delivery_span_s)
        } else {
            0.0
        },
        latency_us_p50: ctx.hist.quantile(0.5),
        latency_us_p90: ctx.hist.quantile(0.9),
        latency_us_p99: ctx.hist.quantile(0.99),
        latency_us_max: ctx.hist.max(),
        missing,
        duplicates,
        out_of_order,
        stalled,
        idle_subscribers: idle_connected,
        server_rss_kib_before: s_before.map(|s| s.rss_kib),
        server_rss_kib_idle: s_idle.map(|s| s.rss_kib),
        server_rss_kib_after: s_after.map(|s| s.rss_kib),
        server_bytes_per_subscriber: s_before.zip(s_idle).filter(|_| all_connected > 0).map(
            |(b, i): (ProcSample, ProcSample)| {
                round3((i.rss_kib as f64 - b.rss_kib as f64) * 1024.0 / all_connected as f64)
            },
        ),
        server_cpu_ms: cpu_ms.map(round3),
        server_cpu_us_per_delivery: per(cpu_ms, deliveries),
        server_cpu_us_per_publish: per(cpu_ms, events_published),
        server_cpu_exact_ms: cpu_exact_ms.map(round3),
        server_cpu_exact_us_per_delivery: per(cpu_exact_ms, deliveries),
        server_cpu_exact_us_per_publish: per(cpu_exact_ms, events_published),
        publish_rtt_us_p50: cfg.rtt.quantile(0.5),
        publish_rtt_us_p99: cfg.rtt.quantile(0.99),
        publish_rtt_us_max: cfg.rtt.max(),
        prefilled,
        storm_subscribers: args.storm_subscribers,
        storm_connects: storm_count(|s| &s.completed),
        storm_incomplete: storm_count(|s| &s.incomplete),
        storm_failures: storm_count(|s| &s.failures),
        storm_connects_per_s: if storm.is_some() && !storm_span.is_zero() {
            round3(storm_count(|s| &s.completed) as f64 / storm_span.as_secs_f64())
        } else {
            0.0
        },
        storm_events: storm_count(|s| &s.events),
        storm_head_ms_p50: storm_ms(0.5),
        storm_head_ms_p99: storm_ms(0.99),
        storm_duration_s: if storm.is_some() {
            round3(storm_span.as_secs_f64())
        } else {
            0.0
        },
    };
    (report, extra)
}

fn fmt_opt<T: std::fmt::Display>(v: Option<T>, unit: &str) -> String {
    v.map_or_else(|| "-".to_string(), |v| format!("{v}{unit}"))
}

fn fmt_map<K: std::fmt::Display>(m: &BTreeMap<K, u64>) -> String {
    m.iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn print_summary(args: &Args, r: &Report, x: &Extra) {
    println!("loadgen summary ({} -> {})", args.pub_url, args.sub_url);
    println!(
        "  subscribers  {} requested, {} connected ({} stalled), {} failed{}; connect p50 {} p99 {}",
        r.subscribers,
        r.connected,
        r.stalled,
        r.connect_failures,
        if x.connect_reasons.is_empty() { String::new() } else { format!(" [{}]", fmt_map(&x.connect_reasons)) },
        fmt_opt(r.connect_ms_p50, " ms"),
        fmt_opt(r.connect_ms_p99, " ms"),
    );
    if x.requested_idle > 0 {
        println!(
            "  idle         {} of {} connected, {} events received (should be 0)",
            r.idle_subscribers, x.requested_idle, x.idle_events
        );
    }
    println!(
        "  published    {} of {} events in {:.3} s, {} errors{}; {} B payload, {} publisher(s)",
        r.events_published,
        args.events,
        r.publish_duration_s,
        r.publish_errors,
        if x.publish_reasons.is_empty() {
            String::new()
        } else {
            format!(" [{}]", fmt_map(&x.publish_reasons))
        },
        args.data_size,
        args.publishers,
    );
    println!(
        "  publish rtt  p50 {}  p99 {}  max {}",
        fmt_opt(r.publish_rtt_us_p50, " µs"),
        fmt_opt(r.publish_rtt_us_p99, " µs"),
        fmt_opt(r.publish_rtt_us_max, " µs"),
    );
    if args.prefill > 0 {
        println!(
            "  prefill      {} of {} updates on {}, {} errors",
            r.prefilled, args.prefill, args.prefill_topic, x.prefill_errors
        );
    }
    if args.storm_subscribers > 0 {
        println!(
            "  storm        {} subscribers: {} reconnects done ({:.0}/s over {:.3} s), {} incomplete, {} failed{}; head p50 {} p99 {}; {} events received",
            r.storm_subscribers,
            r.storm_connects,
            r.storm_connects_per_s,
            r.storm_duration_s,
            r.storm_incomplete,
            r.storm_failures,
            if x.storm_reasons.is_empty() { String::new() } else { format!(" [{}]", fmt_map(&x.storm_reasons)) },
            fmt_opt(r.storm_head_ms_p50, " ms"),
            fmt_opt(r.storm_head_ms_p99, " ms"),
            r.storm_events,
        );
    }
    println!(
        "  deliveries   {} ({:.0}/s)",
        r.deliveries, r.deliveries_per_s
    );
    println!(
        "  latency      p50 {}  p90 {}  p99 {}  max {}",
        fmt_opt(r.latency_us_p50, " µs"),
        fmt_opt(r.latency_us_p90, " µs"),
        fmt_opt(r.latency_us_p99, " µs"),
        fmt_opt(r.latency_us_max, " µs"),
    );
    println!(
        "  integrity    missing {}, duplicates {}, out of order {}{}",
        r.missing,
        r.duplicates,
        r.out_of_order,
        if x.foreign > 0 {
            format!(", {} foreign events", x.foreign)
        } else {
            String::new()
        },
    );
    if args.publishers > 1 && r.out_of_order > 0 {
        println!("               (out of order is expected with several publishers: they race)");
    }
    if args.resume_storm {
        println!(
            "  resume storm {} reconnected, {} without their replay; last replay {} after the reconnects began; each p50 {} p99 {}; server cpu {} exact meanwhile",
            fmt_opt(r.resume_storm_reconnected, ""),
            fmt_opt(r.resume_storm_without_replay, ""),
            fmt_opt(r.resume_storm_last_replay_s, " s"),
            fmt_opt(r.resume_storm_replay_ms_p50, " ms"),
            fmt_opt(r.resume_storm_replay_ms_p99, " ms"),
            fmt_opt(r.resume_storm_cpu_exact_ms, " ms"),
        );
    }
    if args.drop_resume {
        println!(
            "  resume       {} reconnects, {} failed",
            x.reconnects, x.reconnect_failures
        );
    }
    println!("  streams end  {}", fmt_map(&x.ends));
    if !args.server_pids.is_empty() {
        println!(
            "  server rss   before {} idle {} after {}; {} per subscriber",
            fmt_opt(r.server_rss_kib_before, " KiB"),
            fmt_opt(r.server_rss_kib_idle, " KiB"),
            fmt_opt(r.server_rss_kib_after, " KiB"),
            fmt_opt(r.server_bytes_per_subscriber.map(|b| b.round()), " B"),
        );
        println!(
            "  server cpu   {} during publish+drain; {} per delivery, {} per publish",
            fmt_opt(r.server_cpu_ms, " ms"),
            fmt_opt(r.server_cpu_us_per_delivery, " µs"),
            fmt_opt(r.server_cpu_us_per_publish, " µs"),
        );
        println!(
            "  server cpu   {} exact (threads' schedstat); {} per delivery, {} per publish",
            fmt_opt(r.server_cpu_exact_ms, " ms"),
            fmt_opt(r.server_cpu_exact_us_per_delivery, " µs"),
            fmt_opt(r.server_cpu_exact_us_per_publish, " µs"),
        );
    }
    println!("  loadgen cpu  {}", fmt_opt(x.loadgen_cpu_ms, " ms"));
    if x.deadline_hit {
        println!("  NOTE: --max-duration reached, the run was cut short");
    }
    if x.lost_tasks > 0 {
        println!(
            "  NOTE: {} subscriber tasks did not stop in time",
            x.lost_tasks
        );
    }
}

/// Grows the open-files table once, while this is the only thread, to hold `fds` descriptors.
/// Linux doubles the table as descriptors are opened, and in a multi-threaded process each
/// growth waits for an RCU grace period (5–30 ms): without this, the connects that happen to
/// need the room would stall, and their latency would be counted against the server.
fn reserve_file_table(fds: usize) {
    let Ok(top) = rustix::fd::RawFd::try_from(fds.saturating_sub(1)) else {
        return;
    };
    // The lowest free descriptor at or above `top`: the table grows to hold it; closed at once.
    if let Err(e) = rustix::io::fcntl_dupfd_cloexec(std::io::stderr(), top) {
        log::warn!("can't reserve {fds} open files at start: {e}");
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let targets = (|| -> Result<_, String> {
        let idle = args.idle_url.as_deref().map(proto::parse_url).transpose()?;
        let storm = (args.storm_subscribers > 0)
            .then(|| proto::parse_url(args.storm_url.as_deref().unwrap_or(&args.sub_url)))
            .transpose()?;
        Ok((
            proto::parse_url(&args.sub_url)?,
            proto::parse_url(&args.pub_url)?,
            idle,
            storm,
        ))
    })();
    let (sub_target, pub_target, idle_target, storm_target) = match targets {
        Ok(t) => t,
        Err(e) => {
            eprintln!("loadgen: {e}");
            return ExitCode::from(2);
        }
    };
    let valid = args.rate >= 0.0 && args.rate.is_finite();
    if !valid || !(0.0..=100.0).contains(&args.stalled_percent) {
        eprintln!("loadgen: --rate must be >= 0 and --stalled-percent within 0..=100");
        return ExitCode::from(2);
    }
    if args.pub_mode == PubMode::Mercure && args.token.is_none() {
        log::warn!("no --token: the publishes will most likely be refused");
    }
    if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
        log::warn!("can't raise RLIMIT_NOFILE: {e}");
    }
    let sockets = args.subscribers + args.idle_subscribers + args.storm_subscribers as usize;
    reserve_file_table(sockets + 1024);
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if args.threads > 0 {
        builder.worker_threads(args.threads);
    }
    let rt = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("loadgen: can't start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let json_only = args.json;
    let (report, extra, args) = rt.block_on(async move {
        let (r, x) = run(&args, sub_target, pub_target, idle_target, storm_target).await;
        (r, x, args)
    });
    rt.shutdown_timeout(Duration::from_secs(1));
    if !json_only {
        print_summary(&args, &report, &extra);
    }
    match serde_json::to_string(&report) {
        Ok(line) => println!("{line}"),
        Err(e) => {
            eprintln!("loadgen: {e}");
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}
