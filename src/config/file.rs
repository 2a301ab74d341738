//! The `--config` TOML file: each key names a setting as its flag does (`max-subscribers`),
//! each value is checked by that setting's own parser before anything starts.
//!
//! The file's values become the settings' defaults, so clap's own order of precedence applies:
//! a flag, then the environment, then the file, then the built-in default. Nothing is put in
//! the environment. Tables are kept for settings made of several values: `[[issuer]]` tables
//! are the trusted issuers of access tokens ([`super::issuer`]); a table under any other
//! setting's name is refused.

use std::path::{Path, PathBuf};

use clap::{parser::ValueSource, Arg, ArgAction, ArgMatches, Command};

/// Why the `--config` file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not valid TOML: line {line}, column {column}: {message}")]
    Parse {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{path}: {problem}")]
    Setting {
        path: PathBuf,
        problem: SettingError,
    },
}

/// What is wrong with one key of the `--config` file.
#[derive(Debug, thiserror::Error)]
pub enum SettingError {
    #[error("{key:?} is not a setting{}", suggestion(.closest.as_deref()))]
    Unknown {
        key: String,
        closest: Option<String>,
    },
    #[error("`{0}` and `{1}` are the same setting: give it once")]
    Twice(String, String),
    #[error("`{0}` must be a string, number, boolean or a list of them, not a table")]
    Value(String),
    #[error("`{0}` takes one value, not a list")]
    NotAList(String),
    #[error("`{0}` can't be an empty list (leave it out for its default)")]
    Empty(String),
    /// No setting has a use for a control character; a NUL would end the value early in an
    /// environment variable or a unit file.
    #[error("`{0}` holds a control character")]
    Control(String),
    #[error("`{key}`: invalid value {value:?}: {reason}")]
    Invalid {
        key: String,
        value: String,
        reason: String,
    },
    #[error(transparent)]
    Issuer(#[from] super::issuer::IssuerError),
}

fn suggestion(closest: Option<&str>) -> String {
    closest.map_or_else(
        || " (a setting is named as its flag, without `--`)".to_owned(),
        |c| format!(": did you mean `{c}`?"),
    )
}

/// The `--config FILE` (or `SSE_HUB_CONFIG`) among `args`, before they are parsed.
#[must_use]
pub fn config_file_arg(args: &[std::ffi::OsString]) -> Option<PathBuf> {
    let mut args = args.iter().skip(1).map(|a| a.to_string_lossy());
    while let Some(arg) = args.next() {
        if arg == "--config" {
            return args.next().map(|v| PathBuf::from(v.as_ref()));
        }
        if let Some(value) = arg.strip_prefix("--config=") {
            return Some(PathBuf::from(value));
        }
    }
    std::env::var_os("SSE_HUB_CONFIG").map(PathBuf::from)
}

/// The settings a file may give: the flags that have an environment variable, `--config`
/// aside (a file can't name another).
fn settable(command: &Command) -> impl Iterator<Item = &Arg> {
    command
        .get_arguments()
        .filter(|arg| arg.get_env().is_some_and(|env| env != "SSE_HUB_CONFIG"))
}

/// A setting's name in the file: its flag without `--`.
fn key_of(arg: &Arg) -> String {
    arg.get_long().unwrap_or(arg.get_id().as_str()).to_owned()
}

/// The settings of a `--config` file, checked, as `(clap id, values)`.
#[derive(Debug, Default)]
pub struct FileSettings {
    pub values: Vec<(String, Vec<String>)>,
    /// The `[[issuer]]` tables, in order.
    pub issuers: Vec<super::issuer::IssuerSettings>,
}

impl FileSettings {
    /// Reads `path` against the settings of `command`: every key must name a setting
    /// (`allow-anonymous`; `allow_anonymous` and upper case are read too, but one setting
    /// only once), and every value must be one that setting's parser takes.
    pub fn read(path: &Path, command: &Command) -> Result<Self, ConfigFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigFileError::Read {
            path: path.to_owned(),
            source,
        })?;
        let table: toml::Table = text.parse().map_err(|err: toml::de::Error| {
            // toml's own rendering quotes the line over several lines of the log.
            let before = text
                .get(..err.span().map_or(0, |s| s.start))
                .unwrap_or(&text);
            ConfigFileError::Parse {
                path: path.to_owned(),
                line: before.matches('\n').count() + 1,
                column: before.chars().rev().take_while(|&c| c != '\n').count() + 1,
                message: err.message().replace('\n', " "),
            }
        })?;
        let mut file = Self::default();
        let mut keys: Vec<(String, &str)> = Vec::new();
        for (key, value) in &table {
            let problem = |problem| ConfigFileError::Setting {
                path: path.to_owned(),
                problem,
            };
            let name = key.to_lowercase().replace('_', "-");
            if let (Some(tables), "issuer") = (issuer_tables(value), name.as_str()) {
                for (index, table) in tables.into_iter().enumerate() {
                    let issuer = super::issuer::IssuerSettings::from_table(index, table)
                        .map_err(|e| problem(e.into()))?;
                    file.issuers.push(issuer);
                }
                continue;
            }
            let arg = settable(command)
                .find(|arg| key_of(arg) == name)
                .ok_or_else(|| {
                    problem(SettingError::Unknown {
                        key: key.clone(),
                        closest: closest(command, &name),
                    })
                })?;
            if let Some((_, first)) = keys.iter().find(|(n, _)| *n == name) {
                return Err(problem(SettingError::Twice(
                    (*first).to_owned(),
                    key.clone(),
                )));
            }
            keys.push((name, key));
            if let Some(values) = values_of(arg, key, value).map_err(problem)? {
                file.values.push((arg.get_id().to_string(), values));
            }
        }
        Ok(file)
    }

    /// `command` with the file's values as its settings' defaults: a flag or an environment
    /// variable still wins over them.
    #[must_use]
    pub fn apply(&self, command: Command) -> Command {
        self.values.iter().fold(command, |command, (id, values)| {
            command.mut_arg(id, |arg| arg.default_values(values.iter().cloned()))
        })
    }

    /// The list settings whose values are the file's in `matches`: clap splits defaults at
    /// the setting's delimiter too, so these must be read again without it, their elements
    /// whole.
    #[must_use]
    pub fn lists_used(&self, command: &Command, matches: &ArgMatches) -> Vec<String> {
        self.values
            .iter()
            .map(|(id, _)| id)
            .filter(|id| {
                command
                    .get_arguments()
                    .any(|a| a.get_id() == id.as_str() && a.get_value_delimiter().is_some())
                    && matches.value_source(id) == Some(ValueSource::DefaultValue)
            })
            .cloned()
            .collect()
    }
}

/// The closest setting to a misspelt `name`, if one is close.
fn closest(command: &Command, name: &str) -> Option<String> {
    settable(command)
        .map(|arg| (strsim::jaro_winkler(name, &key_of(arg)), key_of(arg)))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, key)| key)
}

/// The values `key = value` gives `arg`, each checked by its parser; `None` for an empty list
/// where the setting has no default (no origins, audiences…: as if left out).
fn values_of(
    arg: &Arg,
    key: &str,
    value: &toml::Value,
) -> Result<Option<Vec<String>>, SettingError> {
    let list = arg.get_value_delimiter().is_some();
    let values = match value {
        toml::Value::Array(_) if !list => return Err(SettingError::NotAList(key.to_owned())),
        toml::Value::Array(items) => items
            .iter()
            .map(scalar)
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| SettingError::Value(key.to_owned()))?,
        // A single string is one value, or a list split at commas, as from the environment.
        single => {
            let text = scalar(single).ok_or_else(|| SettingError::Value(key.to_owned()))?;
            match arg.get_value_delimiter() {
                Some(delimiter) => text.split(delimiter).map(str::to_owned).collect(),
                None => vec![text],
            }
        }
    };
    if values.iter().any(|v| v.chars().any(char::is_control)) {
        return Err(SettingError::Control(key.to_owned()));
    }
    if values.is_empty() {
        return if arg.get_default_values().is_empty() {
            Ok(None)
        } else {
            Err(SettingError::Empty(key.to_owned()))
        };
    }
    // The setting's own parser, alone: what it says of a value, whatever else the flag has.
    let probe = Command::new("file").no_binary_name(true).arg(
        Arg::new("value")
            .long("value")
            .action(ArgAction::Set)
            .value_parser(arg.get_value_parser().clone()),
    );
    for value in &values {
        if let Err(err) = probe
            .clone()
            .try_get_matches_from(["--value", value.as_str()])
        {
            return Err(SettingError::Invalid {
                key: key.to_owned(),
                value: value.clone(),
                reason: reason(&err),
            });
        }
    }
    Ok(Some(values))
}

/// What a value parser said, without clap's framing (`invalid value … for …:`).
fn reason(err: &clap::Error) -> String {
    let text = super::one_line(err);
    text.rsplit_once("': ")
        .map_or(text.clone(), |(_, why)| why.to_owned())
}

/// The tables of `[[issuer]]` (or `issuer = { … }`, one table), if `value` is made of tables.
fn issuer_tables(value: &toml::Value) -> Option<Vec<&toml::Table>> {
    match value {
        toml::Value::Table(table) => Some(vec![table]),
        toml::Value::Array(items) if !items.is_empty() => {
            items.iter().map(toml::Value::as_table).collect()
        }
        _ => None,
    }
}

/// A TOML value as text, if it is a scalar.
fn scalar(value: &toml::Value) -> Option<String> {
    match value {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;

    use clap::{CommandFactory, FromArgMatches};

    use super::*;
    use crate::config::{load, Cli};

    /// Writes `text` as a config file and reads it.
    fn read(text: &str) -> Result<FileSettings, ConfigFileError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hub.toml");
        std::fs::write(&path, text).unwrap();
        FileSettings::read(&path, &Cli::command())
    }

    #[test]
    fn a_config_file_gives_each_setting_its_values_with_list_elements_whole() {
        let mut file = read(
            "bind = \"0.0.0.0:9000\"\nallow-anonymous = true\nmax-topics = 8\n\
             cors-origin = [\"https://a.example\", \"https://b.example\"]\n\
             jwt-audience = [\"x,y\"]\njwt-issuer = []\n",
        )
        .unwrap();
        file.values.sort();
        let owned = |(id, values): (&str, &[&str])| {
            (
                id.to_owned(),
                values.iter().map(|v| (*v).to_owned()).collect(),
            )
        };
        // An empty list of a setting without default is as if left out.
        assert_eq!(
            file.values,
            [
                ("allow_anonymous", &["true"][..]),
                ("bind", &["0.0.0.0:9000"]),
                ("cors_origins", &["https://a.example", "https://b.example"]),
                ("jwt_audiences", &["x,y"]),
                ("max_topics", &["8"]),
            ]
            .map(owned)
        );
        // As defaults, under flags: the list element stays whole, the flag wins.
        let command = file.apply(Cli::command());
        let args = ["sse-hub", "--max-topics", "9"];
        let matches = command.clone().try_get_matches_from(args).unwrap();
        let whole = file.lists_used(&command, &matches);
        let command = whole.iter().fold(command, |command, id| {
            command.mut_arg(id, |arg| arg.value_delimiter(None))
        });
        let cli = Cli::from_arg_matches(&command.try_get_matches_from(args).unwrap()).unwrap();
        assert_eq!(cli.config.auth.jwt_audiences, ["x,y"]);
        assert_eq!(cli.config.streams.max_topics, 9);
        assert!(cli.config.auth.allow_anonymous);
        let args: Vec<OsString> = ["sse-hub", "--config", "x.toml"].map(Into::into).to_vec();
        assert_eq!(config_file_arg(&args), Some(PathBuf::from("x.toml")));
    }

    #[test]
    fn a_config_file_mistake_is_one_line_naming_it() {
        for (text, expected) in [
            ("bind = { a = 1 }\n", "`bind` must be a string"),
            ("bind = \n", "is not valid TOML"),
            ("\"a=b\" = 1\n", "\"a=b\" is not a setting"),
            (
                "alow-anonymous = true\n",
                "\"alow-anonymous\" is not a setting: did you mean `allow-anonymous`?",
            ),
            ("max-subscriber = 5\n", "did you mean `max-subscribers`?"),
            ("config = \"other.toml\"\n", "\"config\" is not a setting"),
            (
                "allow-anonymous = true\nallow_anonymous = false\n",
                "`allow-anonymous` and `allow_anonymous` are the same setting",
            ),
            (
                "time-topic = \"/t\\u0000x\"\n",
                "`time-topic` holds a control character",
            ),
            (
                "cors-origin = [\"https://a\\u001fb\"]\n",
                "`cors-origin` holds a control",
            ),
            (
                "bind = [\"127.0.0.1:1\"]\n",
                "`bind` takes one value, not a list",
            ),
            (
                "trusted-proxy = []\n",
                "`trusted-proxy` can't be an empty list",
            ),
            (
                "max-subscribers = \"many\"\n",
                "`max-subscribers`: invalid value \"many\": invalid digit",
            ),
            (
                "tick-interval = \"1ns\"\n",
                "`tick-interval`: invalid value \"1ns\": must be 0 (off) or at least 100ms",
            ),
            (
                "allow-anonymous = \"maybe\"\n",
                "`allow-anonymous`: invalid value \"maybe\"",
            ),
            (
                "cors-origin = [\"https://a.example,https://evil.example\"]\n",
                "`cors-origin`: invalid value \"https://a.example,https://evil.example\"",
            ),
        ] {
            let err = read(text).expect_err(text).to_string();
            assert!(err.contains(expected), "{text:?}: {err}");
            assert!(!err.contains('\n'), "{err}");
        }
    }

    #[test]
    fn loading_puts_nothing_in_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hub.toml");
        std::fs::write(&path, "redis-stream = \"from-the-file\"\n").unwrap();
        let args: Vec<OsString> = ["sse-hub", "--config", path.to_str().unwrap()]
            .map(Into::into)
            .to_vec();
        let cli = load(&args).unwrap();
        assert_eq!(cli.config.transport.redis_stream, "from-the-file");
        assert_eq!(std::env::var_os("SSE_HUB_REDIS_STREAM"), None);
    }
}
