//! Deployment files: the systemd unit, checked by the real `systemd-analyze`, and the settings
//! file it reads, `deploy/sse-hub.toml`, run by the real hub.

use std::{path::Path, process::Command};

use crate::helpers::{client, TestHub};

const UNIT: &str = include_str!("../../sse-hub.service");
/// Where the unit reads its settings, and where the shipped example goes.
const INSTALLED_CONFIG: &str = "/etc/sse-hub/sse-hub.toml";

fn shipped_config() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/sse-hub.toml");
    std::fs::read_to_string(path).expect("read deploy/sse-hub.toml")
}

/// The settings lines of a TOML text: no comments, no blank lines.
fn settings(toml: &str) -> Vec<&str> {
    toml.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
}

#[test]
fn the_systemd_unit_verifies_cleanly_and_is_hardened() {
    for setting in [
        "DynamicUser=yes",
        "LimitNOFILE=",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "StateDirectory=sse-hub",
        "SystemCallFilter=@system-service",
    ] {
        assert!(
            UNIT.lines().any(|l| l.starts_with(setting)),
            "missing {setting}"
        );
    }
    // verify checks that the command exists: point it at the binary under test.
    let dir = tempfile::tempdir().unwrap();
    let unit = dir.path().join("sse-hub.service");
    let installed = "/usr/local/bin/sse-hub";
    assert!(UNIT.contains(installed));
    std::fs::write(&unit, UNIT.replace(installed, TestHub::binary())).unwrap();
    let verify = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&unit)
        .output()
        .expect("run systemd-analyze (apt-get install systemd; .ci/run does)");
    let stderr = String::from_utf8_lossy(&verify.stderr);
    assert!(verify.status.success(), "{stderr}");
    // Unknown or misspelt settings are only warnings: none may appear.
    assert!(stderr.trim().is_empty(), "{stderr}");
}

#[test]
fn the_unit_takes_every_setting_from_its_config_file() {
    // The environment wins over the file: a value set here would silently beat the file's.
    for line in UNIT.lines() {
        assert!(
            !line.starts_with("Environment") || !line.contains("SSE_HUB_"),
            "{line}"
        );
    }
    let exec = UNIT
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("ExecStart");
    assert!(
        exec.ends_with(&format!("--config {INSTALLED_CONFIG}")),
        "{exec}"
    );
    assert!(shipped_config().contains(INSTALLED_CONFIG));
    // The durable history goes where the unit keeps state.
    let data_dir = settings(&shipped_config())
        .into_iter()
        .find_map(|l| l.strip_prefix("data-dir = "))
        .map(|v| v.trim_matches('"').to_owned())
        .expect("data-dir in deploy/sse-hub.toml");
    assert!(UNIT.contains("StateDirectory=sse-hub\n"));
    assert!(data_dir.starts_with("/var/lib/sse-hub/"), "{data_dir}");
}

#[test]
fn the_documented_config_example_is_the_shipped_file() {
    let reference = include_str!("../../docs/configuration.md");
    let (_, example) = reference
        .split_once("```toml\n# sse-hub.toml")
        .expect("the settings example of docs/configuration.md");
    // From the end of the line that names the file to the end of the block.
    let (_, example) = example.split_once('\n').unwrap();
    let (example, _) = example.split_once("```").unwrap();
    let shipped = shipped_config();
    let shipped = settings(&shipped);
    let example = settings(example);
    assert!(!example.is_empty());
    for line in example {
        assert!(
            shipped.contains(&line),
            "{line} is not in deploy/sse-hub.toml"
        );
    }
}

#[tokio::test]
async fn the_units_command_line_with_the_shipped_config_runs_the_hub_as_configured() {
    let exec = UNIT
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("ExecStart");
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/sse-hub.toml");
    let exec = exec
        .replace("/usr/local/bin/sse-hub", TestHub::binary())
        .replace(INSTALLED_CONFIG, config.to_str().unwrap());
    let mut args: Vec<&str> = exec.split_whitespace().collect();
    let program = args.remove(0);
    assert_eq!(program, TestHub::binary());
    // Flags win over the file: a free port and a temp directory in place of the system's.
    let dir = tempfile::tempdir().unwrap();
    let history = dir.path().join("history");
    args.extend(["--bind", "127.0.0.1:0", "--data-dir"]);
    args.push(history.to_str().unwrap());
    let hub = TestHub::spawn_with(&args, dir.path());
    assert!(
        hub.logged(&format!("durable history in {}", history.display())),
        "{:?}",
        hub.logs()
    );
    // allow-anonymous: a subscriber without a token is served.
    let mut sse = crate::helpers::SseClient::connect(
        &hub.url("/.well-known/mercure?topic=%2Fbooks%2F1"),
        &[],
    )
    .await;
    assert_eq!(sse.status, 200);
    sse.opened().await;
    // cors-origin: pages of that origin may read the hub's answers, others not.
    let allowed = |origin: &'static str| {
        let url = hub.url("/.well-known/mercure?topic=%2Fbooks%2F1");
        async move {
            let response = client()
                .get(url)
                .header("Origin", origin)
                .timeout(std::time::Duration::from_secs(2))
                .send()
                .await
                .expect("GET with Origin");
            response
                .headers()
                .get("access-control-allow-origin")
                .map(|v| v.to_str().unwrap().to_owned())
        }
    };
    assert_eq!(
        allowed("https://app.example").await.as_deref(),
        Some("https://app.example")
    );
    assert_eq!(allowed("https://elsewhere.example").await, None);
}
