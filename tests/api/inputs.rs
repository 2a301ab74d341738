//! Inputs that must be refused rather than quietly altered, and what the hub writes down about
//! requests: each refusal is a clear one-line `400`, and a well-behaved subscriber running
//! alongside keeps receiving every update.

use std::{
    io::Read,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::json;

use crate::{
    hardening::{still_serving, watcher},
    helpers::{client, publisher, token, wait_until, TestHub},
};

/// Posts `body` as it is (already form-encoded) with a publish-everything token.
async fn post_raw(hub: &TestHub, body: &'static str) -> (u16, String) {
    let response = client()
        .post(hub.url("/.well-known/mercure"))
        .bearer_auth(publisher())
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(body)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .expect("POST publish");
    let status = response.status().as_u16();
    (status, response.text().await.expect("body"))
}

/// GETs `path_and_query` as it is (reqwest keeps the escapes it is given).
async fn get_raw(hub: &TestHub, path_and_query: &str) -> (u16, String) {
    let response = client()
        .get(hub.url(path_and_query))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .expect("GET");
    let status = response.status().as_u16();
    (status, response.text().await.expect("body"))
}

fn assert_refused_as_not_utf8((status, body): (u16, String), what: &str) {
    assert_eq!(status, 400, "{what}: {body}");
    assert!(body.contains("not UTF-8"), "{what}: {body}");
    assert_eq!(body.trim_end().lines().count(), 1, "{what}: {body:?}");
}

#[tokio::test]
async fn percent_encoded_bytes_that_are_not_utf8_are_refused_not_replaced() {
    let hub = TestHub::protocol(&[]);
    let mut watch = watcher(&hub).await;
    // Two topics that a lossy decoder would both turn into `/x\u{FFFD}`.
    let mut lossy = hub.subscribe(&["/x\u{FFFD}"], &[], &[]).await;

    for (body, what) in [
        ("topic=%2Fwatch&data=%FF%FEok", "data"),
        ("topic=%2Fx%FF&data=a", "topic"),
        ("topic=%2Fwatch&topic=%2Fx%FE&data=a", "alternate topic"),
        ("topic=%2Fwatch&id=%C3&data=a", "truncated sequence in id"),
        ("topic=%2Fwatch&type=%ED%A0%80&data=a", "surrogate in type"),
        ("topic=%2Fwatch&%FF=1", "field name"),
    ] {
        assert_refused_as_not_utf8(post_raw(&hub, body).await, what);
    }
    for (path, what) in [
        ("/.well-known/mercure?topic=%2Fx%FF", "subscription topic"),
        (
            "/.well-known/mercure?topic=%2Fwatch&lastEventID=%FF",
            "lastEventID",
        ),
        (
            "/.well-known/mercure?topic=%2Fwatch&authorization=%FFx",
            "authorization",
        ),
        ("/events?lastEventID=%C0%AF", "lastEventID on /events"),
    ] {
        assert_refused_as_not_utf8(get_raw(&hub, path).await, what);
    }
    assert_eq!(hub.stats().await["events_published"], 0);

    // Valid escapes still decode: `%2B` is a plus, `+` a space, `%C3%A9` an é.
    let id = hub
        .publish_ok(&[("topic", "/x\u{FFFD}"), ("data", "a+b é")])
        .await;
    let event = lossy
        .next_event(Duration::from_secs(5))
        .await
        .expect("update");
    assert_eq!((event.id, event.data), (Some(id), "a+b é".to_owned()));
    still_serving(&hub, &mut watch).await;
}

#[tokio::test]
async fn tokens_in_query_strings_never_reach_the_access_log() {
    // A short heartbeat: a stream's access line is written when it ends, which the hub notices
    // at its next write after the client left.
    let hub = TestHub::protocol(&["--keep-alive", "200ms"]);
    let mut watch = watcher(&hub).await;
    let subscriber = token(json!({ "subscribe": ["/secret"] }));
    let in_referer = token(json!({ "subscribe": ["/referer"] }));
    let referer = format!("https://app.example/page?access_token={in_referer}&tab=1");
    let sse = hub
        .subscribe(
            &["/secret"],
            &[("authorization", &subscriber)],
            &[("Referer", &referer)],
        )
        .await;
    drop(sse);
    let (status, _) = get_raw(
        &hub,
        "/healthz?ACCESS_TOKEN=first-secret&x=1&Authorization=second-secret&access_token",
    )
    .await;
    assert_eq!(status, 200);

    let expected = [
        "\"GET /.well-known/mercure?topic=%2Fsecret&authorization=[redacted] HTTP/1.1\" 200",
        "\"https://app.example/page?access_token=[redacted]&tab=1\"",
        "\"GET /healthz?ACCESS_TOKEN=[redacted]&x=1&Authorization=[redacted]&access_token=[redacted] HTTP/1.1\" 200",
    ];
    let logged = wait_until(Duration::from_secs(10), || async {
        let logs = hub.logs().join("\n");
        expected.iter().all(|line| logs.contains(line))
    })
    .await;
    let logs = hub.logs().join("\n");
    assert!(logged, "request lines missing from the access log:\n{logs}");
    for secret in [&subscriber, &in_referer, "first-secret", "second-secret"] {
        assert!(!logs.contains(secret), "{secret} was logged:\n{logs}");
    }
    still_serving(&hub, &mut watch).await;
}

#[tokio::test]
async fn a_streams_access_line_has_the_default_fields_and_counts_its_bytes() {
    let hub = TestHub::protocol(&["--keep-alive", "200ms"]);
    let mut sse = hub
        .subscribe(
            &["/counted"],
            &[],
            &[
                ("User-Agent", "probe/1.0"),
                ("Referer", "https://app.example/"),
            ],
        )
        .await;
    // An update the fan-out writes to the waiting stream's socket itself counts too.
    let data = "d".repeat(2000);
    hub.publish_ok(&[("topic", "/counted"), ("data", &data)])
        .await;
    let got = sse.events(1, Duration::from_secs(5)).await;
    assert_eq!(got[0].data, data);
    drop(sse);
    // `addr "request line" status bytes "referer" "user agent" seconds`, actix's default format.
    let line = regex::Regex::new(
        r#"sse_hub::access\] 127\.0\.0\.1 "GET /\.well-known/mercure\?topic=%2Fcounted HTTP/1\.1" 200 (\d+) "https://app\.example/" "probe/1\.0" \d+\.\d{6}$"#,
    )
    .expect("pattern");
    let found = || {
        hub.logs().iter().find_map(|l| {
            line.captures(l)
                .map(|c| c[1].parse::<u64>().expect("bytes"))
        })
    };
    let logged = wait_until(Duration::from_secs(10), || async { found().is_some() }).await;
    assert!(
        logged,
        "no access line for the stream:\n{}",
        hub.logs().join("\n")
    );
    // The opening bytes (`retry:` and a comment) and the update went out before the client
    // left.
    let bytes = found().expect("line");
    assert!(bytes > 2000, "{bytes} bytes logged");
}

#[test]
fn a_port_in_use_is_a_one_line_error_and_exit_code_1() {
    let held = std::net::TcpListener::bind("127.0.0.1:0").expect("hold a port");
    let addr = held.local_addr().expect("its address").to_string();
    // The default tick interval: the ticker is what panicked when started before the bind.
    let mut hub = Command::new(env!("CARGO_BIN_EXE_sse-hub"))
        .args(["--bind", &addr])
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start sse-hub");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = hub.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = hub.kill();
            let _ = hub.wait();
            panic!("sse-hub kept running with {addr} already in use");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    hub.stderr
        .take()
        .expect("piped stderr")
        .read_to_string(&mut stderr)
        .expect("read stderr");
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.contains("ERROR")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(
        errors[0].contains(&format!("cannot listen on {addr}")) && errors[0].contains("in use"),
        "{stderr}"
    );
    drop(held);
}

/// `{+path}` typed by hand into a subscribe URL: the `+` of `%7B+path%7D` is a space once the
/// query string is decoded. The 400 says so; `%2B` works.
#[tokio::test]
async fn a_plus_typed_into_a_selector_is_explained_in_the_400() {
    let hub = TestHub::protocol(&[]);
    let get = |query: &str| {
        let url = hub.url(&format!("/.well-known/mercure?topic={query}"));
        async move {
            let response = client()
                .get(url)
                .timeout(Duration::from_secs(10))
                .send()
                .await
                .expect("GET");
            (response.status().as_u16(), response)
        }
    };
    let (status, response) = get("https://example.com/books/%7B+path%7D").await;
    assert_eq!(status, 400);
    let body = response.text().await.expect("body");
    assert!(
        body.contains("a `+` in a query string becomes one (write `+` as `%2B`)"),
        "{body}"
    );
    let (status, _open) = get("https://example.com/books/%7B%2Bpath%7D").await;
    assert_eq!(status, 200);
}

/// Ids, types and cursors may hold no control or format character (Mercure 1.0): an id travels
/// in the `Last-Event-ID` and `Mercure-Last-Event-ID` header fields, which can't hold them.
#[tokio::test]
async fn control_and_format_characters_in_ids_types_and_cursors_get_400() {
    let hub = TestHub::protocol(&[]);
    for (field, value) in [
        ("id", "a\u{1}b"),
        ("id", "a\u{7f}"),
        ("id", "a\u{85}"),
        ("id", "zero\u{200b}width"),
        ("type", "t\u{feff}"),
    ] {
        let response = hub
            .publish(
                &publisher(),
                &[("topic", "/t"), ("data", "x"), (field, value)],
            )
            .await;
        assert_eq!(response.status(), 400, "{field} {value:?}");
        let body = response.text().await.expect("body");
        assert!(body.contains("control or format characters"), "{body}");
    }
    assert_eq!(hub.stats().await["events_published"], 0);
    let cursor = client()
        .get(hub.url("/.well-known/mercure?topic=/t&lastEventID=a%01b"))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .expect("GET");
    assert_eq!(cursor.status(), 400);
    // An id with non-ASCII text that is not a format character is fine.
    let ok = hub
        .publish(
            &publisher(),
            &[("topic", "/t"), ("data", "x"), ("id", "café-日")],
        )
        .await;
    assert_eq!(ok.status(), 200);
}
