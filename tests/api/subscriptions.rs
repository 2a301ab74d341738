//! Active subscriptions (`--subscriptions`): the private events when a subscription starts and
//! ends, and the subscriptions API; on one hub, and on two nodes of a real `redis-server`.

mod v1;

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::{
    hardening::still_serving,
    helpers::{client, token, Event, SseClient, TestHub},
    scaleout::{all_ready, node_with, TestRedis, STREAM},
};

const WAIT: Duration = Duration::from_secs(10);
const SENTINEL: &str = "https://example.com/sentinel";
/// The selector the specification suggests for everything about subscriptions.
const ALL_SUBSCRIPTIONS: &str = "/.well-known/mercure/subscriptions{/topic}{/subscriber}";
/// `/books/{id}` as one path segment.
const BOOKS_SEGMENT: &str = "%2Fbooks%2F%7Bid%7D";

fn watcher_token() -> String {
    token(json!({ "subscribe": [ALL_SUBSCRIPTIONS] }))
}

fn reader_token() -> String {
    token(json!({ "subscribe": ["/books/{id}"], "payload": { "user": "alice" } }))
}

fn bearer(token: &str) -> (&'static str, String) {
    ("Authorization", format!("Bearer {token}"))
}

/// Subscribes with `token` as bearer.
async fn subscribe_with(
    hub: &TestHub,
    selectors: &[&str],
    query: &[(&str, &str)],
    token: &str,
) -> SseClient {
    let (name, value) = bearer(token);
    hub.subscribe(selectors, query, &[(name, value.as_str())])
        .await
}

/// The next subscription event about `topic`, parsed (events about other topics are skipped).
async fn next_about(sse: &mut SseClient, topic: &str) -> (Event, Value) {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let event = sse.next_event(left).await.expect("a subscription event");
        let object: Value = serde_json::from_str(&event.data).expect("JSON-LD data");
        if object["topic"] == topic {
            return (event, object);
        }
    }
}

/// Subscribes a watcher on `hub` to every subscription event from the `lastEventID` of the list
/// `all`, then lets `reader` (the subscriber `subscriber`, listed in `all`) go: the watcher's
/// own start comes first, then the reader's end, and nothing from before the list.
async fn resume_after_list(hub: &TestHub, all: &Value, reader: SseClient, subscriber: &str) {
    let last = all["lastEventID"].as_str().expect("id").to_owned();
    let mut resumed = subscribe_with(
        hub,
        &[ALL_SUBSCRIPTIONS],
        &[("lastEventID", &last)],
        &watcher_token(),
    )
    .await;
    drop(reader);
    let first = resumed.next_event(WAIT).await.expect("an event");
    let object: Value = serde_json::from_str(&first.data).expect("JSON");
    assert_eq!(
        (object["topic"].as_str(), &object["active"]),
        (Some(ALL_SUBSCRIPTIONS), &json!(true)),
        "the resumed watcher's own start first"
    );
    let (_, ended) = next_about(&mut resumed, "/books/{id}").await;
    assert_eq!(
        (ended["subscriber"].as_str(), &ended["active"]),
        (Some(subscriber), &json!(false))
    );
}

/// `GET path` with `token` (if any): status and body.
async fn get(hub: &TestHub, path: &str, token: Option<&str>) -> (u16, String, Option<String>) {
    let mut request = client().get(hub.url(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = tokio::time::timeout(WAIT, request.send())
        .await
        .expect("answer in time")
        .expect("GET");
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = tokio::time::timeout(WAIT, response.text())
        .await
        .expect("body in time")
        .expect("body");
    (status, body, content_type)
}

async fn get_json(hub: &TestHub, path: &str) -> Value {
    let (status, body, content_type) = get(hub, path, Some(&watcher_token())).await;
    assert_eq!(status, 200, "GET {path}: {body}");
    assert_eq!(content_type.as_deref(), Some("application/ld+json"));
    serde_json::from_str(&body).expect("JSON")
}

#[tokio::test]
async fn a_watcher_sees_a_subscription_start_and_end_and_others_see_nothing() {
    let hub = TestHub::protocol(&["--subscriptions"]);
    let mut watcher = subscribe_with(&hub, &[ALL_SUBSCRIPTIONS], &[], &watcher_token()).await;
    // Neither an anonymous subscriber to everything nor a token for other topics may read them.
    let mut anonymous = hub.subscribe(&["*", ALL_SUBSCRIPTIONS], &[], &[]).await;
    let mut other_token = subscribe_with(&hub, &["*"], &[], &reader_token()).await;

    let reader = subscribe_with(&hub, &["/books/{id}"], &[], &reader_token()).await;
    let (event, started) = next_about(&mut watcher, "/books/{id}").await;
    let subscriber = started["subscriber"]
        .as_str()
        .expect("subscriber id")
        .to_owned();
    assert!(subscriber.starts_with("urn:uuid:"), "{subscriber}");
    let iri = format!(
        "/.well-known/mercure/subscriptions/{BOOKS_SEGMENT}/{}",
        subscriber.replace(':', "%3A")
    );
    assert_eq!(
        started,
        json!({
            "@context": "https://mercure.rocks/",
            "id": iri,
            "type": "Subscription",
            "topic": "/books/{id}",
            "subscriber": subscriber,
            "active": true,
            "payload": { "user": "alice" },
        })
    );
    assert_eq!(event.event, None, "no event type");

    drop(reader);
    let (_, ended) = next_about(&mut watcher, "/books/{id}").await;
    assert_eq!(ended["subscriber"], subscriber.as_str());
    assert_eq!(ended["active"], false);
    assert_eq!(ended["payload"]["user"], "alice");

    // Published after both events: what came before it was not for these two.
    let sentinel = publish_sentinel(&hub).await;
    for sse in [&mut anonymous, &mut other_token] {
        sentinel_comes_first(sse, &sentinel).await;
    }
}

#[tokio::test]
async fn the_api_lists_filters_and_answers_one_subscription_resumably() {
    let hub = TestHub::protocol(&["--subscriptions"]);
    let mut watcher = subscribe_with(&hub, &[ALL_SUBSCRIPTIONS], &[], &watcher_token()).await;
    let reader = subscribe_with(&hub, &["/books/{id}", "/authors/1"], &[], &reader_token()).await;
    let (_, books) = next_about(&mut watcher, "/books/{id}").await;
    let (authors_event, _) = next_about(&mut watcher, "/authors/1").await;
    let subscriber = books["subscriber"].as_str().expect("id").to_owned();
    let subscriber_segment = subscriber.replace(':', "%3A");

    let all = get_json(&hub, "/.well-known/mercure/subscriptions").await;
    assert_eq!(all["@context"], "https://mercure.rocks/");
    assert_eq!(all["type"], "Subscriptions");
    assert_eq!(all["id"], "/.well-known/mercure/subscriptions");
    // The watcher was delivered the newest update, so history holds it.
    assert_eq!(all["lastEventID"].as_str(), authors_event.id.as_deref());
    let mine = of_subscriber(&all, &subscriber);
    assert_eq!(mine.len(), 2, "{all}");
    assert!(mine
        .iter()
        .all(|s| s["active"] == true && s["payload"]["user"] == "alice"));
    // The watcher itself is listed too (anonymous payload: none).
    assert_eq!(
        all["subscriptions"].as_array().map(Vec::len),
        Some(3),
        "{all}"
    );

    let by_topic = get_json(
        &hub,
        &format!("/.well-known/mercure/subscriptions/{BOOKS_SEGMENT}"),
    )
    .await;
    assert_eq!(by_topic["subscriptions"].as_array().map(Vec::len), Some(1));
    assert_eq!(by_topic["subscriptions"][0], books);
    assert_eq!(
        by_topic["id"],
        format!("/.well-known/mercure/subscriptions/{BOOKS_SEGMENT}")
    );

    let one_path =
        format!("/.well-known/mercure/subscriptions/{BOOKS_SEGMENT}/{subscriber_segment}");
    assert_eq!(get_json(&hub, &one_path).await, books);
    let unknown = format!("/.well-known/mercure/subscriptions/{BOOKS_SEGMENT}/urn%3Auuid%3Anobody");
    assert_eq!(get(&hub, &unknown, Some(&watcher_token())).await.0, 404);

    // Resuming the events from the list's lastEventID gives exactly the changes after it.
    resume_after_list(&hub, &all, reader, &subscriber).await;

    // Gone from the list once it left.
    let left = crate::helpers::wait_until(WAIT, || async {
        get_json(
            &hub,
            &format!("/.well-known/mercure/subscriptions/{BOOKS_SEGMENT}"),
        )
        .await["subscriptions"]
            .as_array()
            .is_some_and(Vec::is_empty)
    })
    .await;
    assert!(left, "the reader is still listed");
}

#[tokio::test]
async fn the_api_needs_a_token_whose_selectors_match_the_path() {
    let hub = TestHub::protocol(&["--subscriptions"]);
    let mut well_behaved = hub.subscribe(&["/watch"], &[], &[]).await;
    let path = "/.well-known/mercure/subscriptions";
    // Anonymous subscribers are allowed on this hub, but not here.
    assert_eq!(get(&hub, path, None).await.0, 401);
    assert_eq!(get(&hub, path, Some("not.a.token")).await.0, 401);
    assert_eq!(get(&hub, path, Some(&reader_token())).await.0, 403);
    // A token for one topic's subscriptions reads that topic's, not the whole list.
    let one_topic = token(json!({
        "subscribe": [format!("/.well-known/mercure/subscriptions/{BOOKS_SEGMENT}{{/subscriber}}")]
    }));
    let books = format!("{path}/{BOOKS_SEGMENT}");
    assert_eq!(get(&hub, &books, Some(&one_topic)).await.0, 200);
    assert_eq!(get(&hub, path, Some(&one_topic)).await.0, 403);
    // `*` may read everything; the `authorization` query parameter works as for subscribing.
    let everything = token(json!({ "subscribe": ["*"] }));
    assert_eq!(
        get(&hub, &format!("{path}?authorization={everything}"), None)
            .await
            .0,
        200
    );
    // A segment that is not UTF-8 once decoded is refused, not guessed at.
    assert_eq!(
        get(&hub, &format!("{path}/%FF"), Some(&everything)).await.0,
        400
    );
    assert_eq!(
        get(&hub, &format!("{path}/a/b/c"), Some(&everything))
            .await
            .0,
        404
    );
    still_serving(&hub, &mut well_behaved).await;
}

/// The `Access-Control-Allow-*` header `name` of `response`, lowercased; `None` if absent.
fn allow(response: &reqwest::Response, name: &str) -> Option<String> {
    let value = response
        .headers()
        .get(format!("access-control-allow-{name}"))?;
    Some(value.to_str().expect("ASCII").to_lowercase())
}

#[tokio::test]
async fn the_api_answers_browsers_of_the_cors_origins_as_the_hub_endpoint_does() {
    let app = "https://app.example";
    let hub = TestHub::protocol(&["--subscriptions", "--cors-origin", app]);
    let everything = token(json!({ "subscribe": ["*"] }));
    let send = |request: reqwest::RequestBuilder| async move {
        tokio::time::timeout(WAIT, request.send())
            .await
            .expect("answer in time")
            .expect("request")
    };
    let list = "/.well-known/mercure/subscriptions".to_owned();
    for (path, status) in [
        (list.clone(), 200),
        (format!("{list}/{BOOKS_SEGMENT}"), 200),
        (format!("{list}/{BOOKS_SEGMENT}/urn%3Auuid%3Anone"), 404),
    ] {
        let preflight = |origin: &str| {
            client()
                .request(reqwest::Method::OPTIONS, hub.url(&path))
                .header("Origin", origin)
                .header("Access-Control-Request-Method", "GET")
                .header("Access-Control-Request-Headers", "authorization")
        };
        let answer = send(preflight(app)).await;
        assert!(answer.status().is_success(), "{path}: {answer:?}");
        assert_eq!(allow(&answer, "origin").as_deref(), Some(app), "{path}");
        assert_eq!(allow(&answer, "credentials").as_deref(), Some("true"));
        assert!(allow(&answer, "methods").is_some_and(|m| m.contains("get")));
        assert!(allow(&answer, "headers").is_some_and(|h| h.contains("authorization")));

        // The request itself, answered or refused: a page can read why.
        let get = |origin: &str| {
            client()
                .get(hub.url(&path))
                .header("Origin", origin)
                .bearer_auth(&everything)
        };
        let answer = send(get(app)).await;
        assert_eq!(answer.status(), status, "{path}");
        assert_eq!(allow(&answer, "origin").as_deref(), Some(app), "{path}");
        assert_eq!(allow(&answer, "credentials").as_deref(), Some("true"));
        let anonymous = send(client().get(hub.url(&path)).header("Origin", app)).await;
        assert_eq!(anonymous.status(), 401, "{path}");
        assert_eq!(allow(&anonymous, "origin").as_deref(), Some(app));

        // Another origin is not refused (same-origin pages send Origin too), only not allowed.
        let other = "https://evil.example";
        assert_eq!(
            allow(&send(preflight(other)).await, "origin"),
            None,
            "{path}"
        );
        let answer = send(get(other)).await;
        assert_eq!(answer.status(), status, "{path}");
        assert_eq!(allow(&answer, "origin"), None, "{path}");
    }
}

#[tokio::test]
async fn without_the_flag_the_paths_are_unknown_and_nothing_is_announced() {
    let hub = TestHub::protocol(&[]);
    let everything = token(json!({ "subscribe": ["*"] }));
    for path in [
        "/.well-known/mercure/subscriptions".to_owned(),
        format!("/.well-known/mercure/subscriptions/{BOOKS_SEGMENT}"),
        format!("/.well-known/mercure/subscriptions/{BOOKS_SEGMENT}/urn%3Auuid%3Ax"),
    ] {
        assert_eq!(get(&hub, &path, Some(&everything)).await.0, 404, "{path}");
    }
    let mut watcher = subscribe_with(&hub, &["*"], &[], &everything).await;
    let reader = subscribe_with(&hub, &["/books/{id}"], &[], &reader_token()).await;
    drop(reader);
    let sentinel = publish_sentinel(&hub).await;
    sentinel_comes_first(&mut watcher, &sentinel).await;
}

#[tokio::test]
async fn with_in_memory_history_the_events_are_delivered_too() {
    let hub = TestHub::protocol(&["--subscriptions", "--data-dir", "none"]);
    let mut watcher = subscribe_with(&hub, &[ALL_SUBSCRIPTIONS], &[], &watcher_token()).await;
    let reader = subscribe_with(&hub, &["/books/{id}"], &[], &reader_token()).await;
    assert_eq!(
        next_about(&mut watcher, "/books/{id}").await.1["active"],
        true
    );
    drop(reader);
    assert_eq!(
        next_about(&mut watcher, "/books/{id}").await.1["active"],
        false
    );
}

/// Two nodes on one Redis stream, with `--subscriptions` and `extra` flags, both ready.
async fn two_nodes(redis: &TestRedis, extra: &[&str]) -> (TestHub, TestHub) {
    let mut flags = vec!["--subscriptions"];
    flags.extend_from_slice(extra);
    let (a, b) = (node_with(redis, &flags), node_with(redis, &flags));
    all_ready(&[&a, &b]).await;
    (a, b)
}

/// Whether `hub`'s whole list answers 200 with a single subscription, of `topic`.
async fn lists_one_of(hub: &TestHub, topic: &str) -> bool {
    let path = "/.well-known/mercure/subscriptions";
    let (status, body, _) = get(hub, path, Some(&watcher_token())).await;
    status == 200
        && serde_json::from_str::<Value>(&body).is_ok_and(|list| {
            list["subscriptions"]
                .as_array()
                .is_some_and(|l| l.len() == 1 && l[0]["topic"] == topic)
        })
}

/// The subscribers `hub`'s API lists under `path`.
async fn listed_subscribers(hub: &TestHub, path: &str) -> Vec<String> {
    get_json(hub, path).await["subscriptions"]
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|s| s["subscriber"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn with_redis_a_watcher_on_one_node_sees_subscriptions_start_and_end_on_another() {
    let redis = TestRedis::start();
    let (a, b) = two_nodes(&redis, &[]).await;
    let mut watcher = subscribe_with(&a, &[ALL_SUBSCRIPTIONS], &[], &watcher_token()).await;
    let mut anonymous = a.subscribe(&["*", ALL_SUBSCRIPTIONS], &[], &[]).await;

    let reader = subscribe_with(&b, &["/books/{id}"], &[], &reader_token()).await;
    let (_, started) = next_about(&mut watcher, "/books/{id}").await;
    let subscriber = started["subscriber"].as_str().expect("id").to_owned();
    assert_eq!(started["active"], true);
    assert_eq!(started["payload"]["user"], "alice");

    drop(reader);
    let (_, ended) = next_about(&mut watcher, "/books/{id}").await;
    assert_eq!(ended["subscriber"], subscriber.as_str());
    assert_eq!(ended["active"], false);

    // Private on every node: an anonymous subscriber gets the sentinel first.
    let sentinel = publish_sentinel(&b).await;
    sentinel_comes_first(&mut anonymous, &sentinel).await;
}

#[tokio::test]
async fn with_redis_the_api_on_one_node_lists_filters_and_resumes_another_nodes_subscriptions() {
    let redis = TestRedis::start();
    let (a, b) = two_nodes(&redis, &[]).await;
    let mut watcher = subscribe_with(&a, &[ALL_SUBSCRIPTIONS], &[], &watcher_token()).await;
    let reader = subscribe_with(&b, &["/books/{id}", "/authors/1"], &[], &reader_token()).await;
    let (_, books) = next_about(&mut watcher, "/books/{id}").await;
    let (authors_event, _) = next_about(&mut watcher, "/authors/1").await;
    let subscriber = books["subscriber"].as_str().expect("id").to_owned();

    // Its events and its place in the list are written together: once A has delivered the
    // events, A's list holds the subscriptions, as of A's newest update.
    let all = get_json(&a, "/.well-known/mercure/subscriptions").await;
    assert_eq!(all["lastEventID"].as_str(), authors_event.id.as_deref());
    let mine = of_subscriber(&all, &subscriber);
    assert_eq!(mine.len(), 2, "{all}");
    assert!(mine.iter().all(|s| s["payload"]["user"] == "alice"));
    // The watcher, on A, is listed too; B lists the same.
    assert_eq!(
        all["subscriptions"].as_array().map(Vec::len),
        Some(3),
        "{all}"
    );
    let on_b = get_json(&b, "/.well-known/mercure/subscriptions").await;
    assert_eq!(on_b["subscriptions"], all["subscriptions"]);

    let books_path = format!("/.well-known/mercure/subscriptions/{BOOKS_SEGMENT}");
    let by_topic = get_json(&a, &books_path).await;
    assert_eq!(by_topic["subscriptions"], json!([books]));
    let one = format!("{books_path}/{}", subscriber.replace(':', "%3A"));
    assert_eq!(get_json(&a, &one).await, books);
    let unknown = format!("{books_path}/urn%3Auuid%3Anobody");
    assert_eq!(get(&a, &unknown, Some(&watcher_token())).await.0, 404);

    // The list's lastEventID, taken on A, resumes the events on B.
    resume_after_list(&b, &all, reader, &subscriber).await;
    let gone = crate::helpers::wait_until(WAIT, || async {
        !listed_subscribers(&a, &books_path)
            .await
            .contains(&subscriber)
    })
    .await;
    assert!(gone, "the reader is still listed after it left");
}

#[tokio::test]
async fn with_redis_a_killed_nodes_subscriptions_leave_the_list_within_the_ttl() {
    let redis = TestRedis::start();
    let (a, mut b) = two_nodes(&redis, &["--subscriptions-ttl", "3s"]).await;
    let _reader = subscribe_with(&b, &["/books/{id}"], &[], &reader_token()).await;
    let path = "/.well-known/mercure/subscriptions";
    let listed = crate::helpers::wait_until(WAIT, || async {
        listed_subscribers(&a, path).await.len() == 1
    })
    .await;
    assert!(listed, "B's subscriber never listed on A");

    let killed = Instant::now();
    b.kill();
    // Renewed every second, B's list outlives it by at most the 3 s TTL.
    let gone = crate::helpers::wait_until(Duration::from_secs(20), || async {
        listed_subscribers(&a, path).await.is_empty()
    })
    .await;
    assert!(gone, "a dead node's subscriptions are still listed");
    assert!(
        killed.elapsed() >= Duration::from_secs(1),
        "gone before its TTL could run out: was B's list deleted by something else?"
    );
    // The reading node also took the dead node out of the set of nodes.
    let nodes = redis.cli(&["SMEMBERS", &format!("{STREAM}:nodes")]).await;
    assert_eq!(nodes.trim(), "", "{nodes}");
}

#[tokio::test]
async fn with_redis_a_node_that_stops_cleanly_announces_its_subscribers_left() {
    let redis = TestRedis::start();
    // The default TTL (15 s) is longer than any wait below: only the clean stop empties it.
    let (a, mut b) = two_nodes(&redis, &[]).await;
    let mut watcher = subscribe_with(&a, &[ALL_SUBSCRIPTIONS], &[], &watcher_token()).await;
    let _reader = subscribe_with(&b, &["/books/{id}"], &[], &reader_token()).await;
    let (_, started) = next_about(&mut watcher, "/books/{id}").await;

    b.terminate();
    let (_, ended) = next_about(&mut watcher, "/books/{id}").await;
    assert_eq!(ended["subscriber"], started["subscriber"]);
    assert_eq!(ended["active"], false);
    let status = b.wait_exit(WAIT).expect("B exits");
    assert!(status.success(), "{status}");
    // Only the watcher, on A, is left.
    let left = listed_subscribers(&a, "/.well-known/mercure/subscriptions").await;
    assert_eq!(left.len(), 1, "{left:?}");
    assert_ne!(Some(left[0].as_str()), started["subscriber"].as_str());
}

#[tokio::test]
async fn with_redis_a_nodes_list_is_written_again_after_redis_restarts_empty() {
    let mut redis = TestRedis::start();
    let (a, b) = two_nodes(&redis, &["--subscriptions-ttl", "3s"]).await;
    let _reader = subscribe_with(&b, &["/books/{id}"], &[], &reader_token()).await;
    let path = "/.well-known/mercure/subscriptions";
    // While Redis restarts the API may answer 503: only a 200 listing the reader counts.
    let lists_the_reader = || lists_one_of(&a, "/books/{id}");
    assert!(crate::helpers::wait_until(WAIT, lists_the_reader).await);

    redis.restart();
    assert_eq!(
        redis
            .cli(&["EXISTS", &format!("{STREAM}:nodes")])
            .await
            .trim(),
        "0",
        "Redis came back empty"
    );
    // B's next renewal finds its hash gone and writes it again from its own record.
    assert!(
        crate::helpers::wait_until(Duration::from_secs(20), lists_the_reader).await,
        "B's subscriber never listed again"
    );
    // Its index by IRI was written again too: the topic's list has it.
    let books = format!("{path}/{BOOKS_SEGMENT}");
    assert_eq!(listed_subscribers(&a, &books).await.len(), 1);
    assert!(b.logged("list was gone from Redis"), "{:?}", b.logs());
}

/// While Redis does not answer, a node's writer takes subscribers coming and going into its
/// own record at once, not one transaction (and one publish timeout, 2 s) per 256 changes:
/// its queue empties though Redis is still asleep, so subscribers churning through an outage
/// cannot pile changes up in memory. Once Redis is back the list is rewritten, exactly.
#[tokio::test]
async fn with_redis_asleep_changes_to_the_list_do_not_pile_up() {
    const STALL: Duration = Duration::from_secs(30);
    const CHURN: usize = 1000;
    let redis = TestRedis::start();
    // A stream's end is noticed by its next write (the heartbeat, every 500 ms): more may count
    // as connected than are.
    let flags = [
        "--subscriptions-ttl",
        "3s",
        "--max-subscribers-per-ip",
        "5000",
        // 1,000 subscribers from one address in a few seconds.
        "--subscribe-rate",
        "0",
    ];
    let (a, b) = two_nodes(&redis, &flags).await;
    let _keeper = subscribe_with(&b, &["/books/{id}"], &[], &reader_token()).await;
    let lists_only_the_keeper = || lists_one_of(&a, "/books/{id}");
    assert!(crate::helpers::wait_until(WAIT, lists_only_the_keeper).await);

    let mut sleeper = redis.stall(STALL.as_secs_f64()).await;
    let asleep_at = Instant::now();
    // Two changes each (it came, it went), 50 at a time.
    let reader = reader_token();
    for _ in 0..CHURN / 50 {
        let batch = futures_util::future::join_all(
            (0..50).map(|_| subscribe_with(&b, &["/churn"], &[], &reader)),
        )
        .await;
        drop(batch);
    }
    let churned_in = asleep_at.elapsed();
    let queued = || async {
        let page = crate::metrics::metrics(&b).await;
        crate::metrics::sample(&page, "sse_hub_subscription_changes_queued")
    };
    let drained =
        crate::helpers::wait_until(Duration::from_secs(10), || async { queued().await == 0.0 })
            .await;
    assert!(
        drained && asleep_at.elapsed() < STALL - Duration::from_secs(5),
        "{} changes still queued {:?} after Redis fell asleep (churn took {churned_in:?})",
        queued().await,
        asleep_at.elapsed(),
    );

    // Redis wakes; B's list is written again from its record: the keeper, none of the churn.
    tokio::time::timeout(STALL + WAIT, async {
        use tokio::io::AsyncReadExt;
        let mut ok = [0; 5];
        sleeper.read_exact(&mut ok).await
    })
    .await
    .expect("Redis wakes up")
    .unwrap();
    assert!(
        crate::helpers::wait_until(Duration::from_secs(20), lists_only_the_keeper).await,
        "the list after the outage is not just the keeper"
    );
    assert!(b.logged("were lost while it was away"), "{:?}", b.logs());
}

/// Subscribes on `hub` to `selectors` with a token whose payload carries `tag`.
async fn tagged(hub: &TestHub, selectors: &[&str], tag: &str) -> SseClient {
    let token = token(json!({ "subscribe": ["/none"], "payload": { "tag": tag } }));
    subscribe_with(hub, selectors, &[], &token).await
}

/// What `hub`'s API lists under `path`: the `(subscriber, tag)` of each object, in order; every
/// object must be of `topic`.
async fn listed_tags(hub: &TestHub, path: &str, topic: &str) -> Vec<(String, String)> {
    let list = get_json(hub, path).await;
    list["subscriptions"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|s| {
            assert_eq!(s["topic"], topic, "{list}");
            let id = s["subscriber"].as_str().expect("subscriber").to_owned();
            (id, s["payload"]["tag"].as_str().unwrap_or("").to_owned())
        })
        .collect()
}

/// Checks that `/a`'s list on each of `nodes` is exactly the subscribers tagged `expected`, by
/// subscriber id, while subscribers of `/ab`, `/a/b` and others (on whichever node) come and
/// go: the list of a topic must leak neither a topic it is a prefix of nor one of its paths.
/// Polls until the lists settle (with Redis, the writes are asynchronous).
async fn a_topics_list_stays_exact(nodes: &[&TestHub]) {
    const A: &str = "/.well-known/mercure/subscriptions/%2Fa";
    const ALL: &str = "/.well-known/mercure/subscriptions";
    let node = |i: usize| nodes[i % nodes.len()];
    let exact = |expected: Vec<&'static str>| async move {
        let mut expected: Vec<String> = expected.into_iter().map(str::to_owned).collect();
        expected.sort();
        let settled = crate::helpers::wait_until(WAIT, || {
            let expected = expected.clone();
            async move {
                let mut tags: Vec<String> = listed_tags(nodes[0], A, "/a")
                    .await
                    .into_iter()
                    .map(|(_, tag)| tag)
                    .collect();
                tags.sort();
                tags == expected
            }
        })
        .await;
        for hub in nodes {
            let listed = listed_tags(hub, A, "/a").await;
            let mut tags: Vec<String> = listed.iter().map(|(_, tag)| tag.clone()).collect();
            tags.sort();
            assert!(settled, "/a lists {tags:?}, not {expected:?}");
            assert_eq!(tags, expected);
            // By subscriber; and the same as the whole list's `/a` objects.
            assert!(listed.windows(2).all(|w| w[0].0 < w[1].0), "{listed:?}");
            let whole = get_json(hub, ALL).await;
            let from_whole: Vec<Value> = whole["subscriptions"]
                .as_array()
                .expect("a list")
                .iter()
                .filter(|s| s["topic"] == "/a")
                .cloned()
                .collect();
            assert_eq!(get_json(hub, A).await["subscriptions"], json!(from_whole));
        }
    };

    let mut a = Vec::new();
    for i in 0..3 {
        a.push(tagged(node(i), &["/a"], ["a0", "a1", "a2"][i]).await);
    }
    let both = tagged(node(1), &["/ab", "/a", "/a/b"], "both").await;
    let mut noise = Vec::new();
    for i in 0..24 {
        let topic = ["/ab", "/a/b", "/b", "/a{x}"][i % 4];
        noise.push(tagged(node(i), &[topic], "noise").await);
    }
    exact(vec!["a0", "a1", "a2", "both"]).await;

    // Half the others go, new ones come, and so do some of `/a`'s.
    noise.truncate(12);
    drop(a.remove(1));
    drop(both);
    for i in 0..12 {
        noise.push(tagged(node(i + 1), &[["/ab", "/a/b"][i % 2]], "noise").await);
    }
    a.push(tagged(node(1), &["/a"], "a3").await);
    exact(vec!["a0", "a2", "a3"]).await;

    // One subscription of `/a`, and none of `/ab`'s under `/a`.
    let listed = listed_tags(node(0), A, "/a").await;
    let (id, _) = listed.iter().find(|(_, tag)| tag == "a3").expect("a3");
    let one = get_json(node(0), &format!("{A}/{}", id.replace(':', "%3A"))).await;
    assert_eq!(one["payload"]["tag"], "a3");
    let ab = listed_tags(node(0), &format!("{A}b"), "/ab").await;
    let (ab_id, _) = ab.first().expect("an /ab subscriber");
    let path = format!("{A}/{}", ab_id.replace(':', "%3A"));
    assert_eq!(get(node(0), &path, Some(&watcher_token())).await.0, 404);

    noise.clear();
    a.clear();
    exact(vec![]).await;
}

#[tokio::test]
async fn a_topics_list_is_exact_while_subscribers_of_prefix_sharing_topics_come_and_go() {
    let hub = TestHub::protocol(&["--subscriptions"]);
    a_topics_list_stays_exact(&[&hub]).await;
}

#[tokio::test]
async fn with_redis_a_topics_list_is_exact_while_subscribers_of_prefix_sharing_topics_come_and_go()
{
    let redis = TestRedis::start();
    let (a, b) = two_nodes(&redis, &[]).await;
    a_topics_list_stays_exact(&[&a, &b]).await;
    // Each node's index of its subscriptions holds what its hash holds.
    let _on_a = tagged(&a, &["/a", "/ab"], "x").await;
    let _on_b = tagged(&b, &["/c"], "y").await;
    let listed = crate::helpers::wait_until(WAIT, || async {
        listed_subscribers(&a, "/.well-known/mercure/subscriptions")
            .await
            .len()
            == 3
    })
    .await;
    assert!(listed, "the two new subscribers never listed");
    let keys = redis.cli(&["KEYS", &format!("{STREAM}:subs:*")]).await;
    let hashes: Vec<&str> = keys.lines().filter(|k| !k.ends_with(":iris")).collect();
    assert_eq!(hashes.len(), 2, "{keys}");
    for key in hashes {
        let hash = redis.cli(&["HKEYS", key]).await;
        let index = redis
            .cli(&["ZRANGE", &format!("{key}:iris"), "0", "-1"])
            .await;
        let mut hash: Vec<&str> = hash.lines().collect();
        hash.sort_unstable();
        assert_eq!(hash, index.lines().collect::<Vec<_>>(), "{key}");
        let ttl = redis.cli(&["PTTL", &format!("{key}:iris")]).await;
        assert!(ttl.trim().parse::<i64>().is_ok_and(|t| t > 0), "{ttl}");
    }
}

/// Publishes on [`SENTINEL`]; its id.
async fn publish_sentinel(hub: &TestHub) -> String {
    hub.publish_ok(&[("topic", SENTINEL), ("data", "sentinel")])
        .await
}

/// Checks that the next event `sse` gets is the sentinel: nothing before it was for `sse`.
async fn sentinel_comes_first(sse: &mut SseClient, sentinel: &str) {
    let first = sse.next_event(WAIT).await.expect("the sentinel");
    assert_eq!(first.id.as_deref(), Some(sentinel), "{first:?}");
}

/// The entries of a subscriptions list that belong to `subscriber`.
fn of_subscriber<'a>(all: &'a Value, subscriber: &str) -> Vec<&'a Value> {
    let listed = all["subscriptions"].as_array().expect("a list");
    listed
        .iter()
        .filter(|s| s["subscriber"] == subscriber)
        .collect()
}
