//! Joining: subscribe attempts are rate-limited per client address, limits are checked before
//! anything is compiled and stay exact when many join at once, and a subscriber registered by
//! its own worker gets every update published once its stream opened.

use std::time::Duration;

use reqwest::Method;

use crate::hardening::{still_serving, watcher};
use crate::helpers::{client, SseClient, TestHub};

const WAIT: Duration = Duration::from_secs(5);

/// `X-Forwarded-For: ip`: the tests talk from 127.0.0.1, a trusted proxy by default, so the
/// hub counts the forwarded address.
fn from(ip: &str) -> [(&str, &str); 1] {
    [("X-Forwarded-For", ip)]
}

/// A template that costs a lot to compile (the same shape as hardening's heavy templates).
fn heavy_template(tag: usize) -> String {
    let vars: Vec<String> = (0..32).map(|i| format!("v{i}*")).collect();
    format!("/heavy{tag}/{{{}}}", vars.join(","))
}

fn url_of(hub: &TestHub, selectors: &[String]) -> String {
    let mut url = hub.url("/.well-known/mercure?");
    for s in selectors {
        url.push_str("topic=");
        url.push_str(&urlencoding(s));
        url.push('&');
    }
    url.pop();
    url
}

fn urlencoding(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test]
async fn subscribe_attempts_over_the_rate_get_429_and_other_addresses_are_served() {
    let hub = TestHub::protocol(&[
        "--subscribe-rate",
        "1",
        "--subscribe-burst",
        "3",
        "--max-subscribers-per-ip",
        "1000",
    ]);
    let mut watch = watcher(&hub).await;
    let url = hub.url("/.well-known/mercure?topic=%2Fjoin");
    let first = SseClient::connect(&url, &from("192.0.2.7")).await;
    assert_eq!(first.status, 200, "a fresh address has its burst");
    // Attempt after attempt from one address (refused ones count too) until the rate refuses
    // one: it takes at most a few, however slow the machine, since one comes back per second.
    let mut limited = None;
    for _ in 0..200 {
        let response = client()
            .get(&url)
            .headers(header_map(&from("192.0.2.7")))
            .send()
            .await
            .unwrap();
        if response.status() == 429 {
            limited = Some(response);
            break;
        }
        assert_eq!(response.status(), 200);
    }
    let limited = limited.expect("attempts over the rate are refused");
    let retry_after: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after >= 1);
    let body = limited.text().await.unwrap();
    assert_eq!(body.lines().count(), 1, "{body:?}");
    assert!(body.contains("too many subscribe attempts"), "{body}");

    // Checked before any other work: a bad request and a QUERY from that address get 429 too.
    let bad = client()
        .get(hub.url("/.well-known/mercure?topic="))
        .headers(header_map(&from("192.0.2.7")))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 429);
    let query = client()
        .request(
            Method::from_bytes(b"QUERY").unwrap(),
            hub.url("/.well-known/mercure"),
        )
        .headers(header_map(&from("192.0.2.7")))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("topic=%2Fjoin")
        .send()
        .await
        .unwrap();
    assert_eq!(query.status(), 429);

    // Another address is not limited, and the bystander keeps receiving.
    let other = SseClient::connect(&url, &from("192.0.2.8")).await;
    assert_eq!(other.status, 200);
    still_serving(&hub, &mut watch).await;
}

#[tokio::test]
async fn a_rate_of_zero_turns_the_limit_off() {
    let hub = TestHub::protocol(&["--subscribe-rate", "0", "--max-subscribers-per-ip", "1000"]);
    let url = hub.url("/.well-known/mercure?topic=%2Fjoin");
    let mut held = Vec::new();
    for _ in 0..30 {
        let sse = SseClient::connect(&url, &from("192.0.2.7")).await;
        assert_eq!(sse.status, 200);
        held.push(sse);
    }
}

fn header_map(pairs: &[(&str, &str)]) -> reqwest::header::HeaderMap {
    pairs
        .iter()
        .map(|(k, v)| {
            (
                reqwest::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                reqwest::header::HeaderValue::from_str(v).unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn refused_heavy_subscriptions_are_refused_for_their_limit_and_leave_the_hub_serving() {
    let hub = TestHub::protocol(&["--max-subscribers-per-ip", "1", "--max-topics", "8"]);
    let mut watch = watcher(&hub).await;
    let heavy: Vec<String> = (0..8).map(heavy_template).collect();

    // More selectors than allowed: refused for the count, whatever they would cost.
    let mut nine = heavy.clone();
    nine.push("/plain".to_owned());
    let response = client()
        .get(url_of(&hub, &nine))
        .headers(header_map(&from("192.0.2.20")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert!(response.text().await.unwrap().contains("too many topic"));

    // A bad value after heavy ones: refused for it.
    let mut bad_last = heavy[..3].to_vec();
    bad_last.push("/bad/{unclosed".to_owned());
    let response = client()
        .get(url_of(&hub, &bad_last))
        .headers(header_map(&from("192.0.2.20")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);

    // An address at its limit: refused with 429 for that, not for its templates' cost.
    let held = SseClient::connect(&url_of(&hub, &["/x".to_owned()]), &from("192.0.2.21")).await;
    assert_eq!(held.status, 200);
    for _ in 0..5 {
        let response = client()
            .get(url_of(&hub, &heavy))
            .headers(header_map(&from("192.0.2.21")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 429);
        assert!(response
            .text()
            .await
            .unwrap()
            .contains("too many subscribers from this address"));
    }
    still_serving(&hub, &mut watch).await;
    // The address's place is still its one subscriber's: once it leaves, another fits.
    drop(held);
    let freed = crate::helpers::wait_until(WAIT, || async {
        let sse = SseClient::connect(&url_of(&hub, &["/x".to_owned()]), &from("192.0.2.21")).await;
        sse.status == 200
    })
    .await;
    assert!(freed, "the place was never given back");
}

#[tokio::test]
async fn many_joining_at_once_never_pass_the_limits() {
    let hub = TestHub::protocol(&[
        "--max-subscribers-per-ip",
        "10",
        "--max-subscribers",
        "25",
        "--subscribe-rate",
        "0",
    ]);
    let url = hub.url("/.well-known/mercure?topic=%2Fjoin");
    // 40 at once from one address: exactly 10 get in.
    let headers = from("192.0.2.30");
    let one_address =
        futures_util::future::join_all((0..40).map(|_| SseClient::connect(&url, &headers))).await;
    let admitted = one_address.iter().filter(|s| s.status == 200).count();
    assert_eq!(admitted, 10);
    assert!(one_address
        .iter()
        .all(|s| s.status == 200 || s.status == 429));
    // 40 more from 40 addresses: exactly 15 more fit under the total.
    let many = futures_util::future::join_all((0..40).map(|i| {
        let url = url.clone();
        async move { SseClient::connect(&url, &from(&format!("198.51.100.{i}"))).await }
    }))
    .await;
    assert_eq!(many.iter().filter(|s| s.status == 200).count(), 15);
    assert!(many.iter().all(|s| s.status == 200 || s.status == 503));
    hub.wait_for_stat("subscribers", 25).await;
}

#[tokio::test]
async fn a_subscriber_without_a_cursor_gets_every_update_published_once_it_opened() {
    let hub = TestHub::protocol(&[]);
    // Several in turn: each opens, then an update is published at once; each must get it.
    for i in 0..10 {
        let mut sse = hub.subscribe(&["/fresh"], &[], &[]).await;
        let id = hub
            .publish_ok(&[("topic", "/fresh"), ("data", &i.to_string())])
            .await;
        let event = sse.next_event(WAIT).await.expect("the update");
        assert_eq!(event.id.as_deref(), Some(id.as_str()));
        assert_eq!(event.data, i.to_string());
    }
}
