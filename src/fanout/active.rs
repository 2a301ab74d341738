//! Mercure's active subscriptions (`--subscriptions`): what the hub says about its own
//! subscribers, as private updates when a subscription starts or ends, and as the documents of
//! the subscriptions API, in the generation of the protocol each subscription was made in.
//!
//! Every subscriber of the hub endpoint gets an id of its own ([`Announced::id`], one per
//! connection); each of its selectors is one "subscription" ([`Announcement`]), whose IRI is
//! - 0.x (`topic=`): `/.well-known/mercure/subscriptions/{topic}/{subscriber}`, a JSON-LD
//!   `Subscription` document;
//! - 1.0 (`match`, `match_exact`, `match_urlpattern`):
//!   `/.well-known/mercure/subscriptions/{match_type}/{match}/{subscriber}`, a plain JSON
//!   `subscription` document, sent with the reserved SSE event type `mercure`.
//!
//! Each variable is percent-encoded once, as a whole, into one path segment (everything but
//! RFC 3986's unreserved characters, `%` and `/` included), so a selector holding `/` stays one
//! segment and a 0.x IRI always has two segments after the prefix, a 1.0 IRI three.

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde_json::{json, Value};

use crate::{
    protocol::publication::Publication,
    protocol::topic::{MatcherType, Topic},
    protocol::update::{EventId, EventType, Update},
};

/// Path under which the subscriptions are published and served.
pub const PREFIX: &str = "/.well-known/mercure/subscriptions";

/// The JSON-LD context of every 0.x document.
const CONTEXT: &str = "https://mercure.rocks/";

/// The SSE event type of 1.0 subscription events, which publishers may not use.
pub const EVENT_TYPE: &str = "mercure";

/// Everything but RFC 3986's unreserved characters is encoded: the segment then matches a
/// `{/topic}` template expression, which takes unreserved characters and `%XX` only.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `value` percent-encoded once, as a whole, into one path segment.
#[must_use]
pub fn segment(value: &str) -> String {
    utf8_percent_encode(value, SEGMENT).to_string()
}

/// The protocol generation a subscription was made in, which decides how it is announced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// A 0.x `topic=` selector (exact topic or URI template).
    Legacy,
    /// A 1.0 matcher of this type (`match=*` is an `exact` one).
    Matcher(MatcherType),
}

/// Which generation's subscriptions a root listing takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Generation {
    Legacy,
    Current,
}

impl Form {
    #[must_use]
    pub fn generation(self) -> Generation {
        match self {
            Self::Legacy => Generation::Legacy,
            Self::Matcher(_) => Generation::Current,
        }
    }
}

/// Which subscriptions the API lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every subscription of one generation (the root collection).
    All(Generation),
    /// One collection, by its path under [`PREFIX`] (see [`collection`]).
    Collection(String),
}

/// One announced subscription: a selector in its generation, with the payload its token
/// attaches to it.
#[derive(Debug, Clone)]
pub struct Announcement {
    pub form: Form,
    /// The selector or matcher as the subscriber sent it.
    pub selector: String,
    pub payload: Option<Value>,
    /// [`collection`] of the two above, computed once.
    key: String,
}

impl Announcement {
    #[must_use]
    pub fn new(form: Form, selector: String, payload: Option<Value>) -> Self {
        Self {
            key: collection(form, &selector),
            form,
            selector,
            payload,
        }
    }

    /// The path of this subscription's collection under [`PREFIX`] (see [`collection`]).
    #[must_use]
    pub fn collection(&self) -> &str {
        &self.key
    }
}

/// The path, under [`PREFIX`] and without its `/`, of the collection of the subscriptions of
/// `selector` in `form`: `{topic}` (0.x) or `{match_type}/{match}` (1.0), encoded.
#[must_use]
pub fn collection(form: Form, selector: &str) -> String {
    match form {
        Form::Legacy => segment(selector),
        Form::Matcher(kind) => format!("{}/{}", kind.name(), segment(selector)),
    }
}

/// What the hub announces of one subscriber: its id and its subscriptions.
#[derive(Debug, Clone)]
pub struct Announced {
    pub id: String,
    pub subscriptions: Vec<Announcement>,
}

impl Announced {
    /// A subscriber with a fresh id (a UUIDv7 URN: unique, and in connection order).
    #[must_use]
    pub fn new(subscriptions: Vec<Announcement>) -> Self {
        Self {
            id: format!("urn:uuid:{}", uuid::Uuid::now_v7()),
            subscriptions,
        }
    }

    /// This subscriber's subscription in the collection `key`, if it has one.
    #[must_use]
    pub fn find(&self, key: &str) -> Option<&Announcement> {
        self.subscriptions.iter().find(|s| s.key == key)
    }

    /// The IRI of `subscription` (one of ours).
    #[must_use]
    pub fn iri(&self, subscription: &Announcement) -> String {
        iri(&subscription.key, &self.id)
    }

    /// The document of `subscription` (one of ours), with `active` as given: 0.x JSON-LD or
    /// 1.0 JSON according to its form.
    #[must_use]
    pub fn object(&self, subscription: &Announcement, active: bool) -> Value {
        let id = self.iri(subscription);
        let mut object = match subscription.form {
            Form::Legacy => json!({
                "@context": CONTEXT,
                "id": id,
                "type": "Subscription",
                "topic": subscription.selector,
                "subscriber": self.id,
                "active": active,
            }),
            Form::Matcher(kind) => json!({
                "id": id,
                "type": "subscription",
                "match_type": kind.name(),
                "match": subscription.selector,
                "subscriber": self.id,
                "active": active,
            }),
        };
        if let (Some(payload), Some(map)) = (&subscription.payload, object.as_object_mut()) {
            map.insert("payload".to_owned(), payload.clone());
        }
        object
    }

    /// The private updates telling that this subscriber's subscriptions started (`active`) or
    /// ended, one per subscription.
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
        self.subscriptions
            .iter()
            .filter_map(|subscription| {
                // The IRI is made of encoded segments under a fixed prefix: it is always a
                // valid topic, short of a selector near the length limit.
                let topic = Topic::parse(&self.iri(subscription)).ok()?;
                let event_type = match subscription.form {
                    Form::Legacy => None,
                    Form::Matcher(_) => EventType::parse(EVENT_TYPE).ok(),
                };
                Some(Publication {
                    topics: vec![topic],
                    data: self.object(subscription, active).to_string(),
                    id: None,
                    event_type,
                    retry: None,
                    private: true,
                })
            })
            .collect()
    }
}

/// The IRI of the subscription in the collection `key` (see [`collection`]) by `subscriber`.
#[must_use]
pub fn iri(key: &str, subscriber: &str) -> String {
    format!("{PREFIX}/{key}/{}", segment(subscriber))
}

/// What the IRIs of the collection `key`'s subscriptions start with, whoever the subscriber:
/// the collection's path and a `/` (so `/a`'s prefix does not start `/ab`'s IRIs). It holds no
/// `*`, `?`, `[` or `\` (all encoded), so it is a literal prefix in a Redis glob pattern too;
/// in IRIs kept in order, those of one collection are the range starting with it.
///
/// A 0.x collection's prefix may also start 1.0 IRIs (the topic `exact` and the matcher type):
/// [`in_collection`] tells them apart.
#[must_use]
pub fn iri_prefix(key: &str) -> String {
    format!("{PREFIX}/{key}/")
}

/// Whether `iri`, which starts with [`iri_prefix`]`(key)`, is a subscription of that
/// collection: nothing but the subscriber's segment follows the prefix.
#[must_use]
pub fn in_collection(iri: &str, key: &str) -> bool {
    iri.strip_prefix(&iri_prefix(key))
        .is_some_and(|rest| !rest.contains('/'))
}

/// The generation of the subscription of `iri`, by its number of segments under [`PREFIX`].
#[must_use]
pub fn generation_of(iri: &str) -> Option<Generation> {
    let rest = iri.strip_prefix(PREFIX)?.strip_prefix('/')?;
    match rest.matches('/').count() {
        1 => Some(Generation::Legacy),
        2 => Some(Generation::Current),
        _ => None,
    }
}

/// The 0.x collection document of the API: `subscriptions` as of `last_event_id`.
#[must_use]
pub fn collection_ld(path: &str, last_event_id: &str, subscriptions: Vec<Value>) -> Value {
    json!({
        "@context": CONTEXT,
        "id": path,
        "type": "Subscriptions",
        "lastEventID": last_event_id,
        "subscriptions": subscriptions,
    })
}

/// The 1.0 collection document of the API (its cursor travels in the `Link` header).
#[must_use]
pub fn collection_json(path: &str, subscriptions: Vec<Value>) -> Value {
    json!({
        "id": path,
        "type": "subscriptions",
        "subscriptions": subscriptions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn legacy(selector: &str, payload: Option<Value>) -> Announcement {
        Announcement::new(Form::Legacy, selector.into(), payload)
    }

    fn announced(subscriptions: Vec<Announcement>) -> Announced {
        Announced {
            id: "urn:uuid:s".into(),
            subscriptions,
        }
    }

    #[test]
    fn the_iri_encodes_selector_and_subscriber_as_one_segment_each() {
        assert_eq!(
            iri(&collection(Form::Legacy, "/books/{id}"), "urn:uuid:1"),
            "/.well-known/mercure/subscriptions/%2Fbooks%2F%7Bid%7D/urn%3Auuid%3A1"
        );
    }

    #[test]
    fn the_iri_matches_the_specification_template() {
        let template = crate::protocol::topic::TopicSelector::parse(
            "/.well-known/mercure/subscriptions{/topic}{/subscriber}",
        )
        .unwrap();
        let key = collection(Form::Legacy, "https://example.com/a b?c#d");
        assert!(template.matches(&iri(&key, "urn:uuid:x")));
    }

    #[test]
    fn a_matcher_is_encoded_once_as_a_whole() {
        let key = collection(
            Form::Matcher(MatcherType::UrlPattern),
            "https://example.com/:selector",
        );
        // The specification's own example.
        assert_eq!(
            iri(&key, "urn:uuid:bb3de268-05b0-4c65-b44e-8f9acefc29d6"),
            "/.well-known/mercure/subscriptions/urlpattern/https%3A%2F%2Fexample.com%2F%3Aselector\
             /urn%3Auuid%3Abb3de268-05b0-4c65-b44e-8f9acefc29d6"
        );
        // An escape already in the matcher is the matcher's own text: its `%` is encoded.
        assert_eq!(
            collection(Form::Matcher(MatcherType::Exact), "/a%2Fb c"),
            "exact/%2Fa%252Fb%20c"
        );
        assert_eq!(
            collection(Form::Matcher(MatcherType::Exact), "*"),
            "exact/%2A"
        );
    }

    #[test]
    fn the_prefix_of_a_collection_starts_its_iris_only() {
        let key = collection(Form::Legacy, "/books/{id}");
        let prefix = iri_prefix(&key);
        assert!(iri(&key, "urn:uuid:1").starts_with(&prefix));
        assert!(!iri(&collection(Form::Legacy, "/books/{id}x"), "urn:uuid:1").starts_with(&prefix));
        assert!(!prefix.contains(['*', '?', '[', '\\']));
    }

    #[test]
    fn the_topic_exact_and_the_exact_matchers_stay_apart() {
        let topic = collection(Form::Legacy, "exact");
        let matcher = collection(Form::Matcher(MatcherType::Exact), "/a");
        let of_matcher = iri(&matcher, "urn:uuid:1");
        assert!(of_matcher.starts_with(&iri_prefix(&topic)));
        assert!(!in_collection(&of_matcher, &topic));
        assert!(in_collection(&iri(&topic, "urn:uuid:1"), &topic));
        assert!(in_collection(&of_matcher, &matcher));
        assert_eq!(
            generation_of(&iri(&topic, "urn:uuid:1")),
            Some(Generation::Legacy)
        );
        assert_eq!(generation_of(&of_matcher), Some(Generation::Current));
        assert_eq!(generation_of("/elsewhere"), None);
    }

    #[test]
    fn a_legacy_update_is_private_and_carries_the_payload() {
        let announced = announced(vec![legacy("/a", Some(json!({"user": "u"})))]);
        let updates = announced.updates(false);
        assert_eq!(updates.len(), 1);
        assert!(updates[0].is_private());
        let publications = announced.publications(false);
        assert_eq!(publications[0].event_type, None);
        let object = announced.object(&announced.subscriptions[0], false);
        assert_eq!(object["active"], false);
        assert_eq!(object["payload"]["user"], "u");
        assert_eq!(
            object["id"],
            "/.well-known/mercure/subscriptions/%2Fa/urn%3Auuid%3As"
        );
    }

    #[test]
    fn a_matcher_is_announced_in_the_1_0_form_with_its_own_payload() {
        let announced = announced(vec![
            Announcement::new(
                Form::Matcher(MatcherType::UrlPattern),
                "/b/:id".into(),
                Some(json!({"n": 1})),
            ),
            legacy("/a", None),
        ]);
        let publications = announced.publications(true);
        assert_eq!(publications.len(), 2);
        let first = &publications[0];
        let id = "/.well-known/mercure/subscriptions/urlpattern/%2Fb%2F%3Aid/urn%3Auuid%3As";
        assert_eq!(first.topics[0].as_str(), id);
        assert_eq!(
            first.event_type.as_ref().map(EventType::as_str),
            Some("mercure")
        );
        assert!(first.private);
        let data: Value = serde_json::from_str(&first.data).unwrap();
        assert_eq!(
            data,
            json!({
                "id": id,
                "type": "subscription",
                "match_type": "urlpattern",
                "match": "/b/:id",
                "subscriber": "urn:uuid:s",
                "active": true,
                "payload": {"n": 1},
            })
        );
        let second: Value = serde_json::from_str(&publications[1].data).unwrap();
        assert_eq!(second["type"], "Subscription");
        assert!(second.get("payload").is_none());
        assert_eq!(
            announced
                .find(&collection(Form::Legacy, "/a"))
                .map(|s| s.selector.as_str()),
            Some("/a")
        );
    }
}
