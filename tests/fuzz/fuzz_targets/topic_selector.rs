//! `TopicSelector::parse` and `matches` never panic; a parsed selector matches its own
//! source string; a selector without `{`/`}` is either `*` (matches everything) or matches
//! exactly the one equal topic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sse_hub::protocol::topic::TopicSelector;

fuzz_target!(|input: (&str, &str)| {
    let (source, topic) = input;
    let Ok(selector) = TopicSelector::parse(source) else {
        return;
    };
    assert_eq!(selector.as_str(), source);
    assert!(selector.matches(source), "{source:?} does not match itself");

    let matched = selector.matches(topic);
    if source.contains(['{', '}']) {
        // A URI template: anything may match; it only must not panic (done above).
        assert!(!selector.is_any() && selector.exact().is_none());
    } else if source == "*" {
        assert!(selector.is_any() && matched);
    } else {
        assert_eq!(selector.exact(), Some(source));
        assert_eq!(
            matched,
            topic == source,
            "selector {source:?}, topic {topic:?}"
        );
    }
});
