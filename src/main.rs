use std::process::ExitCode;

use clap::Parser;
use sse_hub::{config::Cli, Application};

fn main() -> ExitCode {
    let cli = Cli::parse();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    if let Some(command) = cli.command {
        return match command {
            sse_hub::config::Command::Token(_) => {
                log::error!("the token helper is not available yet");
                ExitCode::FAILURE
            }
        };
    }
    let result = actix_web::rt::System::new().block_on(async move {
        let app = Application::build(cli.config)?;
        log::info!("listening on http://{}", app.local_addr());
        app.run_until_stopped().await?;
        Ok::<_, Box<dyn std::error::Error>>(())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            log::error!("{err}");
            ExitCode::FAILURE
        }
    }
}
