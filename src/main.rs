use std::process::ExitCode;

use std::io::Write as _;

use sse_hub::{
    auth::{
        self,
        mint::{AccessToken, Grant},
        Claims, MercureClaim,
    },
    config::{self, Command, JwtAlgorithm, TokenArgs},
    Application,
};

/// Signs the token asked for by `sse-hub token`: with the publisher key when it may publish,
/// else with the subscriber key.
fn token(config: &config::Config, args: &TokenArgs) -> Result<String, Box<dyn std::error::Error>> {
    let auth = &config.auth;
    if auth.jwt_algorithm != JwtAlgorithm::HS256 {
        return Err(
            "`sse-hub token` signs HS256 tokens only; sign RS256/ES256/EdDSA tokens with your private key"
                .into(),
        );
    }
    let publishes = !(args.publish.is_empty() && args.publish_urlpattern.is_empty());
    let subscribes = !(args.subscribe.is_empty() && args.subscribe_urlpattern.is_empty());
    if !publishes && !subscribes {
        return Err(
            "a token without rights grants nothing: give --publish TOPIC and/or --subscribe TOPIC"
                .into(),
        );
    }
    let key = if publishes {
        auth.publisher_key()
    } else {
        auth.subscriber_key()
    }
    .ok_or("no key: give --jwt-key KEY (or set SSE_HUB_JWT_KEY)")?;
    if args.legacy {
        let claims = Claims {
            mercure: Some(MercureClaim {
                publish: publishes.then(|| args.publish.clone()),
                subscribe: subscribes.then(|| args.subscribe.clone()),
                payload: args.payload.clone().map(serde_json::Value::Object),
            }),
            exp: (!args.no_exp).then(|| auth::expiry_in(args.exp)),
            sub: args.sub.clone(),
            ..Claims::default()
        };
        return Ok(auth::sign_hs256(&claims, key)?);
    }
    let issuer = auth.issuer.clone().ok_or(
        "a 1.0 access token names its issuer: give --issuer URL (the hub must trust the same \
         one), or --legacy for a 0.x token",
    )?;
    let audience = match (&args.audience, &auth.resource_identifier) {
        (Some(audience), _) => audience.clone(),
        (None, Some(resource)) => resource.to_string(),
        (None, None) => {
            // A hub listening on every address is reached on this machine at the loopback one.
            let mut bind = config.listen.bind;
            if bind.ip().is_unspecified() {
                bind.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
            }
            format!("http://{bind}/.well-known/mercure")
        }
    };
    let grants = |exact: &[String], patterns: &[String]| {
        let exact = exact.iter().map(|m| Grant::exact(m));
        exact
            .chain(patterns.iter().map(|p| Grant::url_pattern(p)))
            .collect()
    };
    let token = AccessToken {
        issuer: issuer.to_string(),
        audience,
        subject: args.sub.clone(),
        expires: auth::expiry_in(args.exp),
        publish: grants(&args.publish, &args.publish_urlpattern),
        subscribe: grants(&args.subscribe, &args.subscribe_urlpattern),
        payload: args.payload.clone(),
    };
    Ok(token.sign_hs256(key)?)
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
        return match token(&cli.config, &args) {
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
