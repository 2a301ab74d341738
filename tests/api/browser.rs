//! The dashboard in a real headless Chromium: runs `tests/browser/dashboard.test.mjs` (Node's
//! test runner with playwright-core) against the binary under test; and the hub's URL Pattern
//! matching against Chromium's own `URLPattern` (`tests/browser/urlpattern.test.mjs`).

use std::{
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

/// The whole browser suite must finish within this.
const LIMIT: Duration = Duration::from_secs(300);

/// `tests/browser`, with its Node modules installed and Chromium checked.
///
/// The browser tests run in parallel: the modules are installed once, by the first to ask,
/// while the others wait (`npm ci` empties `node_modules` before it fills it).
fn browser_dir() -> std::path::PathBuf {
    static INSTALLED: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    let dir = INSTALLED.get_or_init(|| {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
        if !dir.join("node_modules/playwright-core").exists() {
            let status = Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund"])
                .current_dir(&dir)
                .status()
                .expect("run npm (Node.js is needed for the browser tests)");
            assert!(status.success(), "npm ci failed in tests/browser");
        }
        dir
    });
    assert!(
        Path::new("/usr/bin/chromium").exists(),
        "Chromium is missing: apt-get install chromium (.ci/run does)"
    );
    dir.clone()
}

/// Runs `node --test` on the test files of `args` in `dir`, with the binary under test in
/// `SSE_HUB_BIN` and `env`, within [`LIMIT`]; returns whether it passed and its report (what
/// the test runner printed).
fn run_node(dir: &Path, args: &[&str], env: &[(&str, &Path)]) -> (bool, String) {
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser");
    std::fs::create_dir_all(&out).unwrap();
    let log = out.join(format!("{}.log", args.last().expect("a test file")));
    let mut child = Command::new("node")
        .arg("--test")
        .args(args)
        .current_dir(dir)
        .env("SSE_HUB_BIN", env!("CARGO_BIN_EXE_sse-hub"))
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("run node");
    let deadline = Instant::now() + LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("node --test {args:?} still running after {LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    (
        status.success(),
        std::fs::read_to_string(&log).unwrap_or_default(),
    )
}

#[test]
fn dashboard_works_in_headless_chromium() {
    let dir = browser_dir();
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser");
    let (passed, report) = run_node(
        &dir,
        &["--test-concurrency=1", "dashboard.test.mjs"],
        &[("BROWSER_OUT", &out)],
    );
    assert!(passed, "browser tests failed:\n{report}");
    assert!(out.join("dashboard.png").exists(), "no screenshot written");
}

#[test]
fn url_pattern_matching_agrees_with_chromium() {
    let dir = browser_dir();
    let (passed, report) = run_node(&dir, &["urlpattern.test.mjs"], &[]);
    assert!(passed, "the hub and Chromium disagree:\n{report}");
    assert!(report.contains(" pairs, "), "no pairs compared:\n{report}");
}
