//! The Mercure protocol: topics and selectors, publishing, private updates, bad input.

use std::time::Duration;

use serde_json::json;

use crate::helpers::{client, publisher, token, Next, SseClient, TestHub};

const WAIT: Duration = Duration::from_secs(5);
const SENTINEL: &str = "https://example.com/sentinel";

/// Publishes to the sentinel topic and returns its id: an update published before it to the
/// same hub is delivered before it, so "the next event is the sentinel" proves the earlier
/// update was not delivered, with no sleep.
async fn sentinel(hub: &TestHub) -> String {
    hub.publish_ok(&[("topic", SENTINEL), ("data", "sentinel")])
        .await
}

async fn next(sse: &mut SseClient) -> crate::helpers::Event {
    sse.next_event(WAIT).await.expect("an event")
}

#[tokio::test]
async fn exact_topic_receives_the_update() {
    let hub = TestHub::protocol(&[]);
    let mut sse = hub
        .subscribe(&["https://example.com/books/1"], &[], &[])
        .await;
    let id = hub
        .publish_ok(&[("topic", "https://example.com/books/1"), ("data", "b1")])
        .await;
    let event = next(&mut sse).await;
    assert_eq!(
        (event.id.as_deref(), event.data.as_str()),
        (Some(id.as_str()), "b1")
    );
}

#[tokio::test]
async fn update_with_several_topics_is_matched_through_an_alternate() {
    let hub = TestHub::protocol(&[]);
    let mut sse = hub.subscribe(&["/alternate"], &[], &[]).await;
    hub.publish_ok(&[
        ("topic", "/canonical"),
        ("topic", "/alternate"),
        ("data", "x"),
    ])
    .await;
    assert_eq!(next(&mut sse).await.data, "x");
}

#[tokio::test]
async fn several_selectors_in_one_subscription_each_match() {
    let hub = TestHub::protocol(&[]);
    let mut sse = hub.subscribe(&["/a", "/b"], &[], &[]).await;
    hub.publish_ok(&[("topic", "/b"), ("data", "to b")]).await;
    hub.publish_ok(&[("topic", "/a"), ("data", "to a")]).await;
    assert_eq!(next(&mut sse).await.data, "to b");
    assert_eq!(next(&mut sse).await.data, "to a");
}

#[tokio::test]
async fn uri_and_uri_template_selectors_match() {
    let hub = TestHub::protocol(&[]);
    let mut by_uri = hub
        .subscribe(&["https://example.com/books/42"], &[], &[])
        .await;
    let mut by_template = hub
        .subscribe(&["https://example.com/books/{id}"], &[], &[])
        .await;
    let mut by_query_template = hub
        .subscribe(&["https://example.com/search{?q,lang}"], &[], &[])
        .await;
    hub.publish_ok(&[("topic", "https://example.com/books/42"), ("data", "42")])
        .await;
    hub.publish_ok(&[
        ("topic", "https://example.com/search?q=rust&lang=en"),
        ("data", "q"),
    ])
    .await;
    assert_eq!(next(&mut by_uri).await.data, "42");
    assert_eq!(next(&mut by_template).await.data, "42");
    assert_eq!(next(&mut by_query_template).await.data, "q");
}

#[tokio::test]
async fn non_matching_string_uri_and_template_receive_nothing() {
    let hub = TestHub::protocol(&[]);
    let mut sse = hub
        .subscribe(
            &[
                "/books/1",
                "https://example.org/a",
                "https://example.com/books/{id}",
                SENTINEL,
            ],
            &[],
            &[],
        )
        .await;
    for topic in [
        "/books/10",
        "/Books/1",
        "https://example.org/a/",
        "https://example.org/A",
        "https://example.com/books/42/reviews",
        "https://example.com/authors/42",
    ] {
        hub.publish_ok(&[("topic", topic), ("data", topic)]).await;
    }
    let id = sentinel(&hub).await;
    let event = next(&mut sse).await;
    assert_eq!(event.id.as_deref(), Some(id.as_str()), "got {event:?}");
}

#[tokio::test]
async fn private_update_reaches_only_authorized_subscribers() {
    let hub = TestHub::protocol(&[]);
    // The specification's example: the update's alternate topic is what the token allows.
    let book = "https://example.com/books/1";
    let alternate =
        "https://example.com/users/dunglas/?topic=https%3A%2F%2Fexample.com%2Fbooks%2F1";
    let reader = token(json!({ "subscribe": ["https://example.com/users/dunglas/{?topic}"] }));
    let other = token(json!({ "subscribe": ["https://example.com/users/kevin/{?topic}"] }));
    let selectors = ["https://example.com/books/{id}", SENTINEL];
    let mut anonymous = hub.subscribe(&selectors, &[], &[]).await;
    let auth = format!("Bearer {reader}");
    let mut authorized = hub
        .subscribe(&selectors, &[], &[("Authorization", auth.as_str())])
        .await;
    let auth_other = format!("Bearer {other}");
    let mut not_allowed = hub
        .subscribe(&selectors, &[], &[("Authorization", auth_other.as_str())])
        .await;
    let private = hub
        .publish_ok(&[
            ("topic", book),
            ("topic", alternate),
            ("data", "secret"),
            ("private", "on"),
        ])
        .await;
    let sentinel = sentinel(&hub).await;
    let got = next(&mut authorized).await;
    assert_eq!(
        (got.id.as_deref(), got.data.as_str()),
        (Some(private.as_str()), "secret")
    );
    assert_eq!(
        next(&mut anonymous).await.id.as_deref(),
        Some(sentinel.as_str())
    );
    assert_eq!(
        next(&mut not_allowed).await.id.as_deref(),
        Some(sentinel.as_str())
    );
}

#[tokio::test]
async fn multi_line_data_with_empty_lines_arrives_byte_exact() {
    let hub = TestHub::protocol(&[]);
    let mut sse = hub.subscribe(&["/t"], &[], &[]).await;
    let data = "first\n\nthird\n  indented\n";
    hub.publish_ok(&[
        ("topic", "/t"),
        ("data", data),
        ("id", "m1"),
        ("type", "note"),
    ])
    .await;
    let raw = sse.chunk(WAIT).await.expect("the event");
    assert_eq!(
        std::str::from_utf8(&raw).unwrap(),
        "id: m1\nevent: note\ndata: first\ndata:\ndata: third\ndata:   indented\ndata:\n\n"
    );
}

#[tokio::test]
async fn publish_answers_the_id_as_plain_text() {
    let hub = TestHub::protocol(&[]);
    let response = hub
        .publish(&publisher(), &[("topic", "/t"), ("data", "x")])
        .await;
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let generated = response.text().await.unwrap();
    assert!(generated.starts_with("urn:uuid:"), "{generated}");
    let given = hub.publish_ok(&[("topic", "/t"), ("id", "my-id-1")]).await;
    assert_eq!(given, "my-id-1");
    let retry = hub.publish_ok(&[("topic", "/t"), ("retry", "1500")]).await;
    assert!(retry.starts_with("urn:uuid:"));
}

#[tokio::test]
async fn a_retried_publish_is_answered_200_and_delivered_once() {
    let hub = TestHub::protocol(&[]);
    let mut sse = hub.subscribe(&["/t"], &[], &[]).await;
    assert_eq!(
        hub.publish_ok(&[("topic", "/t"), ("id", "dup"), ("data", "1")])
            .await,
        "dup"
    );
    // The same id again (a retry, or a different body under a reused id): 200 with the id.
    for data in ["1", "2"] {
        let again = hub
            .publish(
                &publisher(),
                &[("topic", "/t"), ("id", "dup"), ("data", data)],
            )
            .await;
        assert_eq!(again.status(), 200);
        assert_eq!(again.text().await.unwrap(), "dup");
    }
    let next = hub.publish_ok(&[("topic", "/t"), ("id", "after")]).await;
    let got: Vec<Option<String>> = sse
        .events(2, Duration::from_secs(5))
        .await
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(got, [Some("dup".to_owned()), Some(next)], "delivered once");
    assert_eq!(hub.stats().await["events_published"], 2);
    // `earliest` asks for the whole history: it can't name an update.
    let reserved = hub
        .publish(&publisher(), &[("topic", "/t"), ("id", "earliest")])
        .await;
    assert_eq!(reserved.status(), 400);
}

#[tokio::test]
async fn a_publish_right_after_the_first_bytes_is_never_missed() {
    let hub = TestHub::protocol(&[]);
    for i in 0..20 {
        let mut sse = hub.subscribe(&["/race"], &[], &[]).await;
        let id = hub.publish_ok(&[("topic", "/race"), ("data", "now")]).await;
        let event = next(&mut sse).await;
        assert_eq!(event.id.as_deref(), Some(id.as_str()), "round {i}");
    }
}

#[tokio::test]
async fn server_time_is_a_topic_like_any_other() {
    let hub = TestHub::spawn(&["--allow-anonymous", "--tick-interval", "100ms"]);
    let mut sse = hub.subscribe(&["/time"], &[], &[]).await;
    let event = next(&mut sse).await;
    assert_eq!(event.event.as_deref(), Some("time"));
    assert!(event.data.contains("unix_ms"));
}

#[tokio::test]
async fn bad_publishes_get_400_or_413_and_change_nothing() {
    let hub = TestHub::protocol(&["--max-body-size", "4096"]);
    let mut watcher = hub.subscribe(&["*"], &[], &[]).await;
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[("data", "no topic")], "topic"),
        (&[("topic", "/t"), ("id", "#reserved")], "id"),
        (&[("topic", "/t"), ("id", "a\nb")], "id"),
        (&[("topic", "/t"), ("id", "a\rb")], "id"),
        (&[("topic", "/t"), ("type", "a\r\nb")], "type"),
        (&[("topic", "/t"), ("retry", "soon")], "retry"),
        (&[("topic", "/t"), ("retry", "-1")], "retry"),
        (&[("topic", "/t\nx")], "topic"),
        (&[("topic", "/t"), ("data", "a"), ("data", "b")], "data"),
    ];
    for (form, word) in cases {
        let response = hub.publish(&publisher(), form).await;
        assert_eq!(response.status(), 400, "{form:?}");
        let body = response.text().await.unwrap();
        assert!(
            body.contains(word) && body.lines().count() == 1,
            "{form:?}: {body:?}"
        );
    }
    let json = client()
        .post(hub.url("/.well-known/mercure"))
        .bearer_auth(publisher())
        .json(&json!({"topic": "/t"}))
        .send()
        .await
        .unwrap();
    assert_eq!(json.status(), 400);
    assert!(json.text().await.unwrap().contains("x-www-form-urlencoded"));
    let big = "x".repeat(5000);
    let too_big = hub
        .publish(&publisher(), &[("topic", "/t"), ("data", &big)])
        .await;
    assert_eq!(too_big.status(), 413);
    let chunked = client()
        .post(hub.url("/.well-known/mercure"))
        .bearer_auth(publisher())
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            (0..10).map(|_| Ok::<_, std::io::Error>(format!("data={}", "y".repeat(1000)))),
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(
        chunked.status(),
        413,
        "a body without Content-Length is limited too"
    );

    let stats = hub.stats().await;
    assert_eq!(
        (
            stats["events_published"].as_u64(),
            stats["history_len"].as_u64()
        ),
        (Some(0), Some(0))
    );
    let id = hub.publish_ok(&[("topic", "/t"), ("data", "fine")]).await;
    assert_eq!(next(&mut watcher).await.id.as_deref(), Some(id.as_str()));
}

#[tokio::test]
async fn bad_subscriptions_get_400() {
    let hub = TestHub::protocol(&[]);
    let http = client();
    for query in [
        "",
        "lastEventID=x",
        "topic=https%3A%2F%2Fe.com%2F%7Bid",
        "topic=%7B%3Dx%7D",
        "topic=%2Fa%0Ab",
        "topic=%2Fa&lastEventID=a%0Db",
    ] {
        let response = http
            .get(hub.url(&format!("/.well-known/mercure?{query}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{query}");
        let body = response.text().await.unwrap();
        assert_eq!(body.lines().count(), 1, "{query}: {body:?}");
    }
    assert_eq!(hub.stats().await["subscribers"], 0);
}

#[tokio::test]
async fn cors_allows_the_configured_origin_with_credentials() {
    let hub = TestHub::protocol(&["--cors-origin", "https://app.example"]);
    let preflight = client()
        .request(reqwest::Method::OPTIONS, hub.url("/.well-known/mercure"))
        .header("Origin", "https://app.example")
        .header("Access-Control-Request-Method", "POST")
        .header("Access-Control-Request-Headers", "authorization")
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success());
    let h = preflight.headers();
    assert_eq!(h["access-control-allow-origin"], "https://app.example");
    assert_eq!(h["access-control-allow-credentials"], "true");
    let other = client()
        .get(hub.url("/.well-known/mercure?topic=%2Ft"))
        .header("Origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn hub_endpoint_streams_end_on_shutdown() {
    // `/events` and the hub endpoint share one implementation: shutdown ends both.
    let mut hub = TestHub::protocol(&[]);
    let mut sse = hub.subscribe(&["*"], &[], &[]).await;
    hub.terminate();
    assert!(matches!(sse.next_event(WAIT).await, Next::End));
    assert!(hub
        .wait_exit(Duration::from_secs(10))
        .expect("exits")
        .success());
}
