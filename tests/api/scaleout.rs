//! Several hub nodes sharing one event stream over a real `redis-server`, behind real nginx.

use std::{
    net::TcpStream,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use crate::{
    helpers::{free_port, publisher, wait_until, Event, Next, SseClient, TestHub, KEY},
    nginx::TestNginx,
};

const WAIT: Duration = Duration::from_secs(10);

/// A `redis-server` on a free port in a temp dir, without persistence.
pub(crate) struct TestRedis {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
}

impl TestRedis {
    pub(crate) fn start() -> Self {
        let mut redis = Self {
            child: None,
            port: free_port(),
            dir: tempfile::tempdir().unwrap(),
        };
        redis.restart();
        redis
    }

    fn binary() -> PathBuf {
        ["/usr/bin/redis-server", "/usr/local/bin/redis-server"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .unwrap_or_else(|| "redis-server".into())
    }

    /// Starts it (again) on the same port, empty.
    pub(crate) fn restart(&mut self) {
        self.stop();
        let child = Command::new(Self::binary())
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            // `DEBUG SLEEP` stalls Redis, as an overloaded or paused server would.
            .args(["--enable-debug-command", "local"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server (apt-get install redis-server; .ci/run does)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not listen in time"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Runs `redis-cli` with `args` and returns its output; panics if it fails or hangs.
    pub(crate) async fn cli(&self, args: &[&str]) -> String {
        let binary = ["/usr/bin/redis-cli", "/usr/local/bin/redis-cli"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .unwrap_or("redis-cli");
        let run = tokio::process::Command::new(binary)
            .args(["-p", &self.port.to_string()])
            .args(args)
            .kill_on_drop(true)
            .output();
        let output = tokio::time::timeout(WAIT, run)
            .await
            .expect("redis-cli in time")
            .expect("run redis-cli");
        assert!(output.status.success(), "redis-cli {args:?}: {output:?}");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// How many entries of the hub's stream carry the update id `id`.
    async fn copies(&self, id: &str) -> usize {
        let entries = self.cli(&["XRANGE", STREAM, "-", "+"]).await;
        let lines: Vec<&str> = entries.lines().collect();
        lines
            .windows(2)
            .filter(|pair| pair[0] == "id" && pair[1] == id)
            .count()
    }

    /// Makes Redis stall for `seconds` (`DEBUG SLEEP`) and returns once it does; the
    /// connection it returns answers `+OK` when Redis is back.
    pub(crate) async fn stall(&self, seconds: f64) -> tokio::net::TcpStream {
        use tokio::io::AsyncWriteExt;
        let mut sleeper = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .unwrap();
        let command = format!("DEBUG SLEEP {seconds}\r\n");
        sleeper.write_all(command.as_bytes()).await.unwrap();
        let asleep = wait_until(WAIT, || async {
            !self.answers_within(Duration::from_millis(200)).await
        })
        .await;
        assert!(asleep, "Redis never stalled");
        sleeper
    }

    /// Whether Redis answers a `PING` on a new connection within `limit`.
    async fn answers_within(&self, limit: Duration) -> bool {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let ping = async {
            let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await?;
            conn.write_all(b"PING\r\n").await?;
            let mut buf = [0u8; 16];
            conn.read(&mut buf).await
        };
        matches!(tokio::time::timeout(limit, ping).await, Ok(Ok(n)) if n > 0)
    }
}

impl TestRedis {
    /// Closes `hub`'s reading connection from the Redis side (the hub names it
    /// `sse-hub-reader-<pid>`), so its reader reconnects.
    async fn kill_reader(&self, hub: &TestHub) {
        let name = format!("name=sse-hub-reader-{}", hub.pid());
        let clients = self.cli(&["CLIENT", "LIST"]).await;
        let id = clients
            .lines()
            .find(|line| line.split(' ').any(|field| field == name))
            .and_then(|line| line.split(' ').find_map(|f| f.strip_prefix("id=")))
            .unwrap_or_else(|| panic!("no {name} in {clients}"))
            .to_owned();
        assert_eq!(self.cli(&["CLIENT", "KILL", "ID", &id]).await.trim(), "1");
    }

    /// A field of `XINFO STREAM` on the hub's stream.
    async fn stream_info(&self, field: &str) -> String {
        let info = self.cli(&["XINFO", "STREAM", STREAM]).await;
        let lines: Vec<&str> = info.lines().collect();
        let at = lines.iter().position(|l| *l == field).expect(field);
        lines[at + 1].to_owned()
    }
}

/// Sends `signal` (`STOP`, `CONT`) to `hub`'s process.
fn signal(hub: &TestHub, signal: &str) {
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &hub.pid().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
}

/// The stream the nodes share (the default of `--redis-stream`).
pub(crate) const STREAM: &str = "sse-hub";

/// Whether Redis has answered on `sleeper` (from [`TestRedis::stall`]): it is back.
fn woke(sleeper: &tokio::net::TcpStream) -> bool {
    let mut buf = [0u8; 16];
    matches!(sleeper.try_read(&mut buf), Ok(n) if n > 0)
}

/// Waits until Redis answers on `sleeper` (from [`TestRedis::stall`]).
async fn wake(sleeper: tokio::net::TcpStream) {
    let back = wait_until(WAIT, || async {
        let _ = tokio::time::timeout(Duration::from_millis(100), sleeper.readable()).await;
        woke(&sleeper)
    })
    .await;
    assert!(back, "Redis never woke");
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

fn node(redis: &TestRedis) -> TestHub {
    node_with(redis, &[])
}

/// A node on `redis`'s stream, with `extra` flags.
pub(crate) fn node_with(redis: &TestRedis, extra: &[&str]) -> TestHub {
    let url = redis.url();
    let mut args = vec![
        "--jwt-key",
        KEY,
        "--allow-anonymous",
        "--tick-interval",
        "0",
        "--keep-alive",
        "500ms",
        "--transport",
        &url,
    ];
    args.extend_from_slice(extra);
    TestHub::spawn(&args)
}

async fn ready(hub: &TestHub) -> bool {
    let url = hub.url("/readyz");
    matches!(crate::helpers::client().get(url).send().await, Ok(r) if r.status() == 200)
}

pub(crate) async fn all_ready(nodes: &[&TestHub]) {
    for hub in nodes {
        assert!(
            wait_until(WAIT, || ready(hub)).await,
            "node {} never ready",
            hub.addr
        );
    }
}

fn ids(events: &[Event]) -> Vec<String> {
    events.iter().map(|e| e.id.clone().unwrap()).collect()
}

#[tokio::test]
async fn an_update_published_on_one_node_reaches_every_node_once_in_order() {
    let redis = TestRedis::start();
    let (a, b, c) = (node(&redis), node(&redis), node(&redis));
    all_ready(&[&a, &b, &c]).await;
    let mut on_b = b.subscribe(&["/s", "/end"], &[], &[]).await;
    let mut on_c = c.subscribe(&["/s", "/end"], &[], &[]).await;
    let mut sent = Vec::new();
    for i in 0..5 {
        sent.push(
            a.publish_ok(&[("topic", "/s"), ("data", &i.to_string())])
                .await,
        );
    }
    let end = a.publish_ok(&[("topic", "/end")]).await;
    for sse in [&mut on_b, &mut on_c] {
        let got = ids(&sse.events(5, WAIT).await);
        assert_eq!(got, sent);
        let next = sse.next_event(WAIT).await.expect("the end marker");
        assert_eq!(next.id.as_deref(), Some(end.as_str()), "nothing twice");
    }
}

#[tokio::test]
async fn a_subscriber_whose_node_dies_resumes_through_nginx_on_another() {
    let redis = TestRedis::start();
    let a = node(&redis);
    let mut b = Some(node(&redis));
    let mut c = Some(node(&redis));
    all_ready(&[&a, b.as_ref().unwrap(), c.as_ref().unwrap()]).await;
    let upstreams = [
        b.as_ref().unwrap().addr.clone(),
        c.as_ref().unwrap().addr.clone(),
    ];
    let nginx = TestNginx::start(&[&upstreams[0], &upstreams[1]]);
    let url = nginx.url("/.well-known/mercure?topic=%2Fr");
    let mut sse = SseClient::connect(&url, &[]).await;
    assert_eq!(sse.status, 200);
    sse.opened().await;
    let first = a.publish_ok(&[("topic", "/r"), ("data", "first")]).await;
    assert_eq!(
        ids(&sse.events(1, WAIT).await),
        std::slice::from_ref(&first)
    );

    // Kill the node this subscriber is on.
    let on_b = b.as_ref().unwrap().stats().await["subscribers"] == 1;
    let victim = if on_b { &mut b } else { &mut c };
    drop(victim.take());
    assert!(matches!(sse.next_event(WAIT).await, Next::End));

    let mut missed = Vec::new();
    for i in 0..3 {
        missed.push(
            a.publish_ok(&[("topic", "/r"), ("data", &format!("missed {i}"))])
                .await,
        );
    }
    // Reconnect through nginx, as EventSource would, with the last id seen.
    let survivor = b.as_ref().or(c.as_ref()).unwrap();
    let caught_up = wait_until(WAIT, || async {
        let in_history = survivor.stats().await["history_len"].as_u64() >= Some(4);
        in_history
    })
    .await;
    assert!(caught_up, "the surviving node read the stream");
    let mut again = SseClient::connect(&url, &[("Last-Event-ID", &first)]).await;
    assert_eq!(again.status, 200);
    again.opened().await;
    assert_eq!(again.response_headers["last-event-id"], first.as_str());
    let live = a.publish_ok(&[("topic", "/r"), ("data", "live")]).await;
    let mut expected = missed.clone();
    expected.push(live);
    assert_eq!(
        ids(&again.events(4, WAIT).await),
        expected,
        "in order, nothing twice"
    );
}

#[tokio::test]
async fn publishes_get_503_while_redis_is_down_and_nothing_accepted_is_lost() {
    let mut redis = TestRedis::start();
    let (a, b) = (node(&redis), node(&redis));
    all_ready(&[&a, &b]).await;
    let mut on_a = a.subscribe(&["/f"], &[], &[]).await;
    let mut on_b = b.subscribe(&["/f"], &[], &[]).await;
    let mut accepted = Vec::new();
    for i in 0..3 {
        accepted.push(
            a.publish_ok(&[("topic", "/f"), ("data", &format!("before {i}"))])
                .await,
        );
    }
    redis.stop();
    // During the outage: 503, and the hub says it is not ready.
    let refused = wait_until(WAIT, || async {
        a.publish(&publisher(), &[("topic", "/f"), ("data", "during")])
            .await
            .status()
            == 503
    })
    .await;
    assert!(refused, "publishing never answered 503 with Redis down");
    assert!(!ready(&a).await);
    redis.restart();
    all_ready(&[&a, &b]).await;
    // After recovery every accepted update reaches both nodes, with no gap.
    for i in 0..3 {
        let response = a
            .publish(
                &publisher(),
                &[("topic", "/f"), ("data", &format!("after {i}"))],
            )
            .await;
        assert_eq!(response.status(), 200);
        accepted.push(response.text().await.unwrap());
    }
    for sse in [&mut on_a, &mut on_b] {
        // Subscribers stayed connected through the outage (heartbeats kept the stream alive).
        assert_eq!(ids(&sse.events(6, WAIT).await), accepted);
    }
    let logs = a.logs().join("\n");
    assert_eq!(
        logs.matches("redis transport: lost").count(),
        1,
        "logged once"
    );
}

#[tokio::test]
async fn a_node_starts_without_redis_and_becomes_ready_when_it_appears() {
    let mut redis = TestRedis::start();
    redis.stop();
    let a = node(&redis);
    assert!(!ready(&a).await);
    let status = a.publish(&publisher(), &[("topic", "/x")]).await.status();
    assert_eq!(status, 503);
    redis.restart();
    all_ready(&[&a]).await;
    a.publish_ok(&[("topic", "/x")]).await;
}

/// Listens on a port in place of Redis and closes every connection at once, which a Redis
/// client takes as a failed connect; records when each attempt came.
struct Impostor {
    attempts: Arc<Mutex<Vec<Instant>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Impostor {
    async fn listen(port: u16) -> Self {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("listen on the Redis port while it is down");
        let attempts = Arc::new(Mutex::new(Vec::new()));
        let record = Arc::clone(&attempts);
        let task = tokio::spawn(async move {
            while let Ok((connection, _)) = listener.accept().await {
                record.lock().unwrap().push(Instant::now());
                drop(connection);
            }
        });
        Self { attempts, task }
    }

    /// The longest time between two attempts in a row so far.
    fn longest_gap(&self) -> Duration {
        let attempts = self.attempts.lock().unwrap();
        attempts
            .windows(2)
            .map(|pair| pair[1] - pair[0])
            .max()
            .unwrap_or_default()
    }

    /// Stops listening, so Redis can take the port back.
    async fn leave(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

#[tokio::test]
async fn readiness_returns_with_redis_at_once_even_after_a_long_outage() {
    let mut redis = TestRedis::start();
    let a = node(&redis);
    all_ready(&[&a]).await;
    let mut sse = a.subscribe(&["/back"], &[], &[]).await;
    let before = a
        .publish_ok(&[("topic", "/back"), ("data", "before")])
        .await;
    redis.stop();
    assert!(
        wait_until(WAIT, || async { !ready(&a).await }).await,
        "/readyz never answered 503 with Redis down"
    );
    // Let the reader's backoff grow (100 ms doubling to 5 s) until a timer alone would leave
    // it asleep well after Redis is back: watch its attempts on the Redis port, and go on once
    // two in a row are 1.5 s apart (its next wait is then 3.2 s). Nothing else connects
    // meanwhile: no publish, no readiness check.
    let impostor = Impostor::listen(redis.port).await;
    let grown = wait_until(Duration::from_secs(30), || async {
        impostor.longest_gap() >= Duration::from_millis(1500)
    })
    .await;
    assert!(
        grown,
        "the reader's retries never spread out: {:?}",
        impostor.longest_gap()
    );
    impostor.leave().await;
    redis.restart();

    let deadline = Instant::now() + WAIT;
    let after = loop {
        let response = a
            .publish(&publisher(), &[("topic", "/back"), ("data", "after")])
            .await;
        let status = response.status();
        if status == 200 {
            break response.text().await.unwrap();
        }
        assert_eq!(status, 503, "while Redis comes back");
        assert!(Instant::now() < deadline, "publishing never recovered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // Publishing works, so the node is ready: the very next /readyz says so.
    let readyz = crate::helpers::client()
        .get(a.url("/readyz"))
        .send()
        .await
        .unwrap();
    let status = readyz.status();
    assert_eq!(status, 200, "{}", readyz.text().await.unwrap());
    // The subscriber stayed connected and gets the update accepted after the recovery.
    assert_eq!(ids(&sse.events(2, WAIT).await), [before, after]);
    let logs = a.logs().join("\n");
    assert_eq!(logs.matches("redis transport: lost").count(), 1, "{logs}");
    assert_eq!(
        logs.matches("redis transport: connected").count(),
        2,
        "{logs}"
    );
}

#[tokio::test]
async fn a_duplicate_id_is_answered_200_on_every_node_and_delivered_once() {
    let redis = TestRedis::start();
    let (a, b) = (node(&redis), node(&redis));
    all_ready(&[&a, &b]).await;
    let mut on_a = a.subscribe(&["/d", "/end"], &[], &[]).await;
    let mut on_b = b.subscribe(&["/d", "/end"], &[], &[]).await;
    let dup = [("topic", "/d"), ("id", "dup"), ("data", "1")];
    assert_eq!(a.publish_ok(&dup).await, "dup");
    // A retry to the same node, and one to another node at once, whose reader may not have
    // read the first copy yet: both answered with the id.
    let (again_a, again_b) = tokio::join!(a.publish_ok(&dup), b.publish_ok(&dup));
    assert_eq!((again_a.as_str(), again_b.as_str()), ("dup", "dup"));
    // Once the other node holds it, it answers from its history.
    b.wait_for_stat("history_len", 1).await;
    assert_eq!(b.publish_ok(&dup).await, "dup");
    // A new id sent to two nodes at once (a retry racing the first attempt).
    let race = [("topic", "/d"), ("id", "race"), ("data", "2")];
    let (race_a, race_b) = tokio::join!(a.publish_ok(&race), b.publish_ok(&race));
    assert_eq!((race_a.as_str(), race_b.as_str()), ("race", "race"));
    let end = a.publish_ok(&[("topic", "/end")]).await;
    for sse in [&mut on_a, &mut on_b] {
        // Stream order: any second copy would come before the end marker.
        assert_eq!(
            ids(&sse.events(3, WAIT).await),
            ["dup", "race", end.as_str()]
        );
    }
    for hub in [&a, &b] {
        assert_eq!(hub.stats().await["history_len"], 3, "{}", hub.addr);
    }
}

#[tokio::test]
async fn a_publish_redis_may_have_stored_gets_503_with_its_id_and_a_retry_is_delivered_once() {
    let redis = TestRedis::start();
    let (a, b) = (node(&redis), node(&redis));
    all_ready(&[&a, &b]).await;
    let mut on_a = a.subscribe(&["/u", "/end"], &[], &[]).await;
    let mut on_b = b.subscribe(&["/u", "/end"], &[], &[]).await;
    let form = [("topic", "/u"), ("data", "once")];

    // Redis stalls longer than the 2 s publish timeout: A's XADD is sent but unanswered.
    let sleeper = redis.stall(4.0).await;
    let response = a.publish(&publisher(), &form).await;
    assert_eq!(response.status(), 503);
    let id = response
        .headers()
        .get("mercure-update-id")
        .expect("the id of the update whose fate is unknown")
        .to_str()
        .unwrap()
        .to_owned();
    assert!(id.starts_with("urn:uuid:"), "{id}");
    assert!(response.text().await.unwrap().contains(&id));

    // A retry to another node while Redis still stalls: that node's reader has not seen the
    // first copy, so its XADD is queued behind it, a second copy of the same update.
    assert!(
        !woke(&sleeper),
        "Redis woke too early for this test (a slow machine?)"
    );
    let retry = [("topic", "/u"), ("data", "once"), ("id", id.as_str())];
    let during = b.publish(&publisher(), &retry).await;
    if during.status() != 200 {
        assert_eq!(during.status(), 503);
        assert_eq!(during.headers()["mercure-update-id"], id.as_str());
    }
    wake(sleeper).await;

    // Once Redis is back, the retry is answered with the id, on either node.
    let deadline = Instant::now() + WAIT;
    loop {
        let response = b.publish(&publisher(), &retry).await;
        if response.status() == 200 {
            assert_eq!(response.text().await.unwrap(), id);
            break;
        }
        assert_eq!(response.status(), 503, "while Redis comes back");
        assert!(Instant::now() < deadline, "the retry never succeeded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(a.publish_ok(&retry).await, id);
    let end = a.publish_ok(&[("topic", "/end")]).await;
    assert!(
        redis.copies(&id).await >= 2,
        "both attempts landed in the stream"
    );
    for sse in [&mut on_a, &mut on_b] {
        // Stream order: a second copy would come before the end marker.
        assert_eq!(ids(&sse.events(2, WAIT).await), [id.as_str(), end.as_str()]);
    }
}

#[tokio::test]
async fn a_node_that_resumes_after_entries_it_never_read_were_trimmed_logs_the_gap_once() {
    let redis = TestRedis::start();
    let small = |redis: &TestRedis| node_with(redis, &["--history-size", "5"]);
    let (a, b) = (small(&redis), small(&redis));
    all_ready(&[&a, &b]).await;
    let mut on_b = b.subscribe(&["/g"], &[], &[]).await;
    let before = a.publish_ok(&[("topic", "/g"), ("data", "before")]).await;
    assert_eq!(ids(&on_b.events(1, WAIT).await), [before.as_str()]);

    // B stops reading; meanwhile the stream moves on and loses entries B never read.
    signal(&b, "STOP");
    let mut sent = Vec::new();
    for i in 0..12 {
        sent.push(
            a.publish_ok(&[("topic", "/g"), ("data", &i.to_string())])
                .await,
        );
    }
    assert_eq!(
        redis.cli(&["XTRIM", STREAM, "MAXLEN", "2"]).await.trim(),
        "11"
    );
    let first_left = redis.stream_info("first-entry").await;
    redis.kill_reader(&b).await;
    signal(&b, "CONT");

    let warned = wait_until(WAIT, || async {
        b.logs().iter().any(|l| l.contains("gap in stream"))
    })
    .await;
    assert!(warned, "no gap logged: {:?}", b.logs());
    // What the stream still holds arrives, after whatever B had read before it stopped.
    let mut got = Vec::new();
    while got.last() != sent.last() {
        got.push(
            on_b.next_event(WAIT)
                .await
                .expect("the stream's last entries")
                .id
                .unwrap(),
        );
    }
    assert!(got.ends_with(&sent[10..]), "{got:?}");
    assert!(got.len() <= 3, "nothing from the gap: {got:?}");
    let logs = b.logs();
    let gaps: Vec<&String> = logs
        .iter()
        .filter(|l| l.contains("gap in stream"))
        .collect();
    assert_eq!(gaps.len(), 1, "logged once: {gaps:?}");
    assert!(
        gaps[0].contains(&format!("and before {first_left} ")),
        "{}",
        gaps[0]
    );
    assert!(gaps[0].contains("may have missed updates"), "{}", gaps[0]);
    // A reconnect later finds no new gap; A, which read everything, never reports one.
    redis.kill_reader(&b).await;
    redis.kill_reader(&a).await;
    let again = a.publish_ok(&[("topic", "/g"), ("data", "again")]).await;
    assert_eq!(ids(&on_b.events(1, WAIT).await), [again.as_str()]);
    assert_eq!(
        b.logs()
            .iter()
            .filter(|l| l.contains("gap in stream"))
            .count(),
        1
    );
    assert!(
        !a.logs().iter().any(|l| l.contains("gap")),
        "{:?}",
        a.logs()
    );
}

#[tokio::test]
async fn a_client_moving_to_a_lagging_node_resumes_where_it_left_without_duplicates() {
    let redis = TestRedis::start();
    let (a, b) = (node(&redis), node(&redis));
    all_ready(&[&a, &b]).await;
    let mut on_a = a.subscribe(&["/m"], &[], &[]).await;
    let first = a.publish_ok(&[("topic", "/m"), ("data", "first")]).await;
    b.wait_for_stat("history_len", 1).await;

    // B stops reading while A's subscriber gets 20 more; B's reader connection is closed
    // meanwhile, so once B runs again its reader spends a backoff reconnecting: it lags.
    signal(&b, "STOP");
    let mut sent = vec![first];
    for i in 0..20 {
        sent.push(
            a.publish_ok(&[("topic", "/m"), ("data", &i.to_string())])
                .await,
        );
    }
    assert_eq!(ids(&on_a.events(21, WAIT).await), sent);
    let last_seen = sent.last().unwrap().clone();
    redis.kill_reader(&b).await;
    signal(&b, "CONT");

    // The client moves to B with the last id it saw, which B has not read yet.
    let url = b.url("/.well-known/mercure?topic=%2Fm");
    let mut moved = SseClient::connect(&url, &[("Last-Event-ID", &last_seen)]).await;
    assert_eq!(moved.status, 200);
    moved.opened().await;
    assert_eq!(
        moved.response_headers["last-event-id"],
        last_seen.as_str(),
        "resumed after its id, not from the earliest"
    );
    let live = a.publish_ok(&[("topic", "/m"), ("data", "live")]).await;
    let next = moved.next_event(WAIT).await.expect("the live update");
    assert_eq!(
        next.id.as_deref(),
        Some(live.as_str()),
        "no duplicate first"
    );
}
