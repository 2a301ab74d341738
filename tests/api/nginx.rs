//! The repo's own `nginx.conf` in front of the hub, with the real `nginx` binary.

use std::{
    net::TcpStream,
    os::unix::process::CommandExt,
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use crate::{
    core::{assert_gaps_about_one_second, read_to_end},
    hardening::{still_serving, watcher},
    helpers::{client, free_port, token, wait_until, SseClient, TestHub},
};

const WAIT: Duration = Duration::from_secs(5);

/// nginx running the repo's `nginx.conf` with the ports substituted, in a temp prefix.
pub struct TestNginx {
    child: Child,
    pub port: u16,
    /// The HTTPS (HTTP/2) port, with a self-signed certificate for `localhost`.
    pub tls_port: u16,
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
        let tls_port = free_port();
        let (cert, key) = self_signed_certificate(prefix.path());
        let conf = replace_once(
            &conf,
            "listen 127.0.0.1:8443 ssl http2;",
            &format!("listen 127.0.0.1:{tls_port} ssl http2;"),
        );
        let conf = replace_once(&conf, "/etc/ssl/sse-hub/fullchain.pem", &cert);
        let conf = replace_once(&conf, "/etc/ssl/sse-hub/privkey.pem", &key);
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
            tls_port,
            _prefix: prefix,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err()
            || TcpStream::connect(("127.0.0.1", tls_port)).is_err()
        {
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

    /// What nginx wrote to its access log so far.
    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self._prefix.path().join("logs/access.log")).unwrap_or_default()
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

/// Makes a self-signed certificate for `localhost` and 127.0.0.1 in `dir`; returns the paths.
pub(crate) fn self_signed_certificate(dir: &Path) -> (String, String) {
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    let status = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
        ])
        .arg("/CN=localhost")
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run openssl");
    assert!(status.success(), "openssl could not make a certificate");
    let path = |p: std::path::PathBuf| p.to_str().expect("UTF-8 temp path").to_owned();
    (path(cert), path(key))
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
    let (arrivals, data) = read_to_end(&mut sse).await;
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

#[tokio::test]
async fn https_with_http2_serves_the_stream() {
    let hub = TestHub::spawn(&["--tick-interval", "100ms"]);
    let nginx = TestNginx::start(&[&hub.addr]);
    // curl speaks HTTP/2 over TLS and reports the version it used.
    let output = tokio::process::Command::new("curl")
        .args([
            "--silent",
            "--insecure",
            "--http2",
            "--max-time",
            "3",
            "--no-buffer",
        ])
        .args(["--write-out", "\nHTTP_VERSION=%{http_version}\n"])
        .arg(format!("https://localhost:{}/events", nginx.tls_port))
        .output()
        .await
        .expect("run curl");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("event: time"), "{text}");
    assert!(text.contains("HTTP_VERSION=2"), "{text}");
}

#[tokio::test]
async fn tokens_in_query_strings_stay_out_of_the_nginx_access_log() {
    // A short heartbeat: nginx writes a stream's line when it ends, which it notices at the
    // next write after the client left.
    let hub = TestHub::protocol(&["--keep-alive", "200ms"]);
    let mut watch = watcher(&hub).await;
    let nginx = TestNginx::start(&[&hub.addr]);
    let subscriber = token(serde_json::json!({ "subscribe": ["/secret"] }));
    let in_referer = token(serde_json::json!({ "subscribe": ["/referer"] }));
    let url = nginx.url(&format!(
        "/.well-known/mercure?topic=%2Fsecret&authorization={subscriber}"
    ));
    let referer = format!("https://app.example/page?tab=1&Access_Token={in_referer}");
    let mut sse = SseClient::connect(&url, &[("Referer", &referer)]).await;
    assert_eq!(sse.status, 200);
    sse.opened().await;
    drop(sse);
    let plain = client()
        .get(nginx.url("/healthz?topic=%2Fa&ACCESS_TOKEN=plain-secret"))
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status(), 200);

    let expected = [
        "\"GET /.well-known/mercure?[redacted] HTTP/1.1\"",
        "\"https://app.example/page?[redacted]\"",
        "\"GET /healthz?[redacted] HTTP/1.1\" 200",
    ];
    let logged = wait_until(Duration::from_secs(10), || async {
        let log = nginx.access_log();
        expected.iter().all(|line| log.contains(line))
    })
    .await;
    let log = nginx.access_log();
    assert!(
        logged,
        "request lines missing from nginx's access log:\n{log}"
    );
    for secret in [&subscriber, &in_referer, "plain-secret"] {
        assert!(!log.contains(secret), "{secret} was logged:\n{log}");
    }
    still_serving(&hub, &mut watch).await;
}
