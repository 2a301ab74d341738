//! What a newcomer meets first: the token command, the favicon.

use std::process::Command;

use crate::helpers::{client, TestHub, KEY};

fn token_command(args: &[&str]) -> std::process::Output {
    Command::new(TestHub::binary())
        .arg("token")
        .args(args)
        .env_remove("SSE_HUB_JWT_KEY")
        .output()
        .expect("run sse-hub token")
}

#[tokio::test]
async fn the_token_command_takes_the_key_after_it_and_signs_with_it() {
    let made = token_command(&["--jwt-key", KEY, "--publish", "*"]);
    assert!(made.status.success(), "{made:?}");
    let token = String::from_utf8(made.stdout).unwrap().trim().to_owned();
    // The hub with the same key accepts it.
    let hub = TestHub::protocol(&[]);
    let response = hub.publish(&token, &[("topic", "/first")]).await;
    assert_eq!(response.status(), 200);
    // Its help names the key.
    let help = token_command(&["--help"]);
    assert!(String::from_utf8_lossy(&help.stdout).contains("--jwt-key"));
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
