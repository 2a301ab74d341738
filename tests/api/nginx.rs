//! The repo's own nginx files in front of the hub, with the real `nginx` binary: `nginx.conf`
//! as shipped (plain HTTP), with its HTTPS include, and the locations snippet in another
//! server.

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

/// nginx running one of the repo's configurations, in a temp prefix, on free ports.
pub struct TestNginx {
    child: Child,
    pub port: u16,
    /// The HTTPS (HTTP/2) port of [`TestNginx::start_tls`], with a self-signed certificate for
    /// `localhost`.
    pub tls_port: Option<u16>,
    prefix: tempfile::TempDir,
}

impl TestNginx {
    /// Starts the shipped `nginx.conf` as it is (plain HTTP, no certificate anywhere), proxying
    /// to `upstreams` (host:port each).
    pub fn start(upstreams: &[&str]) -> Self {
        Self::shipped(upstreams, false)
    }

    /// [`TestNginx::start`] with the include of `deploy/nginx-tls.conf` uncommented.
    pub fn start_tls(upstreams: &[&str]) -> Self {
        Self::shipped(upstreams, true)
    }

    fn shipped(upstreams: &[&str], tls: bool) -> Self {
        let prefix = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let servers: String = upstreams
            .iter()
            .map(|u| format!("server {u};"))
            .collect::<Vec<_>>()
            .join("\n        ");
        let conf = shipped_file("nginx.conf");
        let conf = replace_once(
            &conf,
            "listen 127.0.0.1:8000;",
            &format!("listen 127.0.0.1:{port};"),
        );
        let mut conf = replace_once(&conf, "server 127.0.0.1:8080;", &servers);
        // The includes are read beside nginx.conf: the files go into the prefix as shipped.
        write(prefix.path(), LOCATIONS, &shipped_file(LOCATIONS));
        let mut tls_port = None;
        if tls {
            let include = "include deploy/nginx-tls.conf;";
            conf = replace_once(&conf, &format!("# {include}"), include);
            let port = free_port();
            let (cert, key) = self_signed_certificate(prefix.path());
            let tls_conf = shipped_file("deploy/nginx-tls.conf");
            let tls_conf = replace_once(
                &tls_conf,
                "listen 127.0.0.1:8443 ssl http2;",
                &format!("listen 127.0.0.1:{port} ssl http2;"),
            );
            let tls_conf = replace_once(&tls_conf, "/etc/ssl/sse-hub/fullchain.pem", &cert);
            let tls_conf = replace_once(&tls_conf, "/etc/ssl/sse-hub/privkey.pem", &key);
            write(prefix.path(), "deploy/nginx-tls.conf", &tls_conf);
            tls_port = Some(port);
        }
        write(prefix.path(), "nginx.conf", &conf);
        Self::run(prefix, port, tls_port)
    }

    /// Runs nginx on the `nginx.conf` already written in `prefix` and waits until it listens on
    /// `port` (and `tls_port`). It starts as a service often does: with a soft limit of 1024
    /// open files.
    fn run(prefix: tempfile::TempDir, port: u16, tls_port: Option<u16>) -> Self {
        for dir in ["logs", "temp"] {
            std::fs::create_dir_all(prefix.path().join(dir)).unwrap();
        }
        // What nginx says before its error log is open (a file it can't read, say).
        let stderr = std::fs::File::create(prefix.path().join("logs/stderr.log")).unwrap();
        let child = Command::new("sh")
            .args(["-c", "ulimit -Sn 1024 && exec \"$0\" \"$@\""])
            .arg(nginx_binary())
            .arg("-p")
            .arg(prefix.path())
            .arg("-c")
            .arg(prefix.path().join("nginx.conf"))
            .args(["-g", "daemon off;"])
            .stdin(Stdio::null())
            // Its own output would hold the test runner's pipes open; it logs to the prefix.
            .stdout(Stdio::null())
            .stderr(stderr)
            // Its own process group, so its workers can be stopped with it.
            .process_group(0)
            .spawn()
            .expect("start nginx (apt-get install nginx-light; .ci/run does)");
        let mut nginx = Self {
            child,
            port,
            tls_port,
            prefix,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        let listening = |port: u16| TcpStream::connect(("127.0.0.1", port)).is_ok();
        while !listening(port) || !tls_port.is_none_or(listening) {
            if let Ok(Some(status)) = nginx.child.try_wait() {
                let stderr = std::fs::read_to_string(nginx.prefix.path().join("logs/stderr.log"));
                panic!(
                    "nginx exited with {status}: {stderr:?} {}",
                    nginx.error_log()
                );
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
        std::fs::read_to_string(self.prefix.path().join("logs/access.log")).unwrap_or_default()
    }

    /// What nginx wrote to its error log so far (warnings and worse).
    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.prefix.path().join("logs/error.log")).unwrap_or_default()
    }

    /// The soft limit on open files of each worker process, once there are workers.
    pub fn worker_file_limits(&self) -> Vec<u64> {
        let workers = Command::new("pgrep")
            .args(["-P", &self.child.id().to_string()])
            .output()
            .expect("run pgrep");
        String::from_utf8_lossy(&workers.stdout)
            .split_whitespace()
            .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/limits")).ok())
            .filter_map(|limits| {
                let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
                line.split_whitespace().nth(3)?.parse().ok()
            })
            .collect()
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

/// The server-level file of the hub's locations, also the snippet for an existing nginx.
const LOCATIONS: &str = "deploy/nginx-locations.conf";

/// A file of the repo, as shipped.
fn shipped_file(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

/// Writes `text` to `dir`/`path`, making its folder.
fn write(dir: &Path, path: &str, text: &str) {
    let full = dir.join(path);
    std::fs::create_dir_all(full.parent().unwrap()).unwrap();
    std::fs::write(full, text).unwrap();
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
        "the nginx file must contain `{from}` once"
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
    let nginx = TestNginx::start_tls(&[&hub.addr]);
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
        .arg(format!(
            "https://localhost:{}/events",
            nginx.tls_port.unwrap()
        ))
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

/// A client whose connections come from 127.0.0.2: another host, as far as nginx can tell.
fn client_elsewhere() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client")
}

/// The status of GET `url` from `client`.
async fn status(client: &reqwest::Client, url: &str) -> u16 {
    client
        .get(url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
        .status()
        .as_u16()
}

#[tokio::test]
async fn the_plain_config_starts_without_certificates_or_warnings_and_proxies_a_stream() {
    let hub = TestHub::spawn(&["--tick-interval", "100ms"]);
    let nginx = TestNginx::start(&[&hub.addr]);
    let mut sse = SseClient::connect(&nginx.url("/events"), &[]).await;
    assert_eq!(sse.status, 200);
    sse.next_event(WAIT).await.expect("an event through nginx");
    // Started with a soft limit of 1024 open files: worker_rlimit_nofile raises each worker's
    // to what worker_connections needs, so nginx has nothing to warn about.
    let raised = wait_until(WAIT, || async {
        let limits = nginx.worker_file_limits();
        !limits.is_empty() && limits.iter().all(|&l| l >= 16384)
    })
    .await;
    assert!(raised, "workers' limits: {:?}", nginx.worker_file_limits());
    let errors = nginx.error_log();
    assert!(errors.trim().is_empty(), "{errors}");
}

#[tokio::test]
async fn metrics_and_stats_through_nginx_answer_this_host_only() {
    let hub = TestHub::spawn(&["--tick-interval", "0"]);
    let nginx = TestNginx::start(&[&hub.addr]);
    let elsewhere = client_elsewhere();
    // Spellings that nginx and the hub both read as the counters' paths.
    for path in ["/metrics", "/stats", "/%6Detrics", "//stats", "/stats?x=1"] {
        assert_eq!(status(&elsewhere, &nginx.url(path)).await, 403, "{path}");
    }
    // Refused for the address, not for the client: the rest of the hub answers it.
    assert_eq!(status(&elsewhere, &nginx.url("/healthz")).await, 200);
    for path in ["/metrics", "/stats"] {
        assert_eq!(status(&client(), &nginx.url(path)).await, 200, "{path}");
        // The hub's own port is not behind the rule.
        assert_eq!(status(&elsewhere, &hub.url(path)).await, 200, "{path}");
    }
}

#[tokio::test]
async fn the_locations_snippet_adds_the_hub_to_an_existing_server() {
    let hub = TestHub::spawn(&["--tick-interval", "100ms"]);
    let snippet = shipped_file(LOCATIONS);
    // The `upstream` block its header tells you to add, as written there.
    let upstream: Vec<&str> = snippet
        .lines()
        .filter_map(|l| l.strip_prefix("#     "))
        .skip_while(|l| !l.starts_with("upstream sse_hub {"))
        .take_while(|l| !l.starts_with("include "))
        .collect();
    assert_eq!(upstream.last(), Some(&"}"), "{upstream:?}");
    let upstream = replace_once(
        &upstream.join("\n"),
        "server 127.0.0.1:8080;",
        &format!("server {};", hub.addr),
    );
    let prefix = tempfile::tempdir().unwrap();
    let port = free_port();
    let site = format!(
        "pid logs/nginx.pid;\n\
         error_log logs/error.log warn;\n\
         events {{}}\n\
         http {{\n\
         client_body_temp_path temp/client_body;\n\
         proxy_temp_path temp/proxy;\n\
         fastcgi_temp_path temp/fastcgi;\n\
         uwsgi_temp_path temp/uwsgi;\n\
         scgi_temp_path temp/scgi;\n\
         access_log logs/access.log;\n\
         {upstream}\n\
         server {{\n\
         listen 127.0.0.1:{port};\n\
         location / {{ return 200 \"my own site\\n\"; }}\n\
         include sse-hub-locations.conf;\n\
         }}\n\
         }}\n"
    );
    write(prefix.path(), "nginx.conf", &site);
    write(prefix.path(), "sse-hub-locations.conf", &snippet);
    let nginx = TestNginx::run(prefix, port, None);

    let site = client().get(nginx.url("/")).send().await.unwrap();
    assert_eq!(site.text().await.unwrap(), "my own site\n");
    let mut sse = SseClient::connect(&nginx.url("/events"), &[]).await;
    assert_eq!(sse.status, 200);
    sse.next_event(WAIT).await.expect("an event through nginx");
    let errors = nginx.error_log();
    assert!(errors.trim().is_empty(), "{errors}");
    assert_eq!(status(&client(), &nginx.url("/metrics")).await, 200);
    assert_eq!(
        status(&client_elsewhere(), &nginx.url("/metrics")).await,
        403
    );
    assert!(nginx.error_log().contains("access forbidden by rule"));
}
