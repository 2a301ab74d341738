//! `GET /healthz` and the JSON counters at `GET /stats`.

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
