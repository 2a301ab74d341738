//! Active subscriptions of Mercure 1.0 matchers: announced in the 1.0 form (SSE event type
//! `mercure`, plain JSON) beside 0.x ones in theirs, the 1.0 subscriptions API with its `Link`
//! cursor, on one hub and across two Redis nodes; and publishers kept out of what the hub says.

use serde_json::{json, Value};

use super::{
    bearer, get, of_subscriber, publish_sentinel, reader_token, sentinel_comes_first,
    subscribe_with, two_nodes, watcher_token, WAIT,
};
use crate::{
    hardening::still_serving,
    helpers::{client, publisher, Event, SseClient, TestHub, KEY},
    scaleout::TestRedis,
};

const HUB: &str = "/.well-known/mercure/subscriptions";
/// A 1.0 watcher's matcher: every 1.0 subscription event (a relative pattern, resolved
/// against the hub's URL).
const WATCH_PATTERN: &str = "/.well-known/mercure/subscriptions/:type/:match/:subscriber";
/// `/books/:id` as one path segment.
const BOOKS_PATTERN_SEGMENT: &str = "%2Fbooks%2F%3Aid";

/// A 0.x token whose subscribe grants cover every 1.0 subscription event.
fn v1_watcher_token() -> String {
    crate::helpers::token(json!({
        "subscribe": ["/.well-known/mercure/subscriptions/{type}/{match}/{subscriber}"]
    }))
}

/// A token for everything, signed with a 1.0 access token's header (`typ: at+jwt`).
fn access_token(hub: &TestHub) -> String {
    let header = jsonwebtoken::Header {
        typ: Some("at+jwt".into()),
        ..jsonwebtoken::Header::default()
    };
    let claims = json!({
        "iss": ISSUER,
        "aud": hub.url("/.well-known/mercure"),
        "exp": crate::helpers::now() + 600,
        "authorization_details": [{
            "type": "https://mercure.rocks/authorization-detail",
            "actions": ["subscribe"],
            "topics": [{ "match": "*" }],
        }],
    });
    jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(KEY.as_bytes()),
    )
    .expect("sign")
}

/// The issuer of the access tokens, trusted by the hubs that take them.
const ISSUER: &str = "https://issuer.test";

/// A 0.x token for everything.
fn everything() -> String {
    crate::helpers::token(json!({ "subscribe": ["*"] }))
}

/// `urn:uuid:…` as a path segment.
fn seg(subscriber: &str) -> String {
    subscriber.replace(':', "%3A")
}

/// Subscribes a 1.0 watcher of every 1.0 subscription event on `hub`.
async fn v1_watcher(hub: &TestHub) -> SseClient {
    subscribe_with(
        hub,
        &[],
        &[("match_urlpattern", WATCH_PATTERN)],
        &v1_watcher_token(),
    )
    .await
}

/// The next 1.0 subscription event whose `match` is `matcher` (others skipped); every
/// subscription event seen on the way must carry the event type `mercure`.
async fn next_match(sse: &mut SseClient, matcher: &str) -> (Event, Value) {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let event = sse
            .next_event(left)
            .await
            .expect("a 1.0 subscription event");
        let object: Value = serde_json::from_str(&event.data).expect("JSON data");
        assert_eq!(event.event.as_deref(), Some("mercure"), "{event:?}");
        if object["match"] == matcher {
            return (event, object);
        }
    }
}

/// The document a 1.0 subscription of `matcher` (type `kind`, as the path segment
/// `matcher_segment`) by `subscriber` is announced and listed with.
fn document(
    kind: &str,
    matcher: &str,
    matcher_segment: &str,
    subscriber: &str,
    active: bool,
) -> Value {
    json!({
        "id": format!("{HUB}/{kind}/{matcher_segment}/{}", seg(subscriber)),
        "type": "subscription",
        "match_type": kind,
        "match": matcher,
        "subscriber": subscriber,
        "active": active,
        "payload": { "user": "alice" },
    })
}

/// `GET path` with `token`: status, `Content-Type`, `Link`, body as JSON (`Null` if none).
async fn get_full(hub: &TestHub, path: &str, token: &str) -> (u16, String, String, Value) {
    let response =
        tokio::time::timeout(WAIT, client().get(hub.url(path)).bearer_auth(token).send())
            .await
            .expect("answer in time")
            .expect("GET");
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let (content_type, link) = (header("content-type"), header("link"));
    let status = response.status().as_u16();
    let body = tokio::time::timeout(WAIT, response.text())
        .await
        .expect("body in time")
        .expect("body");
    (
        status,
        content_type,
        link,
        serde_json::from_str(&body).unwrap_or(Value::Null),
    )
}

/// The `Link` header a 1.0 answer of `hub` carries with the cursor `last`.
fn link_of(hub: &TestHub, last: &str) -> String {
    format!(
        "<{}>; rel=\"mercure\"; last-event-id=\"{last}\"; type=\"mercure\"; \
         content-type=\"application/json\"",
        hub.url("/.well-known/mercure")
    )
}

#[tokio::test]
async fn a_1_0_subscriber_is_announced_in_the_1_0_form_and_a_0_x_one_in_the_0_x_form() {
    let hub = TestHub::protocol(&["--subscriptions"]);
    let mut v1 = v1_watcher(&hub).await;
    let mut legacy = subscribe_with(&hub, &[super::ALL_SUBSCRIPTIONS], &[], &watcher_token()).await;
    // Anonymous: the events are private, it gets none of them.
    let mut anonymous = hub
        .subscribe(
            &[super::SENTINEL],
            &[("match_urlpattern", WATCH_PATTERN)],
            &[],
        )
        .await;

    // One request mixing both generations: each selector announced in its own.
    let (name, value) = bearer(&reader_token());
    let reader = hub
        .subscribe(
            &["/books/{id}"],
            &[("match_urlpattern", "/books/:id"), ("match", "/a%2Fb c")],
            &[(name, value.as_str())],
        )
        .await;
    let (event, books) = next_match(&mut v1, "/books/:id").await;
    let subscriber = books["subscriber"].as_str().expect("id").to_owned();
    assert!(subscriber.starts_with("urn:uuid:"), "{subscriber}");
    assert_eq!(
        books,
        document(
            "urlpattern",
            "/books/:id",
            BOOKS_PATTERN_SEGMENT,
            &subscriber,
            true
        )
    );
    assert_eq!(event.event.as_deref(), Some("mercure"));
    // The matcher's own `%` is encoded once more: it is its text, not an escape.
    let (_, exact) = next_match(&mut v1, "/a%2Fb c").await;
    assert_eq!(
        exact,
        document("exact", "/a%2Fb c", "%2Fa%252Fb%20c", &subscriber, true)
    );
    let (old_event, old) = super::next_about(&mut legacy, "/books/{id}").await;
    assert_eq!(old["type"], "Subscription");
    assert_eq!(
        old["subscriber"],
        subscriber.as_str(),
        "one id per connection"
    );
    assert_eq!(old_event.event, None);

    drop(reader);
    let (_, ended) = next_match(&mut v1, "/books/:id").await;
    assert_eq!(
        ended,
        document(
            "urlpattern",
            "/books/:id",
            BOOKS_PATTERN_SEGMENT,
            &subscriber,
            false
        )
    );
    assert_eq!(next_match(&mut v1, "/a%2Fb c").await.1["active"], false);
    assert_eq!(
        super::next_about(&mut legacy, "/books/{id}").await.1["active"],
        false
    );

    let sentinel = publish_sentinel(&hub).await;
    sentinel_comes_first(&mut anonymous, &sentinel).await;
}

#[tokio::test]
async fn the_1_0_api_lists_by_matcher_and_answers_one_subscription_with_the_cursor() {
    let hub = TestHub::protocol(&["--subscriptions", "--issuer", ISSUER]);
    let mut v1 = v1_watcher(&hub).await;
    let (name, value) = bearer(&reader_token());
    let _reader = hub
        .subscribe(
            &["/books/{id}"],
            &[("match_urlpattern", "/books/:id"), ("match", "*")],
            &[(name, value.as_str())],
        )
        .await;
    let (_, books) = next_match(&mut v1, "/books/:id").await;
    // `*` is an exact matcher; its event is the newest update.
    let (any_event, any) = next_match(&mut v1, "*").await;
    assert_eq!(any["match_type"], "exact");
    let subscriber = books["subscriber"].as_str().expect("id").to_owned();
    let last = any_event.id.expect("an id");

    let collection = format!("{HUB}/urlpattern/{BOOKS_PATTERN_SEGMENT}");
    let (status, content_type, link, body) = get_full(&hub, &collection, &everything()).await;
    assert_eq!((status, content_type.as_str()), (200, "application/json"));
    assert_eq!(link, link_of(&hub, &last));
    assert_eq!(
        body,
        json!({ "id": collection, "type": "subscriptions", "subscriptions": [books] })
    );

    let one = format!("{collection}/{}", seg(&subscriber));
    let (status, content_type, link, body) = get_full(&hub, &one, &everything()).await;
    assert_eq!((status, content_type.as_str()), (200, "application/json"));
    assert_eq!(link, link_of(&hub, &last));
    assert_eq!(body, books, "the event's document, unchanged");
    let (_, _, _, star) = get_full(&hub, &format!("{HUB}/exact/%2A"), &everything()).await;
    assert_eq!(star["subscriptions"], json!([any]));

    let unknown = format!("{collection}/urn%3Auuid%3Anobody");
    let (status, _, link, _) = get_full(&hub, &unknown, &everything()).await;
    assert_eq!(status, 404);
    assert_eq!(link, link_of(&hub, &last), "a 404 carries the cursor too");
    let (status, _, _, body) =
        get_full(&hub, &format!("{HUB}/exact/%2Fnobody"), &everything()).await;
    assert_eq!(status, 200);
    assert_eq!(body["subscriptions"], json!([]));

    // The root: a 1.0 access token gets the 1.0 subscriptions (the reader's two and the
    // watcher's), any other token the 0.x ones in JSON-LD (the reader's topic).
    let (status, content_type, link, v1_all) = get_full(&hub, HUB, &access_token(&hub)).await;
    assert_eq!((status, content_type.as_str()), (200, "application/json"));
    assert_eq!(link, link_of(&hub, &last));
    assert_eq!(
        (&v1_all["id"], &v1_all["type"]),
        (&json!(HUB), &json!("subscriptions"))
    );
    assert_eq!(of_subscriber(&v1_all, &subscriber), [&books, &any]);
    assert_eq!(v1_all["subscriptions"].as_array().map(Vec::len), Some(3));
    let (status, content_type, link, old_all) = get_full(&hub, HUB, &everything()).await;
    assert_eq!(
        (status, content_type.as_str()),
        (200, "application/ld+json")
    );
    assert_eq!(
        link,
        format!(
            "<{}>; rel=\"mercure\"; last-event-id=\"{last}\"",
            hub.url("/.well-known/mercure")
        )
    );
    let old = old_all["subscriptions"].as_array().expect("a list");
    assert_eq!(old.len(), 1, "{old_all}");
    assert_eq!(old[0]["topic"], "/books/{id}");
    // A two-segment path is 0.x unless its first segment is a matcher type.
    let old_one = format!("{HUB}/%2Fbooks%2F%7Bid%7D/{}", seg(&subscriber));
    assert_eq!(get(&hub, &old_one, Some(&everything())).await.0, 200);
}

#[tokio::test]
async fn publishing_the_hubs_event_type_or_in_its_namespace_is_refused() {
    let hub = TestHub::protocol(&["--subscriptions"]);
    let mut bystander = hub.subscribe(&["/watch"], &[], &[]).await;
    let namespace = "/.well-known/mercure/subscriptions/exact/x/urn%3Auuid%3Ay";
    let refused: [&[(&str, &str)]; 8] = [
        &[("topic", "/watch"), ("type", "mercure")],
        &[("topic", namespace)],
        &[("topic", "/watch"), ("topic", namespace)],
        &[("topic", "/.well-known/%6Dercure/x")],
        &[("topic", "/.well-known/mercure/../mercure/x")],
        &[(
            "topic",
            "http://other.example/.well-known/mercure/subscriptions/x",
        )],
        &[("topic", "/.well-known/mercure")],
        &[("topic", "mercure/x")],
    ];
    for form in refused {
        let response = hub.publish(&publisher(), form).await;
        let status = response.status().as_u16();
        let body = response.text().await.expect("body");
        assert_eq!(status, 400, "{form:?}: {body}");
        assert!(
            body.contains("reserved") && body.trim_end().lines().count() == 1,
            "{form:?}: {body}"
        );
    }
    // Near misses are topics like any other.
    for topic in ["/.well-known/mercurex", "foo:bar", "/.well-known/MERCURE/x"] {
        hub.publish_ok(&[("topic", topic), ("type", "Mercure")])
            .await;
    }
    still_serving(&hub, &mut bystander).await;
}

#[tokio::test]
async fn with_redis_the_1_0_list_of_one_node_holds_another_nodes_matchers() {
    let redis = TestRedis::start();
    let (a, b) = two_nodes(&redis, &["--issuer", ISSUER]).await;
    let mut v1 = v1_watcher(&a).await;
    let (name, value) = bearer(&reader_token());
    // `exact` is also a 0.x topic here: its 0.x list must not take the 1.0 exact matchers.
    let reader = b
        .subscribe(
            &["exact"],
            &[("match_urlpattern", "/books/:id"), ("match", "/a")],
            &[(name, value.as_str())],
        )
        .await;
    let (_, books) = next_match(&mut v1, "/books/:id").await;
    let (a_event, exact) = next_match(&mut v1, "/a").await;
    let subscriber = books["subscriber"].as_str().expect("id").to_owned();

    let collection = format!("{HUB}/urlpattern/{BOOKS_PATTERN_SEGMENT}");
    let (status, content_type, link, body) = get_full(&a, &collection, &everything()).await;
    assert_eq!((status, content_type.as_str()), (200, "application/json"));
    assert_eq!(link, link_of(&a, a_event.id.as_deref().expect("id")));
    assert_eq!(body["subscriptions"], json!([books]));
    let one = format!("{collection}/{}", seg(&subscriber));
    assert_eq!(get_full(&a, &one, &everything()).await.3, books);
    assert_eq!(
        get_full(&a, &format!("{HUB}/exact/%2Fa"), &everything())
            .await
            .3["subscriptions"],
        json!([exact])
    );
    let topic_exact = get_full(&a, &format!("{HUB}/exact"), &everything()).await.3;
    let listed = topic_exact["subscriptions"].as_array().expect("a list");
    assert_eq!(listed.len(), 1, "{topic_exact}");
    assert_eq!(listed[0]["topic"], "exact");

    let v1_all = get_full(&a, HUB, &access_token(&a)).await.3;
    // Across nodes, by subscriber then IRI (`exact/…` before `urlpattern/…`).
    assert_eq!(of_subscriber(&v1_all, &subscriber), [&exact, &books]);
    assert!(v1_all["subscriptions"]
        .as_array()
        .expect("a list")
        .iter()
        .all(|s| s["type"] == "subscription"));
    let old_all = get_full(&a, HUB, &everything()).await.3;
    assert_eq!(old_all["subscriptions"].as_array().map(Vec::len), Some(1));

    drop(reader);
    assert_eq!(next_match(&mut v1, "/books/:id").await.1["active"], false);
    let gone = crate::helpers::wait_until(WAIT, || async {
        get_full(&a, &collection, &everything()).await.3["subscriptions"] == json!([])
    })
    .await;
    assert!(gone, "the reader is still listed after it left");
}

#[tokio::test]
async fn bad_1_0_api_paths_get_clear_errors_and_the_hub_keeps_serving() {
    let hub = TestHub::protocol(&["--subscriptions"]);
    let mut bystander = hub.subscribe(&["/watch"], &[], &[]).await;
    for (path, status) in [
        (format!("{HUB}/exact/%FF"), 400),
        (format!("{HUB}/urlpattern/%2Fa/%FF"), 400),
        (format!("{HUB}/urlpattern/%2Fa/b/c"), 404),
        (format!("{HUB}/Exact/%2Fa/urn%3Ax"), 404),
        (format!("{HUB}/regex/%2Fa/urn%3Ax"), 404),
        (format!("{HUB}/exact//urn%3Ax"), 404),
    ] {
        let (got, _, _, body) = get_full(&hub, &path, &everything()).await;
        assert_eq!(got, status, "{path}: {body}");
    }
    // The token's grants decide, as for 0.x paths: a token for other topics is refused.
    let (status, _, _, _) = get_full(&hub, &format!("{HUB}/exact/%2Fa"), &reader_token()).await;
    assert_eq!(status, 403);
    still_serving(&hub, &mut bystander).await;
}
