//! Mercure 1.0 matchers (`match`, `match_exact`, `match_urlpattern`) beside 0.x `topic`
//! selectors on one hub, subscribing with `QUERY` and a form body, and the refusals.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::{client, token, Event, Next, SseClient, TestHub};

const WAIT: Duration = Duration::from_secs(5);
const SENTINEL: &str = "https://example.com/sentinel";

fn hub_url(hub: &TestHub, pairs: &[(&str, &str)]) -> String {
    let mut url = reqwest::Url::parse(&hub.url("/.well-known/mercure")).unwrap();
    for (k, v) in pairs {
        url.query_pairs_mut().append_pair(k, v);
    }
    url.into()
}

/// Subscribes with `pairs` in the query string (the sentinel matcher added) and waits for the
/// opening bytes.
async fn subscribe(hub: &TestHub, pairs: &[(&str, &str)]) -> SseClient {
    let mut pairs = pairs.to_vec();
    pairs.push(("match", SENTINEL));
    let mut sse = SseClient::connect(&hub_url(hub, &pairs), &[]).await;
    assert_eq!(sse.status, 200, "subscribe {pairs:?}");
    sse.opened().await;
    sse
}

/// Subscribes with `QUERY`: `query` in the query string, `body` as a form body.
async fn query(
    hub: &TestHub,
    query: &[(&str, &str)],
    body: &[(&str, &str)],
    headers: &[(&str, &str)],
) -> SseClient {
    let method = reqwest::Method::from_bytes(b"QUERY").unwrap();
    let mut request = client().request(method, hub_url(hub, query)).form(body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    SseClient::send(request).await
}

/// The data of every event before the sentinel, which is published last: an update published
/// earlier to the same hub arrives before it, so this proves what did not arrive, with no sleep.
async fn until_sentinel(hub: &TestHub, streams: &mut [&mut SseClient]) -> Vec<Vec<String>> {
    hub.publish_ok(&[("topic", SENTINEL), ("data", "sentinel")])
        .await;
    let mut all = Vec::new();
    for sse in streams.iter_mut() {
        let mut got = Vec::new();
        loop {
            let event: Event = sse.next_event(WAIT).await.expect("an event");
            if event.data == "sentinel" {
                break;
            }
            got.push(event.data);
        }
        all.push(got);
    }
    all
}

#[tokio::test]
async fn exact_matchers_compare_byte_for_byte_beside_a_0x_subscriber() {
    let hub = TestHub::protocol(&[]);
    let mut v1 = subscribe(
        &hub,
        &[
            ("match", "https://example.com/books/{id}"),
            ("match_exact", "/a"),
        ],
    )
    .await;
    let mut v0 = subscribe(&hub, &[("topic", "/a")]).await;
    for topic in [
        "/a",
        "https://example.com/books/{id}",
        "https://example.com/books/1",
        "/A",
        "/a/",
        "http://localhost/a",
    ] {
        hub.publish_ok(&[("topic", topic), ("data", topic)]).await;
    }
    let got = until_sentinel(&hub, &mut [&mut v1, &mut v0]).await;
    // Braces are no template to an exact matcher, and nothing is resolved or normalised.
    assert_eq!(got[0], ["/a", "https://example.com/books/{id}"]);
    assert_eq!(got[1], ["/a"]);
}

#[tokio::test]
async fn url_patterns_match_and_resolve_against_the_hub_url_beside_a_0x_subscriber() {
    let hub = TestHub::protocol(&[]);
    let mut v1 = subscribe(
        &hub,
        &[
            ("match_urlpattern", "/books/:id"),
            ("match_urlpattern", "https://example.com/authors/:id(\\d+)"),
        ],
    )
    .await;
    let mut v0 = subscribe(&hub, &[("topic", "/books/{id}")]).await;
    let absolute = hub.url("/books/2");
    for topic in [
        "/books/1",
        absolute.as_str(),
        "https://example.com/authors/7",
        "https://EXAMPLE.com/authors/8",
        "https://example.com/authors/x",
        "/books/1/chapters",
        "/Books/1",
        "https://example.com/books/3",
        "not a url",
    ] {
        hub.publish_ok(&[("topic", topic), ("data", topic)]).await;
    }
    let got = until_sentinel(&hub, &mut [&mut v1, &mut v0]).await;
    assert_eq!(
        got[0],
        [
            "/books/1",
            absolute.as_str(),
            "https://example.com/authors/7",
            "https://EXAMPLE.com/authors/8",
        ]
    );
    assert_eq!(got[1], ["/books/1"]);
}

#[tokio::test]
async fn the_wildcard_matches_every_topic_whatever_the_matcher_type() {
    let hub = TestHub::protocol(&[]);
    let mut exact = subscribe(&hub, &[("match", "*")]).await;
    let mut pattern = subscribe(&hub, &[("match_urlpattern", "*")]).await;
    let mut v0 = subscribe(&hub, &[("topic", "*")]).await;
    hub.publish_ok(&[("topic", "not a url"), ("data", "x")])
        .await;
    let got = until_sentinel(&hub, &mut [&mut exact, &mut pattern, &mut v0]).await;
    assert!(got.iter().all(|g| g == &["x"]), "{got:?}");
}

#[tokio::test]
async fn publishing_the_wildcard_topic_is_refused() {
    let hub = TestHub::protocol(&[]);
    let mut bystander = subscribe(&hub, &[("match", "*")]).await;
    for form in [
        &[("topic", "*"), ("data", "x")][..],
        &[("topic", "/a"), ("topic", "*"), ("data", "x")],
    ] {
        let response = hub.publish(&crate::helpers::publisher(), form).await;
        assert_eq!(response.status(), 400, "{form:?}");
        let body = response.text().await.unwrap();
        assert!(body.contains("the topic \"*\" is reserved"), "{body}");
    }
    assert_eq!(
        until_sentinel(&hub, &mut [&mut bystander]).await[0],
        Vec::<String>::new()
    );
}

/// Expects `pairs` (query string) to be refused with 400 and a message containing `message`.
async fn refused(hub: &TestHub, pairs: &[(&str, &str)], message: &str) {
    let started = Instant::now();
    let response = client()
        .get(hub_url(hub, pairs))
        .timeout(WAIT)
        .send()
        .await
        .expect("an answer");
    assert_eq!(response.status(), 400, "{pairs:?}");
    let body = response.text().await.unwrap();
    assert!(body.contains(message), "{pairs:?}: {body}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{pairs:?} took long"
    );
}

#[tokio::test]
async fn bad_matchers_are_refused_while_a_bystander_is_served() {
    let hub = TestHub::protocol(&["--max-topics", "3"]);
    let mut bystander = subscribe(&hub, &[("match_urlpattern", "/by/:id")]).await;
    let unknown = "unknown matcher parameter";
    for name in [
        "Match",
        "matchx",
        "match_regex",
        "MATCH_EXACT",
        "match_",
        "match_urlPattern",
    ] {
        refused(&hub, &[(name, "/a")], unknown).await;
    }
    // Even beside valid selectors, and for a name with no value.
    refused(&hub, &[("topic", "/a"), ("matches", "")], unknown).await;
    for value in [
        "a\u{1}",
        "a\u{85}",
        "a\u{7f}",
        "a\u{200b}",
        "a\u{feff}",
        "\u{e0001}",
    ] {
        for name in ["match", "match_urlpattern"] {
            refused(&hub, &[(name, value)], "control or format character").await;
        }
    }
    refused(&hub, &[("match", "")], "matcher is empty").await;
    refused(
        &hub,
        &[("match", &"a".repeat(2049))],
        "longer than 2048 bytes",
    )
    .await;
    for pattern in [
        "/:x(",
        "/:",
        "/{a",
        "/:x(?=a)",
        "/:x(a\\1)",
        "/:x((?:a{1000}){1000})",
    ] {
        refused(
            &hub,
            &[("match_urlpattern", pattern)],
            "invalid URL pattern",
        )
        .await;
    }
    refused(
        &hub,
        &[
            ("match", "/1"),
            ("match_urlpattern", "/2"),
            ("topic", "/3"),
            ("match", "/4"),
        ],
        "too many topic selectors and matchers (at most 3)",
    )
    .await;
    // A 100 KB pattern in a body (too long for a URL) is refused by its length.
    let mut big = query(
        &hub,
        &[],
        &[("match_urlpattern", &"/:x(a)".repeat(17_000))],
        &[],
    )
    .await;
    assert_eq!(big.status, 400);
    let Next::Item(body) = big.chunk(WAIT).await else {
        panic!("an error body")
    };
    assert!(String::from_utf8_lossy(&body).contains("longer than 2048 bytes"));
    hub.publish_ok(&[("topic", "/by/1"), ("data", "served")])
        .await;
    assert_eq!(
        until_sentinel(&hub, &mut [&mut bystander]).await[0],
        ["served"]
    );
}

#[tokio::test]
async fn pathological_patterns_are_bounded_and_the_hub_stays_responsive() {
    let hub = TestHub::protocol(&[]);
    let mut bystander = subscribe(&hub, &[("match", "/by")]).await;
    // Nested groups and repetitions that would backtrack on a backtracking engine: on a
    // linear-time one they compile (bounded) and match at once, or are refused.
    let nested = "/:x((?:(?:(?:(?:a*)*)*)*)*b)";
    let mut sse = subscribe(&hub, &[("match_urlpattern", nested)]).await;
    let started = Instant::now();
    let evil = format!("/{}", "a".repeat(1500));
    hub.publish_ok(&[("topic", &evil), ("data", "no")]).await;
    hub.publish_ok(&[("topic", &format!("{evil}b")), ("data", "yes")])
        .await;
    hub.publish_ok(&[("topic", "/by"), ("data", "served")])
        .await;
    let got = until_sentinel(&hub, &mut [&mut sse, &mut bystander]).await;
    assert_eq!(
        (&got[0][..], &got[1][..]),
        (&["yes".to_owned()][..], &["served".to_owned()][..])
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    refused(
        &hub,
        &[("match_urlpattern", "/:x(a{1000}{1000}{1000})")],
        "invalid URL pattern",
    )
    .await;
}

#[tokio::test]
async fn query_subscribes_with_the_union_of_query_string_and_body() {
    let hub = TestHub::protocol(&[]);
    let mut sse = query(
        &hub,
        &[("match", "/in-query"), ("topic", "/legacy/{id}")],
        &[("match_urlpattern", "/in-body/:id"), ("match", SENTINEL)],
        &[],
    )
    .await;
    assert_eq!(sse.status, 200);
    sse.opened().await;
    for topic in ["/in-query", "/in-body/1", "/legacy/2", "/elsewhere"] {
        hub.publish_ok(&[("topic", topic), ("data", topic)]).await;
    }
    let got = until_sentinel(&hub, &mut [&mut sse]).await;
    assert_eq!(got[0], ["/in-query", "/in-body/1", "/legacy/2"]);
}

#[tokio::test]
async fn last_event_id_prefers_the_header_then_the_query_string_then_the_body() {
    let hub = TestHub::protocol(&[]);
    let mut ids = Vec::new();
    for n in 1..=3 {
        ids.push(
            hub.publish_ok(&[("topic", "/h"), ("data", &n.to_string())])
                .await,
        );
    }
    type Pairs<'a> = &'a [(&'a str, &'a str)];
    let cases: [(Pairs<'_>, Pairs<'_>, Pairs<'_>, &[&str]); 5] = [
        (&[], &[("last_event_id", &ids[0])], &[], &["2", "3"]),
        (
            &[("last_event_id", &ids[1])],
            &[("last_event_id", &ids[0])],
            &[],
            &["3"],
        ),
        // The 1.0 spelling wins over 0.x `lastEventID`.
        (
            &[("lastEventID", &ids[0])],
            &[("last_event_id", &ids[1])],
            &[],
            &["3"],
        ),
        (
            &[("last_event_id", &ids[0])],
            &[("last_event_id", &ids[0])],
            &[("Last-Event-ID", &ids[2])],
            &[],
        ),
        (&[("lastEventID", &ids[1])], &[], &[], &["3"]),
    ];
    for (in_query, in_body, headers, expected) in cases {
        let mut body = in_body.to_vec();
        body.push(("match", "/h"));
        body.push(("match", SENTINEL));
        let mut sse = query(&hub, in_query, &body, headers).await;
        assert_eq!(sse.status, 200);
        sse.opened().await;
        let got = until_sentinel(&hub, &mut [&mut sse]).await;
        assert_eq!(got[0], expected, "{in_query:?} {in_body:?} {headers:?}");
    }
}

#[tokio::test]
async fn query_bodies_are_bounded_and_must_be_forms() {
    let hub = TestHub::protocol(&["--max-body-size", "1024"]);
    let mut bystander = subscribe(&hub, &[("match", "/by")]).await;
    let method = reqwest::Method::from_bytes(b"QUERY").unwrap();
    let url = hub.url("/.well-known/mercure");
    let big = client()
        .request(method.clone(), &url)
        .form(&[("match", "x".repeat(2000))])
        .send()
        .await
        .unwrap();
    assert_eq!(big.status(), 413);
    let json = client()
        .request(method.clone(), &url)
        .json(&json!({"match": "/by"}))
        .send()
        .await
        .unwrap();
    assert_eq!(json.status(), 400);
    assert!(json
        .text()
        .await
        .unwrap()
        .contains("application/x-www-form-urlencoded"));
    let unknown = client()
        .request(method, &url)
        .form(&[("match_regex", "/by")])
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 400);
    let allow = client().delete(&url).send().await.unwrap();
    assert_eq!(allow.headers()["allow"], "GET, POST, QUERY");
    hub.publish_ok(&[("topic", "/by"), ("data", "served")])
        .await;
    assert_eq!(
        until_sentinel(&hub, &mut [&mut bystander]).await[0],
        ["served"]
    );
}

#[tokio::test]
async fn private_updates_reach_a_url_pattern_subscriber_only_with_its_0x_token() {
    let hub = TestHub::protocol(&[]);
    let allowed = token(json!({ "subscribe": ["/books/{id}"] }));
    let other = token(json!({ "subscribe": ["/authors/{id}"] }));
    let pairs = [("match_urlpattern", "/books/:id"), ("match", SENTINEL)];
    let mut with = SseClient::connect(
        &hub_url(&hub, &pairs),
        &[("Authorization", &format!("Bearer {allowed}"))],
    )
    .await;
    let mut without = SseClient::connect(
        &hub_url(&hub, &pairs),
        &[("Authorization", &format!("Bearer {other}"))],
    )
    .await;
    let mut anonymous = subscribe(&hub, &[("match_urlpattern", "/books/:id")]).await;
    with.opened().await;
    without.opened().await;
    hub.publish_ok(&[("topic", "/books/1"), ("data", "secret"), ("private", "on")])
        .await;
    hub.publish_ok(&[("topic", "/books/2"), ("data", "public")])
        .await;
    let got = until_sentinel(&hub, &mut [&mut with, &mut without, &mut anonymous]).await;
    assert_eq!(got[0], ["secret", "public"]);
    assert_eq!(got[1], ["public"]);
    assert_eq!(got[2], ["public"]);
}
