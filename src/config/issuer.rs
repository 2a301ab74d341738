//! The config file's `[[issuer]]` tables: each trusted issuer of Mercure 1.0 access tokens,
//! with its own keys. Each value is checked by the parser its flag uses (`jwt_key` as
//! `--jwt-key`…), through a small clap command of those flags, so both accept the same values.

use clap::{Args, Command, FromArgMatches};

use super::values::{absolute_url, JwtAlgorithm, Secret};
use crate::auth::jwks::JwksUrl;

/// What is wrong with an `[[issuer]]` table (the file's error names the file).
#[derive(Debug, thiserror::Error)]
pub enum IssuerError {
    #[error("{key:?} is not a setting{}", closest.as_ref().map(|c| format!(": did you mean `{c}`?")).unwrap_or_default())]
    Unknown {
        key: String,
        closest: Option<String>,
    },
    #[error("`{0}` must be a string or a boolean")]
    Value(String),
    #[error("`{0}` holds a control character")]
    Control(String),
    #[error("`{key}`: {reason}")]
    Invalid { key: String, reason: String },
}

/// One trusted issuer: its id (a token's `iss` must equal it byte for byte) and the keys that
/// verify its publisher and subscriber tokens. The `--issuer` flag makes one of these from the
/// hub's key flags; the file's `[[issuer]]` tables make the others.
#[derive(Debug, Clone, Args)]
pub struct IssuerSettings {
    /// The issuer identifier.
    #[arg(long, value_parser = absolute_url)]
    pub id: String,
    /// Key of both roles, unless a role has its own.
    #[arg(long)]
    pub jwt_key: Option<Secret>,
    #[arg(long)]
    pub publisher_jwt_key: Option<Secret>,
    #[arg(long)]
    pub subscriber_jwt_key: Option<Secret>,
    #[arg(long)]
    pub publisher_jwks_url: Option<JwksUrl>,
    #[arg(long)]
    pub subscriber_jwks_url: Option<JwksUrl>,
    #[arg(long, value_enum, default_value = "HS256")]
    pub jwt_algorithm: JwtAlgorithm,
    /// Advertise this issuer in the protected resource metadata's `authorization_servers`.
    #[arg(long, action = clap::ArgAction::Set, default_value_t = false)]
    pub authorization_server: bool,
}

impl IssuerSettings {
    /// The key for publisher tokens, if any.
    #[must_use]
    pub fn publisher_key(&self) -> Option<&Secret> {
        self.publisher_jwt_key.as_ref().or(self.jwt_key.as_ref())
    }

    /// The key for subscriber tokens, if any.
    #[must_use]
    pub fn subscriber_key(&self) -> Option<&Secret> {
        self.subscriber_jwt_key.as_ref().or(self.jwt_key.as_ref())
    }

    /// Reads the `index`th `[[issuer]]` table: every key known (`jwt_key` or `jwt-key`), every
    /// value one its flag's parser takes, `id` present.
    pub(super) fn from_table(index: usize, table: &toml::Table) -> Result<Self, IssuerError> {
        let command = Self::augment_args(Command::new("issuer").no_binary_name(true));
        let known: Vec<String> = command
            .get_arguments()
            .filter_map(|a| a.get_long().map(str::to_owned))
            .collect();
        let mut argv = Vec::new();
        for (key, value) in table {
            let name = key.to_lowercase().replace('_', "-");
            let at = format!("issuer[{index}].{key}");
            if !known.contains(&name) {
                let closest = known
                    .iter()
                    .map(|k| (strsim::jaro_winkler(&name, k), k))
                    .filter(|(score, _)| *score > 0.8)
                    .max_by(|a, b| a.0.total_cmp(&b.0))
                    .map(|(_, k)| format!("issuer.{}", k.replace('-', "_")));
                return Err(IssuerError::Unknown { key: at, closest });
            }
            let text = match value {
                toml::Value::String(s) => s.clone(),
                toml::Value::Boolean(b) => b.to_string(),
                _ => return Err(IssuerError::Value(at)),
            };
            if text.chars().any(char::is_control) {
                return Err(IssuerError::Control(at));
            }
            argv.push(format!("--{name}"));
            argv.push(text);
        }
        if !table.contains_key("id") {
            return Err(IssuerError::Invalid {
                key: format!("issuer[{index}]"),
                reason: "an issuer needs its `id`".into(),
            });
        }
        let invalid = |err: clap::Error| IssuerError::Invalid {
            key: format!("issuer[{index}]"),
            reason: super::one_line(&err),
        };
        let matches = command.try_get_matches_from(&argv).map_err(invalid)?;
        Self::from_arg_matches(&matches).map_err(invalid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> toml::Table {
        text.parse().unwrap()
    }

    #[test]
    fn an_issuer_table_is_read_with_the_flags_parsers() {
        let issuer = IssuerSettings::from_table(
            0,
            &table(
                "id = \"https://idp.example\"\njwt_key = \"k\"\njwt-algorithm = \"EdDSA\"\n\
                 authorization_server = true\n",
            ),
        )
        .unwrap();
        assert_eq!(issuer.id, "https://idp.example");
        assert_eq!(issuer.publisher_key().map(Secret::expose), Some("k"));
        assert_eq!(issuer.jwt_algorithm, JwtAlgorithm::EdDSA);
        assert!(issuer.authorization_server);
        for (text, expected) in [
            ("jwt_key = \"k\"\n", "needs its `id`"),
            ("id = \"idp\"\n", "not an absolute URL"),
            (
                "id = \"https://a\"\njwt_kee = \"k\"\n",
                "\"issuer[0].jwt_kee\" is not a setting: did you mean `issuer.jwt_key`?",
            ),
            ("id = \"https://a\"\njwt_algorithm = \"none\"\n", "none"),
            (
                "id = \"https://a\"\njwt_key = 5\n",
                "`issuer[0].jwt_key` must be",
            ),
        ] {
            let err = IssuerSettings::from_table(0, &table(text))
                .expect_err(text)
                .to_string();
            assert!(err.contains(expected), "{text:?}: {err}");
        }
    }
}
