//! Mercure 1.0 access tokens (`typ: at+jwt`, `authorization_details`) beside 0.x tokens on one
//! hub: what they grant, where they may be presented, and each refusal's status and challenge.

use std::time::Duration;

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

use crate::{
    config::refused_file,
    hardening::{still_serving, watcher},
    helpers::{client, now, openssl, rsa_private_key, token, Next, SseClient, TestHub, KEY},
};

const WAIT: Duration = Duration::from_secs(5);
const ISSUER: &str = "https://localhost";
const RESOURCE: &str = "https://localhost/.well-known/mercure";
const METADATA: &str = "https://localhost/.well-known/oauth-protected-resource/.well-known/mercure";
const DETAIL: &str = "https://mercure.rocks/authorization-detail";
const BOOK: &str = "https://example.com/books/1";

/// The hub of the issue: one key, one issuer, a resource identifier; anonymous subscribers.
fn hub(extra: &[&str]) -> TestHub {
    let mut args = vec![
        "--jwt-key",
        KEY,
        "--issuer",
        ISSUER,
        "--resource-identifier",
        RESOURCE,
        "--allow-anonymous",
        "--tick-interval",
        "0",
    ];
    args.extend_from_slice(extra);
    TestHub::spawn(&args)
}

/// Signs `claims` as an access token (`typ: at+jwt`) with `key` (HS256).
fn at_with(key: &[u8], claims: &Value) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.typ = Some("at+jwt".into());
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(key)).unwrap()
}

/// Valid access token claims for this hub granting `details`.
fn claims(details: Value) -> Value {
    json!({ "iss": ISSUER, "aud": RESOURCE, "exp": now() + 600, "sub": "alice",
            "authorization_details": details })
}

fn at(details: Value) -> String {
    at_with(KEY.as_bytes(), &claims(details))
}

/// One Mercure detail.
fn detail(actions: &[&str], topics: &[&str]) -> Value {
    let topics: Vec<Value> = topics.iter().map(|t| json!({ "match": t })).collect();
    json!({ "type": DETAIL, "actions": actions, "topics": topics })
}

/// A Bearer header value.
fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// Asserts `response` is `status` with challenge `challenge` and a body holding `body`.
async fn refused(
    response: reqwest::Response,
    status: u16,
    challenge: &str,
    body: &str,
    what: &str,
) {
    assert_eq!(response.status(), status, "{what}");
    let header = response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(header.as_deref(), Some(challenge), "{what}");
    let text = response.text().await.unwrap();
    assert!(
        text.contains(body) && text.ends_with('\n') && text.lines().count() == 1,
        "{what}: {text:?}"
    );
}

fn invalid_token() -> String {
    format!("Bearer error=\"invalid_token\", resource_metadata=\"{METADATA}\"")
}

async fn publish_with(
    hub: &TestHub,
    headers: &[(&str, &str)],
    form: &[(&str, &str)],
) -> reqwest::Response {
    let mut request = client().post(hub.url("/.well-known/mercure")).form(form);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap()
}

/// The issue's case: with `--jwt-key K --issuer … --resource-identifier …`, 1.0 publishers and
/// subscribers and 0.x ones, on one hub at once, each get what their token grants.
#[tokio::test]
async fn one_hub_serves_access_tokens_and_0x_tokens_side_by_side() {
    let hub = hub(&[]);
    let subscriber = at(json!([
        { "type": DETAIL, "actions": ["subscribe"], "topics": [{ "match": BOOK }],
          "payload": { "user": "alice" } },
        { "type": DETAIL, "actions": ["subscribe"],
          "topics": [{ "match": "/authors/:id", "match_type": "urlpattern" }] },
    ]));
    let publisher = at(json!([
        detail(&["publish"], &[BOOK]),
        { "type": DETAIL, "actions": ["publish"],
          "topics": [{ "match": "/authors/:id", "match_type": "urlpattern" }] },
    ]));
    let auth = bearer(&subscriber);
    let mut v1 = SseClient::connect(
        &hub.url("/.well-known/mercure?match=https%3A%2F%2Fexample.com%2Fbooks%2F1&match_urlpattern=%2Fauthors%2F%3Aid"),
        &[("Authorization", &auth)],
    )
    .await;
    assert_eq!(v1.status, 200);
    v1.opened().await;
    let legacy_sub = token(json!({ "subscribe": ["/legacy"] }));
    let legacy_auth = bearer(&legacy_sub);
    let mut v0 = hub
        .subscribe(&["/legacy"], &[], &[("Authorization", &legacy_auth)])
        .await;

    let response = hub
        .publish(
            &publisher,
            &[("topic", BOOK), ("data", "book"), ("private", "on")],
        )
        .await;
    assert_eq!(response.status(), 200, "{:?}", response.text().await);
    // A relative pattern of the token is resolved against the resource identifier.
    let author = "https://localhost/authors/7";
    let response = hub
        .publish(
            &publisher,
            &[("topic", author), ("data", "author"), ("private", "on")],
        )
        .await;
    assert_eq!(response.status(), 200, "{:?}", response.text().await);
    let legacy_pub = token(json!({ "publish": ["/legacy"] }));
    let response = hub
        .publish(
            &legacy_pub,
            &[("topic", "/legacy"), ("data", "old"), ("private", "on")],
        )
        .await;
    assert_eq!(response.status(), 200);

    let got: Vec<String> = v1
        .events(2, WAIT)
        .await
        .into_iter()
        .map(|e| e.data)
        .collect();
    assert_eq!(got, ["book", "author"]);
    assert_eq!(
        v0.next_event(WAIT).await.expect("the 0.x update").data,
        "old"
    );
    // Each token publishes only where it is granted.
    let response = hub
        .publish(&publisher, &[("topic", "/legacy"), ("data", "x")])
        .await;
    assert_eq!(response.status(), 403);
    let response = hub
        .publish(&legacy_pub, &[("topic", BOOK), ("data", "x")])
        .await;
    assert_eq!(response.status(), 403);
    // Nothing else reached either subscriber.
    assert!(matches!(
        v1.next_event(Duration::from_millis(300)).await,
        Next::TimedOut
    ));
    assert!(matches!(
        v0.next_event(Duration::from_millis(300)).await,
        Next::TimedOut
    ));
}

/// Each bad token, presentation or grant is refused with its status, its challenge and a
/// one-line body, never saying why a token is invalid; a bystander is served throughout.
#[tokio::test]
async fn each_refusal_has_its_status_and_challenge() {
    let hub = hub(&[]);
    let mut bystander = watcher(&hub).await;
    let topic = [("topic", BOOK), ("data", "x")];
    let publish = detail(&["publish"], &[BOOK]);
    let good = claims(json!([publish]));
    let with = |change: &dyn Fn(&mut Value)| {
        let mut claims = good.clone();
        change(&mut claims);
        at_with(KEY.as_bytes(), &claims)
    };
    let unsigned = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"at+jwt"}"#),
        URL_SAFE_NO_PAD.encode(good.to_string())
    );
    let bad_details = |details: Value| with(&|c| c["authorization_details"] = details.clone());
    let invalid: Vec<(&str, String)> = vec![
        ("alg none", unsigned),
        (
            "another key",
            at_with(b"another-key-with-enough-entropy-0123456789", &good),
        ),
        (
            "wrong aud",
            with(&|c| c["aud"] = json!("https://evil.example/.well-known/mercure")),
        ),
        (
            "aud array without the hub",
            with(&|c| c["aud"] = json!(["https://a", "https://b"])),
        ),
        (
            "wrong iss",
            with(&|c| c["iss"] = json!("https://localhost/")),
        ),
        (
            "no iss",
            with(&|c| c.as_object_mut().unwrap().remove("iss").map(drop).unwrap()),
        ),
        (
            "no aud",
            with(&|c| c.as_object_mut().unwrap().remove("aud").map(drop).unwrap()),
        ),
        (
            "no exp",
            with(&|c| c.as_object_mut().unwrap().remove("exp").map(drop).unwrap()),
        ),
        ("expired", with(&|c| c["exp"] = json!(now() - 120))),
        ("not yet valid", with(&|c| c["nbf"] = json!(now() + 600))),
        ("details not an array", bad_details(publish.clone())),
        (
            "bare string topic",
            bad_details(json!([{ "type": DETAIL, "actions": ["publish"], "topics": [BOOK] }])),
        ),
        (
            "unknown match_type",
            bad_details(json!([{ "type": DETAIL, "actions": ["publish"],
            "topics": [{ "match": BOOK, "match_type": "regex" }] }])),
        ),
        (
            "non-string action",
            bad_details(json!([{ "type": DETAIL, "actions": ["publish", 1],
            "topics": [{ "match": BOOK }] }])),
        ),
        (
            "payload not an object",
            bad_details(json!([{ "type": DETAIL, "actions": ["publish"],
            "topics": [{ "match": BOOK }], "payload": "alice" }])),
        ),
        (
            "too many entries",
            bad_details(Value::Array(vec![publish.clone(); 33])),
        ),
        (
            "too many matchers",
            bad_details(json!([{ "type": DETAIL, "actions": ["publish"],
            "topics": (0..65).map(|i| json!({ "match": format!("t{i}") })).collect::<Vec<_>>() }])),
        ),
        (
            "bad url pattern",
            bad_details(json!([{ "type": DETAIL, "actions": ["publish"],
            "topics": [{ "match": "/books/(", "match_type": "urlpattern" }] }])),
        ),
    ];
    // The control: the same claims, well signed, publish.
    let control = at(json!([publish]));
    assert_eq!(hub.publish(&control, &topic).await.status(), 200);
    for (what, bad) in &invalid {
        refused(
            hub.publish(bad, &topic).await,
            401,
            &invalid_token(),
            "invalid token",
            what,
        )
        .await;
        let auth = bearer(bad);
        let sse = SseClient::connect(
            &hub.url("/.well-known/mercure?match=x"),
            &[("Authorization", &auth)],
        )
        .await;
        assert_eq!(sse.status, 401, "subscribe: {what}");
        assert_eq!(
            sse.response_headers["www-authenticate"],
            invalid_token().as_str(),
            "{what}"
        );
    }

    // Without `typ` the same claims are a 0.x token with no `mercure` claim: valid, no rights.
    let untyped = crate::helpers::token_with(KEY, good.clone());
    let scope = format!("Bearer error=\"insufficient_scope\", resource_metadata=\"{METADATA}\"");
    refused(
        hub.publish(&untyped, &topic).await,
        403,
        &scope,
        "may not publish",
        "no typ",
    )
    .await;
    // A valid access token lacking the grant.
    let other = at(json!([detail(
        &["publish"],
        &["https://example.com/other"]
    )]));
    refused(
        hub.publish(&other, &topic).await,
        403,
        &scope,
        "may not publish",
        "scope",
    )
    .await;
    // No token: the bare challenge.
    let bare = format!("Bearer resource_metadata=\"{METADATA}\"");
    refused(
        publish_with(&hub, &[], &topic).await,
        401,
        &bare,
        "a token is required",
        "none",
    )
    .await;

    // Malformed presentations.
    let bad_request = format!("Bearer error=\"invalid_request\", resource_metadata=\"{METADATA}\"");
    let good_auth = bearer(&control);
    for (what, headers) in [
        (
            "Basic",
            vec![("Authorization", "Basic YWxpY2U6c2VjcmV0".to_owned())],
        ),
        (
            "empty Bearer",
            vec![("Authorization", "Bearer ".to_owned())],
        ),
        ("Bearer alone", vec![("Authorization", "Bearer".to_owned())]),
        (
            "two headers",
            vec![
                ("Authorization", good_auth.clone()),
                ("Authorization", good_auth.clone()),
            ],
        ),
    ] {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        refused(
            publish_with(&hub, &headers, &topic).await,
            400,
            &bad_request,
            "",
            what,
        )
        .await;
    }
    // The scheme is matched case-insensitively.
    let lower = format!("bearer {control}");
    assert_eq!(
        publish_with(&hub, &[("Authorization", &lower)], &topic)
            .await
            .status(),
        200
    );
    // A token in the URL of a 1.0 request, or a 1.0 token in the URL of any request.
    let in_query = client()
        .get(hub.url(&format!(
            "/.well-known/mercure?match=x&authorization={control}"
        )))
        .send()
        .await
        .unwrap();
    refused(in_query, 400, &bad_request, "URL", "query token with match").await;
    let in_query = client()
        .get(hub.url(&format!(
            "/.well-known/mercure?topic=x&authorization={control}"
        )))
        .send()
        .await
        .unwrap();
    refused(
        in_query,
        400,
        &bad_request,
        "URL",
        "access token in the query",
    )
    .await;
    // Header and cookie: the header wins and the cookie is not read, whichever is bad.
    let cookie = format!("__Secure-mercure_access_token={}", invalid[0].1);
    let both = publish_with(
        &hub,
        &[("Authorization", &good_auth), ("Cookie", &cookie)],
        &topic,
    )
    .await;
    assert_eq!(both.status(), 200);
    let cookie = format!("__Secure-mercure_access_token={control}");
    let bad_auth = bearer(&invalid[1].1);
    let both = publish_with(
        &hub,
        &[("Authorization", &bad_auth), ("Cookie", &cookie)],
        &topic,
    )
    .await;
    assert_eq!(both.status(), 401);
    // The 1.0 cookie alone is read.
    let sse = SseClient::connect(
        &hub.url("/.well-known/mercure?match=x"),
        &[("Cookie", &cookie)],
    )
    .await;
    assert_eq!(sse.status, 200, "the 1.0 cookie");
    still_serving(&hub, &mut bystander).await;
}

/// A subscriber whose access token expires is disconnected then.
#[tokio::test]
async fn an_access_token_subscriber_is_disconnected_at_exp() {
    let hub = hub(&[]);
    let mut claims = claims(json!([detail(&["subscribe"], &[BOOK])]));
    claims["exp"] = json!(now() + 2);
    let auth = bearer(&at_with(KEY.as_bytes(), &claims));
    let mut sse = SseClient::connect(
        &hub.url("/.well-known/mercure?match=x"),
        &[("Authorization", &auth)],
    )
    .await;
    assert_eq!(sse.status, 200);
    sse.opened().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "still connected after exp"
        );
        if let Next::End = sse.chunk(Duration::from_secs(1)).await {
            break;
        }
    }
}

/// Two issuers from the config file, each with its key: a token is checked only with the keys
/// of the issuer it names. RS256 and EdDSA keys work, and an HS256 token made with an RSA
/// public key as secret is refused.
#[tokio::test]
async fn each_issuer_is_checked_with_its_own_keys_only() {
    let dir = tempfile::tempdir().unwrap();
    let rsa = dir.path().join("rsa.pem");
    rsa_private_key(&rsa);
    let rsa_public = openssl(&["pkey", "-in", rsa.to_str().unwrap(), "-pubout"]);
    std::fs::write(dir.path().join("rsa.pub.pem"), &rsa_public).unwrap();
    let ed = dir.path().join("ed.pem");
    openssl(&[
        "genpkey",
        "-algorithm",
        "ed25519",
        "-out",
        ed.to_str().unwrap(),
    ]);
    let ed_public = openssl(&["pkey", "-in", ed.to_str().unwrap(), "-pubout"]);
    std::fs::write(dir.path().join("ed.pub.pem"), &ed_public).unwrap();
    let file = dir.path().join("hub.toml");
    std::fs::write(
        &file,
        format!(
            "resource-identifier = \"{RESOURCE}\"\n\
             [[issuer]]\nid = \"https://a.example\"\njwt_key = \"key-of-a-with-enough-entropy-0123456789\"\n\
             [[issuer]]\nid = \"https://b.example\"\njwt_key = \"key-of-b-with-enough-entropy-0123456789\"\n\
             [[issuer]]\nid = \"https://rsa.example\"\njwt_algorithm = \"RS256\"\npublisher_jwt_key = \"@{}\"\n\
             [[issuer]]\nid = \"https://ed.example\"\njwt_algorithm = \"EdDSA\"\npublisher_jwt_key = \"@{}\"\n",
            dir.path().join("rsa.pub.pem").display(),
            dir.path().join("ed.pub.pem").display(),
        ),
    )
    .unwrap();
    let hub = TestHub::spawn(&["--config", file.to_str().unwrap(), "--tick-interval", "0"]);
    let details = json!([detail(&["publish"], &[BOOK])]);
    let as_issuer = |iss: &str| {
        let mut c = claims(details.clone());
        c["iss"] = json!(iss);
        c
    };
    let topic = [("topic", BOOK), ("data", "x")];
    let signed = |key: &str, iss: &str| at_with(key.as_bytes(), &as_issuer(iss));
    let key_a = "key-of-a-with-enough-entropy-0123456789";
    let key_b = "key-of-b-with-enough-entropy-0123456789";
    assert_eq!(
        hub.publish(&signed(key_a, "https://a.example"), &topic)
            .await
            .status(),
        200
    );
    assert_eq!(
        hub.publish(&signed(key_b, "https://b.example"), &topic)
            .await
            .status(),
        200
    );
    let forged = hub
        .publish(&signed(key_a, "https://b.example"), &topic)
        .await;
    refused(
        forged,
        401,
        &format!("Bearer error=\"invalid_token\", resource_metadata=\"{METADATA}\""),
        "invalid token",
        "A's key, B's iss",
    )
    .await;
    // No 0.x keys: a 0.x token is refused.
    let legacy = crate::helpers::token_with(key_a, json!({ "mercure": { "publish": ["*"] } }));
    assert_eq!(hub.publish(&legacy, &topic).await.status(), 401);

    let mut header = Header::new(Algorithm::RS256);
    header.typ = Some("at+jwt".into());
    let rsa_key = EncodingKey::from_rsa_pem(&std::fs::read(&rsa).unwrap()).unwrap();
    let rs = jsonwebtoken::encode(&header, &as_issuer("https://rsa.example"), &rsa_key).unwrap();
    assert_eq!(hub.publish(&rs, &topic).await.status(), 200);
    let confused = at_with(&rsa_public, &as_issuer("https://rsa.example"));
    assert_eq!(
        hub.publish(&confused, &topic).await.status(),
        401,
        "HS256 with the RSA public key"
    );
    header.alg = Algorithm::EdDSA;
    let ed_key = EncodingKey::from_ed_pem(&std::fs::read(&ed).unwrap()).unwrap();
    let eddsa = jsonwebtoken::encode(&header, &as_issuer("https://ed.example"), &ed_key).unwrap();
    assert_eq!(hub.publish(&eddsa, &topic).await.status(), 200);
    // The RSA issuer has no subscriber key: its tokens can't subscribe.
    let auth = bearer(&rs);
    let sse = SseClient::connect(
        &hub.url("/.well-known/mercure?match=x"),
        &[("Authorization", &auth)],
    )
    .await;
    assert_eq!(sse.status, 401);
    assert_eq!(
        sse.response_headers["www-authenticate"],
        invalid_token().as_str()
    );
}

/// Issuer mistakes in the config stop the hub with one line naming them.
#[test]
fn issuer_mistakes_stop_the_hub_naming_them() {
    for (text, expected) in [
        ("[[issuer]]\nid = \"https://a\"\njwt_key = \"k\"\n[[issuer]]\nid = \"https://a\"\njwt_key = \"k\"\n",
         "issuer https://a is configured twice"),
        ("[[issuer]]\nid = \"https://a\"\n", "issuer https://a has no key"),
        ("[[issuer]]\nid = \"https://a\"\npublisher_jwt_key = \"k\"\npublisher_jwks_url = \"https://idp.example/jwks\"\n",
         "--publisher-jwt-key and --publisher-jwks-url are both given"),
        ("[[issuer]]\njwt_key = \"k\"\n", "needs its `id`"),
        ("[[issuer]]\nid = \"https://a\"\njwt_kee = \"k\"\n", "did you mean `issuer.jwt_key`?"),
        ("[[issuer]]\nid = \"not a url\"\njwt_key = \"k\"\n", "not an absolute URL"),
    ] {
        let error = refused_file(text);
        assert!(error.contains(expected), "{text:?}: {error}");
    }
}

/// `--protocol 1.0` refuses 0.x tokens, 0.x parameters and tokens in the URL; 1.0 works.
#[tokio::test]
async fn protocol_1_0_refuses_what_is_0x() {
    let hub = hub(&["--protocol", "1.0"]);
    let topic = [("topic", BOOK), ("data", "x")];
    let legacy = crate::helpers::publisher();
    refused(
        hub.publish(&legacy, &topic).await,
        401,
        &invalid_token(),
        "invalid token",
        "0.x token",
    )
    .await;
    let access = at(json!([detail(&["publish"], &[BOOK])]));
    assert_eq!(hub.publish(&access, &topic).await.status(), 200);
    for query in ["topic=%2Ft", "match=x&lastEventID=1"] {
        let response = client()
            .get(hub.url(&format!("/.well-known/mercure?{query}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{query}");
        let body = response.text().await.unwrap();
        assert!(body.contains("0.x is off"), "{query}: {body}");
    }
    let legacy_sub = token(json!({ "subscribe": ["*"] }));
    let response = client()
        .get(hub.url(&format!(
            "/.well-known/mercure?match=x&authorization={legacy_sub}"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    // The 0.x cookie is not read: an anonymous subscriber.
    let cookie = format!(
        "mercureAuthorization={}",
        at(json!([detail(&["subscribe"], &["*"])]))
    );
    let book = "/.well-known/mercure?match=https%3A%2F%2Fexample.com%2Fbooks%2F1";
    let mut sse = SseClient::connect(&hub.url(book), &[("Cookie", &cookie)]).await;
    assert_eq!(sse.status, 200);
    sse.opened().await;
    let response = hub
        .publish(
            &access,
            &[("topic", BOOK), ("data", "secret"), ("private", "on")],
        )
        .await;
    assert_eq!(response.status(), 200);
    assert!(matches!(
        sse.next_event(Duration::from_millis(500)).await,
        Next::TimedOut
    ));
}

/// The protected resource metadata names the resource, the detail type, the cookie, the
/// advertised issuers, and the subscriptions API when it is on; any page may read it.
#[tokio::test]
async fn the_protected_resource_metadata_describes_the_hub() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hub.toml");
    std::fs::write(
        &file,
        "[[issuer]]\nid = \"https://idp.example\"\njwt_key = \"k\"\nauthorization_server = true\n\
         [[issuer]]\nid = \"https://quiet.example\"\njwt_key = \"k\"\n",
    )
    .unwrap();
    let hub = hub(&["--config", file.to_str().unwrap(), "--subscriptions"]);
    let response = client()
        .get(hub.url("/.well-known/oauth-protected-resource/.well-known/mercure"))
        .header("Origin", "https://app.example")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_eq!(response.headers()["access-control-allow-origin"], "*");
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body,
        json!({
            "resource": RESOURCE,
            "authorization_servers": [ISSUER_ADVERTISED],
            "authorization_details_types_supported": [DETAIL],
            "bearer_methods_supported": ["header"],
            "mercure_cookie": "__Secure-mercure_access_token",
            "mercure_subscriptions": true,
        })
    );
    // Without advertised issuers, resource identifier or subscriptions API.
    let plain = TestHub::spawn(&["--jwt-key", KEY, "--tick-interval", "0"]);
    let body: Value = client()
        .get(plain.url("/.well-known/oauth-protected-resource/.well-known/mercure"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let host = plain.url("/.well-known/mercure");
    assert_eq!(
        body,
        json!({
            "resource": host,
            "authorization_details_types_supported": [DETAIL],
            "bearer_methods_supported": ["header"],
            "mercure_cookie": "__Secure-mercure_access_token",
        })
    );
}

const ISSUER_ADVERTISED: &str = "https://idp.example";

/// Without `--resource-identifier`, the resource is the hub's public URL: what a trusted proxy
/// says with `X-Forwarded-Proto`/`-Host` (the test client is on 127.0.0.1, trusted by default),
/// and what the request says otherwise. The challenge points at the same place.
#[tokio::test]
async fn behind_a_trusted_proxy_the_resource_is_the_public_url() {
    let hub = TestHub::spawn(&["--jwt-key", KEY, "--issuer", ISSUER, "--tick-interval", "0"]);
    let public = "https://hub.example/.well-known/mercure";
    let mut c = claims(json!([detail(&["publish"], &[BOOK])]));
    c["aud"] = json!(public);
    let token = at_with(KEY.as_bytes(), &c);
    let auth = bearer(&token);
    let topic = [("topic", BOOK), ("data", "x")];
    let proxied = [
        ("Authorization", auth.as_str()),
        ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-Host", "hub.example"),
    ];
    assert_eq!(publish_with(&hub, &proxied, &topic).await.status(), 200);
    // Straight to the hub, the resource is http://127.0.0.1:port/…: another audience.
    let direct = publish_with(&hub, &[("Authorization", &auth)], &topic).await;
    let metadata = hub.url("/.well-known/oauth-protected-resource/.well-known/mercure");
    let challenge = format!("Bearer error=\"invalid_token\", resource_metadata=\"{metadata}\"");
    refused(direct, 401, &challenge, "invalid token", "direct").await;
    // An untrusted peer's forwarded headers are ignored.
    let untrusted = TestHub::spawn(&[
        "--jwt-key",
        KEY,
        "--issuer",
        ISSUER,
        "--tick-interval",
        "0",
        "--trusted-proxy",
        "10.9.9.9",
    ]);
    assert_eq!(
        publish_with(&untrusted, &proxied, &topic).await.status(),
        401
    );
}

/// The subscriptions API reads access tokens too: the path must be granted `subscribe`, with
/// an exact or a relative URL pattern matcher (resolved like a relative topic).
#[tokio::test]
async fn the_subscriptions_api_takes_access_tokens_granted_its_path() {
    let hub = hub(&["--subscriptions"]);
    let get = |token: String| {
        let hub = &hub;
        async move {
            client()
                .get(hub.url("/.well-known/mercure/subscriptions"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
        }
    };
    let exact = at(json!([detail(
        &["subscribe"],
        &["/.well-known/mercure/subscriptions"]
    )]));
    assert_eq!(get(exact).await.status(), 200);
    let pattern = at(json!([{ "type": DETAIL, "actions": ["subscribe"],
        "topics": [{ "match": "/.well-known/mercure/subscriptions{/*}?", "match_type": "urlpattern" }] }]));
    assert_eq!(get(pattern).await.status(), 200);
    let publish_only = at(json!([detail(&["publish"], &["*"])]));
    let scope = format!("Bearer error=\"insufficient_scope\", resource_metadata=\"{METADATA}\"");
    refused(
        get(publish_only).await,
        403,
        &scope,
        "subscribe grants",
        "publish only",
    )
    .await;
    let bare = format!("Bearer resource_metadata=\"{METADATA}\"");
    let none = client()
        .get(hub.url("/.well-known/mercure/subscriptions"))
        .send()
        .await
        .unwrap();
    refused(none, 401, &bare, "a token is required", "no token").await;
}
