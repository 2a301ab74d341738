//! Black-box tests: the real `sse-hub` binary on port 0, a real HTTP client, real nginx.

mod access_tokens;
mod auth;
mod browser;
mod config;
mod core;
mod deploy;
mod docs;
mod durability;
mod first_run;
mod hardening;
mod helpers;
mod http2;
mod in_process;
mod inputs;
mod joins;
mod jwks;
mod matchers;
mod mercure;
mod metrics;
mod newcomer;
mod nginx;
mod overload;
mod replay;
mod scaleout;
mod subscriptions;
mod tls;
