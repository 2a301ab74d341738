//! `/metrics` (Prometheus text format) and `/readyz`.

use std::time::Duration;

use crate::helpers::{client, wait_until, TestHub, KEY};

/// The value of an unlabelled (or exactly labelled) sample in a Prometheus text page.
pub(crate) fn sample(page: &str, name: &str) -> f64 {
    page.lines()
        .find_map(|line| {
            line.strip_prefix(name)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no sample {name} in:\n{page}"))
}

pub(crate) async fn metrics(hub: &TestHub) -> String {
    let response = client().get(hub.url("/metrics")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    response.text().await.unwrap()
}

#[tokio::test]
async fn metrics_move_as_subscribers_come_and_go_and_updates_flow() {
    let hub = TestHub::protocol(&["--keep-alive", "200ms"]);
    let before = metrics(&hub).await;
    assert_eq!(sample(&before, "sse_hub_subscribers"), 0.0);
    assert_eq!(sample(&before, "sse_hub_events_published_total"), 0.0);
    assert_eq!(sample(&before, "sse_hub_transport_up"), 1.0);

    let mut a = hub.subscribe(&["/m", "/n"], &[], &[]).await;
    let b = hub.subscribe(&["/m"], &[], &[]).await;
    let during = metrics(&hub).await;
    assert_eq!(sample(&during, "sse_hub_subscribers"), 2.0);
    assert_eq!(sample(&during, "sse_hub_subscriptions"), 3.0);

    for _ in 0..3 {
        hub.publish_ok(&[("topic", "/m"), ("data", "x")]).await;
    }
    a.events(3, Duration::from_secs(5)).await;
    let flowing = metrics(&hub).await;
    assert_eq!(sample(&flowing, "sse_hub_events_published_total"), 3.0);
    assert_eq!(sample(&flowing, "sse_hub_deliveries_total"), 6.0);
    assert_eq!(sample(&flowing, "sse_hub_history_updates"), 3.0);
    assert!(sample(&flowing, "sse_hub_history_bytes") > 0.0);
    assert_eq!(
        sample(&flowing, "sse_hub_publish_duration_seconds_count"),
        3.0
    );

    drop(b);
    hub.wait_for_stat("subscribers", 1).await;
    let after = metrics(&hub).await;
    assert_eq!(sample(&after, "sse_hub_subscribers"), 1.0);
    assert_eq!(sample(&after, "sse_hub_subscriptions"), 2.0);
    assert_eq!(
        sample(&after, "sse_hub_subscribers_dropped_total{reason=\"left\"}"),
        1.0
    );
}

#[tokio::test]
async fn readyz_answers_until_shutdown() {
    let mut hub = TestHub::protocol(&[]);
    let ready = client().get(hub.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    hub.terminate();
    assert!(hub
        .wait_exit(Duration::from_secs(10))
        .expect("exits")
        .success());
}

#[tokio::test]
async fn stats_count_the_clock_ticks_apart_from_the_other_updates() {
    let hub = TestHub::spawn(&[
        "--jwt-key",
        KEY,
        "--allow-anonymous",
        "--tick-interval",
        "100ms",
    ]);
    let ticked = wait_until(Duration::from_secs(10), || async {
        hub.stats().await["ticks_published"].as_u64() >= Some(3)
    })
    .await;
    assert!(ticked, "{}", hub.stats().await);
    hub.publish_ok(&[("topic", "/t"), ("data", "x")]).await;
    // The one update published apart from the ticks (a tick counted between the two reads of a
    // snapshot could make one poll's difference one less, never more).
    let one = || async {
        let stats = hub.stats().await;
        let count = |name: &str| stats[name].as_u64().expect("a count");
        count("events_published") - count("ticks_published") == 1
    };
    assert!(
        wait_until(Duration::from_secs(10), one).await,
        "{}",
        hub.stats().await
    );
    let text = metrics(&hub).await;
    assert!(sample(&text, "sse_hub_ticks_total") >= 3.0, "{text}");
}
