//! What characters a protocol value may hold.

/// Whether `c` may not appear in an id, a type, a cursor or a matcher: a C0 or C1 control
/// character, DEL, or a format character (general category Cf), as Mercure 1.0 has it. An id
/// travels in HTTP header fields too, which can't hold them.
pub fn is_forbidden(c: char) -> bool {
    matches!(c, '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{9f}')
        || (!c.is_ascii()
            && icu_properties::CodePointMapData::<icu_properties::props::GeneralCategory>::new()
                .get(c)
                == icu_properties::props::GeneralCategory::Format)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_and_format_characters_are_forbidden_and_the_rest_allowed() {
        for c in [
            '\0',
            '\r',
            '\n',
            '\u{1}',
            '\u{7f}',
            '\u{85}',
            '\u{9f}',
            '\u{200b}',
            '\u{feff}',
            '\u{e0001}',
        ] {
            assert!(is_forbidden(c), "{c:?}");
        }
        for c in ['a', ' ', '#', '/', 'é', '\u{a0}', '\u{2028}', '日', '😀'] {
            assert!(!is_forbidden(c), "{c:?}");
        }
    }
}
