//! Black-box tests: the real `sse-hub` binary on port 0, a real HTTP client, real nginx.

mod auth;
mod core;
mod helpers;
mod mercure;
mod nginx;
mod replay;
