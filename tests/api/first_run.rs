//! What a newcomer meets first: the token command, the favicon.

use std::process::Command;

use crate::helpers::{claims_of, client, now, TestHub, KEY};

fn token_command(args: &[&str]) -> std::process::Output {
    Command::new(TestHub::binary())
        .arg("token")
        .args(args)
        .env_remove("SSE_HUB_JWT_KEY")
        .output()
        .expect("run sse-hub token")
}

const ISSUER: &str = "https://issuer.test";

#[tokio::test]
async fn the_token_command_takes_the_key_after_it_and_signs_with_it() {
    let hub = TestHub::protocol(&["--issuer", ISSUER]);
    let audience = hub.url("/.well-known/mercure");
    let made = token_command(&[
        "--jwt-key",
        KEY,
        "--issuer",
        ISSUER,
        "--audience",
        &audience,
        "--publish",
        "*",
    ]);
    assert!(made.status.success(), "{made:?}");
    let token = String::from_utf8(made.stdout).unwrap().trim().to_owned();
    // The hub with the same key and issuer accepts it, and a 0.x token made with `--legacy`.
    let response = hub.publish(&token, &[("topic", "/first")]).await;
    assert_eq!(response.status(), 200);
    let legacy = token_command(&["--jwt-key", KEY, "--legacy", "--publish", "*"]);
    assert!(legacy.status.success(), "{legacy:?}");
    let legacy = String::from_utf8(legacy.stdout).unwrap();
    let response = hub.publish(legacy.trim(), &[("topic", "/first")]).await;
    assert_eq!(response.status(), 200);
    // Another audience is another hub's token: refused here.
    let elsewhere = token_command(&[
        "--jwt-key",
        KEY,
        "--issuer",
        ISSUER,
        "--audience",
        "https://other.example/.well-known/mercure",
        "--publish",
        "*",
    ]);
    let elsewhere = String::from_utf8(elsewhere.stdout).unwrap();
    let response = hub.publish(elsewhere.trim(), &[("topic", "/first")]).await;
    assert_eq!(response.status(), 401);
    // Its help names the key.
    let help = token_command(&["--help"]);
    assert!(String::from_utf8_lossy(&help.stdout).contains("--jwt-key"));
}

#[test]
fn tokens_expire_in_an_hour_unless_told_otherwise() {
    let printed = |args: &[&str]| {
        let made = token_command(args);
        assert!(made.status.success(), "{made:?}");
        claims_of(String::from_utf8(made.stdout).unwrap().trim())
    };
    let default = printed(&["--jwt-key", KEY, "--issuer", ISSUER, "--publish", "*"]);
    let exp = default["exp"].as_u64().expect("an exp by default");
    assert!(exp.abs_diff(now() + 3600) <= 5, "exp {exp}");
    let day = printed(&[
        "--jwt-key",
        KEY,
        "--issuer",
        ISSUER,
        "--publish",
        "*",
        "--exp",
        "1d",
    ]);
    assert!(day["exp"].as_u64().unwrap().abs_diff(now() + 86_400) <= 5);
    // Only a 0.x token may never expire: RFC 9068 makes `exp` mandatory.
    let forever = printed(&["--jwt-key", KEY, "--legacy", "--publish", "*", "--no-exp"]);
    assert_eq!(forever.get("exp"), None, "{forever}");
    let endless = token_command(&[
        "--jwt-key",
        KEY,
        "--issuer",
        ISSUER,
        "--publish",
        "*",
        "--no-exp",
    ]);
    assert_eq!(endless.status.code(), Some(1), "{endless:?}");
    // A 1.0 token names its issuer.
    let anonymous = token_command(&["--jwt-key", KEY, "--publish", "*"]);
    assert_eq!(anonymous.status.code(), Some(1), "{anonymous:?}");
    assert!(String::from_utf8_lossy(&anonymous.stderr).contains("--issuer"));
    let both = token_command(&[
        "--jwt-key",
        KEY,
        "--publish",
        "*",
        "--no-exp",
        "--exp",
        "1h",
    ]);
    assert_eq!(both.status.code(), Some(1), "{both:?}");
}

#[test]
fn a_token_without_claims_is_refused() {
    let refused = token_command(&["--jwt-key", KEY]);
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("--publish"), "{stderr}");
    assert!(refused.stdout.is_empty());
    let no_key = token_command(&["--publish", "*"]);
    assert_eq!(no_key.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&no_key.stderr).contains("--jwt-key"));
}

#[tokio::test]
async fn the_dashboard_has_a_favicon() {
    let hub = TestHub::protocol(&[]);
    let page = client().get(hub.url("/")).send().await.unwrap();
    // Mercure discovery: the page names the hub its live data comes from.
    assert_eq!(
        page.headers()["link"],
        r#"<.well-known/mercure>; rel="mercure""#
    );
    assert!(page
        .text()
        .await
        .unwrap()
        .contains(r#"rel="icon" href="favicon.svg""#));
    let icon = client().get(hub.url("/favicon.svg")).send().await.unwrap();
    assert_eq!(icon.status(), 200);
    assert_eq!(icon.headers()["content-type"], "image/svg+xml");
    assert!(icon.text().await.unwrap().starts_with("<svg"));
}

#[tokio::test]
async fn settings_come_from_a_toml_file_under_flags_and_environment() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hub.toml");
    // `bind` is overridden by the flag TestHub passes; the rest applies.
    std::fs::write(
        &file,
        "bind = \"127.0.0.1:1\"\nallow-anonymous = true\nmax-topics = 2\ntick-interval = \"0\"\n\
         data-dir = \"none\"\n",
    )
    .unwrap();
    let hub = TestHub::spawn(&["--config", file.to_str().unwrap()]);
    let url = |topics: &str| hub.url(&format!("/.well-known/mercure?{topics}"));
    let two = crate::helpers::SseClient::connect(&url("topic=%2Fa&topic=%2Fb"), &[]).await;
    assert_eq!(two.status, 200, "anonymous subscribers allowed by the file");
    let three = client()
        .get(url("topic=%2Fa&topic=%2Fb&topic=%2Fc"))
        .send()
        .await
        .unwrap();
    assert_eq!(three.status(), 400, "max-topics from the file");
    assert!(hub.logged("memory only"));
    // A file that is not TOML: one clear line, exit 1.
    std::fs::write(&file, "bind = \n").unwrap();
    let bad = Command::new(TestHub::binary())
        .args(["--config", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("is not valid TOML"));
}
