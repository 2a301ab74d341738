//! What a verified token allows, whichever generation it is: the one type the handlers read.
//!
//! A Mercure 0.x token grants its `mercure.publish` and `mercure.subscribe` selectors and one
//! `mercure.payload` for every subscription. A Mercure 1.0 access token grants, per action, the
//! union of the topic matchers of its details holding that action (so an update may be
//! published when each of its topics is matched by some `publish` detail), and the payload of a
//! subscription is that of the first `subscribe` detail matching the subscription's matcher.

use std::{
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde_json::Value;
use url::Url;

use super::{details, AuthError, Claims};
use crate::protocol::topic::{Budget, SelectorError, Templates, TopicSelector};

/// Where the payload of a subscription comes from.
#[derive(Debug, Clone)]
enum Payloads {
    /// 0.x: one payload, whatever the subscription's selectors.
    Every(Option<Value>),
    /// 1.0: the `subscribe` details in order, each with its matchers and payload.
    Details(Vec<(Vec<TopicSelector>, Option<Value>)>),
}

/// The rights of a verified token.
#[derive(Debug, Clone)]
pub struct Grants {
    publish: Vec<TopicSelector>,
    subscribe: Vec<TopicSelector>,
    payloads: Payloads,
    exp: Option<u64>,
    access_token: bool,
}

impl Grants {
    /// The grants of a 0.x token: its `mercure` claim. Selectors that are invalid match
    /// nothing (they are logged, not fatal: the token was signed by someone trusted); going
    /// over the budget or the hub's template memory is an error.
    pub(super) fn legacy(
        claims: &Claims,
        templates: &Templates,
        budget: &mut Budget,
    ) -> Result<Self, SelectorError> {
        Ok(Self {
            publish: claims.selectors(templates, budget, |m| m.publish.as_ref())?,
            subscribe: claims.selectors(templates, budget, |m| m.subscribe.as_ref())?,
            payloads: Payloads::Every(claims.mercure.as_ref().and_then(|m| m.payload.clone())),
            exp: claims.exp,
            access_token: false,
        })
    }

    /// The grants of a 1.0 access token: its Mercure `authorization_details`, URL patterns
    /// resolved against `base`. Anything malformed refuses the token.
    pub(super) fn access(
        claims: &Claims,
        templates: &Templates,
        base: &Arc<Url>,
        budget: &mut Budget,
        max_matchers: usize,
    ) -> Result<Self, AuthError> {
        let parsed = match &claims.authorization_details {
            Some(value) => details::parse(value, max_matchers)?,
            None => Vec::new(),
        };
        let mut grants = Self {
            publish: Vec::new(),
            subscribe: Vec::new(),
            payloads: Payloads::Details(Vec::new()),
            exp: claims.exp,
            access_token: true,
        };
        for detail in parsed {
            let mut matchers = Vec::with_capacity(detail.topics.len());
            for (kind, value) in &detail.topics {
                let matcher = templates
                    .matcher(*kind, value, base, budget)
                    .map_err(AuthError::Matchers)?;
                matchers.push(matcher);
            }
            if detail.publish {
                grants.publish.extend(matchers.iter().cloned());
            }
            if detail.subscribe {
                grants.subscribe.extend(matchers.iter().cloned());
                if let Payloads::Details(list) = &mut grants.payloads {
                    list.push((matchers, detail.payload));
                }
            }
        }
        Ok(grants)
    }

    /// Whether every one of `topics` may be published to.
    pub fn may_publish<'a>(&self, mut topics: impl Iterator<Item = &'a str>) -> bool {
        topics.all(|t| self.publish.iter().any(|s| s.matches(t)))
    }

    /// Whether private updates of `topic` (or the subscriptions API at `topic`) may be read.
    #[must_use]
    pub fn may_subscribe(&self, topic: &str) -> bool {
        self.subscribe.iter().any(|s| s.matches(topic))
    }

    /// The matchers of the topics whose private updates may be read (a subscription's
    /// `authorized` list).
    #[must_use]
    pub fn subscribe_matchers(&self) -> &[TopicSelector] {
        &self.subscribe
    }

    /// The payload of a subscription with `matcher`: a 0.x token's payload whatever the
    /// matcher; for a 1.0 token, that of the first `subscribe` detail whose topics match
    /// `matcher` taken as a topic (none when that detail has none).
    #[must_use]
    pub fn payload_for(&self, matcher: &str) -> Option<&Value> {
        match &self.payloads {
            Payloads::Every(payload) => payload.as_ref(),
            Payloads::Details(list) => list
                .iter()
                .find(|(matchers, _)| matchers.iter().any(|m| m.matches(matcher)))
                .and_then(|(_, payload)| payload.as_ref()),
        }
    }

    /// Whether these are a Mercure 1.0 access token's grants.
    #[must_use]
    pub fn is_access_token(&self) -> bool {
        self.access_token
    }

    /// The time left before the token's `exp` plus `leeway`, if it has an `exp`. Saturates.
    #[must_use]
    pub fn time_left(&self, leeway: Duration) -> Option<Duration> {
        time_left(self.exp?, leeway)
    }
}

/// The time left before `exp` (seconds since the epoch) plus `leeway`; saturates, so any `exp`
/// a signer chose, `u64::MAX` included, is fine.
pub(super) fn time_left(exp: u64, leeway: Duration) -> Option<Duration> {
    let exp = Duration::from_secs(exp).saturating_add(leeway);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Some(exp.saturating_sub(now))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::auth::details::DETAIL_TYPE;

    fn grants(details: Value) -> Result<Grants, AuthError> {
        let claims = Claims {
            authorization_details: Some(details),
            ..Claims::default()
        };
        let base = Arc::new(Url::parse("https://hub.example/.well-known/mercure").unwrap());
        Grants::access(
            &claims,
            &Templates::new(1 << 20),
            &base,
            &mut Budget::default(),
            8,
        )
    }

    #[test]
    fn access_token_grants_are_the_union_of_their_details() {
        let g = grants(json!([
            {"type": DETAIL_TYPE, "actions": ["publish"], "topics": [{"match": "https://a/1"}]},
            {"type": DETAIL_TYPE, "actions": ["subscribe"],
             "topics": [{"match": "/books/:id", "match_type": "urlpattern"}],
             "payload": {"n": 1}},
            {"type": DETAIL_TYPE, "actions": ["subscribe", "publish"],
             "topics": [{"match": "*"}], "payload": {"n": 2}},
        ]))
        .unwrap();
        assert!(g.is_access_token());
        assert!(g.may_publish(["https://a/1", "anything"].into_iter()));
        assert!(g.may_subscribe("https://hub.example/books/7"));
        assert_eq!(
            g.payload_for("https://hub.example/books/7"),
            Some(&json!({"n": 1}))
        );
        assert_eq!(g.payload_for("https://other/"), Some(&json!({"n": 2})));
        let narrow = grants(json!([
            {"type": DETAIL_TYPE, "actions": ["publish"], "topics": [{"match": "https://a/1"}]},
        ]))
        .unwrap();
        assert!(!narrow.may_publish(["https://a/1", "https://a/2"].into_iter()));
        assert!(!narrow.may_subscribe("https://a/1"));
        assert_eq!(narrow.payload_for("https://a/1"), None);
    }

    #[test]
    fn a_bad_matcher_or_too_many_refuses_the_token() {
        let bad = json!([{"type": DETAIL_TYPE, "actions": ["subscribe"],
            "topics": [{"match": "/books/(", "match_type": "urlpattern"}]}]);
        assert!(matches!(grants(bad), Err(AuthError::Matchers(_))));
        let topics: Vec<Value> = (0..9).map(|i| json!({"match": format!("t{i}")})).collect();
        let many = json!([{"type": DETAIL_TYPE, "actions": ["subscribe"], "topics": topics}]);
        assert!(matches!(grants(many), Err(AuthError::Details(_))));
    }
}
