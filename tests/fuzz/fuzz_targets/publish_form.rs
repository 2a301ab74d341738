//! `Publication::parse` never panics on any body, and what it accepts is safe to put on
//! SSE field lines: at least one topic, and no topic, id or type holding CR, LF or NUL.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sse_hub::protocol::publication::Publication;

fn clean(s: &str) -> bool {
    !s.contains(['\r', '\n', '\0'])
}

fuzz_target!(|body: &[u8]| {
    // Bodies reach the parser as `&str`; invalid UTF-8 still exercises it after lossy decoding.
    let body = String::from_utf8_lossy(body);
    let Ok(p) = Publication::parse(&body) else {
        return;
    };
    assert!(!p.topics.is_empty(), "no topic accepted from {body:?}");
    for topic in &p.topics {
        assert!(clean(topic.as_str()), "topic {topic:?} from {body:?}");
    }
    if let Some(id) = &p.id {
        assert!(clean(id.as_str()), "id {id:?} from {body:?}");
    }
    if let Some(kind) = &p.event_type {
        assert!(clean(kind.as_str()), "type {kind:?} from {body:?}");
    }
});
