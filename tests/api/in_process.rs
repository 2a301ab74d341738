//! The hub inside the test's own process: `Application::build`, then `run_until_stopped` with a
//! shutdown future the test controls, for checks where a subprocess is not the point.

use std::time::Duration;

use clap::Parser;
use sse_hub::{config::Cli, Application};
use tokio::sync::oneshot;

use crate::helpers::{client, publisher, SseClient, KEY};

#[actix_web::test]
async fn an_in_process_hub_serves_and_stops_when_its_shutdown_future_completes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let cli = Cli::try_parse_from([
        "sse-hub",
        "--bind",
        "127.0.0.1:0",
        "--data-dir",
        data.to_str().expect("UTF-8 path"),
        "--tick-interval",
        "0",
        "--jwt-key",
        KEY,
        "--allow-anonymous",
    ])
    .expect("arguments");
    let app = Application::build(cli.config).expect("the hub starts");
    let base = app.url();
    let (stop, stopped) = oneshot::channel::<()>();
    let running = actix_web::rt::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));

    let mut sse = SseClient::connect(&format!("{base}/.well-known/mercure?topic=/in"), &[]).await;
    assert_eq!(sse.status, 200);
    sse.opened().await;
    let published = client()
        .post(format!("{base}/.well-known/mercure"))
        .bearer_auth(publisher())
        .form(&[("topic", "/in"), ("data", "hello")])
        .send()
        .await
        .expect("publish");
    assert_eq!(published.status(), 200);
    let id = published.text().await.expect("the id");
    let event = sse
        .next_event(Duration::from_secs(5))
        .await
        .expect("the update");
    assert_eq!(
        (event.id.as_deref(), event.data.as_str()),
        (Some(id.as_str()), "hello")
    );

    stop.send(()).expect("the hub is still running");
    let result = tokio::time::timeout(Duration::from_secs(15), running)
        .await
        .expect("the hub stops in time")
        .expect("the hub's task");
    assert!(result.is_ok(), "{result:?}");
    // Its stream was ended, so the subscriber can reconnect elsewhere.
    let ended = sse.chunk(Duration::from_secs(5)).await;
    assert!(matches!(ended, crate::helpers::Next::End), "{ended:?}");
}
