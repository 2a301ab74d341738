use std::process::ExitCode;

use std::io::Write as _;

use sse_hub::{
    auth::{self, Claims, MercureClaim},
    config::{self, Authorization, Command, JwtAlgorithm, TokenArgs},
    Application,
};

/// Signs the token asked for by `sse-hub token`: with the publisher key when it may publish,
/// else with the subscriber key.
fn token(auth: &Authorization, args: &TokenArgs) -> Result<String, Box<dyn std::error::Error>> {
    if auth.jwt_algorithm != JwtAlgorithm::HS256 {
        return Err(
            "`sse-hub token` signs HS256 tokens only; sign RS256/ES256 with your private key"
                .into(),
        );
    }
    if args.publish.is_empty() && args.subscribe.is_empty() {
        return Err(
            "a token without claims grants nothing: give --publish SELECTOR and/or --subscribe SELECTOR"
                .into(),
        );
    }
    let key = if args.publish.is_empty() && !args.subscribe.is_empty() {
        auth.subscriber_key()
    } else {
        auth.publisher_key()
    }
    .ok_or("no key: give --jwt-key KEY (or set SSE_HUB_JWT_KEY)")?;
    let claims = Claims {
        mercure: Some(MercureClaim {
            publish: (!args.publish.is_empty()).then(|| args.publish.clone()),
            subscribe: (!args.subscribe.is_empty()).then(|| args.subscribe.clone()),
            payload: None,
        }),
        exp: (!args.no_exp).then(|| auth::expiry_in(args.exp)),
        sub: args.sub.clone(),
    };
    Ok(auth::sign_hs256(&claims, key)?)
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let cli = match config::load(&args) {
        Ok(cli) => cli,
        Err(config::LoadError::Display(help)) => help.exit(),
        Err(err) => {
            log::error!("{err}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(Command::Token(args)) = cli.command {
        return match token(&cli.config.auth, &args) {
            Ok(token) => {
                let mut out = std::io::stdout().lock();
                match writeln!(out, "{token}") {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(_) => ExitCode::FAILURE,
                }
            }
            Err(err) => {
                log::error!("{err}");
                ExitCode::FAILURE
            }
        };
    }
    // Every subscriber is a socket: take all the open files the system allows.
    let limit = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => {
            log::debug!("open files limit: {limit}");
            limit
        }
        Err(err) => {
            log::warn!("cannot raise the open files limit: {err}");
            1024
        }
    };
    // Room for every subscriber and some more (listeners, the store, publishers), made now
    // while this is the only thread: growing it later stalls accepts (`reserve_file_table`).
    let files = u64::try_from(cli.config.streams.max_subscribers)
        .unwrap_or(u64::MAX)
        .saturating_add(1024)
        .min(limit);
    sse_hub::app::reserve_file_table(files);
    let result = actix_web::rt::System::new().block_on(async move {
        let app = Application::build(cli.config)?;
        log::info!("listening on {}", app.url());
        app.run_until_stopped(sse_hub::app::shutdown_signal())
            .await?;
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
