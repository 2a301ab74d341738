//! The HTTP edge: routes, the access log, and each subscriber's response stream.

pub mod access_log;
pub mod routes;
pub mod stream;
