//! Durable history: a real hub process on a real disk, killed and restarted.

use std::{
    collections::HashSet,
    path::Path,
    process::Command,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use crate::helpers::{client, publisher, wait_until, Next, SseClient, TestHub, KEY};

const WAIT: Duration = Duration::from_secs(10);

/// A hub keeping its history in `dir`.
fn hub_in(dir: &Path, extra: &[&str]) -> TestHub {
    let mut args = vec!["--data-dir", dir.to_str().unwrap()];
    args.extend_from_slice(extra);
    TestHub::protocol(&args)
}

/// Subscribes to `topic` resuming after `last_event_id` and reads until `want` ids have come
/// (or nothing more comes for a while); returns the ids in the order received.
async fn resume(hub: &TestHub, topic: &str, last_event_id: &str, want: usize) -> Vec<String> {
    let mut sse = hub
        .subscribe(&[topic], &[], &[("Last-Event-ID", last_event_id)])
        .await;
    let mut ids = Vec::new();
    while ids.len() < want {
        match sse.next_event(Duration::from_secs(3)).await {
            Next::Item(event) => ids.push(event.id.unwrap()),
            Next::End | Next::TimedOut => break,
        }
    }
    // Anything beyond what was expected would be a duplicate: look a little longer.
    if let Next::Item(event) = sse.next_event(Duration::from_millis(300)).await {
        ids.push(event.id.unwrap());
    }
    ids
}

#[tokio::test]
async fn every_acknowledged_update_survives_kill_9_during_a_publish_flood() {
    let dir = tempfile::tempdir().unwrap();
    let mut hub = hub_in(
        dir.path(),
        &["--publish-rate", "100000", "--publish-burst", "100000"],
    );
    let start = hub
        .publish_ok(&[("topic", "/flood"), ("id", "start")])
        .await;
    // Four publishers, each waiting for its answer before the next publish (so each one's
    // acknowledged updates have a known order).
    let stop = Arc::new(AtomicBool::new(false));
    let mut publishers = Vec::new();
    for p in 0..4 {
        let url = hub.url("/.well-known/mercure");
        let stop = Arc::clone(&stop);
        publishers.push(tokio::spawn(async move {
            let (client, token) = (client(), publisher());
            let mut acknowledged = Vec::new();
            for i in 0.. {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let id = format!("p{p}-{i}");
                let form = [("topic", "/flood"), ("id", id.as_str()), ("data", "x")];
                let sent = client
                    .post(&url)
                    .bearer_auth(&token)
                    .form(&form)
                    .timeout(Duration::from_secs(5))
                    .send()
                    .await;
                match sent {
                    Ok(response) if response.status() == 200 => acknowledged.push(id),
                    // The hub is gone: what it never acknowledged may or may not be stored.
                    _ => break,
                }
            }
            acknowledged
        }));
    }
    // Kill while the publishers are busy, once a good number went through.
    let flowing = wait_until(WAIT, || async {
        hub.stats().await["events_published"].as_u64().unwrap_or(0) > 400
    })
    .await;
    assert!(flowing, "the flood never got going");
    hub.kill();
    stop.store(true, Ordering::Relaxed);
    let mut acknowledged = Vec::new();
    for task in publishers {
        acknowledged.push(task.await.unwrap());
    }
    let total: usize = acknowledged.iter().map(Vec::len).sum();
    // The hub counted over 400 (the start update included); answers in flight when it died
    // (at most one per publisher) never reached their publishers.
    assert!(total >= 396, "only {total} acknowledged");

    let hub = hub_in(dir.path(), &[]);
    let replayed = resume(&hub, "/flood", &start, total + 8).await;
    let unique: HashSet<&String> = replayed.iter().collect();
    assert_eq!(unique.len(), replayed.len(), "an update was replayed twice");
    for (p, acked) in acknowledged.iter().enumerate() {
        // This publisher's updates, in the order replayed; they may end with one the hub
        // stored but could not acknowledge before it died.
        let prefix = format!("p{p}-");
        let mine: Vec<&String> = replayed
            .iter()
            .filter(|id| id.starts_with(&prefix))
            .collect();
        assert!(
            mine.len() >= acked.len() && mine.len() <= acked.len() + 1,
            "publisher {p}: {} acknowledged, {} replayed",
            acked.len(),
            mine.len()
        );
        assert!(
            mine.iter().zip(acked).all(|(got, sent)| *got == sent),
            "publisher {p}: an acknowledged update is missing or out of order"
        );
    }
    eprintln!(
        "{total} acknowledged before kill -9, {} replayed after the restart",
        replayed.len()
    );
}

#[tokio::test]
async fn a_subscriber_away_during_a_restart_resumes_exactly_where_it_left() {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub_in(dir.path(), &[]);
    let mut sse = hub.subscribe(&["/away"], &[], &[]).await;
    for id in ["a1", "a2"] {
        hub.publish_ok(&[("topic", "/away"), ("id", id)]).await;
    }
    let seen = sse.events(2, WAIT).await;
    let last = seen[1].id.clone().unwrap();
    drop(sse);
    // Published while the subscriber is away, then a graceful restart.
    for id in ["a3", "a4", "a5"] {
        hub.publish_ok(&[("topic", "/away"), ("id", id)]).await;
    }
    hub.terminate();
    let mut hub = hub;
    assert!(hub.wait_exit(WAIT).is_some_and(|s| s.success()));
    let hub = hub_in(dir.path(), &[]);
    let mut again = hub
        .subscribe(&["/away"], &[], &[("Last-Event-ID", last.as_str())])
        .await;
    assert_eq!(
        again.response_headers["last-event-id"], "a2",
        "the id is known after the restart"
    );
    let ids: Vec<String> = again
        .events(3, WAIT)
        .await
        .into_iter()
        .map(|e| e.id.unwrap())
        .collect();
    assert_eq!(ids, ["a3", "a4", "a5"]);
    let live = hub.publish_ok(&[("topic", "/away"), ("id", "a6")]).await;
    assert_eq!(again.next_event(WAIT).await.expect("live").id, Some(live));
}

#[tokio::test]
async fn a_retried_publish_is_delivered_once_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub_in(dir.path(), &[]);
    hub.publish_ok(&[("topic", "/retry"), ("id", "once"), ("data", "1")])
        .await;
    drop(hub);
    let hub = hub_in(dir.path(), &[]);
    let mut sse = hub.subscribe(&["/retry"], &[], &[]).await;
    // The retry of an update stored before the crash: answered, not stored or sent again.
    let retry = hub
        .publish(
            &publisher(),
            &[("topic", "/retry"), ("id", "once"), ("data", "1")],
        )
        .await;
    assert_eq!(retry.status(), 200);
    assert_eq!(retry.text().await.unwrap(), "once");
    let next = hub.publish_ok(&[("topic", "/retry"), ("id", "next")]).await;
    assert_eq!(
        sse.next_event(WAIT).await.expect("an update").id,
        Some(next)
    );
    let all = resume(&hub, "/retry", "earliest", 2).await;
    assert_eq!(all, ["once", "next"]);
}

#[tokio::test]
async fn history_past_its_max_age_leaves_memory_and_disk() {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub_in(dir.path(), &["--history-max-age", "2s"]);
    hub.publish_ok(&[("topic", "/age"), ("id", "old")]).await;
    let expired = wait_until(WAIT, || async {
        hub.stats().await["history_len"].as_u64() == Some(0)
    })
    .await;
    assert!(expired, "the old update never expired");
    hub.publish_ok(&[("topic", "/age"), ("id", "new")]).await;
    drop(hub);
    // After a restart, with no age limit at all: the expired update was deleted from disk.
    let hub = hub_in(dir.path(), &[]);
    assert_eq!(hub.stats().await["history_len"], 1);
    assert_eq!(resume(&hub, "/age", "earliest", 1).await, ["new"]);
}

#[tokio::test]
async fn retention_by_count_holds_on_disk_even_through_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut hub = hub_in(dir.path(), &["--history-size", "3"]);
    for i in 0..10 {
        hub.publish_ok(&[("topic", "/count"), ("id", &format!("c{i}"))])
            .await;
    }
    // What each publish evicted was deleted in its commit: even a crash right after the last
    // answer leaves nothing older on disk.
    hub.kill();
    let hub = hub_in(dir.path(), &["--history-size", "100"]);
    assert_eq!(
        resume(&hub, "/count", "earliest", 3).await,
        ["c7", "c8", "c9"]
    );
}

#[tokio::test]
async fn a_full_disk_refuses_publishes_with_507_and_keeps_serving_subscribers() {
    let dir = tempfile::tempdir().unwrap();
    // A 2 MiB file size limit stands in for a full disk (writes past it fail with EFBIG; the
    // signal that would kill the process is ignored, as a server's would be). A soft limit,
    // so it can be lifted again.
    let script = format!(
        "trap '' XFSZ; ulimit -S -f 2048; exec {} --bind 127.0.0.1:0 --jwt-key {KEY} \
         --allow-anonymous --tick-interval 100ms --history-bytes 1000000000 --data-dir {}",
        TestHub::binary(),
        dir.path().display()
    );
    let mut command = Command::new("bash");
    command.args(["-c", &script]);
    let hub = TestHub::spawn_command(command);
    let mut ticks = SseClient::connect(&hub.url("/events"), &[]).await;
    assert_eq!(ticks.status, 200);
    let mut watch = hub.subscribe(&["/full"], &[], &[]).await;
    let data = "f".repeat(64 * 1024);
    let mut accepted = Vec::new();
    let refusal = loop {
        assert!(accepted.len() < 200, "the disk never filled");
        let response = hub
            .publish(&publisher(), &[("topic", "/full"), ("data", &data)])
            .await;
        if response.status() != 200 {
            break response;
        }
        accepted.push(response.text().await.unwrap());
    };
    assert_eq!(refusal.status(), 507);
    let reason = refusal.text().await.unwrap();
    assert!(reason.contains("disk is full"), "{reason}");
    // Every accepted update reached the subscriber; the refused one did not.
    let got: Vec<String> = watch
        .events(accepted.len(), WAIT)
        .await
        .into_iter()
        .map(|e| e.id.unwrap())
        .collect();
    assert_eq!(got, accepted);
    assert!(matches!(
        watch.next_event(Duration::from_millis(500)).await,
        Next::TimedOut
    ));
    // Still serving: live ticks flow, health answers, a retry is refused the same way.
    for _ in 0..2 {
        let tick = ticks.next_event(WAIT).await.expect("a tick");
        assert_eq!(tick.event.as_deref(), Some("time"));
    }
    let health = client().get(hub.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let again = hub
        .publish(&publisher(), &[("topic", "/full"), ("data", &data)])
        .await;
    assert_eq!(again.status(), 507);
    // Room again: within a second or so the store catches up, and publishes are taken.
    let pid = i32::try_from(hub.pid()).unwrap();
    let unlimited = (rlimit::INFINITY, rlimit::INFINITY);
    rlimit::prlimit(pid, rlimit::Resource::FSIZE, Some(unlimited), None).unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    let after = loop {
        let response = hub
            .publish(&publisher(), &[("topic", "/full"), ("data", &data)])
            .await;
        if response.status() == 200 {
            break response.text().await.unwrap();
        }
        assert_eq!(response.status(), 507);
        assert!(
            std::time::Instant::now() < deadline,
            "publishing never worked again"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let event = watch
        .next_event(WAIT)
        .await
        .expect("the update after the room came back");
    assert_eq!(event.id.as_deref(), Some(after.as_str()));
}

#[tokio::test]
async fn updates_on_both_sides_of_a_checkpoint_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut hub = hub_in(dir.path(), &["--history-size", "4"]);
    for id in ["a1", "a2", "a3"] {
        hub.publish_ok(&[("topic", "/cp"), ("id", id)]).await;
    }
    // Within a second the journal is copied into the database and starts over (its first
    // record header zeroed).
    let journal = dir.path().join("history.journal");
    let started_over = wait_until(WAIT, || async {
        let bytes = std::fs::read(&journal).unwrap();
        bytes[..24].iter().all(|&b| b == 0)
    })
    .await;
    assert!(started_over, "the journal never started over");
    // These are in the journal only; the last one pushes a1 out of history (a journaled
    // deletion).
    for id in ["b1", "b2"] {
        hub.publish_ok(&[("topic", "/cp"), ("id", id)]).await;
    }
    hub.kill();
    let hub = hub_in(dir.path(), &["--history-size", "100"]);
    assert_eq!(
        resume(&hub, "/cp", "earliest", 4).await,
        ["a2", "a3", "b1", "b2"]
    );
}

/// A start on a full disk with updates left in the journal by a crash: loading needs no room,
/// so the hub starts and serves them; copying them into the database fails and is retried,
/// while publishes still go to the journal (which has its room from the start). Once there is
/// room the copy is made, and a later start finds every update.
#[tokio::test]
async fn a_start_on_a_full_disk_serves_the_journal_and_catches_up_once_there_is_room() {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("history.journal");
    let journal_holds_records = || {
        std::fs::read(&journal).unwrap()[..24]
            .iter()
            .any(|&b| b != 0)
    };
    // The copy into the database runs within a second of a publish: a hub killed at once has
    // not run it (checked; tried again if it had).
    let mut expected = Vec::new();
    for attempt in 0..5 {
        let mut hub = hub_in(dir.path(), &[]);
        let id = format!("s{attempt}");
        hub.publish_ok(&[("topic", "/start"), ("id", &id)]).await;
        expected.push(id);
        hub.kill();
        if journal_holds_records() {
            break;
        }
    }
    assert!(journal_holds_records(), "each crash came after the copy");
    // The journal's records lie in its first 4 KiB and the database's pages past them (its
    // header aside): a 4 KiB file size limit lets the journal be appended to and fails the
    // copy, as a full disk would once the journal's room is taken.
    let script = format!(
        "trap '' XFSZ; ulimit -S -f 4; exec {} --bind 127.0.0.1:0 --jwt-key {KEY} \
         --allow-anonymous --tick-interval 0 --data-dir {}",
        TestHub::binary(),
        dir.path().display()
    );
    let mut command = Command::new("bash");
    command.args(["-c", &script]);
    let mut hub = TestHub::spawn_command(command);
    assert_eq!(
        resume(&hub, "/start", "earliest", expected.len()).await,
        expected
    );
    let copy_failed = || hub.logged("could not copy the journal into the database");
    assert!(
        wait_until(WAIT, || async { copy_failed() }).await,
        "{:?}",
        hub.logs()
    );
    for id in ["d1", "d2"] {
        hub.publish_ok(&[("topic", "/start"), ("id", id)]).await;
        expected.push(id.to_owned());
    }
    assert!(journal_holds_records());
    // Room again: within a second or so the copy is made and the journal starts over.
    let pid = i32::try_from(hub.pid()).unwrap();
    let unlimited = (rlimit::INFINITY, rlimit::INFINITY);
    rlimit::prlimit(pid, rlimit::Resource::FSIZE, Some(unlimited), None).unwrap();
    assert!(
        wait_until(WAIT, || async { !journal_holds_records() }).await,
        "the journal was never copied: {:?}",
        hub.logs()
    );
    hub.kill();
    // From the database alone now.
    let hub = hub_in(dir.path(), &[]);
    assert_eq!(
        resume(&hub, "/start", "earliest", expected.len()).await,
        expected
    );
}

/// Starts the hub on `dir` expecting it to refuse: its exit status and what it logged.
fn refused_start(dir: &Path) -> (std::process::ExitStatus, String) {
    let mut child = Command::new(TestHub::binary())
        .args([
            "--bind",
            "127.0.0.1:0",
            "--jwt-key",
            KEY,
            "--tick-interval",
            "0",
        ])
        .arg("--data-dir")
        .arg(dir)
        .env("RUST_LOG", "info")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start sse-hub");
    let deadline = std::time::Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("sse-hub started on damaged storage");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    (status, stderr)
}

/// Asserts a refusal to start: exit code 1 and one error line that names `file` and the way
/// out, and no panic.
fn assert_refused(dir: &Path, file: &str) -> String {
    let (status, stderr) = refused_start(dir);
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.contains("ERROR")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(
        errors[0].contains(file) && errors[0].contains("--salvage"),
        "{stderr}"
    );
    errors[0].to_owned()
}

/// The files in `dir` whose name starts with `prefix`.
fn named(dir: &Path, prefix: &str) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(prefix))
        .collect()
}

/// The journal's records of its current epoch (what the first record's header names): each
/// one's offset and body, by the layout of `src/history/journal.rs` (24-byte header: length, CRC-32,
/// epoch, sequence in the low 32 bits of the last field).
fn journal_records(journal: &[u8]) -> Vec<(usize, &[u8])> {
    let field = |at: usize, n: usize| {
        let mut le = [0u8; 8];
        le[..n].copy_from_slice(&journal[at..at + n]);
        u64::from_le_bytes(le)
    };
    let epoch = field(8, 8);
    let mut records = Vec::new();
    let mut at = 0;
    while at + 24 <= journal.len() {
        let len = usize::try_from(field(at, 4)).unwrap();
        let seq = field(at + 16, 4);
        if len == 0 || field(at + 8, 8) != epoch || seq != records.len() as u64 {
            break;
        }
        let body = &journal[at + 24..at + 24 + len];
        if crc32fast::hash(&[&epoch.to_le_bytes()[..], &journal[at + 16..at + 24], body].concat())
            != u32::try_from(field(at + 4, 4)).unwrap()
        {
            break;
        }
        records.push((at, body));
        at += 24 + len;
    }
    records
}

/// The id of an update's journal record (tag, key, accepted at, private, then the id with its
/// length).
fn record_id(body: &[u8]) -> String {
    assert_eq!(body[0], 0, "an update's record");
    let len = usize::try_from(u64::from_le_bytes(body[18..26].try_into().unwrap())).unwrap();
    String::from_utf8(body[26..26 + len].to_vec()).unwrap()
}

/// Issue 20, item 3: a byte flipped in the middle of the journal used to end what was read
/// there (a torn write), so every later acknowledged update vanished with one INFO line, and
/// the next publish wrote over them.
#[tokio::test]
async fn a_damaged_journal_record_stops_the_start_and_salvage_keeps_every_record_that_verifies() {
    // Publishes land in the journal and are copied into the database within a second: the
    // flood is tried again until the kill finds enough of it still in the journal.
    let mut attempt = 0;
    let (dir, acknowledged, journal) = loop {
        attempt += 1;
        assert!(attempt <= 5, "every kill came after the journal was copied");
        let dir = tempfile::tempdir().unwrap();
        let mut hub = hub_in(
            dir.path(),
            &["--publish-rate", "100000", "--publish-burst", "100000"],
        );
        let mut acknowledged = Vec::new();
        for batch in 0..30 {
            let sent = (0..10).map(|i| {
                let id = format!("j{}", batch * 10 + i);
                let hub = &hub;
                async move { hub.publish_ok(&[("topic", "/j"), ("id", &id)]).await }
            });
            acknowledged.extend(futures_util::future::join_all(sent).await);
        }
        hub.kill();
        let journal = std::fs::read(dir.path().join("history.journal")).unwrap();
        if journal_records(&journal).len() >= 30 {
            break (dir, acknowledged, journal);
        }
    };
    // A byte of a record a third of the way in (later commits follow it) flipped.
    let records = journal_records(&journal);
    let (offset, body) = records[records.len() / 3];
    let lost = record_id(body);
    let mut damaged = journal.clone();
    damaged[offset + 24 + body.len() - 1] ^= 0x01;
    let path = dir.path().join("history.journal");
    std::fs::write(&path, &damaged).unwrap();

    eprintln!(
        "attempt {attempt}: {} of {} acknowledged records in the journal; record {} ({lost}) damaged",
        records.len(),
        acknowledged.len(),
        records.len() / 3
    );
    let line = assert_refused(dir.path(), "history.journal");
    eprintln!("{line}");
    assert!(
        line.contains(&format!("record {}", records.len() / 3)),
        "{line}"
    );
    // Nothing was written over: the damaged journal is as it was.
    assert!(std::fs::read(&path).unwrap() == damaged);

    let hub = hub_in(dir.path(), &["--salvage"]);
    assert!(hub.logged("--salvage"), "{:?}", hub.logs());
    let aside = named(dir.path(), "history.journal.damaged-");
    assert_eq!(aside.len(), 1, "{:?}", hub.logs());
    assert!(std::fs::read(&aside[0]).unwrap() == damaged);
    // A bystander replaying everything gets every acknowledged update but the damaged one,
    // then what comes next.
    let expected: Vec<String> = acknowledged.into_iter().filter(|id| *id != lost).collect();
    let mut bystander = hub
        .subscribe(&["/j"], &[], &[("Last-Event-ID", "earliest")])
        .await;
    let replayed: Vec<String> = bystander
        .events(expected.len(), WAIT)
        .await
        .into_iter()
        .map(|e| e.id.unwrap())
        .collect();
    assert_eq!(replayed.len(), expected.len());
    let (mut got, mut want) = (replayed.clone(), expected.clone());
    got.sort();
    want.sort();
    assert_eq!(got, want, "lost {lost}");
    let next = hub.publish_ok(&[("topic", "/j"), ("id", "after")]).await;
    assert_eq!(
        bystander.next_event(WAIT).await.expect("live").id,
        Some(next)
    );
    // The salvaged store is whole: a plain start serves the same.
    drop(hub);
    let hub = hub_in(dir.path(), &[]);
    assert_eq!(
        resume(&hub, "/j", "earliest", expected.len() + 1)
            .await
            .len(),
        expected.len() + 1
    );
}

/// Issue 20, item 4: a payload edited inside `history.redb` used to be replayed as good (redb
/// checks its pages only when recovering from a crash), and a row that no longer parsed
/// stopped the hub with no way out but deleting the store.
#[tokio::test]
async fn an_altered_stored_update_stops_the_start_and_salvage_keeps_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let mut hub = hub_in(dir.path(), &[]);
    let mut ids = Vec::new();
    for i in 0..20 {
        let data = format!("payload-{i:02}");
        ids.push(
            hub.publish_ok(&[
                ("topic", "/rows"),
                ("id", &format!("r{i}")),
                ("data", &data),
            ])
            .await,
        );
    }
    // A graceful stop copies the journal into the database.
    hub.terminate();
    assert!(hub.wait_exit(WAIT).is_some_and(|s| s.success()));
    drop(hub);
    let path = dir.path().join("history.redb");
    let mut db = std::fs::read(&path).unwrap();
    let (from, to) = (b"payload-07", b"PAYLOAD-07");
    let mut edits = 0;
    for at in 0..db.len() - from.len() {
        if &db[at..at + from.len()] == from {
            db[at..at + from.len()].copy_from_slice(to);
            edits += 1;
        }
    }
    assert!(edits > 0, "the payload is not in the database file");
    std::fs::write(&path, &db).unwrap();

    let line = assert_refused(dir.path(), "history.redb");
    eprintln!("{line}");
    assert!(line.contains("1 stored update(s) do not verify"), "{line}");
    // The altered row is left as it is (redb rewrites its own allocator state on close).
    let occurrences = |file: &[u8]| file.windows(to.len()).filter(|w| w == to).count();
    assert_eq!(occurrences(&std::fs::read(&path).unwrap()), edits);

    let hub = hub_in(dir.path(), &["--salvage"]);
    let aside = named(dir.path(), "history.redb.damaged-");
    assert_eq!(aside.len(), 1, "{:?}", hub.logs());
    assert_eq!(occurrences(&std::fs::read(&aside[0]).unwrap()), edits);
    let mut bystander = hub
        .subscribe(&["/rows"], &[], &[("Last-Event-ID", "earliest")])
        .await;
    let replayed = bystander.events(19, WAIT).await;
    let expected: Vec<&String> = ids.iter().filter(|id| *id != "r7").collect();
    assert_eq!(
        replayed
            .iter()
            .map(|e| e.id.as_ref().unwrap())
            .collect::<Vec<_>>(),
        expected
    );
    assert!(replayed.iter().all(|e| !e.data.contains("PAYLOAD")));
    let next = hub.publish_ok(&[("topic", "/rows"), ("id", "after")]).await;
    assert_eq!(
        bystander.next_event(WAIT).await.expect("live").id,
        Some(next)
    );
    drop(hub);
    let hub = hub_in(dir.path(), &[]);
    assert_eq!(resume(&hub, "/rows", "earliest", 20).await.len(), 20);
}
