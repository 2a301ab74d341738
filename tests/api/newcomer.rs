//! A newcomer's first run, as README.md tells it: its own commands, taken from the code blocks
//! it marks `<!-- newcomer-test: NAME -->`, run as written on a free port, and what each should
//! do checked. `cargo run --release [-q] --` becomes the binary under test and `127.0.0.1:8080`
//! the test hub's address; nothing else is changed.

use std::{
    io::Read,
    path::Path,
    process::{Child, Command, Output, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use crate::helpers::{claims_of, client, now, wait_until, SseClient, TestHub};

/// The address the README's commands use.
const README_ADDR: &str = "127.0.0.1:8080";

fn readme() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
    std::fs::read_to_string(&path).expect("read README.md")
}

/// The `sh` block README.md marks with `<!-- newcomer-test: {name} -->`, without its fences.
fn block(readme: &str, name: &str) -> String {
    let marker = format!("<!-- newcomer-test: {name} -->\n```sh\n");
    let (_, rest) = readme.split_once(&marker).unwrap_or_else(|| {
        panic!(
            "README.md has no ```sh block right after `<!-- newcomer-test: {name} -->`: this \
             test runs the README's commands from the blocks so marked; keep the marker above \
             the block it names"
        )
    });
    let (block, _) = rest.split_once("\n```").expect("the block ends");
    block.to_owned()
}

/// `text` with `from` replaced by `to`, which it must contain.
fn rewrite(text: &str, from: &str, to: &str) -> String {
    assert!(
        text.contains(from),
        "README.md's block no longer holds `{from}`, which this test rewrites:\n{text}"
    );
    text.replace(from, to)
}

/// `bash -c script`, with no `SSE_HUB_*` variable from the test's own environment.
fn shell(script: &str) -> Command {
    let mut command = Command::new("bash");
    command.arg("-e").arg("-c").arg(script);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("SSE_HUB_") {
            command.env_remove(name);
        }
    }
    command
}

/// Starts a hub block of the README: its `cargo run --release` runs the binary under test, on
/// a free port (`SSE_HUB_BIND`, the block binding none of its own), from a fresh directory.
fn start_hub(block: &str, cwd: &Path) -> TestHub {
    assert!(
        !block.contains("--bind") && !block.contains("SSE_HUB_BIND"),
        "the block binds: {block}"
    );
    // `cargo run --release -- ARGS`, or `cargo run --release` alone.
    let cargo = if block.contains("cargo run --release --") {
        "cargo run --release --"
    } else {
        "cargo run --release"
    };
    let script = rewrite(block, cargo, &format!("exec '{}'", TestHub::binary()));
    let mut command = shell(&script);
    command.env("SSE_HUB_BIND", "127.0.0.1:0").current_dir(cwd);
    TestHub::spawn_command(command)
}

/// Runs `command` to its end, killed and failed past `limit`.
fn run_within(mut command: Command, limit: Duration) -> Output {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the command");
    let deadline = Instant::now() + limit;
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("{command:?} did not end within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

/// A command running in the background whose output is gathered as it comes; killed when
/// dropped.
struct Background {
    child: Child,
    output: Arc<Mutex<String>>,
}

impl Background {
    fn start(mut command: Command) -> Self {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the command");
        let mut stdout = child.stdout.take().unwrap();
        let output = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&output);
        std::thread::spawn(move || {
            let mut buf = [0; 4096];
            while let Ok(n @ 1..) = stdout.read(&mut buf) {
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Self { child, output }
    }

    fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// Waits up to `limit` for the output to contain `text`.
    async fn printed(&self, text: &str, limit: Duration) -> bool {
        wait_until(limit, || async { self.output().contains(text) }).await
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn the_readmes_run_command_serves_the_dashboard_and_its_clock() {
    let readme = readme();
    let run = block(&readme, "run");
    let dir = tempfile::tempdir().unwrap();
    let hub = start_hub(&run, dir.path());
    let page = client().get(hub.url("/")).send().await.expect("GET /");
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("<html"));
    // "the dashboard shows a live server clock": the stream it reads ticks.
    let mut clock = SseClient::connect(&hub.url("/events"), &[]).await;
    clock.opened().await;
    let tick = clock
        .next_event(Duration::from_secs(5))
        .await
        .expect("a tick");
    assert_eq!(tick.event.as_deref(), Some("time"), "{tick:?}");
    // "the history of published updates is kept in ./sse-hub-data".
    assert!(dir.path().join("sse-hub-data").is_dir());
}

#[tokio::test]
async fn the_readmes_subscriber_prints_what_its_publisher_sends_with_the_token_it_mints() {
    let readme = readme();
    let dir = tempfile::tempdir().unwrap();
    // First terminal: the hub with a key.
    let hub = start_hub(&block(&readme, "hub"), dir.path());
    let here = |text: &str| rewrite(text, README_ADDR, &hub.addr);

    // Second terminal: the subscriber, as the one command it is.
    let subscriber = block(&readme, "subscriber");
    assert!(!subscriber.contains('\n'), "one command: {subscriber}");
    let subscriber = Background::start(shell(&format!("exec {}", here(&subscriber))));
    assert!(
        subscriber.printed("retry:", Duration::from_secs(10)).await,
        "the subscriber's curl printed no opening bytes: {:?}",
        subscriber.output()
    );

    // Third terminal: the token and the update; the token printed after, to look at it.
    let publisher = block(&readme, "publisher");
    let script = rewrite(
        &here(&publisher),
        "cargo run --release -q --",
        &format!("'{}'", TestHub::binary()),
    ) + "\nprintf '\\ntoken=%s\\n' \"$TOKEN\"";
    let published = run_within(shell(&script), Duration::from_secs(20));
    assert!(published.status.success(), "{published:?}");
    let stdout = String::from_utf8(published.stdout).unwrap();
    let (id, token) = stdout
        .split_once("\ntoken=")
        .expect("the id, then the token");
    assert!(id.starts_with("urn:uuid:"), "the publish answered {id:?}");

    // The walkthrough says the token is a short-lived Mercure 1.0 access token from that
    // issuer, for this hub, that may publish anywhere.
    let header = jsonwebtoken::decode_header(token.trim()).expect("a JWS");
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    let claims = claims_of(token.trim());
    let exp = claims["exp"].as_u64().expect("the token expires");
    assert!(exp <= now() + 3600 + 5, "exp {exp}: not within the hour");
    assert_eq!(claims["iss"], "https://example.com");
    assert_eq!(claims["aud"], "http://127.0.0.1:8080/.well-known/mercure");
    let details = &claims["authorization_details"][0];
    assert_eq!(details["actions"], serde_json::json!(["publish"]));
    assert_eq!(details["topics"][0]["match"], "*");

    // The subscriber prints the update at once.
    let update = format!("id: {id}\ndata: {{\"title\":\"Dune\"}}\n");
    assert!(
        subscriber.printed(&update, Duration::from_secs(5)).await,
        "the subscriber printed {:?}",
        subscriber.output()
    );
}

#[test]
fn the_readme_names_the_rust_that_builds_the_hub_and_the_test_command_exists() {
    let manifest = include_str!("../../Cargo.toml");
    let version = manifest
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = "))
        .expect("rust-version in Cargo.toml")
        .trim_matches('"');
    let readme = readme();
    assert!(
        readme.contains(&format!("Rust {version} or newer")),
        "README.md does not say \"Rust {version} or newer\""
    );
    let test = block(&readme, "test");
    let script = test.strip_prefix("bash ").expect("bash SCRIPT");
    assert!(
        Path::new(env!("CARGO_MANIFEST_DIR")).join(script).is_file(),
        "{script}"
    );
}
