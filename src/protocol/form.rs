//! Strict `application/x-www-form-urlencoded` decoding, for publish bodies and query strings.
//!
//! `form_urlencoded::parse` decodes lossily: `%FF` becomes U+FFFD, so `topic=/x%FF` and
//! `topic=/x%FE` would name the same topic and `data` would not arrive as sent. Here a name or
//! value whose percent-decoded bytes are not UTF-8 is an error, as raw invalid bytes already are.

use std::borrow::Cow;

use percent_encoding::percent_decode_str;

/// A name or value that is not UTF-8 once percent-decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidUtf8 {
    #[error("a parameter name is not UTF-8 once percent-decoded")]
    Name,
    /// The name is shown escaped (`{:?}`), so the message stays on one line.
    #[error("the value of {0:?} is not UTF-8 once percent-decoded")]
    Value(String),
}

/// One decoded `name=value` pair; borrowed from the input when nothing needed decoding.
pub type Pair<'a> = (Cow<'a, str>, Cow<'a, str>);

/// Decodes `input` into its pairs, in order, keeping repeated names.
///
/// As in the URL standard's form parser: pieces are split at `&`, empty pieces skipped, a piece
/// without `=` has an empty value, `+` is a space and `%XX` a byte.
pub fn parse(input: &str) -> Result<Vec<Pair<'_>>, InvalidUtf8> {
    input
        .split('&')
        .filter(|piece| !piece.is_empty())
        .map(|piece| {
            let (name, value) = piece.split_once('=').unwrap_or((piece, ""));
            let name = decode(name).ok_or(InvalidUtf8::Name)?;
            let value = decode(value).ok_or_else(|| InvalidUtf8::Value(name.clone().into()))?;
            Ok((name, value))
        })
        .collect()
}

/// Decodes one name or value; `None` when its bytes are not UTF-8.
fn decode(raw: &str) -> Option<Cow<'_, str>> {
    // `+` becomes a space before percent-decoding, so an encoded plus (`%2B`) stays a plus.
    if raw.contains('+') {
        let spaced = raw.replace('+', " ");
        let decoded = percent_decode_str(&spaced).decode_utf8().ok()?;
        Some(Cow::Owned(decoded.into_owned()))
    } else {
        percent_decode_str(raw).decode_utf8().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pairs(input: &str) -> Vec<(String, String)> {
        parse(input)
            .unwrap()
            .into_iter()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }

    fn owned(expected: &[(&str, &str)]) -> Vec<(String, String)> {
        expected
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn decodes_pluses_escapes_and_bare_names() {
        assert_eq!(
            pairs("a=1&&b=x+y%2Bz&c&d==e&topic=%2Fbooks%2F%C3%A9&a=2&"),
            owned(&[
                ("a", "1"),
                ("b", "x y+z"),
                ("c", ""),
                ("d", "=e"),
                ("topic", "/books/é"),
                ("a", "2"),
            ])
        );
        assert_eq!(pairs(""), owned(&[]));
        // A `%` not followed by two hex digits is kept as it is, as browsers do.
        assert_eq!(pairs("p=100%&q=%zz"), owned(&[("p", "100%"), ("q", "%zz")]));
    }

    #[test]
    fn refuses_escapes_that_are_not_utf8() {
        assert_eq!(
            parse("topic=%2Fa&data=%FF%FEok"),
            Err(InvalidUtf8::Value("data".into()))
        );
        assert_eq!(
            parse("topic=/x%FF"),
            Err(InvalidUtf8::Value("topic".into()))
        );
        // A truncated multi-byte sequence, an overlong encoding, a lone surrogate.
        for bad in ["v=%C3", "v=%C0%AF", "v=%ED%A0%80"] {
            assert_eq!(parse(bad), Err(InvalidUtf8::Value("v".into())), "{bad}");
        }
        assert_eq!(parse("%FF=1"), Err(InvalidUtf8::Name));
        assert_eq!(parse("a%0A%FF=1"), Err(InvalidUtf8::Name));
    }

    #[test]
    fn the_error_message_is_one_line() {
        let err = parse("a%0Ab=%FF").map(|_| ()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the value of \"a\\nb\" is not UTF-8 once percent-decoded"
        );
    }

    proptest! {
        #[test]
        fn agrees_with_the_lossy_parser_whenever_it_decodes(input in any::<String>()) {
            if let Ok(strict) = parse(&input) {
                let lossy: Vec<_> = form_urlencoded::parse(input.as_bytes()).collect();
                prop_assert_eq!(strict, lossy);
            } else {
                // A `&str` is UTF-8: only escapes can make bytes that are not.
                prop_assert!(input.contains('%'));
            }
        }

        #[test]
        fn any_escaped_bytes_decode_exactly_when_they_are_utf8(
            bytes in prop::collection::vec(any::<u8>(), 0..64),
        ) {
            let input: String = bytes.iter().map(|b| format!("%{b:02X}")).collect();
            let input = format!("v={input}");
            let decoded = parse(&input);
            match std::str::from_utf8(&bytes) {
                Ok(text) => {
                    let value = decoded.unwrap().pop().map(|(_, v)| v.into_owned());
                    prop_assert_eq!(value.as_deref(), Some(text));
                }
                Err(_) => prop_assert_eq!(decoded, Err(InvalidUtf8::Value("v".into()))),
            }
        }
    }
}
