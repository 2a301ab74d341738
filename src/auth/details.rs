//! The `authorization_details` claim of a Mercure 1.0 access token (RFC 9396), read strictly:
//! a Mercure detail that is malformed, or one too many, makes the whole token invalid, since a
//! detail the hub misread could grant what its issuer never meant.
//!
//! Limits (implementation-defined, SECURITY.md): at most [`MAX_DETAILS`] entries of any type,
//! and at most `--max-topics` topic matchers in all the Mercure details together; each matcher
//! is held to the limits of a subscribe request's (length, characters, URL pattern cost).

use serde_json::Value;

use crate::protocol::topic::MatcherType;

/// The `type` of a Mercure authorization detail.
pub const DETAIL_TYPE: &str = "https://mercure.rocks/authorization-detail";

/// Entries of `authorization_details` a token may hold, whatever their type.
pub const MAX_DETAILS: usize = 32;

/// Why a token's `authorization_details` was refused (the token with it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DetailsError {
    #[error("authorization_details is not an array")]
    NotAnArray,
    #[error("authorization_details has more than {MAX_DETAILS} entries")]
    TooMany,
    #[error("authorization_details[{0}] is not an object with a string `type`")]
    Entry(usize),
    #[error("authorization_details[{0}].actions must be a non-empty array of strings")]
    Actions(usize),
    #[error(
        "authorization_details[{0}].topics must be a non-empty array of {{\"match\", \"match_type\"}} objects"
    )]
    Topics(usize),
    #[error("authorization_details[{0}].payload must be a JSON object")]
    Payload(usize),
    #[error("authorization_details hold more than {0} topic matchers")]
    TooManyMatchers(usize),
}

/// One Mercure authorization detail, read but not compiled.
#[derive(Debug, Clone, PartialEq)]
pub struct Detail {
    /// `actions` holds `publish`.
    pub publish: bool,
    /// `actions` holds `subscribe`.
    pub subscribe: bool,
    /// The topic matchers, as written.
    pub topics: Vec<(MatcherType, String)>,
    /// The subscriber's payload, a JSON object.
    pub payload: Option<Value>,
}

/// Reads the Mercure details of `details` (the claim's value); other types are skipped. At most
/// `max_matchers` matchers in all.
pub fn parse(details: &Value, max_matchers: usize) -> Result<Vec<Detail>, DetailsError> {
    let entries = details.as_array().ok_or(DetailsError::NotAnArray)?;
    if entries.len() > MAX_DETAILS {
        return Err(DetailsError::TooMany);
    }
    let mut out = Vec::new();
    let mut matchers = 0;
    for (at, entry) in entries.iter().enumerate() {
        let kind = entry
            .get("type")
            .and_then(Value::as_str)
            .ok_or(DetailsError::Entry(at))?;
        if kind != DETAIL_TYPE {
            continue;
        }
        let detail = one(at, entry)?;
        matchers += detail.topics.len();
        if matchers > max_matchers {
            return Err(DetailsError::TooManyMatchers(max_matchers));
        }
        out.push(detail);
    }
    Ok(out)
}

/// Reads the Mercure detail at index `at`.
fn one(at: usize, entry: &Value) -> Result<Detail, DetailsError> {
    let actions = entry
        .get("actions")
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty())
        .ok_or(DetailsError::Actions(at))?;
    let mut detail = Detail {
        publish: false,
        subscribe: false,
        topics: Vec::new(),
        payload: None,
    };
    for action in actions {
        // An action this hub does not know grants nothing; one that is not a string is an error.
        match action.as_str().ok_or(DetailsError::Actions(at))? {
            "publish" => detail.publish = true,
            "subscribe" => detail.subscribe = true,
            _ => {}
        }
    }
    let topics = entry
        .get("topics")
        .and_then(Value::as_array)
        .filter(|t| !t.is_empty())
        .ok_or(DetailsError::Topics(at))?;
    for topic in topics {
        let topic = topic.as_object().ok_or(DetailsError::Topics(at))?;
        let matcher = topic
            .get("match")
            .and_then(Value::as_str)
            .ok_or(DetailsError::Topics(at))?;
        let kind = match topic.get("match_type") {
            None => MatcherType::Exact,
            Some(Value::String(t)) if t == "exact" => MatcherType::Exact,
            Some(Value::String(t)) if t == "urlpattern" => MatcherType::UrlPattern,
            Some(_) => return Err(DetailsError::Topics(at)),
        };
        detail.topics.push((kind, matcher.to_owned()));
    }
    match entry.get("payload") {
        None => {}
        Some(payload @ Value::Object(_)) => detail.payload = Some(payload.clone()),
        Some(_) => return Err(DetailsError::Payload(at)),
    }
    Ok(detail)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn mercure(extra: Value) -> Value {
        let mut detail = json!({"type": DETAIL_TYPE, "actions": ["subscribe"],
            "topics": [{"match": "https://example.com/a"}]});
        for (k, v) in extra.as_object().unwrap() {
            detail[k] = v.clone();
        }
        detail
    }

    #[test]
    fn a_mercure_detail_is_read_and_other_types_are_skipped() {
        let details = json!([
            {"type": "https://other.example/detail", "anything": [1, 2]},
            mercure(json!({
                "actions": ["publish", "subscribe", "future-action"],
                "topics": [{"match": "*"}, {"match": "/books/:id", "match_type": "urlpattern"},
                           {"match": "x", "match_type": "exact"}],
                "payload": {"user": "alice"},
            })),
        ]);
        let parsed = parse(&details, 64).unwrap();
        assert_eq!(
            parsed,
            [Detail {
                publish: true,
                subscribe: true,
                topics: vec![
                    (MatcherType::Exact, "*".into()),
                    (MatcherType::UrlPattern, "/books/:id".into()),
                    (MatcherType::Exact, "x".into()),
                ],
                payload: Some(json!({"user": "alice"})),
            }]
        );
        let unknown_only = parse(&json!([mercure(json!({"actions": ["read"]}))]), 64).unwrap();
        assert!(!unknown_only[0].publish && !unknown_only[0].subscribe);
        assert_eq!(parse(&json!([]), 64).unwrap(), []);
    }

    #[test]
    fn a_malformed_mercure_detail_refuses_the_whole_claim() {
        for (details, expected) in [
            (json!({"type": DETAIL_TYPE}), DetailsError::NotAnArray),
            (json!("x"), DetailsError::NotAnArray),
            (json!([1]), DetailsError::Entry(0)),
            (json!([{"actions": ["publish"]}]), DetailsError::Entry(0)),
            (
                json!([mercure(json!({"actions": []}))]),
                DetailsError::Actions(0),
            ),
            (
                json!([mercure(json!({"actions": "publish"}))]),
                DetailsError::Actions(0),
            ),
            (
                json!([mercure(json!({"actions": ["publish", 1]}))]),
                DetailsError::Actions(0),
            ),
            (
                json!([mercure(json!({"topics": []}))]),
                DetailsError::Topics(0),
            ),
            (
                json!([mercure(json!({"topics": ["https://a"]}))]),
                DetailsError::Topics(0),
            ),
            (
                json!([mercure(json!({"topics": [{"match": 1}]}))]),
                DetailsError::Topics(0),
            ),
            (
                json!([mercure(json!({"topics": [{}]}))]),
                DetailsError::Topics(0),
            ),
            (
                json!([mercure(
                    json!({"topics": [{"match": "a", "match_type": "regex"}]})
                )]),
                DetailsError::Topics(0),
            ),
            (
                json!([mercure(
                    json!({"topics": [{"match": "a", "match_type": null}]})
                )]),
                DetailsError::Topics(0),
            ),
            (
                json!([mercure(json!({"payload": "alice"}))]),
                DetailsError::Payload(0),
            ),
            (
                json!([mercure(json!({"payload": null}))]),
                DetailsError::Payload(0),
            ),
            (
                json!([{"type": "other"}, mercure(json!({"topics": "a"}))]),
                DetailsError::Topics(1),
            ),
        ] {
            assert_eq!(parse(&details, 64), Err(expected), "{details}");
        }
    }

    #[test]
    fn details_and_matchers_are_bounded() {
        let many = Value::Array(vec![json!({"type": "other"}); MAX_DETAILS + 1]);
        assert_eq!(parse(&many, 64), Err(DetailsError::TooMany));
        let full = Value::Array(vec![json!({"type": "other"}); MAX_DETAILS]);
        assert!(parse(&full, 64).is_ok());
        let three = json!([
            mercure(json!({"topics": [{"match": "a"}, {"match": "b"}]})),
            mercure(json!({}))
        ]);
        assert_eq!(parse(&three, 2), Err(DetailsError::TooManyMatchers(2)));
        assert_eq!(parse(&three, 3).unwrap().len(), 2);
    }
}
