//! Test harness: real hub processes on port 0, a streaming SSE client with timeouts, and
//! deadline-bounded waits.

use std::{
    collections::VecDeque,
    io::{BufRead, BufReader},
    net::TcpListener,
    ops::ControlFlow,
    path::Path,
    process::{Child, Command, ExitStatus, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use bytes::Bytes;
use futures_util::StreamExt;

/// How long a hub gets to print its address.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A running `sse-hub` process, killed when dropped.
pub struct TestHub {
    child: Child,
    pub addr: String,
    /// `https` when the hub serves TLS (`--tls-cert`), else `http`.
    scheme: &'static str,
    logs: Arc<Mutex<Vec<String>>>,
    /// The working directory `spawn` made (its default `./sse-hub-data` included), kept as long
    /// as the hub runs.
    _cwd: Option<tempfile::TempDir>,
}

impl TestHub {
    /// Starts the hub binary with `args` on a free port, from a temporary working directory.
    pub fn spawn(args: &[&str]) -> Self {
        let cwd = tempfile::tempdir().expect("temp dir");
        let mut hub = Self::spawn_in(args, cwd.path());
        hub._cwd = Some(cwd);
        hub
    }

    /// Starts the hub binary with `args` on a free port, from `cwd`.
    pub fn spawn_in(args: &[&str], cwd: &Path) -> Self {
        let mut all = vec!["--bind", "127.0.0.1:0"];
        all.extend_from_slice(args);
        Self::spawn_with(&all, cwd)
    }

    /// Starts the hub binary with exactly `args` (which must bind somewhere).
    pub fn spawn_with(args: &[&str], cwd: &Path) -> Self {
        let mut command = Command::new(Self::binary());
        command.args(args).current_dir(cwd);
        Self::spawn_command(command)
    }

    /// The hub binary under test.
    pub fn binary() -> &'static str {
        env!("CARGO_BIN_EXE_sse-hub")
    }

    /// Runs `command` (the hub, or a shell that execs it) and waits until the hub listens.
    pub fn spawn_command(mut command: Command) -> Self {
        let mut child = command
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start sse-hub");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().expect("piped stderr");
        let sink = Arc::clone(&logs);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let deadline = Instant::now() + START_TIMEOUT;
        let (scheme, addr) = loop {
            let found = logs.lock().unwrap().iter().find_map(|l| {
                l.split_once("listening on ")
                    .and_then(|(_, url)| url.split_once("://"))
                    .map(|(scheme, a)| {
                        let scheme = if scheme.ends_with("https") {
                            "https"
                        } else {
                            "http"
                        };
                        (scheme, a.trim().to_owned())
                    })
            });
            if let Some(found) = found {
                break found;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("sse-hub exited with {status}: {:?}", logs.lock().unwrap());
            }
            assert!(Instant::now() < deadline, "sse-hub did not start in time");
            std::thread::sleep(Duration::from_millis(20));
        };
        Self {
            child,
            addr,
            scheme,
            logs,
            _cwd: None,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}://{}{}", self.scheme, self.addr, path)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the hub logged so far.
    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().unwrap().clone()
    }

    /// Whether a line the hub logged so far contains `text`.
    pub fn logged(&self, text: &str) -> bool {
        self.logs.lock().unwrap().iter().any(|l| l.contains(text))
    }

    /// Kills the process at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
    }

    /// Waits for the process to exit, up to `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The hub's `/stats` as JSON.
    pub async fn stats(&self) -> serde_json::Value {
        client()
            .get(self.url("/stats"))
            .send()
            .await
            .expect("GET /stats")
            .json()
            .await
            .expect("stats JSON")
    }

    /// Waits until `/stats` field `name` equals `value`.
    pub async fn wait_for_stat(&self, name: &str, value: u64) {
        let ok = wait_until(Duration::from_secs(10), || async {
            self.stats().await[name].as_u64() == Some(value)
        })
        .await;
        assert!(ok, "{name} never reached {value}: {}", self.stats().await);
    }
}

impl Drop for TestHub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP client with a connect timeout and no proxy. It trusts any certificate: the hubs
/// it talks to serve the tests' self-signed one, on loopback.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .danger_accept_invalid_certs(true)
        .connect_timeout(Duration::from_secs(5))
        .build()
        .expect("client")
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// Polls `condition` every 20 ms until it holds or `limit` passes; true if it held.
pub async fn wait_until<F, Fut>(limit: Duration, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    loop {
        if condition().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One event as `EventSource` dispatches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The stream's last event ID as of this event (`lastEventId`): the latest `id` field so
    /// far, this event's or an earlier one's; `None` while there was none.
    pub id: Option<String>,
    /// The `event` field; `None` for the default type, `message`.
    pub event: Option<String>,
    pub data: String,
}

/// What reading a stream gave.
#[derive(Debug)]
pub enum Next<T> {
    Item(T),
    /// The server ended the stream.
    End,
    TimedOut,
}

impl<T: std::fmt::Debug> Next<T> {
    pub fn expect(self, what: &str) -> T {
        match self {
            Next::Item(item) => item,
            other => panic!("expected {what}, got {other:?}"),
        }
    }
}

/// A streaming SSE response read chunk by chunk, parsed by the workspace's `sse-parser` (the
/// load generator's parser too).
pub struct SseClient {
    pub response_headers: reqwest::header::HeaderMap,
    pub status: reqwest::StatusCode,
    body: futures_util::stream::BoxStream<'static, reqwest::Result<Bytes>>,
    parser: sse_parser::Parser,
    /// Events parsed but not yet taken by `next_event`.
    ready: VecDeque<Event>,
    /// Every comment line read so far, its text trimmed.
    pub comments: Vec<String>,
}

impl SseClient {
    /// Opens `url` with `headers`; the response may be an error status (see `status`).
    pub async fn connect(url: &str, headers: &[(&str, &str)]) -> Self {
        let mut request = client().get(url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        Self::send(request).await
    }

    /// Sends `request` (any method, body and headers) and reads its response as a stream.
    pub async fn send(request: reqwest::RequestBuilder) -> Self {
        let request = request.header("Accept", "text/event-stream");
        let response = tokio::time::timeout(Duration::from_secs(10), request.send())
            .await
            .expect("response headers in time")
            .expect("request");
        Self {
            response_headers: response.headers().clone(),
            status: response.status(),
            body: response.bytes_stream().boxed(),
            parser: sse_parser::Parser::new(),
            ready: VecDeque::new(),
            comments: Vec::new(),
        }
    }

    /// The next raw body chunk.
    pub async fn chunk(&mut self, timeout: Duration) -> Next<Bytes> {
        match tokio::time::timeout(timeout, self.body.next()).await {
            Ok(Some(Ok(bytes))) => Next::Item(bytes),
            Ok(Some(Err(_)) | None) => Next::End,
            Err(_) => Next::TimedOut,
        }
    }

    /// Waits for the opening bytes (parsed, with whatever came along with them).
    pub async fn opened(&mut self) {
        let first = self
            .chunk(Duration::from_secs(5))
            .await
            .expect("opening bytes");
        assert!(first.starts_with(b"retry:"), "{first:?}");
        self.parse(&first);
    }

    /// Parses body bytes: events are queued for `next_event`, comments recorded.
    fn parse(&mut self, bytes: &[u8]) {
        let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
        let (ready, comments) = (&mut self.ready, &mut self.comments);
        let parsed = self.parser.feed(bytes, |item| {
            match item {
                sse_parser::Item::Event(e) => ready.push_back(Event {
                    id: (!e.last_event_id.is_empty()).then(|| text(e.last_event_id)),
                    event: (!e.event_type.is_empty()).then(|| text(e.event_type)),
                    data: text(e.data),
                }),
                sse_parser::Item::Comment(c) => comments.push(text(c).trim().to_owned()),
                sse_parser::Item::Retry(_) => {}
            }
            ControlFlow::Continue(())
        });
        assert!(parsed.is_ok(), "unparsable SSE stream: {parsed:?}");
    }

    /// The next dispatched event (comments are recorded and skipped).
    pub async fn next_event(&mut self, timeout: Duration) -> Next<Event> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(event) = self.ready.pop_front() {
                return Next::Item(event);
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.chunk(left).await {
                Next::Item(bytes) => self.parse(&bytes),
                Next::End => return Next::End,
                Next::TimedOut => return Next::TimedOut,
            }
        }
    }

    /// Reads events until `n` have arrived, each within `timeout` of the previous one.
    pub async fn events(&mut self, n: usize, timeout: Duration) -> Vec<Event> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            out.push(self.next_event(timeout).await.expect("an event"));
        }
        out
    }
}

/// The HS256 key the protocol tests run the hub with.
pub const KEY: &str = "test-key-with-enough-entropy-0123456789";

/// Signs `claims` with `key` (HS256).
pub fn token_with(key: &str, claims: serde_json::Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(key.as_bytes()),
    )
    .expect("sign")
}

/// A token signed with [`KEY`] carrying `mercure` = `claim`.
pub fn token(claim: serde_json::Value) -> String {
    token_with(KEY, serde_json::json!({ "mercure": claim }))
}

/// A publisher token for every topic.
pub fn publisher() -> String {
    token(serde_json::json!({ "publish": ["*"] }))
}

impl TestHub {
    /// A hub with [`KEY`], anonymous subscribers allowed and no ticks.
    pub fn protocol(extra: &[&str]) -> Self {
        let mut args = vec![
            "--jwt-key",
            KEY,
            "--allow-anonymous",
            "--tick-interval",
            "0",
        ];
        args.extend_from_slice(extra);
        Self::spawn(&args)
    }

    /// Posts `form` to the hub endpoint with `token` as bearer.
    pub async fn publish(&self, token: &str, form: &[(&str, &str)]) -> reqwest::Response {
        client()
            .post(self.url("/.well-known/mercure"))
            .bearer_auth(token)
            .form(form)
            .send()
            .await
            .expect("POST publish")
    }

    /// Publishes `form` with a publish-everything token and returns the id; panics unless 200.
    pub async fn publish_ok(&self, form: &[(&str, &str)]) -> String {
        let response = self.publish(&publisher(), form).await;
        let status = response.status();
        let body = response.text().await.unwrap();
        assert_eq!(status, 200, "publish {form:?}: {body}");
        body
    }

    /// Opens a subscription to `selectors` on the hub endpoint, with extra `query` pairs and
    /// `headers`, and waits for its opening bytes.
    pub async fn subscribe(
        &self,
        selectors: &[&str],
        query: &[(&str, &str)],
        headers: &[(&str, &str)],
    ) -> SseClient {
        let mut url = reqwest::Url::parse(&self.url("/.well-known/mercure")).unwrap();
        for selector in selectors {
            url.query_pairs_mut().append_pair("topic", selector);
        }
        for (k, v) in query {
            url.query_pairs_mut().append_pair(k, v);
        }
        let mut sse = SseClient::connect(url.as_str(), headers).await;
        assert_eq!(sse.status, 200, "subscribe {selectors:?}");
        sse.opened().await;
        sse
    }
}

/// Runs openssl with `args`, panicking unless it succeeds; its standard output.
pub fn openssl(args: &[&str]) -> Vec<u8> {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("run openssl (apt-get install openssl; .ci/run does)");
    assert!(out.status.success(), "openssl {args:?}: {out:?}");
    out.stdout
}

/// Writes a new 2048-bit RSA private key (PEM) to `path`.
pub fn rsa_private_key(path: &Path) {
    let path = path.to_str().expect("UTF-8 temp path");
    openssl(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        path,
    ]);
}

/// The claims of a JWS `token`, unverified (what a test checks is what a command printed).
pub fn claims_of(token: &str) -> serde_json::Value {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).expect("a JWS");
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url");
    serde_json::from_slice(&json).expect("JSON claims")
}

/// Seconds since the Unix epoch, as `exp` and `nbf` count them.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}
