//! Mercure's active subscriptions (`--subscriptions`): what the hub says about its own
//! subscribers, as private updates when a subscription starts or ends, and as the JSON-LD
//! documents of the subscriptions API.
//!
//! Every subscriber of the hub endpoint gets an id of its own ([`Announced::id`]); each of its
//! topic selectors is one "subscription", whose IRI is
//! `/.well-known/mercure/subscriptions/{selector}/{subscriber}` with both parts percent-encoded
//! as one path segment each, so a selector holding `/` stays one segment.

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde_json::{json, Value};

use crate::{
    protocol::publication::Publication,
    protocol::topic::Topic,
    protocol::update::{EventId, Update},
};

/// Path under which the subscriptions are published and served.
pub const PREFIX: &str = "/.well-known/mercure/subscriptions";

/// The JSON-LD context of every document.
const CONTEXT: &str = "https://mercure.rocks/";

/// Everything but RFC 3986's unreserved characters is encoded: the segment then matches a
/// `{/topic}` template expression, which takes unreserved characters and `%XX` only.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

fn segment(value: &str) -> impl std::fmt::Display + '_ {
    utf8_percent_encode(value, SEGMENT)
}

/// What the hub announces of one subscriber: its id, its selectors (as it sent them) and its
/// token's `mercure.payload`.
#[derive(Debug, Clone)]
pub struct Announced {
    pub id: String,
    pub selectors: Vec<String>,
    pub payload: Option<Value>,
}

impl Announced {
    /// A subscriber with a fresh id (a UUIDv7 URN: unique, and in connection order).
    #[must_use]
    pub fn new(selectors: Vec<String>, payload: Option<Value>) -> Self {
        Self {
            id: format!("urn:uuid:{}", uuid::Uuid::now_v7()),
            selectors,
            payload,
        }
    }

    /// The subscription object of `selector`, with `active` as given.
    #[must_use]
    pub fn object(&self, selector: &str, active: bool) -> Value {
        let mut object = json!({
            "@context": CONTEXT,
            "id": iri(selector, &self.id),
            "type": "Subscription",
            "topic": selector,
            "subscriber": self.id,
            "active": active,
        });
        if let (Some(payload), Some(map)) = (&self.payload, object.as_object_mut()) {
            map.insert("payload".to_owned(), payload.clone());
        }
        object
    }

    /// The private updates telling that this subscriber's subscriptions started (`active`) or
    /// ended, one per selector.
    #[must_use]
    pub fn updates(&self, active: bool) -> Vec<Update> {
        self.publications(active)
            .into_iter()
            .map(|p| p.into_update(EventId::generate()))
            .collect()
    }

    /// The same events as publications, without ids yet (what a transport sends on).
    #[must_use]
    pub fn publications(&self, active: bool) -> Vec<Publication> {
        self.selectors
            .iter()
            .filter_map(|selector| {
                // The IRI is made of encoded segments under a fixed prefix: it is always a
                // valid topic, short of a selector near the length limit.
                let topic = Topic::parse(&iri(selector, &self.id)).ok()?;
                Some(Publication {
                    topics: vec![topic],
                    data: self.object(selector, active).to_string(),
                    id: None,
                    event_type: None,
                    retry: None,
                    private: true,
                })
            })
            .collect()
    }
}

/// The IRI of the subscription of `selector` by `subscriber`.
#[must_use]
pub fn iri(selector: &str, subscriber: &str) -> String {
    format!("{PREFIX}/{}/{}", segment(selector), segment(subscriber))
}

/// What the IRIs of `selector`'s subscriptions start with, whoever the subscriber: the
/// encoded selector's segment and a `/` (so `/a`'s prefix does not start `/ab`'s IRIs). It holds
/// no `*`, `?`, `[` or `\` (all encoded), so it is a literal prefix in a Redis glob pattern too;
/// in IRIs kept in order, those of one selector are the range starting with it.
#[must_use]
pub fn iri_prefix(selector: &str) -> String {
    format!("{PREFIX}/{}/", segment(selector))
}

/// The collection document of the API: `subscriptions` as of `last_event_id`.
#[must_use]
pub fn collection(path: &str, last_event_id: &str, subscriptions: Vec<Value>) -> Value {
    json!({
        "@context": CONTEXT,
        "id": path,
        "type": "Subscriptions",
        "lastEventID": last_event_id,
        "subscriptions": subscriptions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_iri_encodes_selector_and_subscriber_as_one_segment_each() {
        assert_eq!(
            iri("/books/{id}", "urn:uuid:1"),
            "/.well-known/mercure/subscriptions/%2Fbooks%2F%7Bid%7D/urn%3Auuid%3A1"
        );
    }

    #[test]
    fn the_iri_matches_the_specification_template() {
        let template = crate::protocol::topic::TopicSelector::parse(
            "/.well-known/mercure/subscriptions{/topic}{/subscriber}",
        )
        .unwrap();
        assert!(template.matches(&iri("https://example.com/a b?c#d", "urn:uuid:x")));
    }

    #[test]
    fn the_prefix_of_a_selector_starts_its_iris_only() {
        let prefix = iri_prefix("/books/{id}");
        assert!(iri("/books/{id}", "urn:uuid:1").starts_with(&prefix));
        assert!(!iri("/books/{id}x", "urn:uuid:1").starts_with(&prefix));
        assert!(!prefix.contains(['*', '?', '[', '\\']));
    }

    #[test]
    fn an_update_is_private_and_carries_the_payload() {
        let announced = Announced {
            id: "urn:uuid:s".into(),
            selectors: vec!["/a".into()],
            payload: Some(json!({"user": "u"})),
        };
        let updates = announced.updates(false);
        assert_eq!(updates.len(), 1);
        assert!(updates[0].is_private());
        let object = announced.object("/a", false);
        assert_eq!(object["active"], false);
        assert_eq!(object["payload"]["user"], "u");
        assert_eq!(
            object["id"],
            "/.well-known/mercure/subscriptions/%2Fa/urn%3Auuid%3As"
        );
    }

    #[test]
    fn without_a_payload_the_object_has_none() {
        let announced = Announced {
            id: "urn:uuid:s".into(),
            selectors: vec!["/a".into()],
            payload: None,
        };
        assert!(announced.object("/a", true).get("payload").is_none());
    }
}
