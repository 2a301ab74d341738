//! The documentation against what it documents: the configuration reference against the
//! binary's `--help`, and every relative link of README.md and docs/ against the files and
//! headings it points to.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    process::Command,
};

use crate::helpers::TestHub;

/// The configuration reference, read when the test runs (an edit needs no rebuild).
const REFERENCE: &str = "docs/configuration.md";
/// `--help`'s heading of the settings that belong to no section (`--config`).
const UNSECTIONED: &str = "Options";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// One setting as `sse-hub --help` lists it.
#[derive(Debug)]
struct Setting {
    heading: String,
    env: Option<String>,
    default: Option<String>,
}

/// Every `--flag` of `sse-hub --help` (but `--help` and `--version`), with its heading, its
/// variable and its default.
fn settings_of_help() -> BTreeMap<String, Setting> {
    let out = Command::new(TestHub::binary())
        .arg("--help")
        .env("NO_COLOR", "1")
        .output()
        .expect("run sse-hub --help");
    assert!(out.status.success(), "{out:?}");
    let help = String::from_utf8(out.stdout).expect("UTF-8 help");
    let mut settings = BTreeMap::new();
    let mut heading = String::new();
    let mut current: Option<String> = None;
    for line in help.lines() {
        if let Some(name) = line.strip_suffix(':').filter(|_| !line.starts_with(' ')) {
            heading = name.to_owned();
            current = None;
            continue;
        }
        let trimmed = line.trim_start();
        let flag_line = trimmed.strip_prefix("-h, ").unwrap_or(trimmed);
        if line.starts_with("  ") && flag_line.starts_with("--") {
            let flag = flag_line.split_whitespace().next().unwrap().to_owned();
            current = Some(flag.clone());
            settings.insert(
                flag,
                Setting {
                    heading: heading.clone(),
                    env: None,
                    default: None,
                },
            );
        } else if let Some(setting) = current.as_ref().and_then(|f| settings.get_mut(f)) {
            if let Some(env) = trimmed.strip_prefix("[env: ") {
                let env = env.trim_end_matches(']').trim_end_matches('=');
                setting.env = Some(env.to_owned());
            } else if let Some(default) = trimmed.strip_prefix("[default: ") {
                setting.default = Some(default.trim_end_matches(']').to_owned());
            }
        }
    }
    settings.remove("--help");
    settings.remove("--version");
    assert!(
        settings.len() > 40 && settings.values().any(|s| s.heading == "TLS"),
        "--help no longer reads as expected: {settings:?}"
    );
    settings
}

/// One row of a reference table: its cells, backticks removed, under its `##` heading.
#[derive(Debug)]
struct Row {
    heading: String,
    cells: Vec<String>,
}

/// The rows of the reference's tables whose first cell is a flag, by flag.
fn reference_rows(reference: &str) -> BTreeMap<String, Row> {
    let mut rows = BTreeMap::new();
    let mut heading = String::new();
    for line in reference.lines() {
        if let Some(h) = line.strip_prefix("## ") {
            heading = h.trim().to_owned();
        }
        let Some(inner) = line.strip_prefix("| `--") else {
            continue;
        };
        let cells: Vec<String> = format!("`--{inner}")
            .trim_end_matches('|')
            .split(" | ")
            .map(|c| c.trim().trim_matches('`').to_owned())
            .collect();
        let previous = rows.insert(
            cells[0].clone(),
            Row {
                heading: heading.clone(),
                cells,
            },
        );
        assert!(previous.is_none(), "{line}: a second row for this flag");
    }
    rows
}

#[test]
fn every_flag_of_help_is_in_the_configuration_reference_under_its_heading() {
    let reference = read(&repo().join(REFERENCE));
    let rows = reference_rows(&reference);
    let mut wrong = Vec::new();
    for (flag, setting) in settings_of_help() {
        let Some(row) = rows.get(&flag) else {
            wrong.push(format!("{flag} has no row"));
            continue;
        };
        if setting.heading != UNSECTIONED && row.heading != setting.heading {
            wrong.push(format!(
                "{flag} is under \"{}\", --help lists it under \"{}\"",
                row.heading, setting.heading
            ));
        }
        // flag | environment | default | meaning
        if row.cells.len() != 4 {
            wrong.push(format!("{flag}: a row of {} cells", row.cells.len()));
            continue;
        }
        let env = setting.env.as_deref().unwrap_or("(none)");
        if row.cells[1] != env {
            wrong.push(format!(
                "{flag}: variable {} where --help says {env}",
                row.cells[1]
            ));
        }
        if let Some(default) = &setting.default {
            if &row.cells[2] != default {
                wrong.push(format!(
                    "{flag}: default {} where --help says {default}",
                    row.cells[2]
                ));
            }
        }
        if row.cells[3].is_empty() {
            wrong.push(format!("{flag}: no meaning"));
        }
    }
    assert!(wrong.is_empty(), "{REFERENCE}:\n{}", wrong.join("\n"));
}

#[test]
fn the_configuration_reference_names_no_flag_help_does_not_have() {
    let reference = read(&repo().join(REFERENCE));
    let help = settings_of_help();
    let headings: BTreeSet<&str> = help.values().map(|s| s.heading.as_str()).collect();
    let rows = reference_rows(&reference);
    for (flag, row) in &rows {
        assert!(
            help.contains_key(flag),
            "{REFERENCE}: a row for {flag}, which --help does not have"
        );
        assert!(
            headings.contains(row.heading.as_str()) || help[flag].heading == UNSECTIONED,
            "{REFERENCE}: section \"{}\" is no heading of --help",
            row.heading
        );
    }
    // Nor in its text: every `--flag` it mentions is one of the hub's.
    for word in reference.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-')) {
        if let Some(name) = word.strip_prefix("--") {
            if name.starts_with(|c: char| c.is_ascii_lowercase()) {
                assert!(
                    help.contains_key(word) || word == "--help" || word == "--version",
                    "{REFERENCE} mentions {word}, which --help does not have"
                );
            }
        }
    }
}

/// GitHub's anchor of a heading: lower case, punctuation dropped, spaces as `-`.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// Markdown text without its fenced code blocks and inline code spans.
fn prose(markdown: &str) -> String {
    let mut out = String::new();
    let mut fenced = false;
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        // Odd pieces between backticks are code.
        for (i, piece) in line.split('`').enumerate() {
            if i % 2 == 0 {
                out.push_str(piece);
            }
        }
        out.push('\n');
    }
    out
}

/// The targets of the inline links (`[text](target)`, images too) of a markdown text.
fn link_targets(markdown: &str) -> Vec<String> {
    prose(markdown)
        .split("](")
        .skip(1)
        .filter_map(|rest| rest.split_once(')').map(|(t, _)| t.trim().to_owned()))
        .collect()
}

fn anchors_of(markdown: &str) -> BTreeSet<String> {
    let mut fenced = false;
    let mut anchors = BTreeSet::new();
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        } else if !fenced && line.starts_with('#') {
            anchors.insert(anchor(line.trim_start_matches('#')));
        }
    }
    anchors
}

fn documentation_files() -> Vec<PathBuf> {
    let mut files = vec![repo().join("README.md")];
    let mut pages: Vec<PathBuf> = std::fs::read_dir(repo().join("docs"))
        .expect("docs/")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    pages.sort();
    assert!(pages.len() >= 4, "{pages:?}");
    files.extend(pages);
    files
}

#[test]
fn every_relative_link_of_the_readme_and_docs_resolves() {
    let mut broken = Vec::new();
    let mut checked = 0;
    for file in documentation_files() {
        let text = read(&file);
        let name = file.strip_prefix(repo()).unwrap().display().to_string();
        for target in link_targets(&text) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            checked += 1;
            let (path, fragment) = target.split_once('#').unwrap_or((&target, ""));
            let linked = if path.is_empty() {
                file.clone()
            } else {
                file.parent().unwrap().join(path)
            };
            if !linked.exists() {
                broken.push(format!("{name}: {target}: no such file"));
                continue;
            }
            if !fragment.is_empty() && !anchors_of(&read(&linked)).contains(fragment) {
                broken.push(format!("{name}: {target}: no such heading"));
            }
        }
    }
    assert!(broken.is_empty(), "{}", broken.join("\n"));
    assert!(
        checked > 20,
        "only {checked} links found: is the parser still right?"
    );
}

#[test]
fn the_readme_links_every_page_of_docs() {
    let readme = read(&repo().join("README.md"));
    let targets = link_targets(&readme);
    for page in documentation_files().iter().skip(1) {
        let page = page.strip_prefix(repo()).unwrap().display().to_string();
        assert!(
            targets.iter().any(|t| t.split('#').next() == Some(&page)),
            "README.md does not link {page}"
        );
    }
}
