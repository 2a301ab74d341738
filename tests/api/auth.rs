//! Authorization: where tokens come from, what they allow, and what is refused.

use std::time::{Duration, Instant};

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use serde_json::json;

use crate::{
    hardening::{still_serving, watcher},
    helpers::{client, now, token, token_with, Next, SseClient, TestHub, KEY},
};

const WAIT: Duration = Duration::from_secs(5);

/// A hub that requires a token to subscribe.
fn hub() -> TestHub {
    TestHub::spawn(&["--jwt-key", KEY, "--tick-interval", "0"])
}

async fn subscribe_status(hub: &TestHub, headers: &[(&str, &str)], query: &str) -> u16 {
    let url = hub.url(&format!("/.well-known/mercure?topic=%2Ft{query}"));
    SseClient::connect(&url, headers).await.status.as_u16()
}

fn unsigned(claims: serde_json::Value) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let body = URL_SAFE_NO_PAD.encode(claims.to_string());
    format!("{header}.{body}.")
}

/// An HS256 token signed with [`KEY`] whose protected header is `header` as written.
fn signed_with_header(header: &serde_json::Value, claims: &serde_json::Value) -> String {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let key = jsonwebtoken::EncodingKey::from_secret(KEY.as_bytes());
    let signature =
        jsonwebtoken::crypto::sign(input.as_bytes(), &key, jsonwebtoken::Algorithm::HS256).unwrap();
    format!("{input}.{signature}")
}

/// The hub understands no JWS extension, so a header with `crit` (RFC 7515 §4.1.11), even an
/// empty or malformed one, makes a token invalid wherever it is presented.
#[tokio::test]
async fn a_token_with_critical_header_parameters_is_refused() {
    let hub = TestHub::protocol(&[]);
    let mut bystander = watcher(&hub).await;
    let claims = json!({ "mercure": { "publish": ["*"], "subscribe": ["*"] } });
    let plain = json!({ "alg": "HS256", "typ": "JWT", "exp2": 1 });
    let critical = |crit: serde_json::Value| {
        let mut header = plain.clone();
        header["crit"] = crit;
        signed_with_header(&header, &claims)
    };
    let refused = [
        ("crit [exp2]", critical(json!(["exp2"]))),
        ("crit []", critical(json!([]))),
        ("crit \"exp2\"", critical(json!("exp2"))),
        ("crit null", critical(json!(null))),
    ];
    // The same header without `crit`, signed the same way, is fine.
    let control = signed_with_header(&plain, &claims);
    assert_eq!(
        hub.publish(&control, &[("topic", "/t")]).await.status(),
        200
    );
    let auth = format!("Bearer {control}");
    assert_eq!(
        subscribe_status(&hub, &[("Authorization", &auth)], "").await,
        200
    );

    for (what, bad) in &refused {
        let response = hub.publish(bad, &[("topic", "/t")]).await;
        assert_eq!(response.status(), 401, "{what}");
        let body = response.text().await.unwrap();
        assert!(body.contains("invalid token"), "{what}: {body}");
        let in_query = client()
            .post(hub.url(&format!("/.well-known/mercure?authorization={bad}")))
            .form(&[("topic", "/t")])
            .send()
            .await
            .unwrap();
        assert_eq!(in_query.status(), 401, "{what} in the query");
    }
    still_serving(&hub, &mut bystander).await;
    for (what, bad) in &refused {
        let header = format!("Bearer {bad}");
        let cookie = format!("mercureAuthorization={bad}");
        let query = format!("&authorization={bad}");
        for (how, headers, query) in [
            ("header", [("Authorization", header.as_str())], ""),
            ("cookie", [("Cookie", cookie.as_str())], ""),
            ("query", [("Accept", "text/event-stream")], query.as_str()),
        ] {
            let status = subscribe_status(&hub, &headers, query).await;
            assert_eq!(status, 401, "{what} in the {how}");
        }
    }
    still_serving(&hub, &mut bystander).await;
    // Only the control token published.
    assert_eq!(hub.stats().await["events_published"], 1 + 6);
}

#[tokio::test]
async fn subscribing_without_a_token_is_refused_unless_anonymous_is_allowed() {
    let hub = hub();
    assert_eq!(subscribe_status(&hub, &[], "").await, 401);
    let open = TestHub::protocol(&[]);
    assert_eq!(subscribe_status(&open, &[], "").await, 200);
}

#[tokio::test]
async fn invalid_subscriber_tokens_get_401() {
    let hub = hub();
    let claim = json!({ "mercure": { "subscribe": ["*"] } });
    let wrong_key = token_with("another-key-another-key-another-key", claim.clone());
    let expired = token_with(
        KEY,
        json!({ "mercure": { "subscribe": ["*"] }, "exp": now() - 60 }),
    );
    let not_yet = token_with(
        KEY,
        json!({ "mercure": { "subscribe": ["*"] }, "nbf": now() + 600 }),
    );
    let none = unsigned(claim);
    for (what, bad) in [
        ("wrong key", wrong_key.as_str()),
        ("expired", &expired),
        ("not yet valid", &not_yet),
        ("alg none", &none),
        ("garbage", "not.a.token"),
    ] {
        let auth = format!("Bearer {bad}");
        assert_eq!(
            subscribe_status(&hub, &[("Authorization", &auth)], "").await,
            401,
            "{what}"
        );
    }
    let good = format!("Bearer {}", token(json!({ "subscribe": ["*"] })));
    assert_eq!(
        subscribe_status(&hub, &[("Authorization", &good)], "").await,
        200
    );
    // Tokens never reach the log.
    let logs = hub.logs().join("\n");
    assert!(!logs.contains(&wrong_key) && !logs.contains(&expired) && !logs.contains(KEY));
}

#[tokio::test]
async fn tokens_are_read_from_header_then_query_then_cookie() {
    let hub = hub();
    let good = token(json!({ "subscribe": ["*"] }));
    let cookie = format!("mercureAuthorization={good}");
    assert_eq!(
        subscribe_status(&hub, &[("Cookie", &cookie)], "").await,
        200
    );
    let query = format!("&authorization={good}");
    assert_eq!(subscribe_status(&hub, &[], &query).await, 200);
    // The header wins: a bad header is refused even with a good cookie.
    let bad_header = [
        ("Authorization", "Bearer nope"),
        ("Cookie", cookie.as_str()),
    ];
    assert_eq!(subscribe_status(&hub, &bad_header, "").await, 401);
    let good_header = format!("Bearer {good}");
    let bad_cookie = [
        ("Authorization", good_header.as_str()),
        ("Cookie", "mercureAuthorization=nope"),
    ];
    assert_eq!(subscribe_status(&hub, &bad_cookie, "").await, 200);
}

#[tokio::test]
async fn publishing_needs_a_token_that_covers_every_topic() {
    let hub = TestHub::protocol(&[]);
    let anonymous = client()
        .post(hub.url("/.well-known/mercure"))
        .form(&[("topic", "/t")])
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    let books_only = token(json!({ "publish": ["https://example.com/books/{id}"] }));
    let outside = hub
        .publish(&books_only, &[("topic", "https://example.com/authors/1")])
        .await;
    assert_eq!(outside.status(), 403);
    let half = hub
        .publish(
            &books_only,
            &[
                ("topic", "https://example.com/books/1"),
                ("topic", "/other"),
            ],
        )
        .await;
    assert_eq!(half.status(), 403, "every topic must be covered");
    let subscriber_only = token(json!({ "subscribe": ["*"] }));
    assert_eq!(
        hub.publish(&subscriber_only, &[("topic", "/t")])
            .await
            .status(),
        403
    );
    let inside = hub
        .publish(&books_only, &[("topic", "https://example.com/books/1")])
        .await;
    assert_eq!(inside.status(), 200);
    let wrong_key = token_with(
        "another-key-another-key-another-key",
        json!({ "mercure": { "publish": ["*"] } }),
    );
    assert_eq!(
        hub.publish(&wrong_key, &[("topic", "/t")]).await.status(),
        401
    );
    assert_eq!(hub.stats().await["events_published"], 1);
}

#[tokio::test]
async fn separate_publisher_and_subscriber_keys() {
    let hub = TestHub::spawn(&[
        "--publisher-jwt-key",
        "publisher-key-publisher-key-publisher-key",
        "--subscriber-jwt-key",
        "subscriber-key-subscriber-key-subscriber",
        "--tick-interval",
        "0",
    ]);
    let pub_claims = json!({ "mercure": { "publish": ["*"], "subscribe": ["*"] } });
    let pub_token = token_with(
        "publisher-key-publisher-key-publisher-key",
        pub_claims.clone(),
    );
    let sub_token = token_with("subscriber-key-subscriber-key-subscriber", pub_claims);
    assert_eq!(
        hub.publish(&pub_token, &[("topic", "/t")]).await.status(),
        200
    );
    assert_eq!(
        hub.publish(&sub_token, &[("topic", "/t")]).await.status(),
        401
    );
    let as_sub = format!("Bearer {sub_token}");
    let as_pub = format!("Bearer {pub_token}");
    assert_eq!(
        subscribe_status(&hub, &[("Authorization", &as_sub)], "").await,
        200
    );
    assert_eq!(
        subscribe_status(&hub, &[("Authorization", &as_pub)], "").await,
        401
    );
}

#[tokio::test]
async fn the_connection_is_closed_at_the_token_expiry() {
    let hub = hub();
    let exp = now() + 2;
    let short = token_with(
        KEY,
        json!({ "mercure": { "subscribe": ["*"] }, "exp": exp }),
    );
    let auth = format!("Bearer {short}");
    let mut sse = hub
        .subscribe(&["/t"], &[], &[("Authorization", &auth)])
        .await;
    let id = hub
        .publish_ok(&[("topic", "/t"), ("data", "before exp")])
        .await;
    assert_eq!(sse.next_event(WAIT).await.expect("event").id, Some(id));
    let started = Instant::now();
    let ended = sse.next_event(Duration::from_secs(8)).await;
    assert!(matches!(ended, Next::End), "{ended:?}");
    let end_unix = now();
    assert!(
        end_unix >= exp && end_unix <= exp + 3,
        "closed at {end_unix}, exp {exp}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn the_token_helper_prints_a_token_the_hub_accepts() {
    let hub = TestHub::protocol(&[]);
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_sse-hub"))
        .args([
            "--jwt-key",
            KEY,
            "token",
            "--legacy",
            "--publish",
            "*",
            "--exp",
            "1h",
        ])
        .output()
        .expect("run sse-hub token");
    assert!(output.status.success(), "{output:?}");
    let printed = String::from_utf8(output.stdout).unwrap();
    let response = hub.publish(printed.trim(), &[("topic", "/t")]).await;
    assert_eq!(response.status(), 200);
    let without_key = std::process::Command::new(env!("CARGO_BIN_EXE_sse-hub"))
        .args(["token", "--publish", "*"])
        .env_remove("SSE_HUB_JWT_KEY")
        .env_remove("SSE_HUB_PUBLISHER_JWT_KEY")
        .output()
        .unwrap();
    assert!(!without_key.status.success());
}
