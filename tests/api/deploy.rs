//! Deployment files: the systemd unit, checked by the real `systemd-analyze`.

use std::process::Command;

use crate::helpers::TestHub;

const UNIT: &str = include_str!("../../sse-hub.service");

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
fn the_unit_runs_the_hub_with_a_config_file_the_hub_accepts() {
    // The unit's command line, with a settings file like the README's, starts a hub.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sse-hub.toml");
    std::fs::write(
        &config,
        "allow-anonymous = true\ntick-interval = \"0\"\ndata-dir = \"history\"\n",
    )
    .unwrap();
    let hub = TestHub::spawn(&["--config", config.to_str().unwrap()]);
    assert!(hub
        .logs()
        .iter()
        .any(|l| l.contains("durable history in history")));
}
