//! The demo dashboard: files from `static/`, built into the binary so it works from any working
//! directory, or served from `--static-dir` when given.

use std::path::PathBuf;

use actix_web::{
    http::{header, Method},
    web, HttpRequest, HttpResponse,
};
use rust_embed::RustEmbed;

#[derive(RustEmbed)]
#[folder = "static/"]
struct Assets;

pub(super) fn configure(cfg: &mut web::ServiceConfig, static_dir: Option<PathBuf>) {
    match static_dir {
        Some(dir) => {
            cfg.service(
                actix_files::Files::new("/", dir)
                    .index_file("index.html")
                    .default_handler(web::to(super::not_found)),
            );
        }
        None => {
            // As the default service, so a path no route or file knows is a 404 whatever the
            // method.
            cfg.default_service(web::to(embedded));
        }
    }
}

/// Mercure discovery on the dashboard page: the hub its live data comes from, relative to the
/// page so it holds behind a proxy's path prefix too.
const HUB_LINK: &str = "<.well-known/mercure>; rel=\"mercure\"";

async fn embedded(req: HttpRequest) -> HttpResponse {
    let path = req.path().trim_start_matches('/');
    let path = if path.is_empty() { "index.html" } else { path };
    let readable = matches!(*req.method(), Method::GET | Method::HEAD);
    match Assets::get(path).filter(|_| readable) {
        Some(file) => {
            let mut response = HttpResponse::Ok();
            response
                .content_type(file.metadata.mimetype())
                .insert_header((header::CACHE_CONTROL, "no-cache"));
            if path == "index.html" {
                response.insert_header((header::LINK, HUB_LINK));
            }
            response.body(file.data.into_owned())
        }
        None => super::not_found().await,
    }
}
