//! A publish request's form (`application/x-www-form-urlencoded`), parsed and validated.

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
    #[error("'{0}' may appear only once")]
    Repeated(&'static str),
    #[error(transparent)]
    Encoding(#[from] InvalidUtf8),
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
                v => Ok(Topic::parse(v)?),
            })
            .collect::<Result<Vec<_>, _>>()?;
        if topics.is_empty() {
            return Err(FormError::NoTopic);
        }
        let id = once(&pairs, "id")?
            .map(|v| EventId::parse(v).map_err(FormError::Id))
            .transpose()?;
        let event_type = once(&pairs, "type")?
            .map(|v| EventType::parse(v).map_err(FormError::Type))
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
            topics in prop::collection::vec("[^\r\n\0]{1,40}".prop_filter("not *", |t| t != "*"), 1..4),
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
