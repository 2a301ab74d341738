//! Overload: subscribers reconnecting all at once with their cursors, and publishers faster
//! than the fan-out (acknowledged once fanned out; refused past `--max-fanout-backlog`).

use std::{
    collections::HashSet,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use crate::helpers::{client, publisher, wait_until, Next, TestHub};
use crate::metrics::{metrics, sample};

const READ: Duration = Duration::from_secs(30);

/// Reads `want` numbered updates (data `0` to `want - 1`) from `topic`, dropping the
/// connection after the events numbered in `drops` and resuming with `Last-Event-ID`; answers
/// the numbers received, in order.
async fn read_resuming(hub: &TestHub, topic: &str, want: usize, drops: [usize; 2]) -> Vec<usize> {
    let mut got = Vec::with_capacity(want);
    let mut last_id: Option<String> = None;
    let mut sse = hub.subscribe(&[topic], &[], &[]).await;
    while got.len() < want {
        if drops.contains(&got.len()) && last_id.is_some() {
            drop(sse);
            let id = last_id.clone().expect("checked above");
            sse = hub
                .subscribe(&[topic], &[], &[("Last-Event-ID", &id)])
                .await;
            let resumed = sse.response_headers.get("last-event-id");
            assert_eq!(resumed.map(|v| v.to_str().unwrap()), Some(id.as_str()));
        }
        match sse.next_event(READ).await {
            Next::Item(event) => {
                got.push(event.data.parse().expect("a numbered update"));
                last_id = event.id;
            }
            other => panic!("after {} updates: {other:?}", got.len()),
        }
    }
    got
}

#[tokio::test]
async fn a_storm_of_subscribers_resuming_with_cursors_gets_every_update_once_in_order() {
    const SUBSCRIBERS: usize = 200;
    const UPDATES: usize = 120;
    // One address opens 200 subscribers and resumes each twice, on purpose: no attempt limit.
    let hub = Arc::new(TestHub::protocol(&[
        "--subscribe-rate",
        "0",
        "--max-subscribers-per-ip",
        "1000",
        "--publish-rate",
        "100000",
        "--publish-burst",
        "100000",
    ]));
    // Each subscriber drops twice, at points spread over the publishing; all of them drop
    // once around the same point too (the storm).
    let readers: Vec<_> = (0..SUBSCRIBERS)
        .map(|i| {
            let hub = Arc::clone(&hub);
            tokio::spawn(
                async move { read_resuming(&hub, "/storm", UPDATES, [40, 41 + i % 70]).await },
            )
        })
        .collect();
    let all_in = wait_until(Duration::from_secs(30), || async {
        hub.stats().await["subscribers"].as_u64() == Some(SUBSCRIBERS as u64)
    })
    .await;
    assert!(all_in, "subscribed: {}", hub.stats().await);
    for n in 0..UPDATES {
        let data = n.to_string();
        hub.publish_ok(&[("topic", "/storm"), ("data", &data)])
            .await;
    }
    let expected: Vec<usize> = (0..UPDATES).collect();
    for (i, reader) in readers.into_iter().enumerate() {
        let got = tokio::time::timeout(Duration::from_secs(120), reader)
            .await
            .expect("every subscriber finishes in time")
            .expect("reader task");
        assert_eq!(got, expected, "subscriber {i}: every update once, in order");
    }
    assert_eq!(hub.stats().await["fanout_backlog"], 0);
}

/// Publishes update `id` until the hub takes it: every `503` must say when to retry and which
/// id to retry with. Answers how many `503`s it got.
async fn publish_until_taken(url: &str, token: &str, id: &str) -> u64 {
    let client = client();
    let mut refused = 0;
    loop {
        let response = client
            .post(url)
            .bearer_auth(token)
            .form(&[("topic", "/flood"), ("id", id), ("data", id)])
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .expect("the hub answers every publish");
        match response.status().as_u16() {
            200 => {
                assert_eq!(response.text().await.unwrap(), id);
                return refused;
            }
            503 => {
                let headers = response.headers();
                assert_eq!(headers["retry-after"], "1");
                assert_eq!(headers["mercure-update-id"], id);
                let body = response.text().await.unwrap();
                assert!(body.contains("fan-out is behind"), "{body}");
                refused += 1;
                // Sooner than Retry-After asks: the test wants the flood to go on.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            other => panic!("publish {id}: {other} {}", response.text().await.unwrap()),
        }
    }
}

#[tokio::test]
async fn a_publisher_flood_is_refused_past_the_backlog_bound_and_loses_nothing_acknowledged() {
    const PUBLISHERS: usize = 32;
    let hub = Arc::new(TestHub::protocol(&[
        "--max-fanout-backlog",
        "4",
        "--max-subscribers-per-ip",
        "1000",
        "--queue-capacity",
        "100000",
        "--publish-rate",
        "100000",
        "--publish-burst",
        "100000",
    ]));
    let mut reader = hub.subscribe(&["/flood"], &[], &[]).await;
    // Readers that never read: the fan-out writes to sockets that fill up.
    let mut slow = Vec::new();
    for _ in 0..50 {
        slow.push(hub.subscribe(&["/flood"], &[], &[]).await);
    }

    // The flood goes on until the backlog was seen above 0 and a publish was refused (each at
    // least once), within a bound.
    let (seen_backlog, refusals, published) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let enough = {
        let (seen, refusals) = (Arc::clone(&seen_backlog), Arc::clone(&refusals));
        move || seen.load(Ordering::SeqCst) && refusals.load(Ordering::SeqCst) > 0
    };
    let watcher = {
        let (hub, seen, enough) = (Arc::clone(&hub), Arc::clone(&seen_backlog), enough.clone());
        tokio::spawn(async move {
            let saw = wait_until(Duration::from_secs(60), || async {
                let page = metrics(&hub).await;
                if sample(&page, "sse_hub_fanout_backlog_updates") > 0.0 {
                    seen.store(true, Ordering::SeqCst);
                }
                enough()
            })
            .await;
            assert!(saw, "backlog seen: {}", seen.load(Ordering::SeqCst));
        })
    };
    let publishers: Vec<_> = (0..PUBLISHERS)
        .map(|p| {
            let url = hub.url("/.well-known/mercure");
            let (refusals, published, enough) = (
                Arc::clone(&refusals),
                Arc::clone(&published),
                enough.clone(),
            );
            tokio::spawn(async move {
                let token = publisher();
                let mut taken = Vec::new();
                for i in 0..2000 {
                    if enough() {
                        break;
                    }
                    let id = format!("p{p}-{i}");
                    refusals.fetch_add(
                        publish_until_taken(&url, &token, &id).await,
                        Ordering::SeqCst,
                    );
                    published.fetch_add(1, Ordering::SeqCst);
                    taken.push(id);
                }
                taken
            })
        })
        .collect();
    watcher
        .await
        .expect("the backlog showed and a publish was refused");
    let mut acknowledged = HashSet::new();
    for publisher in publishers {
        acknowledged.extend(publisher.await.expect("publisher"));
    }
    assert!(refusals.load(Ordering::SeqCst) > 0);

    // Every acknowledged update reaches the reading subscriber exactly once.
    let mut received = HashSet::new();
    while received.len() < acknowledged.len() {
        let event = reader
            .next_event(READ)
            .await
            .expect("an acknowledged update");
        assert!(
            acknowledged.contains(&event.data),
            "{} was never acknowledged",
            event.data
        );
        assert!(received.insert(event.data.clone()), "{} twice", event.data);
    }
    // Then the backlog drains back to 0 and the hub still serves.
    let drained = wait_until(Duration::from_secs(30), || async {
        sample(&metrics(&hub).await, "sse_hub_fanout_backlog_updates") == 0.0
            && hub.stats().await["fanout_backlog"] == 0
    })
    .await;
    assert!(drained, "{}", metrics(&hub).await);
    let page = metrics(&hub).await;
    assert_eq!(sample(&page, "sse_hub_fanout_backlog_oldest_seconds"), 0.0);
    let health = client().get(hub.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    drop(slow);
    let after = hub
        .publish_ok(&[("topic", "/flood"), ("data", "after")])
        .await;
    let event = reader
        .next_event(READ)
        .await
        .expect("an update after the flood");
    assert_eq!(
        (event.id.as_deref(), event.data.as_str()),
        (Some(after.as_str()), "after")
    );
    assert!(published.load(Ordering::SeqCst) > 0);
}

#[tokio::test]
async fn a_bad_backlog_bound_is_refused_at_start() {
    let output = std::process::Command::new(TestHub::binary())
        .args(["--max-fanout-backlog", "lots"])
        .output()
        .expect("run the hub");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--max-fanout-backlog"), "{stderr}");
}
