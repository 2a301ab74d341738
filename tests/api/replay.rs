//! Replay on reconnect: `Last-Event-ID`, `lastEventID`, `earliest`, unknown ids, reused ids,
//! the `Mercure-Last-Event-ID` response field and private updates under the current token.

use std::time::Duration;

use serde_json::json;

use crate::helpers::{token, Event, SseClient, TestHub};

const WAIT: Duration = Duration::from_secs(5);

async fn publish_n(hub: &TestHub, topic: &str, ids: &[&str]) {
    for id in ids {
        hub.publish_ok(&[("topic", topic), ("id", id), ("data", id)])
            .await;
    }
}

fn ids(events: &[Event]) -> Vec<&str> {
    events.iter().map(|e| e.id.as_deref().unwrap()).collect()
}

fn resumed_after(sse: &SseClient) -> &str {
    sse.response_headers["last-event-id"].to_str().unwrap()
}

#[tokio::test]
async fn last_event_id_header_replays_exactly_the_missed_updates_then_live_ones() {
    let hub = TestHub::protocol(&[]);
    let mut first = hub.subscribe(&["/r"], &[], &[]).await;
    publish_n(&hub, "/r", &["r1", "r2"]).await;
    assert_eq!(ids(&first.events(2, WAIT).await), ["r1", "r2"]);
    drop(first);
    // Missed while away, including one on a topic this subscriber doesn't want.
    publish_n(&hub, "/r", &["r3", "r4"]).await;
    publish_n(&hub, "/other", &["o1"]).await;
    publish_n(&hub, "/r", &["r5"]).await;
    let mut again = hub
        .subscribe(&["/r"], &[], &[("Last-Event-ID", "r2")])
        .await;
    assert_eq!(resumed_after(&again), "r2");
    publish_n(&hub, "/r", &["r6"]).await;
    assert_eq!(ids(&again.events(4, WAIT).await), ["r3", "r4", "r5", "r6"]);
}

#[tokio::test]
async fn last_event_id_query_parameter_works_and_the_header_wins() {
    let hub = TestHub::protocol(&[]);
    publish_n(&hub, "/r", &["a", "b", "c"]).await;
    let mut by_query = hub.subscribe(&["/r"], &[("lastEventID", "a")], &[]).await;
    assert_eq!(resumed_after(&by_query), "a");
    assert_eq!(ids(&by_query.events(2, WAIT).await), ["b", "c"]);
    let mut both = hub
        .subscribe(&["/r"], &[("lastEventID", "a")], &[("Last-Event-ID", "b")])
        .await;
    assert_eq!(resumed_after(&both), "b");
    assert_eq!(ids(&both.events(1, WAIT).await), ["c"]);
}

#[tokio::test]
async fn earliest_replays_all_history() {
    let hub = TestHub::protocol(&["--history-size", "3"]);
    publish_n(&hub, "/r", &["1", "2", "3", "4", "5"]).await;
    let mut sse = hub
        .subscribe(&["/r"], &[("lastEventID", "earliest")], &[])
        .await;
    assert_eq!(resumed_after(&sse), "earliest");
    assert_eq!(ids(&sse.events(3, WAIT).await), ["3", "4", "5"]);
}

#[tokio::test]
async fn an_unknown_or_evicted_id_replays_all_history() {
    let hub = TestHub::protocol(&["--history-size", "3"]);
    let empty = hub
        .subscribe(&["/r"], &[], &[("Last-Event-ID", "nope")])
        .await;
    assert_eq!(resumed_after(&empty), "earliest");
    publish_n(&hub, "/r", &["1", "2", "3", "4"]).await;
    // "1" has been evicted: everything still held is newer than it.
    for unknown in ["nope", "1"] {
        let mut sse = hub
            .subscribe(&["/r"], &[], &[("Last-Event-ID", unknown)])
            .await;
        assert_eq!(resumed_after(&sse), "earliest");
        assert_eq!(ids(&sse.events(3, WAIT).await), ["2", "3", "4"]);
    }
}

#[tokio::test]
async fn after_a_restart_a_client_resumes_with_what_the_new_hub_holds() {
    let mut hub = TestHub::protocol(&[]);
    let mut sse = hub.subscribe(&["/r"], &[], &[]).await;
    publish_n(&hub, "/r", &["before"]).await;
    assert_eq!(ids(&sse.events(1, WAIT).await), ["before"]);
    hub.terminate();
    assert!(hub.wait_exit(WAIT).is_some());
    let hub = TestHub::protocol(&[]);
    publish_n(&hub, "/r", &["while-reconnecting"]).await;
    let mut again = hub
        .subscribe(&["/r"], &[], &[("Last-Event-ID", "before")])
        .await;
    assert_eq!(ids(&again.events(1, WAIT).await), ["while-reconnecting"]);
}

#[tokio::test]
async fn no_last_event_id_means_no_header_and_live_updates_only() {
    let hub = TestHub::protocol(&[]);
    publish_n(&hub, "/r", &["old"]).await;
    let mut sse = hub.subscribe(&["/r"], &[], &[]).await;
    assert!(sse.response_headers.get("last-event-id").is_none());
    assert_eq!(cursor_fields(&sse), None);
    // An empty cursor is no cursor.
    let empty = hub.subscribe(&["/r"], &[], &[("Last-Event-ID", "")]).await;
    assert_eq!(cursor_fields(&empty), None);
    publish_n(&hub, "/r", &["new"]).await;
    assert_eq!(ids(&sse.events(1, WAIT).await), ["new"]);
}

/// The `Mercure-Last-Event-ID` response field, after checking that the 0.x `Last-Event-ID`
/// response header says the same (or is absent with it).
fn cursor_fields(sse: &SseClient) -> Option<&str> {
    let field = |name| sse.response_headers.get(name).map(|v| v.to_str().unwrap());
    let mercure = field("mercure-last-event-id");
    assert_eq!(mercure, field("last-event-id"), "both headers agree");
    mercure
}

#[tokio::test]
async fn mercure_last_event_id_names_the_update_the_replay_starts_after() {
    let hub = TestHub::protocol(&[]);
    publish_n(&hub, "/r", &["a", "b", "c"]).await;
    // A cursor with updates after it, by header and by query parameter.
    let mut by_header = hub.subscribe(&["/r"], &[], &[("Last-Event-ID", "a")]).await;
    assert_eq!(cursor_fields(&by_header), Some("a"));
    assert_eq!(ids(&by_header.events(2, WAIT).await), ["b", "c"]);
    let mut by_query = hub.subscribe(&["/r"], &[("lastEventID", "b")], &[]).await;
    assert_eq!(cursor_fields(&by_query), Some("b"));
    assert_eq!(ids(&by_query.events(1, WAIT).await), ["c"]);
    // The newest id: nothing to replay, the next update sent is the next published.
    let mut newest = hub.subscribe(&["/r"], &[], &[("Last-Event-ID", "c")]).await;
    assert_eq!(cursor_fields(&newest), Some("c"));
    publish_n(&hub, "/r", &["d"]).await;
    assert_eq!(ids(&newest.events(1, WAIT).await), ["d"]);
}

#[tokio::test]
async fn mercure_last_event_id_is_earliest_when_no_update_precedes_the_replay() {
    let hub = TestHub::protocol(&["--history-size", "2"]);
    // Empty history: `earliest` and an unknown id alike.
    for cursor in ["earliest", "nope"] {
        let empty = hub
            .subscribe(&["/r"], &[], &[("Last-Event-ID", cursor)])
            .await;
        assert_eq!(cursor_fields(&empty), Some("earliest"), "{cursor}");
    }
    publish_n(&hub, "/r", &["1", "2", "3"]).await;
    // `earliest`, an id never published and "1", discarded from history: all of history.
    for cursor in ["earliest", "nope", "1"] {
        let mut sse = hub
            .subscribe(&["/r"], &[("lastEventID", cursor)], &[])
            .await;
        assert_eq!(cursor_fields(&sse), Some("earliest"), "{cursor}");
        assert_eq!(ids(&sse.events(2, WAIT).await), ["2", "3"], "{cursor}");
    }
}

#[tokio::test]
async fn a_reused_id_resolves_to_its_occurrence_in_history() {
    let hub = TestHub::protocol(&["--history-size", "3"]);
    let mut live = hub.subscribe(&["/r"], &[], &[]).await;
    publish_n(&hub, "/r", &["a", "b"]).await;
    // While "a" is in history, publishing it again is answered and neither stored nor sent.
    assert_eq!(hub.publish_ok(&[("topic", "/r"), ("id", "a")]).await, "a");
    publish_n(&hub, "/r", &["c"]).await;
    assert_eq!(ids(&live.events(3, WAIT).await), ["a", "b", "c"]);
    let mut sse = hub.subscribe(&["/r"], &[], &[("Last-Event-ID", "a")]).await;
    assert_eq!(cursor_fields(&sse), Some("a"));
    assert_eq!(ids(&sse.events(2, WAIT).await), ["b", "c"]);
    // Once it has left history, "a" is a new update again: the cursor now means that one (the
    // hub does not remember the ids it discarded).
    publish_n(&hub, "/r", &["d", "e", "a", "f"]).await;
    assert_eq!(ids(&live.events(4, WAIT).await), ["d", "e", "a", "f"]);
    let mut sse = hub.subscribe(&["/r"], &[], &[("Last-Event-ID", "a")]).await;
    assert_eq!(cursor_fields(&sse), Some("a"));
    publish_n(&hub, "/r", &["g"]).await;
    assert_eq!(ids(&sse.events(2, WAIT).await), ["f", "g"]);
}

#[tokio::test]
async fn replayed_private_updates_are_checked_against_the_current_token() {
    let hub = TestHub::protocol(&[]);
    let bearer = |selectors: &[&str]| {
        let token = token(json!({ "subscribe": selectors }));
        format!("Bearer {token}")
    };
    let (covers, shrunk) = (bearer(&["/p"]), bearer(&["/q"]));
    // Authorized when it was published: this subscriber received the private update live.
    let mut before = hub
        .subscribe(&["/p"], &[], &[("Authorization", covers.as_str())])
        .await;
    publish_n(&hub, "/p", &["public-1"]).await;
    hub.publish_ok(&[("topic", "/p"), ("id", "secret"), ("private", "on")])
        .await;
    publish_n(&hub, "/p", &["public-2"]).await;
    assert_eq!(
        ids(&before.events(3, WAIT).await),
        ["public-1", "secret", "public-2"]
    );
    // Reconnecting with a token that no longer covers "/p", or none: the public updates only.
    for headers in [
        vec![
            ("Last-Event-ID", "public-1"),
            ("Authorization", shrunk.as_str()),
        ],
        vec![("Last-Event-ID", "public-1")],
    ] {
        let mut sse = hub.subscribe(&["/p"], &[], &headers).await;
        assert_eq!(cursor_fields(&sse), Some("public-1"));
        assert_eq!(ids(&sse.events(1, WAIT).await), ["public-2"], "{headers:?}");
    }
    // With a token that still covers it, the private update is replayed.
    let mut sse = hub
        .subscribe(
            &["/p"],
            &[("lastEventID", "earliest")],
            &[("Authorization", covers.as_str())],
        )
        .await;
    assert_eq!(
        ids(&sse.events(3, WAIT).await),
        ["public-1", "secret", "public-2"]
    );
}

#[tokio::test]
async fn cors_lets_pages_read_where_the_replay_starts() {
    let hub = TestHub::protocol(&["--cors-origin", "https://app.example"]);
    publish_n(&hub, "/r", &["a"]).await;
    let url = hub.url("/.well-known/mercure?topic=%2Fr&lastEventID=a");
    let sse = SseClient::connect(&url, &[("Origin", "https://app.example")]).await;
    assert_eq!(sse.status, 200);
    assert_eq!(cursor_fields(&sse), Some("a"));
    let exposed = sse.response_headers["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    let exposed: Vec<&str> = exposed.split(',').map(str::trim).collect();
    for name in ["mercure-last-event-id", "last-event-id"] {
        assert!(exposed.contains(&name), "{name} in {exposed:?}");
    }
}
