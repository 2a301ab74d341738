//! HTTPS and HTTP/2 served by the hub itself (`--tls-cert`, `--tls-key`), checked with curl.

use std::{
    process::{Command, Output},
    time::Duration,
};

use crate::{
    helpers::{publisher, wait_until, TestHub, KEY},
    nginx::self_signed_certificate,
};

/// `curl` over HTTPS (the self-signed certificate is trusted with `-k`).
fn curl(args: &[&str]) -> Output {
    Command::new("curl")
        .args(["-sk", "--max-time", "5"])
        .args(args)
        .output()
        .expect("run curl (apt-get install curl; .ci/run does)")
}

/// The head and the first two seconds of a stream, over the HTTP version `version` names.
fn two_seconds_of(url: &str, version: &str) -> String {
    let stream = curl(&[version, "-N", "-D", "-", "--max-time", "2", url]);
    String::from_utf8_lossy(&stream.stdout).into_owned()
}

#[tokio::test]
async fn the_hub_serves_https_with_http2_itself() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed_certificate(dir.path());
    let hub = TestHub::spawn(&[
        "--jwt-key",
        KEY,
        "--allow-anonymous",
        "--tick-interval",
        "100ms",
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
    ]);
    assert!(hub
        .logs()
        .iter()
        .any(|l| l.contains("listening on https://")));
    let base = format!("https://{}", hub.addr);
    // A stream over HTTP/2: the head says so, and time events flow (curl stops it at 2 s).
    let text = two_seconds_of(&format!("{base}/events"), "--http2");
    assert!(text.starts_with("HTTP/2 200"), "{text}");
    assert!(text.contains("content-type: text/event-stream"), "{text}");
    assert!(text.matches("event: time").count() >= 3, "{text}");
    // Over HTTP/1.1 with TLS, a stream keeps the chunked framing: only plain connections are
    // written to by the fan-out directly, close-delimited.
    let text = two_seconds_of(&format!("{base}/events"), "--http1.1");
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        text.to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "{text}"
    );
    assert!(text.matches("event: time").count() >= 3, "{text}");
    // Publishing over HTTPS/2 reaches a subscriber over HTTPS/2.
    let subscriber = Command::new("curl")
        .args(["-sk", "--http2", "-N", "--max-time", "6"])
        .arg(format!("{base}/.well-known/mercure?topic=%2Fsecure"))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let subscribed = wait_until(Duration::from_secs(5), || async {
        let stats = curl(&[&format!("{base}/stats")]);
        String::from_utf8_lossy(&stats.stdout).contains("\"subscribers\":1")
    })
    .await;
    assert!(subscribed);
    let bearer = format!("Authorization: Bearer {}", publisher());
    let published = curl(&[
        "--http2",
        "-H",
        &bearer,
        "-d",
        "topic=/secure",
        "-d",
        "id=tls-1",
        "-d",
        "data=over tls",
        &format!("{base}/.well-known/mercure"),
    ]);
    assert_eq!(String::from_utf8_lossy(&published.stdout), "tls-1");
    let out = subscriber.wait_with_output().unwrap();
    let got = String::from_utf8_lossy(&out.stdout);
    assert!(got.contains("id: tls-1\ndata: over tls\n\n"), "{got}");
    // Plain HTTP on the TLS port is not served.
    let plain = curl(&[&format!("http://{}/healthz", hub.addr)]);
    assert!(!String::from_utf8_lossy(&plain.stdout).contains("ok"));
}

#[test]
fn a_bad_certificate_is_one_clear_line_and_exit_code_1() {
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("cert.pem");
    std::fs::write(&cert, "not a certificate\n").unwrap();
    let out = Command::new(TestHub::binary())
        .args(["--bind", "127.0.0.1:0", "--data-dir", "none", "--tls-cert"])
        .arg(&cert)
        .arg("--tls-key")
        .arg(&cert)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("invalid --tls-cert / --tls-key"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"));
}
