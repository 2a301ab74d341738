//! The repo's own `nginx.conf` in front of the hub, with the real `nginx` binary.

use std::{
    net::TcpStream,
    os::unix::process::CommandExt,
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use crate::{
    core::assert_gaps_about_one_second,
    helpers::{free_port, wait_until, Next, SseClient, TestHub},
};

const WAIT: Duration = Duration::from_secs(5);

/// nginx running the repo's `nginx.conf` with the ports substituted, in a temp prefix.
pub struct TestNginx {
    child: Child,
    pub port: u16,
    _prefix: tempfile::TempDir,
}

impl TestNginx {
    /// Starts nginx proxying to `upstreams` (host:port each).
    pub fn start(upstreams: &[&str]) -> Self {
        let conf =
            std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("nginx.conf"))
                .expect("read nginx.conf");
        let port = free_port();
        let servers: String = upstreams
            .iter()
            .map(|u| format!("server {u};"))
            .collect::<Vec<_>>()
            .join("\n        ");
        let conf = replace_once(
            &conf,
            "listen 127.0.0.1:8000;",
            &format!("listen 127.0.0.1:{port};"),
        );
        let conf = replace_once(&conf, "server 127.0.0.1:8080;", &servers);
        let prefix = tempfile::tempdir().expect("temp dir");
        for dir in ["logs", "temp"] {
            std::fs::create_dir_all(prefix.path().join(dir)).unwrap();
        }
        let conf_path = prefix.path().join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let child = Command::new(nginx_binary())
            .arg("-p")
            .arg(prefix.path())
            .arg("-c")
            .arg(&conf_path)
            .args(["-g", "daemon off;"])
            .stdin(Stdio::null())
            // Its own output would hold the test runner's pipes open; it logs to the prefix.
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group, so its workers can be stopped with it.
            .process_group(0)
            .spawn()
            .expect("start nginx (apt-get install nginx-light; .ci/run does)");
        let mut nginx = Self {
            child,
            port,
            _prefix: prefix,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = nginx.child.try_wait() {
                let log = std::fs::read_to_string(nginx._prefix.path().join("logs/error.log"));
                panic!("nginx exited with {status}: {log:?}");
            }
            assert!(Instant::now() < deadline, "nginx did not listen in time");
            std::thread::sleep(Duration::from_millis(20));
        }
        nginx
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }
}

impl Drop for TestNginx {
    fn drop(&mut self) {
        // SIGKILL on the master alone would orphan the workers: end the whole group.
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.wait();
    }
}

fn nginx_binary() -> &'static str {
    [
        "/usr/sbin/nginx",
        "/usr/local/sbin/nginx",
        "/usr/local/nginx/sbin/nginx",
    ]
    .into_iter()
    .find(|p| Path::new(p).exists())
    .unwrap_or("nginx")
}

fn replace_once(text: &str, from: &str, to: &str) -> String {
    assert_eq!(
        text.matches(from).count(),
        1,
        "nginx.conf must contain `{from}` once"
    );
    text.replace(from, to)
}

#[tokio::test]
async fn bounded_stream_arrives_incrementally_through_nginx() {
    let hub = TestHub::spawn(&["--tick-interval", "0"]);
    let nginx = TestNginx::start(&[&hub.addr]);
    let mut sse = SseClient::connect(&nginx.url("/api/stream/test"), &[]).await;
    assert_eq!(sse.status, 200);
    let mut arrivals = Vec::new();
    let mut data = Vec::new();
    while let Next::Item(event) = sse.next_event(WAIT).await {
        arrivals.push(Instant::now());
        data.push(event.data);
    }
    assert_eq!(data.len(), 4, "{data:?}");
    assert_eq!(data[3], "[Done]");
    assert_gaps_about_one_second(&arrivals);
}

#[tokio::test]
async fn events_stream_through_nginx_keeps_headers_and_flows_live() {
    let hub = TestHub::spawn(&["--tick-interval", "200ms"]);
    let nginx = TestNginx::start(&[&hub.addr]);
    let mut sse = SseClient::connect(&nginx.url("/events"), &[("Accept-Encoding", "gzip")]).await;
    assert_eq!(sse.status, 200);
    assert_eq!(sse.response_headers["content-type"], "text/event-stream");
    assert!(sse
        .response_headers
        .get("content-encoding")
        .is_none_or(|v| v == "identity"));
    let first = sse.next_event(WAIT).await.expect("an event through nginx");
    let second = sse.next_event(WAIT).await.expect("another event");
    assert!(first.id < second.id);
    let ok = wait_until(WAIT, || async { hub.stats().await["subscribers"] == 1 }).await;
    assert!(ok);
    drop(sse);
    hub.wait_for_stat("subscribers", 0).await;
}
