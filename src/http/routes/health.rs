//! Health and metrics: `GET /healthz`, `GET /readyz`, `GET /metrics` (Prometheus) and the JSON
//! summary at `GET /stats`.

use actix_web::{web, HttpResponse};

use super::AppState;

/// 200 while the hub serves requests.
pub(super) async fn healthz() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .body("ok\n")
}

/// The hub's counters as JSON.
pub(super) async fn stats(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(state.stats.snapshot())
}

/// 200 when the broadcaster answers and takes subscribers and the transport works (for Redis:
/// it answers a PING and the reader is connected); 503 otherwise.
pub(super) async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    if !state.transport.ready().await {
        return HttpResponse::ServiceUnavailable()
            .content_type("text/plain; charset=utf-8")
            .body("not ready: the event stream is unavailable\n");
    }
    let ready = tokio::time::timeout(
        std::time::Duration::from_secs(2),
        state.broadcaster.send(crate::fanout::broadcaster::Ready),
    )
    .await;
    match ready {
        Ok(Ok(true)) => HttpResponse::Ok()
            .content_type("text/plain; charset=utf-8")
            .body("ready\n"),
        _ => HttpResponse::ServiceUnavailable()
            .content_type("text/plain; charset=utf-8")
            .body("not ready\n"),
    }
}

/// Every metric in the Prometheus text format.
pub(super) async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .insert_header(("Cache-Control", "no-store"))
        .body(state.stats.prometheus_text())
}
