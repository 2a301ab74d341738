//! A publish request's form (`application/x-www-form-urlencoded`), parsed and validated.
//!
//! Two values are the hub's own, so that no publisher can forge what the hub says about its
//! subscriptions: the event type `mercure`, and any topic in the hub's namespace (see
//! [`in_hub_namespace`]).

use url::Url;

use crate::{
    protocol::form::{InvalidUtf8, Pair},
    protocol::topic::{Topic, TopicError},
    protocol::update::{EventId, EventType, FieldError, Update},
};

/// Why a form was refused; each message is one line for the client.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FormError {
    #[error("missing \"topic\" parameter")]
    NoTopic,
    #[error("invalid topic: {0}")]
    Topic(#[from] TopicError),
    /// `*` matches every topic, so no subscriber could select it alone.
    #[error("the topic \"*\" is reserved: it matches every topic")]
    Wildcard,
    #[error("invalid id: {0}")]
    Id(FieldError),
    #[error("invalid type: {0}")]
    Type(FieldError),
    #[error("invalid retry: not a whole number of milliseconds")]
    Retry,
    /// Reserved for the hub's subscription events.
    #[error("the type \"mercure\" is reserved for the hub's own events")]
    ReservedType,
    #[error("the topic {0:?} is in the hub's reserved namespace (/.well-known/mercure)")]
    HubNamespace(String),
    #[error("'{0}' may appear only once")]
    Repeated(&'static str),
    #[error(transparent)]
    Encoding(#[from] InvalidUtf8),
}

/// Path of the hub's URL, whose subtree is the hub's own.
pub const HUB_PATH: &str = "/.well-known/mercure";

/// The event type of the hub's subscription events.
const RESERVED_TYPE: &str = "mercure";

/// Whether `topic`, resolved against the hub's URL, has a path equal to the hub's or under it,
/// whatever its scheme and authority: after the URL parser removed its dot-segments, and with
/// escapes of unreserved characters decoded (then dot-segments removed again, for `%2E%2E`),
/// so that no spelling of the same path slips through. A topic that is no URL reference is not
/// in it. Only the path of the hub's URL matters to the result, so any authority does as base.
#[must_use]
pub fn in_hub_namespace(topic: &str) -> bool {
    let Ok(base) = Url::parse(&format!("http://hub.invalid{HUB_PATH}")) else {
        return false;
    };
    let Ok(url) = base.join(topic) else {
        return false;
    };
    let path = decode_unreserved(url.path());
    // Parsed again as the path of an `http` URL: dot-segments the decoding revealed go away.
    let mut normal = base;
    normal.set_path(&path);
    let path = normal.path();
    path == HUB_PATH
        || path
            .strip_prefix(HUB_PATH)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// `path` with every escape of an RFC 3986 unreserved character (`A-Z a-z 0-9 - . _ ~`)
/// decoded; other escapes, and what is not an escape, stay as they are.
fn decode_unreserved(path: &str) -> String {
    let hex = |b: u8| char::from(b).to_digit(16);
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        let escaped = match bytes.get(at..at + 3) {
            Some([b'%', high, low]) => hex(*high)
                .zip(hex(*low))
                .and_then(|(h, l)| u8::try_from(h * 16 + l).ok())
                .filter(|b| b.is_ascii_alphanumeric() || b"-._~".contains(b)),
            _ => None,
        };
        match escaped {
            Some(byte) => {
                out.push(byte);
                at += 3;
            }
            None => {
                out.push(bytes[at]);
                at += 1;
            }
        }
    }
    // Only ASCII bytes replaced escapes (ASCII too): still the same valid UTF-8.
    String::from_utf8(out).unwrap_or_else(|_| path.to_owned())
}

/// The fields of one publish request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publication {
    /// The first is canonical, the rest alternates; never empty.
    pub topics: Vec<Topic>,
    pub data: String,
    pub id: Option<EventId>,
    pub event_type: Option<EventType>,
    pub retry: Option<u64>,
    /// Present in the form, whatever its value (as in the Mercure hub).
    pub private: bool,
}

/// A field given more than once where one value is allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Repeated;

/// The value of a field (or query parameter) that may appear at most once.
pub(crate) fn at_most_once<'a>(
    pairs: &'a [Pair<'_>],
    name: &str,
) -> Result<Option<&'a str>, Repeated> {
    let mut values = pairs
        .iter()
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v.as_ref());
    let first = values.next();
    if values.next().is_some() {
        return Err(Repeated);
    }
    Ok(first)
}

fn once<'a>(pairs: &'a [Pair<'a>], name: &'static str) -> Result<Option<&'a str>, FormError> {
    at_most_once(pairs, name).map_err(|Repeated| FormError::Repeated(name))
}

impl Publication {
    /// The update to fan out, under `id` (the publisher's, or one the hub made).
    #[must_use]
    pub fn into_update(self, id: EventId) -> Update {
        Update::new(
            id,
            self.topics,
            &self.data,
            self.private,
            self.event_type.as_ref(),
            self.retry,
        )
    }

    /// Parses a form-encoded body. Unknown fields are ignored, as Mercure does; a name or
    /// value that is not UTF-8 once percent-decoded is refused.
    pub fn parse(body: &str) -> Result<Self, FormError> {
        let pairs = crate::protocol::form::parse(body)?;
        let topics = pairs
            .iter()
            .filter(|(k, _)| k == "topic")
            .map(|(_, v)| match &**v {
                "*" => Err(FormError::Wildcard),
                v => {
                    let topic = Topic::parse(v)?;
                    if in_hub_namespace(v) {
                        return Err(FormError::HubNamespace(v.to_owned()));
                    }
                    Ok(topic)
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        if topics.is_empty() {
            return Err(FormError::NoTopic);
        }
        let id = once(&pairs, "id")?
            .map(|v| EventId::parse(v).map_err(FormError::Id))
            .transpose()?;
        let event_type = once(&pairs, "type")?
            .map(|v| match v {
                RESERVED_TYPE => Err(FormError::ReservedType),
                v => EventType::parse(v).map_err(FormError::Type),
            })
            .transpose()?;
        let retry = once(&pairs, "retry")?
            .map(|v| v.parse::<u64>().map_err(|_| FormError::Retry))
            .transpose()?;
        Ok(Self {
            topics,
            data: once(&pairs, "data")?.unwrap_or_default().to_owned(),
            id,
            event_type,
            retry,
            private: pairs.iter().any(|(k, _)| k == "private"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn encode(pairs: &[(&str, &str)]) -> String {
        let mut out = form_urlencoded::Serializer::new(String::new());
        for (k, v) in pairs {
            out.append_pair(k, v);
        }
        out.finish()
    }

    #[test]
    fn parses_every_field() {
        let body = encode(&[
            ("topic", "/a"),
            ("topic", "/b"),
            ("data", "x\ny"),
            ("id", "i1"),
            ("type", "t"),
            ("retry", "10"),
            ("private", ""),
        ]);
        let p = Publication::parse(&body).unwrap();
        assert_eq!(p.topics.len(), 2);
        assert_eq!(
            (p.data.as_str(), p.retry, p.private),
            ("x\ny", Some(10), true)
        );
        assert_eq!(p.id.unwrap().as_str(), "i1");
    }

    #[test]
    fn refuses_bad_fields() {
        let cases: [(&[(&str, &str)], FormError); 7] = [
            (&[("data", "x")], FormError::NoTopic),
            (&[("topic", "/a"), ("topic", "*")], FormError::Wildcard),
            (
                &[("topic", "/a"), ("id", "#x")],
                FormError::Id(FieldError::Reserved),
            ),
            (
                &[("topic", "/a"), ("id", "a\0")],
                FormError::Id(FieldError::ControlChar),
            ),
            (
                &[("topic", "/a"), ("type", "a\rb")],
                FormError::Type(FieldError::ControlChar),
            ),
            (&[("topic", "/a"), ("retry", "1.5")], FormError::Retry),
            (
                &[("topic", "/a"), ("data", "1"), ("data", "2")],
                FormError::Repeated("data"),
            ),
        ];
        for (pairs, expected) in cases {
            assert_eq!(Publication::parse(&encode(pairs)), Err(expected));
        }
    }

    #[test]
    fn refuses_the_reserved_type_and_the_hub_namespace() {
        assert_eq!(
            Publication::parse(&encode(&[("topic", "/a"), ("type", "mercure")])),
            Err(FormError::ReservedType)
        );
        assert!(Publication::parse(&encode(&[("topic", "/a"), ("type", "Mercure")])).is_ok());
        let body = encode(&[("topic", "/a"), ("topic", "/.well-known/mercure/x")]);
        assert_eq!(
            Publication::parse(&body),
            Err(FormError::HubNamespace("/.well-known/mercure/x".into()))
        );
    }

    #[test]
    fn every_spelling_of_the_hub_namespace_is_in_it() {
        for topic in [
            "/.well-known/mercure",
            "/.well-known/mercure/",
            "/.well-known/mercure/subscriptions/a/b",
            "/.well-known/%6Dercure/x",
            "/.well-known/%6dercure/x",
            "/%2Ewell-known/mercure",
            "/.well-known/mercure/../mercure/x",
            "/a/../.well-known/mercure",
            "/.well-known/x/%2E%2E/mercure/y",
            "/.well-known/x/%2e%2E/mercure",
            "http://other.example/.well-known/mercure/subscriptions/x",
            "https://hub.invalid/.well-known/mercure?x#y",
            "//other.example/.well-known/mercure/x",
            "ftp://a/.well-known/mercure/x",
            "\\.well-known\\mercure\\x",
            "mercure/x",
            "./mercure",
            "?q",
        ] {
            assert!(in_hub_namespace(topic), "{topic:?}");
        }
        for topic in [
            "/.well-known/mercurex",
            "/.well-known/MERCURE/x",
            "/.well-known/mercure%2Fx",
            "/.well-known/%2525mercure",
            "/books/1",
            "https://example.com/books/1",
            "foo:bar",
            "urn:uuid:4b1c3a2e-0000-4000-8000-000000000000",
            "../x",
            "subscriptions",
            "http://[::1",
        ] {
            assert!(!in_hub_namespace(topic), "{topic:?}");
        }
    }

    #[test]
    fn refuses_escapes_that_are_not_utf8() {
        for (body, field) in [
            ("topic=%2Fa&data=%FF%FEok", "data"),
            ("topic=%2Fx%FF", "topic"),
            ("topic=%2Fa&id=%C3", "id"),
        ] {
            assert_eq!(
                Publication::parse(body),
                Err(FormError::Encoding(InvalidUtf8::Value(field.into()))),
                "{body}"
            );
        }
    }

    proptest! {
        #[test]
        fn never_panics_on_any_body(body in any::<String>()) {
            let _ = Publication::parse(&body);
        }

        /// Bodies made of fields, pluses and escapes of any byte (valid UTF-8 or not), which
        /// random strings rarely produce: never a panic, and never a lossy U+FFFD.
        #[test]
        fn never_panics_on_escaped_bytes(
            pieces in prop::collection::vec(
                prop_oneof![
                    Just("topic=".to_owned()),
                    Just("data=".to_owned()),
                    Just("&".to_owned()),
                    Just("+".to_owned()),
                    any::<u8>().prop_map(|b| format!("%{b:02X}")),
                    "[a-z/=]{0,4}",
                ],
                0..40,
            ),
        ) {
            let body = pieces.concat();
            if let Ok(p) = Publication::parse(&body) {
                prop_assert!(!p.data.contains('\u{FFFD}'), "lossy data from {}", body);
            }
        }

        #[test]
        fn valid_forms_round_trip(
            // `*` alone is no topic one may publish to (it selects every topic).
            // Nor a topic in the hub's namespace (`?x` or `.` resolve to the hub's own path).
            topics in prop::collection::vec(
                "[^\r\n\0]{1,40}".prop_filter("not reserved", |t| t != "*" && !in_hub_namespace(t)),
                1..4,
            ),
            data in any::<String>(),
            id in proptest::option::of("[a-zA-Z0-9:_-][^\\p{Cc}\\p{Cf}]{0,30}"),
            retry in proptest::option::of(any::<u64>()),
            private in any::<bool>(),
        ) {
            let mut pairs: Vec<(&str, String)> =
                topics.iter().map(|t| ("topic", t.clone())).collect();
            pairs.push(("data", data.clone()));
            if let Some(id) = &id { pairs.push(("id", id.clone())); }
            if let Some(retry) = retry { pairs.push(("retry", retry.to_string())); }
            if private { pairs.push(("private", "on".into())); }
            let borrowed: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let p = Publication::parse(&encode(&borrowed)).unwrap();
            let got: Vec<&str> = p.topics.iter().map(Topic::as_str).collect();
            prop_assert_eq!(got, topics.iter().map(String::as_str).collect::<Vec<_>>());
            prop_assert_eq!(p.data, data);
            prop_assert_eq!(p.id.map(|i| i.as_str().to_owned()), id);
            prop_assert_eq!(p.retry, retry);
            prop_assert_eq!(p.private, private);
        }
    }
}
