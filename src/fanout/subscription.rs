//! A subscription: what one subscriber asked for and what its token lets it read.

use crate::{protocol::topic::TopicSelector, protocol::update::Update};

/// The compiled selectors of one subscriber; built once at subscribe time.
#[derive(Debug)]
pub struct Subscription {
    /// The `topic` selectors of the request: an update must match one of them.
    selectors: Vec<TopicSelector>,
    /// The `mercure.subscribe` selectors of the token: a private update must match one of them.
    authorized: Vec<TopicSelector>,
    /// The token's `mercure.payload`, kept with the subscription.
    payload: Option<serde_json::Value>,
}

fn any_topic_matches(selectors: &[TopicSelector], update: &Update) -> bool {
    selectors
        .iter()
        .any(|s| update.topics().iter().any(|t| s.matches(t.as_str())))
}

impl Subscription {
    #[must_use]
    pub fn new(
        selectors: Vec<TopicSelector>,
        authorized: Vec<TopicSelector>,
        payload: Option<serde_json::Value>,
    ) -> Self {
        Self {
            selectors,
            authorized,
            payload,
        }
    }

    /// Whether this subscriber receives `update`: one of its topics (canonical or alternate)
    /// matches a requested selector and, for a private update, one of its topics (not
    /// necessarily the same) matches a selector the token grants.
    #[must_use]
    pub fn wants(&self, update: &Update) -> bool {
        any_topic_matches(&self.selectors, update) && self.may_read(update)
    }

    /// Whether the token lets this subscriber read `update` (always, for a public one).
    #[must_use]
    pub fn may_read(&self, update: &Update) -> bool {
        !update.is_private() || any_topic_matches(&self.authorized, update)
    }

    #[must_use]
    pub fn selectors(&self) -> &[TopicSelector] {
        &self.selectors
    }

    #[must_use]
    pub fn payload(&self) -> Option<&serde_json::Value> {
        self.payload.as_ref()
    }
}
