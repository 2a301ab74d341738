//! Hostile and careless clients: every limit refuses with a clear status, and a well-behaved
//! subscriber running alongside keeps receiving every update.

use std::time::{Duration, Instant};

use serde_json::json;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::helpers::{
    client, openssl, publisher, rsa_private_key, token, token_with, SseClient, TestHub, KEY,
};

const WAIT: Duration = Duration::from_secs(5);

/// A subscriber that behaves: it reads everything on `/watch`.
pub(crate) async fn watcher(hub: &TestHub) -> SseClient {
    hub.subscribe(&["/watch"], &[], &[]).await
}

/// Publishes three updates on `/watch` and checks the watcher gets exactly them, in order.
pub(crate) async fn still_serving(hub: &TestHub, watcher: &mut SseClient) {
    let mut sent = Vec::new();
    for i in 0..3 {
        sent.push(
            hub.publish_ok(&[("topic", "/watch"), ("data", &i.to_string())])
                .await,
        );
    }
    let got: Vec<String> = watcher
        .events(3, WAIT)
        .await
        .into_iter()
        .map(|e| e.id.unwrap())
        .collect();
    assert_eq!(
        got, sent,
        "the well-behaved subscriber lost or reordered updates"
    );
    let health = client().get(hub.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
}

fn port_of(addr: &str) -> u16 {
    addr.rsplit(':').next().unwrap().parse().unwrap()
}

/// Whether the kernel still has an established TCP connection from `local_port` to `remote_port`.
fn established(local_port: u16, remote_port: u16) -> bool {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    table.lines().skip(1).any(|line| {
        let cols: Vec<&str> = line.split_whitespace().collect();
        let port = |col: &str| u16::from_str_radix(col.rsplit(':').next().unwrap_or(""), 16).ok();
        cols.len() > 3
            && port(cols[1]) == Some(local_port)
            && port(cols[2]) == Some(remote_port)
            && cols[3] == "01"
    })
}

/// Opens a raw subscription that will never be read.
async fn stalled_subscriber(hub: &TestHub, topic: &str) -> TcpStream {
    let mut stream = TcpStream::connect(&hub.addr).await.unwrap();
    let request = format!(
        "GET /.well-known/mercure?topic={topic} HTTP/1.1\r\nHost: {}\r\n\r\n",
        hub.addr
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    stream
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS")
}

#[tokio::test]
async fn subscribers_per_address_are_limited_with_429() {
    // A short heartbeat: a client that left is noticed at the next write.
    let hub = TestHub::protocol(&["--max-subscribers-per-ip", "2", "--keep-alive", "200ms"]);
    let mut watch = watcher(&hub).await;
    // The test talks to the hub from 127.0.0.1, a trusted proxy by default: the address it
    // forwards is the client's.
    let from = |ip: &'static str| [("X-Forwarded-For", ip)];
    let url = hub.url("/.well-known/mercure?topic=%2Fx");
    let a = SseClient::connect(&url, &from("192.0.2.7")).await;
    let b = SseClient::connect(&url, &from("198.51.100.1, 192.0.2.7")).await;
    assert_eq!((a.status.as_u16(), b.status.as_u16()), (200, 200));
    let refused = SseClient::connect(&url, &from("192.0.2.7")).await;
    assert_eq!(refused.status, 429);
    assert!(refused.response_headers.contains_key("retry-after"));
    let other = SseClient::connect(&url, &from("192.0.2.8")).await;
    assert_eq!(other.status, 200);
    drop(a);
    hub.wait_for_stat("subscribers", 3).await;
    let again = SseClient::connect(&url, &from("192.0.2.7")).await;
    assert_eq!(again.status, 200, "a freed place can be taken again");
    still_serving(&hub, &mut watch).await;
}

#[tokio::test]
async fn forwarded_addresses_from_untrusted_peers_are_ignored() {
    let hub = TestHub::protocol(&[
        "--max-subscribers-per-ip",
        "2",
        "--trusted-proxy",
        "192.0.2.1",
    ]);
    let url = hub.url("/.well-known/mercure?topic=%2Fx");
    let a = SseClient::connect(&url, &[("X-Forwarded-For", "192.0.2.50")]).await;
    let b = SseClient::connect(&url, &[("X-Forwarded-For", "192.0.2.51")]).await;
    assert_eq!((a.status.as_u16(), b.status.as_u16()), (200, 200));
    let c = SseClient::connect(&url, &[("X-Forwarded-For", "192.0.2.52")]).await;
    assert_eq!(c.status, 429, "all three come from 127.0.0.1");
}

#[tokio::test]
async fn too_many_selectors_in_one_subscription_get_400() {
    let hub = TestHub::protocol(&["--max-topics", "3"]);
    let mut watch = watcher(&hub).await;
    let url = hub.url("/.well-known/mercure?topic=%2Fa&topic=%2Fb&topic=%2Fc&topic=%2Fd");
    let response = client().get(url).send().await.unwrap();
    assert_eq!(response.status(), 400);
    assert!(response
        .text()
        .await
        .unwrap()
        .contains("too many topic selectors"));
    still_serving(&hub, &mut watch).await;
}

#[tokio::test]
async fn oversized_data_url_and_headers_are_refused() {
    let hub = TestHub::protocol(&[
        "--max-data-size",
        "100",
        "--max-url-size",
        "2048",
        "--max-header-size",
        "4096",
    ]);
    let mut watch = watcher(&hub).await;
    let data = "d".repeat(101);
    let big_data = hub
        .publish(&publisher(), &[("topic", "/watch"), ("data", &data)])
        .await;
    assert_eq!(big_data.status(), 413);
    let long = format!("/events?pad={}", "u".repeat(3000));
    let long_url = client().get(hub.url(&long)).send().await.unwrap();
    assert_eq!(long_url.status(), 414);
    let big_headers = client()
        .get(hub.url("/healthz"))
        .header("X-Pad", "h".repeat(5000))
        .send()
        .await
        .unwrap();
    assert_eq!(big_headers.status(), 431);
    assert_eq!(hub.stats().await["events_published"], 0);
    still_serving(&hub, &mut watch).await;
}

#[tokio::test]
async fn publishing_faster_than_the_rate_gets_429_per_token() {
    let hub = TestHub::protocol(&["--publish-rate", "1", "--publish-burst", "3"]);
    let mut watch = watcher(&hub).await;
    let fast = token(json!({ "publish": ["*"], "subscribe": [] }));
    for i in 0..3 {
        let ok = hub
            .publish(&fast, &[("topic", "/spam"), ("data", &i.to_string())])
            .await;
        assert_eq!(ok.status(), 200);
    }
    let limited = hub.publish(&fast, &[("topic", "/spam")]).await;
    assert_eq!(limited.status(), 429);
    let wait: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&wait), "Retry-After {wait}");
    // Another token has its own bucket (still_serving publishes with one).
    still_serving(&hub, &mut watch).await;
}

#[tokio::test]
async fn a_peer_that_stops_reading_is_dropped_and_its_connection_closed() {
    let hub = TestHub::protocol(&["--queue-capacity", "4", "--write-timeout", "1s"]);
    let mut watch = watcher(&hub).await;
    let stalled = stalled_subscriber(&hub, "%2Fwatch").await;
    let stalled_port = stalled.local_addr().unwrap().port();
    hub.wait_for_stat("subscribers", 2).await;
    let data = "x".repeat(64 * 1024);
    let started = Instant::now();
    let mut sent = 0;
    // Two guards race here, and either may win: its queue fills (dropped as slow), or the
    // kernel closes the connection after the 1 s write timeout (the stream ends, it leaves).
    while hub.stats().await["subscribers"] != 1 {
        assert!(
            started.elapsed() < Duration::from_secs(60) && sent < 2000,
            "the stalled subscriber was never dropped"
        );
        hub.publish_ok(&[("topic", "/watch"), ("data", &data)])
            .await;
        sent += 1;
        // Keep the watcher drained so only the stalled peer falls behind.
        watch.events(1, WAIT).await;
    }
    // The kernel gives up on the unread connection after the write timeout.
    let hub_port = port_of(&hub.addr);
    let closed = crate::helpers::wait_until(Duration::from_secs(20), || async {
        !established(hub_port, stalled_port)
    })
    .await;
    assert!(closed, "the hub kept the stalled connection open");
    drop(stalled);
    still_serving(&hub, &mut watch).await;
}

#[tokio::test]
async fn a_slowloris_client_is_cut_off_at_the_header_timeout() {
    let hub = TestHub::protocol(&["--request-header-timeout", "1s"]);
    let mut watch = watcher(&hub).await;
    let mut slow = TcpStream::connect(&hub.addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let mut cut = false;
    for _ in 0..40 {
        if slow.write_all(b"X-Slow: a\r\n").await.is_err() {
            cut = true;
            break;
        }
        let mut buf = [0u8; 256];
        match tokio::time::timeout(Duration::from_millis(250), slow.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => {
                cut = true;
                break;
            }
            Ok(Ok(n)) => {
                // A 408 before the close is fine.
                assert!(String::from_utf8_lossy(&buf[..n]).contains("408"));
            }
            Err(_) => {}
        }
    }
    assert!(cut, "still connected after {:?}", started.elapsed());
    assert!(started.elapsed() < Duration::from_secs(8));
    still_serving(&hub, &mut watch).await;
}

#[tokio::test]
async fn idle_keep_alive_connections_are_closed() {
    let hub = TestHub::protocol(&["--idle-timeout", "1s"]);
    let mut watch = watcher(&hub).await;
    let mut idle = TcpStream::connect(&hub.addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 1024];
    let n = tokio::time::timeout(WAIT, idle.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let started = Instant::now();
    let end = tokio::time::timeout(Duration::from_secs(10), idle.read(&mut buf)).await;
    assert!(matches!(end, Ok(Ok(0)) | Ok(Err(_))), "{end:?}");
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "closed too early"
    );
    still_serving(&hub, &mut watch).await;
}

#[tokio::test]
async fn memory_stays_bounded_with_many_stalled_subscribers() {
    let hub = TestHub::protocol(&[
        "--queue-capacity",
        "64",
        "--max-subscribers-per-ip",
        "1000",
        // 200 stalled subscribers from one address, at once.
        "--subscribe-rate",
        "0",
        "--history-size",
        "100",
    ]);
    let mut watch = watcher(&hub).await;
    let baseline = rss_kib(hub.pid());
    let mut stalled = Vec::new();
    for _ in 0..200 {
        stalled.push(stalled_subscriber(&hub, "%2Fwatch").await);
    }
    hub.wait_for_stat("subscribers", 201).await;
    // 400 updates of 16 KiB to every subscriber: 1.3 GB if the hub buffered per subscriber.
    let data = "m".repeat(16 * 1024);
    for _ in 0..400 {
        hub.publish_ok(&[("topic", "/watch"), ("data", &data)])
            .await;
        watch.events(1, WAIT).await;
    }
    let grown_mib = rss_kib(hub.pid()).saturating_sub(baseline) / 1024;
    eprintln!("RSS: baseline {baseline} KiB, grew by {grown_mib} MiB with 200 stalled subscribers");
    // Bound: per stalled connection, actix's write buffer and one queued chunk (about 64 KiB);
    // shared event bytes (queues hold references, not copies); 100 updates of history.
    assert!(grown_mib < 120, "RSS grew by {grown_mib} MiB");
    assert!(
        hub.stats().await["subscribers_dropped_slow"]
            .as_u64()
            .unwrap()
            > 0
    );
    drop(stalled);
    still_serving(&hub, &mut watch).await;
}

#[tokio::test]
async fn a_connection_flood_is_refused_and_the_hub_recovers() {
    let hub = TestHub::protocol(&[
        "--max-subscribers",
        "50",
        "--max-subscribers-per-ip",
        "1000",
        // The flood is of subscribers over the total, not of attempts from one address.
        "--subscribe-rate",
        "0",
    ]);
    let mut watch = watcher(&hub).await;
    let mut flood = Vec::new();
    for _ in 0..300 {
        flood.push(tokio::spawn({
            let addr = hub.addr.clone();
            async move {
                let mut stream = TcpStream::connect(&addr).await.ok()?;
                let request = format!(
                    "GET /.well-known/mercure?topic=%2Fflood HTTP/1.1\r\nHost: {addr}\r\n\r\n"
                );
                stream.write_all(request.as_bytes()).await.ok()?;
                let mut head = vec![0u8; 64];
                let n = tokio::time::timeout(WAIT, stream.read(&mut head))
                    .await
                    .ok()?
                    .ok()?;
                let status = String::from_utf8_lossy(&head[..n]).get(9..12)?.to_owned();
                Some((status, stream))
            }
        }));
    }
    // The hub stays responsive while the flood is connected.
    let started = Instant::now();
    let health = client().get(hub.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "/healthz took {:?}",
        started.elapsed()
    );
    let mut held = Vec::new();
    let (mut ok, mut refused) = (0, 0);
    for task in flood {
        if let Some((status, stream)) = task.await.unwrap() {
            match status.as_str() {
                "200" => ok += 1,
                "503" => refused += 1,
                other => panic!("unexpected status {other}"),
            }
            held.push(stream);
        }
    }
    assert_eq!(ok, 49, "the limit counts the watcher too");
    assert_eq!(refused, 300 - 49);
    still_serving(&hub, &mut watch).await;
    drop(held);
    // Recovery: once the flood is gone, new subscribers are let in again.
    let recovered = crate::helpers::wait_until(Duration::from_secs(20), || async {
        let url = hub.url("/.well-known/mercure?topic=%2Fafter");
        SseClient::connect(&url, &[]).await.status == 200
    })
    .await;
    assert!(recovered);
    still_serving(&hub, &mut watch).await;
}

#[tokio::test]
async fn algorithm_confusion_and_wrong_claims_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let private = dir.path().join("private.pem");
    let public = dir.path().join("public.pem");
    rsa_private_key(&private);
    openssl(&[
        "pkey",
        "-pubout",
        "-in",
        private.to_str().unwrap(),
        "-out",
        public.to_str().unwrap(),
    ]);
    let key_arg = format!("@{}", public.display());
    let hub = TestHub::spawn(&[
        "--jwt-algorithm",
        "RS256",
        "--jwt-key",
        &key_arg,
        "--jwt-audience",
        "https://hub.example",
        "--jwt-issuer",
        "https://app.example",
        "--allow-anonymous",
        "--tick-interval",
        "0",
    ]);
    let claims =
        |aud: &str, iss: &str| json!({ "mercure": { "publish": ["*"] }, "aud": aud, "iss": iss });
    let rsa = |c: serde_json::Value| {
        let key =
            jsonwebtoken::EncodingKey::from_rsa_pem(&std::fs::read(&private).unwrap()).unwrap();
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
            &c,
            &key,
        )
        .unwrap()
    };
    let good = rsa(claims("https://hub.example", "https://app.example"));
    assert_eq!(hub.publish(&good, &[("topic", "/t")]).await.status(), 200);
    // HS256 signed with the public key's bytes as the secret: the classic confusion.
    let public_pem = std::fs::read_to_string(&public).unwrap();
    let confused = token_with(
        &public_pem,
        claims("https://hub.example", "https://app.example"),
    );
    assert_eq!(
        hub.publish(&confused, &[("topic", "/t")]).await.status(),
        401
    );
    let wrong_aud = rsa(claims("https://other.example", "https://app.example"));
    assert_eq!(
        hub.publish(&wrong_aud, &[("topic", "/t")]).await.status(),
        401
    );
    let wrong_iss = rsa(claims("https://hub.example", "https://evil.example"));
    assert_eq!(
        hub.publish(&wrong_iss, &[("topic", "/t")]).await.status(),
        401
    );
    let no_aud = rsa(json!({ "mercure": { "publish": ["*"] }, "iss": "https://app.example" }));
    assert_eq!(hub.publish(&no_aud, &[("topic", "/t")]).await.status(), 401);
    assert_eq!(hub.stats().await["events_published"], 1);
}

#[tokio::test]
async fn leeway_tolerates_clock_skew_on_expiry() {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let skewed = token_with(
        KEY,
        json!({ "mercure": { "publish": ["*"] }, "exp": now - 20 }),
    );
    let strict = TestHub::protocol(&[]);
    assert_eq!(
        strict.publish(&skewed, &[("topic", "/t")]).await.status(),
        401
    );
    let lenient = TestHub::protocol(&["--jwt-leeway", "60s"]);
    assert_eq!(
        lenient.publish(&skewed, &[("topic", "/t")]).await.status(),
        200
    );
}

#[tokio::test]
async fn cookie_publishing_needs_an_allowed_origin() {
    let hub = TestHub::protocol(&["--publish-origin", "https://app.example"]);
    let mut watch = watcher(&hub).await;
    let cookie = format!("mercureAuthorization={}", publisher());
    let post = |origin: Option<&'static str>| {
        let mut request = client()
            .post(hub.url("/.well-known/mercure"))
            .header("Cookie", cookie.clone())
            .form(&[("topic", "/watch"), ("data", "via cookie")]);
        if let Some(origin) = origin {
            request = request.header("Origin", origin);
        }
        request.send()
    };
    assert_eq!(post(None).await.unwrap().status(), 403);
    assert_eq!(
        post(Some("https://evil.example")).await.unwrap().status(),
        403
    );
    let allowed = post(Some("https://app.example")).await.unwrap();
    assert_eq!(allowed.status(), 200);
    let id = allowed.text().await.unwrap();
    assert_eq!(
        watch.next_event(WAIT).await.expect("published").id,
        Some(id)
    );
    still_serving(&hub, &mut watch).await;
}

#[tokio::test]
async fn line_breaks_in_data_cannot_inject_fields() {
    let hub = TestHub::protocol(&[]);
    let mut sse = hub.subscribe(&["/inject"], &[], &[]).await;
    let evil = "a\rid: forged\r\nevent: forged\ndata: b\n\nid: second";
    hub.publish_ok(&[("topic", "/inject"), ("id", "real"), ("data", evil)])
        .await;
    let raw = sse.chunk(WAIT).await.expect("the update");
    assert_eq!(
        std::str::from_utf8(&raw).unwrap(),
        "id: real\ndata: a\ndata: id: forged\ndata: event: forged\ndata: data: b\ndata:\ndata: id: second\n\n"
    );
    for (field, value) in [("id", "a\0b"), ("type", "t\0"), ("topic", "/t\0")] {
        let mut form = vec![("topic", "/inject"), (field, value)];
        if field == "topic" {
            form.remove(0);
        }
        let response = hub.publish(&publisher(), &form).await;
        assert_eq!(response.status(), 400, "{field} with NUL");
    }
}

// Round two: memory bombs, a panic, silent changes (issue 11).

/// A template with 32 exploded variables: about 200 KiB compiled, within the per-template
/// limit; `tag` makes distinct ones.
fn wide_template(tag: usize) -> String {
    let vars: Vec<String> = (0..32).map(|i| format!("v{i}*")).collect();
    format!("/w{tag}/{{{}}}", vars.join(","))
}

fn subscription_url(hub: &TestHub, selectors: &[String]) -> String {
    let mut url = reqwest::Url::parse(&hub.url("/.well-known/mercure")).unwrap();
    for selector in selectors {
        url.query_pairs_mut().append_pair("topic", selector);
    }
    url.to_string()
}

#[tokio::test]
async fn a_subscription_of_heavy_templates_is_refused_before_it_costs_memory() {
    let hub = TestHub::protocol(&["--max-subscribers-per-ip", "1000"]);
    let mut watch = watcher(&hub).await;
    let baseline = rss_kib(hub.pid());
    let heavy: Vec<String> = (0..28).map(wide_template).collect();
    let url = subscription_url(&hub, &heavy);
    assert!(url.len() < 8192, "fits the URL limit: {}", url.len());
    for _ in 0..20 {
        let response = client().get(&url).send().await.unwrap();
        assert_eq!(response.status(), 400);
        let reason = response.text().await.unwrap();
        assert!(reason.contains("too complex"), "{reason}");
    }
    // A single template past the per-template limit is refused too.
    let huge = format!("/h/{{{}}}", ["a:64"; 12].join(","));
    let response = client()
        .get(subscription_url(&hub, &[huge]))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let grown_mib = rss_kib(hub.pid()).saturating_sub(baseline) / 1024;
    eprintln!("RSS grew by {grown_mib} MiB after 20 refused heavy subscriptions");
    assert!(grown_mib < 16, "RSS grew by {grown_mib} MiB");
    still_serving(&hub, &mut watch).await;
}

#[tokio::test]
async fn subscribers_with_the_same_templates_share_them() {
    let hub = TestHub::protocol(&["--max-subscribers-per-ip", "1000"]);
    let mut watch = watcher(&hub).await;
    let baseline = rss_kib(hub.pid());
    // Four heavy templates (within a subscription's budget) and a plain one, 100 times over.
    let mut selectors: Vec<String> = (0..4).map(wide_template).collect();
    selectors.push("/shared/{id}".to_owned());
    let url = subscription_url(&hub, &selectors);
    let mut subscribers = Vec::new();
    for _ in 0..100 {
        let sse = SseClient::connect(&url, &[]).await;
        assert_eq!(sse.status, 200);
        subscribers.push(sse);
    }
    hub.wait_for_stat("subscribers", 101).await;
    let id = hub
        .publish_ok(&[("topic", "/shared/7"), ("data", "to all")])
        .await;
    for sse in subscribers.iter_mut() {
        let event = sse.next_event(WAIT).await.expect("the shared update");
        assert_eq!(event.id.as_deref(), Some(id.as_str()));
    }
    let grown_mib = rss_kib(hub.pid()).saturating_sub(baseline) / 1024;
    eprintln!("RSS grew by {grown_mib} MiB with 100 subscribers of 5 shared templates");
    // Each compiled apart, the four heavy templates would cost about 100 x 0.8 MiB.
    assert!(grown_mib < 24, "RSS grew by {grown_mib} MiB");
    still_serving(&hub, &mut watch).await;
}

#[tokio::test]
async fn the_hub_bounds_the_memory_of_distinct_templates() {
    let hub = TestHub::protocol(&[
        "--max-subscribers-per-ip",
        "1000",
        "--max-template-memory",
        "2000000",
    ]);
    let mut watch = watcher(&hub).await;
    let mut held = Vec::new();
    let mut refused = None;
    for tag in 0..40 {
        let url = subscription_url(&hub, &[wide_template(tag)]);
        let sse = SseClient::connect(&url, &[]).await;
        match sse.status.as_u16() {
            200 => held.push(sse),
            503 => {
                refused = Some(tag);
                assert!(sse.response_headers.contains_key("retry-after"));
                break;
            }
            other => panic!("unexpected status {other}"),
        }
    }
    let refused = refused.expect("distinct templates past the hub's budget are refused");
    assert!(refused >= 4, "refused after only {refused}");
    // A template already held costs nothing more: it is still accepted.
    let again = SseClient::connect(&subscription_url(&hub, &[wide_template(0)]), &[]).await;
    assert_eq!(again.status, 200);
    // When their subscribers leave, templates are freed and new ones fit again.
    drop(held);
    drop(again);
    let freed = crate::helpers::wait_until(Duration::from_secs(10), || async {
        let url = subscription_url(&hub, &[wide_template(100)]);
        SseClient::connect(&url, &[]).await.status == 200
    })
    .await;
    assert!(freed, "templates were never freed");
    still_serving(&hub, &mut watch).await;
}

#[tokio::test]
async fn topics_count_in_history_bytes_and_are_capped_per_update() {
    let hub = TestHub::protocol(&["--max-topics-per-update", "5", "--history-bytes", "50000"]);
    let mut watch = watcher(&hub).await;
    let topics: Vec<String> = (0..6)
        .map(|i| format!("/t{i}/{}", "x".repeat(2000)))
        .collect();
    let mut form: Vec<(&str, &str)> = topics.iter().map(|t| ("topic", t.as_str())).collect();
    form.push(("data", "d"));
    let refused = hub.publish(&publisher(), &form).await;
    assert_eq!(refused.status(), 400);
    assert!(refused.text().await.unwrap().contains("too many topics"));
    assert_eq!(hub.stats().await["events_published"], 0);
    // Five topics of 2 KB each: an update holds about 10 KB, whatever its few SSE bytes.
    form.remove(0);
    for _ in 0..10 {
        hub.publish_ok(&form).await;
    }
    let stats = hub.stats().await;
    let (len, bytes) = (
        stats["history_len"].as_u64().unwrap(),
        stats["history_bytes"].as_u64().unwrap(),
    );
    assert!(
        len <= 5,
        "history kept {len} updates of ~10 KB under a 50 KB bound"
    );
    assert!(bytes >= len * 10_000 && bytes <= 50_000, "{bytes} bytes");
    still_serving(&hub, &mut watch).await;
}

#[tokio::test]
async fn a_token_expiring_at_the_end_of_time_is_served() {
    let hub = TestHub::protocol(&[]);
    let mut watch = watcher(&hub).await;
    let forever = token_with(
        KEY,
        json!({ "mercure": { "subscribe": ["*"] }, "exp": u64::MAX }),
    );
    let bearer = format!("Bearer {forever}");
    let mut sse = hub
        .subscribe(&["/forever"], &[], &[("Authorization", bearer.as_str())])
        .await;
    let id = hub
        .publish_ok(&[("topic", "/forever"), ("data", "still here")])
        .await;
    assert_eq!(sse.next_event(WAIT).await.expect("the update").id, Some(id));
    assert!(!hub.logged("panicked"));
    still_serving(&hub, &mut watch).await;
}

#[tokio::test]
async fn a_token_accepted_thanks_to_leeway_gets_a_working_stream() {
    let hub = TestHub::protocol(&["--jwt-leeway", "60s"]);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let skewed = token_with(
        KEY,
        json!({ "mercure": { "subscribe": ["*"] }, "exp": now - 5 }),
    );
    let bearer = format!("Bearer {skewed}");
    let mut sse = hub
        .subscribe(&["/skew"], &[], &[("Authorization", bearer.as_str())])
        .await;
    let id = hub.publish_ok(&[("topic", "/skew"), ("data", "x")]).await;
    assert_eq!(
        sse.next_event(WAIT)
            .await
            .expect("an update, not the end")
            .id,
        Some(id)
    );
}

#[tokio::test]
async fn a_client_that_leaves_is_unregistered_at_once() {
    // The default heartbeat (15 s): the departure must be seen from the FIN, not a write.
    let hub = TestHub::protocol(&[]);
    let mut watch = watcher(&hub).await;
    let mut gone = stalled_subscriber(&hub, "%2Fgone").await;
    hub.wait_for_stat("subscribers", 2).await;
    // Read what was sent (the head and opening bytes), so closing sends a FIN, not a reset.
    let mut buf = vec![0u8; 4096];
    let mut seen = String::new();
    while !seen.contains(": ok") {
        let n = tokio::time::timeout(WAIT, gone.read(&mut buf))
            .await
            .expect("opening bytes")
            .unwrap();
        assert!(n > 0, "closed early");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    drop(gone);
    let started = Instant::now();
    hub.wait_for_stat("subscribers", 1).await;
    eprintln!("unregistered {:?} after the FIN", started.elapsed());
    still_serving(&hub, &mut watch).await;
}

/// Sends `request` and reads until the server closes (at most 15 s).
async fn read_to_close(hub: &TestHub, request: &str) -> String {
    let mut stream = TcpStream::connect(&hub.addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(15), stream.read_to_end(&mut out))
        .await
        .expect("the server closes the connection at the end of the body")
        .unwrap();
    String::from_utf8(out).unwrap()
}

#[tokio::test]
async fn http10_clients_get_a_close_delimited_stream() {
    let hub = TestHub::protocol(&[]);
    // The bounded stream ends by closing the connection, even if keep-alive was asked for.
    let response = read_to_close(
        &hub,
        "GET /api/stream/test HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    )
    .await;
    let (head, body) = response.split_once("\r\n\r\n").expect("a head");
    assert!(head.starts_with("HTTP/1.0 200"), "{head}");
    assert!(
        !head.to_ascii_lowercase().contains("transfer-encoding"),
        "{head}"
    );
    assert!(
        body.starts_with("data: server time: "),
        "raw SSE, no chunk sizes: {body:?}"
    );
    assert!(body.ends_with("data: [Done]\n\n"), "{body:?}");
    // A live stream is sent raw as well.
    let mut stream = TcpStream::connect(&hub.addr).await.unwrap();
    stream
        .write_all(b"GET /.well-known/mercure?topic=%2Fold HTTP/1.0\r\n\r\n")
        .await
        .unwrap();
    hub.wait_for_stat("subscribers", 1).await;
    hub.publish_ok(&[("topic", "/old"), ("id", "h10"), ("data", "hello")])
        .await;
    let mut seen = String::new();
    let deadline = Instant::now() + WAIT;
    let mut buf = vec![0u8; 4096];
    while !seen.contains("id: h10\ndata: hello\n\n") && Instant::now() < deadline {
        if let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_millis(200), stream.read(&mut buf)).await
        {
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    }
    let arrived = seen.contains("id: h10\ndata: hello\n\n");
    assert!(arrived, "{seen:?}");
    assert!(!seen.to_ascii_lowercase().contains("transfer-encoding"));
}

/// Reads `conn` into `seen` until `done(seen)` holds or [`WAIT`] passes; whether it held.
async fn read_until(conn: &mut TcpStream, seen: &mut String, done: impl Fn(&str) -> bool) -> bool {
    let deadline = Instant::now() + WAIT;
    let mut buf = vec![0u8; 16 * 1024];
    while !done(seen) && Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_millis(200), conn.read(&mut buf)).await {
            Ok(Ok(0)) => break,
            Ok(Ok(n)) => seen.push_str(&String::from_utf8_lossy(&buf[..n])),
            Ok(Err(err)) => panic!("read: {err}"),
            Err(_) => {}
        }
    }
    done(seen)
}

/// The HTTP/1 buffers are allocated when used and released while a connection waits
/// (patches/actix-http): one keep-alive connection still takes two pipelined requests whose
/// second head (6 KiB) outgrows the first read buffer, then a stream on the same connection
/// that waits (heartbeats only) before each of its events.
#[tokio::test]
async fn a_connection_whose_buffers_come_and_go_still_reads_and_writes_everything() {
    let hub = TestHub::protocol(&["--keep-alive", "200ms"]);
    let mut conn = TcpStream::connect(&hub.addr).await.unwrap();
    conn.set_nodelay(true).unwrap();
    let host = &hub.addr;
    let pad = "p".repeat(6 * 1024);
    let pipelined = format!(
        "GET /healthz HTTP/1.1\r\nHost: {host}\r\n\r\nGET /healthz?second HTTP/1.1\r\nHost: {host}\r\nX-Pad: {pad}\r\n\r\n"
    );
    let (front, back) = pipelined.as_bytes().split_at(pipelined.len() / 2);
    for piece in [front, back] {
        conn.write_all(piece).await.unwrap();
    }
    let mut seen = String::new();
    let both = read_until(&mut conn, &mut seen, |s| {
        s.matches("HTTP/1.1 200 OK").count() == 2
    })
    .await;
    assert!(both, "two answers expected: {seen:?}");

    let subscribe =
        format!("GET /.well-known/mercure?topic=%2Fwaits HTTP/1.1\r\nHost: {host}\r\n\r\n");
    conn.write_all(subscribe.as_bytes()).await.unwrap();
    for (id, data) in [("w1", "first"), ("w2", "second")] {
        // Wait for a heartbeat: the stream has been idle since what it sent before.
        seen.clear();
        let idle = read_until(&mut conn, &mut seen, |s| s.contains(":\n\n")).await;
        assert!(idle, "no heartbeat: {seen:?}");
        hub.publish_ok(&[("topic", "/waits"), ("id", id), ("data", data)])
            .await;
        let event = format!("id: {id}\ndata: {data}\n\n");
        let arrived = read_until(&mut conn, &mut seen, |s| s.contains(&event)).await;
        assert!(arrived, "{event:?} missing: {seen:?}");
    }
}

/// The value of an unlabelled sample in the hub's `/metrics` page.
async fn metric(hub: &TestHub, name: &str) -> u64 {
    crate::metrics::sample(&crate::metrics::metrics(hub).await, name) as u64
}

/// While a plain HTTP/1 subscriber waits, the fan-out writes updates to its socket itself
/// (`src/fanout/direct.rs`); what the socket does not take goes through the stream. A subscriber that
/// stops reading (a small receive buffer; 16 KB updates until the socket is full, about 3 MB
/// here) and then reads again, slowly, while more updates come, gets every update whole and in
/// order, across both paths, on a close-delimited response. (That a direct write never
/// overtakes bytes the dispatcher holds is checked directly in `src/fanout/direct.rs`'s tests.)
#[tokio::test]
async fn a_subscriber_that_pauses_gets_every_update_whole_and_in_order() {
    let hub = TestHub::protocol(&["--queue-capacity", "10000"]);
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut conn = socket.connect(hub.addr.parse().unwrap()).await.unwrap();
    let request = format!(
        "GET /.well-known/mercure?topic=%2Fpause HTTP/1.1\r\nHost: {}\r\n\r\n",
        hub.addr
    );
    conn.write_all(request.as_bytes()).await.unwrap();
    let mut seen = String::new();
    assert!(read_until(&mut conn, &mut seen, |s| s.contains("\r\n\r\n")).await);
    let (head, _) = seen.split_once("\r\n\r\n").unwrap();
    let head = head.to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(!head.contains("transfer-encoding"), "{head}");
    assert!(head.contains("connection: close"), "{head}");
    hub.wait_for_stat("subscribers", 1).await;

    let data = |i: usize, len: usize| format!("{i:05}-{}", "x".repeat(len));
    let mut sent = Vec::new();
    // Read as they come: the stream waits between updates, so the fan-out writes them.
    let direct_before = metric(&hub, "sse_hub_deliveries_written_directly_total").await;
    for i in 0..20 {
        let id = format!("u{i}");
        hub.publish_ok(&[("topic", "/pause"), ("id", &id), ("data", &data(i, 10))])
            .await;
        let event = format!("id: {id}\n");
        assert!(read_until(&mut conn, &mut seen, |s| s.contains(&event)).await);
        sent.push((id, data(i, 10)));
    }
    let direct = metric(&hub, "sse_hub_deliveries_written_directly_total").await - direct_before;
    assert!(direct >= 10, "only {direct} of 20 updates written directly");

    // Stop reading until the socket is full and updates are queued (the first of them cut
    // short, or refused whole), then publish a few more behind them.
    let queued = || async {
        metric(&hub, "sse_hub_deliveries_total").await
            - metric(&hub, "sse_hub_deliveries_written_directly_total").await
    };
    let queued_before = queued().await;
    let mut more = None;
    let mut i = 20;
    while more.is_none_or(|left| left > 0) {
        assert!(i < 3000, "the paused subscriber's socket never filled");
        let id = format!("u{i}");
        hub.publish_ok(&[("topic", "/pause"), ("id", &id), ("data", &data(i, 16_000))])
            .await;
        sent.push((id, data(i, 16_000)));
        i += 1;
        more = match more {
            None if i % 10 == 0 && queued().await > queued_before => Some(20),
            None => None,
            Some(left) => Some(left - 1),
        };
    }

    // Read again, in small reads, while more updates come: the socket drains while the
    // dispatcher still holds queued bytes, and an update must not overtake them. Everything
    // arrives, whole, in order, once.
    let more: Vec<(String, String)> = (i..i + 60)
        .map(|i| (format!("u{i}"), data(i, 16_000)))
        .collect();
    let (last_id, last_data) = more.last().unwrap();
    let last = format!("id: {last_id}\ndata: {last_data}\n\n");
    let reader = tokio::spawn(async move {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut buf = vec![0u8; 4096];
        while !seen.ends_with(&last) && Instant::now() < deadline {
            match tokio::time::timeout(Duration::from_millis(500), conn.read(&mut buf)).await {
                Ok(Ok(0)) => break,
                Ok(Ok(n)) => seen.push_str(std::str::from_utf8(&buf[..n]).unwrap()),
                Ok(Err(err)) => panic!("read: {err}"),
                Err(_) => {}
            }
        }
        seen
    });
    for (id, data) in more {
        hub.publish_ok(&[("topic", "/pause"), ("id", &id), ("data", &data)])
            .await;
        sent.push((id, data));
    }
    let seen = reader.await.unwrap();
    let body = &seen[seen.find("\r\n\r\n").unwrap() + 4..];
    let mut got = Vec::new();
    let mut parser = sse_parser::Parser::new();
    let fed = parser
        .feed(body.as_bytes(), |item| {
            if let sse_parser::Item::Event(event) = item {
                got.push((
                    String::from_utf8(event.last_event_id.to_vec()).unwrap(),
                    String::from_utf8(event.data.to_vec()).unwrap(),
                ));
            }
            std::ops::ControlFlow::Continue(())
        })
        .unwrap();
    assert!(fed.is_continue());
    assert_eq!(got.len(), sent.len(), "updates lost or repeated");
    for (i, (got, sent)) in got.iter().zip(&sent).enumerate() {
        assert!(got == sent, "update {i} differs: got id {:?}", got.0);
    }
    assert_eq!(hub.stats().await["subscribers_dropped_slow"], 0);
}
