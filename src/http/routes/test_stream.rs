//! `GET /api/stream/test`: the bounded stream of the original Spring example, kept as a
//! self-check: three `server time: HH:MM:SS.mmm` events one second apart, then `[Done]`.

use std::{convert::Infallible, time::Duration};

use actix_cors::Cors;
use actix_web::{http::header, Responder};
use actix_web_lab::sse::{self, Sse};

/// Timed events before `[Done]`.
const EVENTS: u32 = 3;
/// Gap between events.
const PERIOD: Duration = Duration::from_secs(1);

/// CORS open to any origin, as `@CrossOrigin` was on the Spring endpoint.
pub(super) fn cors() -> Cors {
    Cors::default()
        .allow_any_origin()
        .send_wildcard()
        .allowed_methods(["GET"])
        .max_age(3600)
}

/// `HH:MM:SS.mmm` in UTC.
fn clock() -> String {
    let stamp = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
    // RFC 3339 with millis: `YYYY-MM-DDTHH:MM:SS.mmmZ`; the clock is bytes 11..23.
    stamp.get(11..23).unwrap_or(&stamp).to_owned()
}

pub(super) async fn handler() -> impl Responder {
    // Each event is produced after its delay and yielded at once, so it leaves the server
    // when it is made: nothing is batched.
    let events = futures_util::stream::unfold(0u32, |i| async move {
        if i > EVENTS {
            return None;
        }
        if i > 0 {
            tokio::time::sleep(PERIOD).await;
        }
        let data = if i < EVENTS {
            format!("server time: {}", clock())
        } else {
            "[Done]".to_owned()
        };
        Some((
            Ok::<_, Infallible>(sse::Event::Data(sse::Data::new(data))),
            i + 1,
        ))
    });
    Sse::from_stream(events)
        .customize()
        .insert_header((header::CACHE_CONTROL, "no-cache, no-store"))
        .insert_header(("X-Accel-Buffering", "no"))
}
