//! Configuration mistakes, from a flag, the environment or the `--config` file: each stops the
//! hub with one line naming the setting and exit code 1, never a panic; and what an empty
//! variable or a comma inside a list element means.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::json;

use crate::helpers::{client, token_with, SseClient, TestHub, KEY};

/// How long a hub that refuses its configuration gets to exit.
const WAIT: Duration = Duration::from_secs(20);

/// Writes `text` as `hub.toml` in `dir`.
fn config_file(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("hub.toml");
    std::fs::write(&path, text).expect("write the config file");
    path
}

/// Runs the hub (port 0, history in memory) with `args` and `env` until it exits, within
/// [`WAIT`]; asserts it refused to start with exit code 1 and one error line, and returns that
/// line.
fn refused(args: &[&str], env: &[(&str, &str)]) -> String {
    let mut child = Command::new(TestHub::binary())
        .args(["--bind", "127.0.0.1:0", "--data-dir", "none"])
        .args(args)
        .envs(env.iter().copied())
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start sse-hub");
    let deadline = Instant::now() + WAIT;
    while child.try_wait().expect("try_wait").is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!(
                "sse-hub {args:?} still runs: {:?}",
                child.wait_with_output()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("its output");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
    assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.contains("ERROR")).collect();
    assert_eq!(errors.len(), 1, "{args:?}: {stderr}");
    errors[0].to_owned()
}

/// Runs the hub refusing the `--config` file `text`, and returns its error line.
pub(crate) fn refused_file(text: &str) -> String {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = config_file(dir.path(), text);
    refused(&["--config", file.to_str().expect("UTF-8 path")], &[])
}

#[test]
fn a_nul_in_a_config_file_value_is_one_line_not_a_panic() {
    // It used to reach `set_var`, which panicked (exit code 101, a backtrace).
    let error = refused_file("time-topic = \"/t\\u0000x\"\n");
    assert!(
        error.contains("`time-topic` holds a control character"),
        "{error}"
    );
}

#[test]
fn a_config_file_key_that_is_no_setting_is_one_line_not_a_panic() {
    let error = refused_file("\"a=b\" = 1\n");
    assert!(error.contains("\"a=b\" is not a setting"), "{error}");
    // A misspelt setting was ignored without a word.
    let error = refused_file("alow-anonymous = true\n");
    assert!(
        error.contains("\"alow-anonymous\" is not a setting"),
        "{error}"
    );
}

#[test]
fn two_spellings_of_one_setting_are_refused_naming_both() {
    let error = refused_file("allow-anonymous = true\nallow_anonymous = false\n");
    assert!(
        error.contains("`allow-anonymous` and `allow_anonymous` are the same setting"),
        "{error}"
    );
}

#[tokio::test]
async fn an_empty_environment_variable_counts_as_unset() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = config_file(
        dir.path(),
        "allow-anonymous = true\ntick-interval = \"0\"\ndata-dir = \"none\"\n",
    );
    // Empty, as `Environment=SSE_HUB_ALLOW_ANONYMOUS=` or `docker run -e …=` leave it: the
    // file's value applies (it used to stop the hub with a usage error).
    let mut command = Command::new(TestHub::binary());
    command
        .args(["--bind", "127.0.0.1:0", "--config"])
        .arg(&file)
        .env("SSE_HUB_ALLOW_ANONYMOUS", "")
        .env("SSE_HUB_KEEP_ALIVE", "")
        .current_dir(dir.path());
    let hub = TestHub::spawn_command(command);
    let url = hub.url("/.well-known/mercure?topic=%2Fa");
    let sse = SseClient::connect(&url, &[]).await;
    assert_eq!(sse.status, 200, "anonymous subscribers allowed by the file");
}

#[test]
fn a_comma_inside_a_cors_origin_list_element_is_refused_not_split() {
    // Split at the comma, it used to give `https://evil.example` CORS.
    let error = refused_file("cors-origin = [\"https://a.example,https://evil.example\"]\n");
    assert!(
        error.contains("`cors-origin`: invalid value \"https://a.example,https://evil.example\"")
            && error.contains("one origin per list element"),
        "{error}"
    );
}

#[tokio::test]
async fn a_comma_inside_an_audience_list_element_stays_in_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = config_file(dir.path(), "jwt-audience = [\"a,b\"]\n");
    let hub = TestHub::protocol(&["--config", file.to_str().expect("UTF-8 path")]);
    let publish = |aud: &str| {
        let token = token_with(KEY, json!({ "mercure": { "publish": ["*"] }, "aud": aud }));
        let url = hub.url("/.well-known/mercure");
        async move {
            client()
                .post(url)
                .bearer_auth(token)
                .form(&[("topic", "/t"), ("data", "x")])
                .timeout(Duration::from_secs(10))
                .send()
                .await
                .expect("POST publish")
                .status()
        }
    };
    assert_eq!(publish("a,b").await, 200);
    // Split at the comma, the file's one audience used to be two.
    assert_eq!(publish("b").await, 401);
}

#[test]
fn a_jwks_refresh_interval_under_10s_is_refused_saying_so() {
    // `0` fetched the set 1,749 times in 3 s.
    let error = refused(
        &[
            "--publisher-jwks-url",
            "file:///nonexistent/jwks.json",
            "--jwks-refresh-interval",
            "0",
        ],
        &[],
    );
    assert!(
        error.contains("--jwks-refresh-interval") && error.contains("must be at least 10s"),
        "{error}"
    );
}

#[test]
fn a_tick_interval_under_100ms_is_refused_saying_so() {
    // `1ns` sent 38,341 events in 2 s.
    let error = refused_file("tick-interval = \"1ns\"\n");
    assert!(
        error.contains("`tick-interval`") && error.contains("must be 0 (off) or at least 100ms"),
        "{error}"
    );
}

#[test]
fn a_keep_alive_under_100ms_is_refused_saying_so() {
    // `1ns` sent 919 heartbeats a second.
    let error = refused_file("keep-alive = \"1ns\"\n");
    assert!(
        error.contains("`keep-alive`") && error.contains("must be 0 (off) or at least 100ms"),
        "{error}"
    );
}

#[test]
fn a_misspelt_key_a_wrongly_typed_value_or_a_table_stops_the_hub_with_one_line() {
    // A typo used to leave the default in force without a word.
    let error = refused_file("max-subscriber = 5\n");
    assert!(
        error.contains("\"max-subscriber\" is not a setting: did you mean `max-subscribers`?"),
        "{error}"
    );
    let error = refused_file("max-subscribers = \"many\"\n");
    assert!(
        error.contains("`max-subscribers`: invalid value \"many\": invalid digit"),
        "{error}"
    );
    let error = refused_file("[bind]\nhost = \"0.0.0.0\"\n");
    assert!(
        error.contains("`bind` must be a string, number, boolean or a list of them, not a table"),
        "{error}"
    );
}

#[test]
fn help_shows_the_settings_in_their_sections() {
    let help = Command::new(TestHub::binary())
        .arg("--help")
        .output()
        .expect("run sse-hub --help");
    assert!(help.status.success());
    let text = String::from_utf8_lossy(&help.stdout);
    for (heading, flag) in [
        ("Listening and HTTP limits:", "--max-header-size"),
        ("TLS:", "--tls-cert"),
        ("Subscribers and streams:", "--keep-alive"),
        ("Publishing:", "--publish-rate"),
        ("History and store:", "--history-size"),
        ("Authorization:", "--jwt-key"),
        ("Transport:", "--redis-stream"),
    ] {
        // A section runs to the next heading: a line that is not indented.
        let (_, after) = text
            .split_once(&format!("\n{heading}\n"))
            .unwrap_or_else(|| panic!("no {heading} in {text}"));
        let end = after
            .match_indices('\n')
            .map(|(i, _)| i + 1)
            .find(|&i| after[i..].starts_with(|c: char| c.is_ascii_alphabetic()))
            .unwrap_or(after.len());
        let section = &after[..end];
        assert!(section.contains(flag), "{flag} not under {heading}: {text}");
    }
}

#[test]
fn a_setting_that_does_nothing_without_another_is_warned_about_at_start() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = config_file(dir.path(), "redis-stream = \"mine\"\n");
    let hub = TestHub::spawn(&[
        "--config",
        file.to_str().expect("UTF-8 path"),
        "--subscriptions-ttl",
        "30s",
        "--jwks-refresh-interval",
        "1m",
        "--data-dir",
        "none",
        "--fsync",
        "never",
    ]);
    let warned = |text: &str| {
        hub.logs()
            .iter()
            .any(|l| l.contains("WARN") && l.contains(text))
    };
    for line in [
        "--redis-stream is unused: the transport is local",
        "--subscriptions-ttl is unused",
        "--jwks-refresh-interval is unused: no JWK set is configured",
        "--fsync and --salvage are unused",
    ] {
        assert!(warned(line), "no warning {line:?}: {:?}", hub.logs());
    }
    // Defaults left alone are not warned about.
    let quiet = TestHub::spawn(&["--data-dir", "none"]);
    assert!(
        !quiet.logs().iter().any(|l| l.contains("is unused")),
        "{:?}",
        quiet.logs()
    );
}
