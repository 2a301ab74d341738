//! Startup and shutdown: [`Application::build`] binds and starts everything, then
//! [`Application::run_until_stopped`] serves until SIGINT/SIGTERM.

use std::{future::Future, io, net::SocketAddr, sync::Arc, time::Duration};

use actix::{Actor, Addr};
use actix_service::{fn_service, map_config, ServiceFactoryExt as _};
use actix_web::{
    dev::{AppConfig, Server},
    rt::net::TcpStream,
    App,
};
use futures_util::future::ready;

use crate::{
    auth::Auth,
    config::{Config, Listen, TlsSettings},
    fanout::broadcaster::{self, Broadcaster},
    fanout::direct::Connection,
    fanout::presence::Presence,
    fanout::shard,
    history::store::Store,
    http::routes::{self, AppState},
    protocol::topic::{Topic, TopicSelector},
    stats::Stats,
    ticker::{self, Ticker},
    transport::TransportKind,
};

/// Why the hub could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("invalid --time-topic: {0}")]
    TimeTopic(String),
    #[error(transparent)]
    Key(#[from] crate::auth::KeyError),
    #[error("invalid --transport: {0}")]
    Transport(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: io::Error },
    #[error("invalid --tls-cert / --tls-key: {0}")]
    Tls(String),
    #[error("cannot open the durable history in {}: {source}", dir.display())]
    Store {
        dir: std::path::PathBuf,
        source: crate::history::store::StoreError,
    },
}

/// A bound, started hub.
pub struct Application {
    server: Server,
    local_addr: SocketAddr,
    tls: bool,
    broadcaster: Addr<Broadcaster>,
    ticker: Option<Addr<Ticker>>,
    /// With `--subscriptions` and Redis: this node's list in Redis, deleted on a clean stop.
    presence: Option<Presence>,
    /// The tasks keeping JWK sets fresh.
    jwks: Vec<tokio::task::JoinHandle<()>>,
}

impl Application {
    /// Binds the listener, then starts the broadcaster, transport, server and ticker. Call
    /// inside an actix system.
    pub fn build(config: Config) -> Result<Self, StartError> {
        let time_topic = Topic::parse(&config.streams.time_topic)
            .map_err(|e| StartError::TimeTopic(e.to_string()))?;
        let time_selector = TopicSelector::parse(time_topic.as_str())
            .ok()
            .filter(|s| s.exact().is_some())
            .ok_or_else(|| StartError::TimeTopic("must be a plain topic, not a template".into()))?;
        let auth = Arc::new(Auth::from_config(
            &config.auth,
            config.protocol,
            config.streams.max_topics,
        )?);
        // Bind before starting anything: an address in use is then a plain error, with no actor
        // half-started to be torn down as the runtime goes (the ticker panicked doing that).
        let bind_error = |source| StartError::Bind {
            addr: config.listen.bind,
            source,
        };
        // Read the certificate before anything starts: a bad one is a plain error too.
        let tls = tls_config(&config.tls)?;
        let listener = listen(config.listen.bind).map_err(bind_error)?;
        let local_addr = listener.local_addr().map_err(bind_error)?;
        for line in config.unused() {
            log::warn!("{line}");
        }
        if !auth.can_publish() {
            log::warn!(
                "no publisher key (--jwt-key, --publisher-jwt-key or --publisher-jwks-url): publishing is off"
            );
        }
        let stats = Arc::new(Stats::default());
        let limits = broadcaster::Limits {
            max_subscribers: config.streams.max_subscribers,
            max_subscribers_per_ip: config.streams.max_subscribers_per_ip,
            retention: config.history.retention(),
            max_fanout_backlog: config.publishing.max_fanout_backlog,
        };
        let broadcaster = match (&config.transport.transport, &config.history.data_dir.0) {
            (TransportKind::Local, Some(dir)) => {
                let mut store = Store::open(dir, config.history.fsync, config.history.salvage)
                    .map_err(|source| StartError::Store {
                        dir: dir.clone(),
                        source,
                    })?;
                let loaded = store.load().map_err(|source| StartError::Store {
                    dir: dir.clone(),
                    source,
                })?;
                log::info!(
                    "durable history in {} ({} updates stored, --fsync {})",
                    dir.display(),
                    loaded.len(),
                    format!("{:?}", config.history.fsync).to_lowercase()
                );
                Broadcaster::durable(limits, Arc::clone(&stats), store, loaded)
            }
            (TransportKind::Local, None) => {
                log::info!("history in memory only (--data-dir none): a restart loses it");
                Broadcaster::new(limits, Arc::clone(&stats))
            }
            // Redis holds the history; each node keeps the stream's tail in memory.
            (TransportKind::Redis(_), _) => Broadcaster::new(limits, Arc::clone(&stats)),
        };
        // With Redis, subscribers coming and going go through the transport: their events
        // reach every node, and the subscriptions API lists every node's.
        let (presence, changes) = match (&config.transport.transport, config.streams.subscriptions)
        {
            (TransportKind::Redis(_), true) => {
                let (presence, changes) =
                    Presence::channel(config.streams.subscriptions_ttl, stats.presence_queued());
                (Some(presence), Some(changes))
            }
            _ => (None, None),
        };
        let admission = broadcaster.admission();
        let broadcaster = broadcaster.with_presence(presence.clone()).start();
        let transport = crate::transport::Transport::start(
            &config.transport.transport,
            &config.transport.redis_stream,
            config.history.history_size,
            broadcaster.clone(),
            Arc::clone(&stats),
            changes,
        )
        .map_err(|e| StartError::Transport(e.to_string()))?;
        let state = AppState {
            broadcaster: broadcaster.clone(),
            admission,
            shard_owner: shard::Owner::from(&broadcaster),
            stats,
            config: Arc::new(config.clone()),
            auth: Arc::clone(&auth),
            transport,
            publish_limiter: Arc::new(routes::rate_limit::PublishLimiter::new(
                config.publishing.publish_rate,
                config.publishing.publish_burst,
            )),
            subscribe_limiter: Arc::new(routes::rate_limit::SubscribeLimiter::or_off(
                config.streams.subscribe_rate,
                config.streams.subscribe_burst,
            )),
            time_selector,
            templates: crate::protocol::topic::Templates::new(config.streams.max_template_memory),
        };
        let app = move || {
            App::new()
                .wrap(actix_web::middleware::from_fn(
                    routes::http10::close_delimited,
                ))
                .wrap(actix_web::middleware::from_fn(
                    routes::request_size::request_size,
                ))
                .wrap(crate::http::access_log::AccessLog)
                .configure(|cfg| routes::configure(cfg, state.clone()))
        };
        let mut builder = actix_web::dev::Server::build()
            // Signals are handled in `run_until_stopped`: streams must be ended before the
            // server's graceful stop can complete.
            .disable_signals()
            .shutdown_timeout(config.listen.shutdown_timeout.as_secs().max(1));
        if config.listen.workers > 0 {
            builder = builder.workers(config.listen.workers);
        }
        let http = HttpSettings {
            keep_alive: config.listen.idle_timeout,
            request_header_timeout: config.listen.request_header_timeout,
            write_timeout: config.listen.write_timeout,
            h2_limits: h2_limits(&config.listen),
            local_addr,
            shutdown: builder.graceful_shutdown_signal(),
        };
        let serves_tls = tls.is_some();
        let builder = match tls {
            // HTTP/2 (negotiated by ALPN) and HTTP/1.1 over TLS.
            Some(tls) => builder.listen("sse-hub-tls", listener, move || {
                let write_timeout = http.write_timeout;
                http.service()
                    .on_connect_ext(move |tls: &TlsStream, _| {
                        set_write_timeout(tls.get_ref().0, write_timeout);
                    })
                    .finish(map_config(app(), |()| AppConfig::default()))
                    .rustls_0_23(tls.clone())
            }),
            // HTTP/1 on connections the fan-out may write to directly (`crate::fanout::direct`).
            None => builder.listen("sse-hub", listener, move || {
                let write_timeout = http.write_timeout;
                let h1 = http
                    .service()
                    .on_connect_ext(move |conn: &Connection, data| {
                        conn.with_socket(|tcp| set_write_timeout(tcp, write_timeout));
                        conn.attach(data);
                    })
                    .h1(map_config(app(), |()| AppConfig::default()));
                fn_service(|tcp: TcpStream| {
                    let peer = tcp.peer_addr().ok();
                    ready(Ok((Connection::new(tcp), peer)))
                })
                .and_then(h1)
            }),
        }
        .map_err(bind_error)?;
        // The ticker publishes to this node's subscribers only: with several nodes on one
        // stream, each node's clock would otherwise tick once per node.
        let jwks = auth.start_jwks(config.auth.jwks_refresh_interval);
        let ticker = (!config.streams.tick_interval.is_zero()).then(|| {
            Ticker::new(
                broadcaster.clone(),
                time_topic,
                config.streams.tick_interval,
            )
            .start()
        });
        Ok(Self {
            server: builder.run(),
            local_addr,
            tls: serves_tls,
            broadcaster,
            ticker,
            presence,
            jwks,
        })
    }

    /// The base URL of the hub (`https://` with `--tls-cert`), with the real port when bound to
    /// port 0.
    #[must_use]
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.local_addr)
    }

    /// The address the hub listens on (with the real port when bound to port 0).
    #[must_use]
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until `shutdown` completes (the binary passes [`shutdown_signal`]; a test, a
    /// future it controls), then shuts down gracefully: stops the ticker, ends every stream so
    /// clients reconnect elsewhere, lets open requests finish within the timeout, and waits for
    /// the durable history's last writes.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()>) -> io::Result<()> {
        let handle = self.server.handle();
        let server = actix_web::rt::spawn(self.server);
        shutdown.await;
        log::info!("shutting down");
        if let Some(ticker) = &self.ticker {
            ticker.do_send(ticker::Stop);
        }
        for task in &self.jwks {
            task.abort();
        }
        let writer = match self.broadcaster.send(broadcaster::Shutdown).await {
            Ok(writer) => writer,
            Err(err) => {
                log::warn!("broadcaster did not confirm shutdown: {err}");
                None
            }
        };
        // The broadcaster has told the presence that every subscriber left: those events go
        // out, then this node's list is deleted (bounded: Redis may be away).
        if let Some(presence) = &self.presence {
            if tokio::time::timeout(PRESENCE_STOP_TIMEOUT, presence.stop())
                .await
                .is_err()
            {
                log::warn!(
                    "active subscriptions: Redis did not take this node's last changes in \
                     {PRESENCE_STOP_TIMEOUT:?}; its list expires by itself"
                );
            }
        }
        handle.stop(true).await;
        // Whatever the store was given is written and synced before the process ends.
        if let Some(writer) = writer {
            if tokio::task::spawn_blocking(move || writer.join())
                .await
                .is_err()
            {
                log::warn!("the store's writer did not end cleanly");
            }
        }
        match server.await {
            Ok(result) => result,
            Err(err) => Err(io::Error::other(err)),
        }
    }
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

/// How long a stopping node waits for Redis to take its last subscription changes.
const PRESENCE_STOP_TIMEOUT: Duration = Duration::from_secs(3);

/// Pending connections the kernel queues before the server accepts them (actix's default).
const LISTEN_BACKLOG: i32 = 1024;

/// Streams one HTTP/2 connection may have open at once; more are refused (`REFUSED_STREAM`).
/// Go's HTTP/2 server, which the reference Mercure hub runs on, allows as many.
const H2_MAX_CONCURRENT_STREAMS: u32 = 250;

/// Streams an HTTP/2 peer may reset before the hub has accepted them; past it the connection
/// is closed (the `h2` crate's default, set here so the bound is written down).
const H2_MAX_PENDING_ACCEPT_RESET_STREAMS: usize = 20;

/// Room in the HTTP/2 header list for what `--max-header-size` does not count: the
/// pseudo-headers and the 32 bytes RFC 9113 adds per field.
const H2_HEADER_LIST_ALLOWANCE: usize = 4096;

/// What every connection's HTTP service is built with, TLS or not.
#[derive(Debug, Clone)]
struct HttpSettings {
    keep_alive: Duration,
    request_header_timeout: Duration,
    write_timeout: Duration,
    /// Bounds HTTP/2 peers (TLS connections only: plain ones speak HTTP/1).
    h2_limits: actix_http::H2Limits,
    local_addr: SocketAddr,
    /// Tells open connections the server is stopping: idle keep-alive ones close at once.
    shutdown: actix_server::GracefulShutdownSignal,
}

impl HttpSettings {
    /// An HTTP service builder for connections of type `T`, as actix-web's `HttpServer` makes
    /// it. The hub assembles its server itself so that plain connections can be
    /// [`Connection`]s. (The application's `AppConfig` is the default one: the hub reads no
    /// host or scheme from it.)
    fn service<T, S>(&self) -> actix_http::HttpServiceBuilder<T, S>
    where
        S: actix_service::ServiceFactory<actix_http::Request, Config = ()>,
        S::Error: Into<actix_http::Response<actix_web::body::BoxBody>> + 'static,
        S::InitError: std::fmt::Debug,
        <S::Service as actix_service::Service<actix_http::Request>>::Future: 'static,
    {
        let shutdown = self.shutdown.clone();
        actix_http::HttpServiceBuilder::default()
            // actix-web's own wiring of the server's graceful stop (hidden in actix-http's
            // docs; the version is pinned by patches/actix-http).
            .graceful_shutdown_signal(move || {
                let shutdown = shutdown.clone();
                async move { shutdown.notified().await }
            })
            .keep_alive(self.keep_alive)
            .client_request_timeout(self.request_header_timeout)
            // actix-web's default: after closing a connection, read what the client still
            // sends for up to 1 s, so its last request is not cut off by a reset.
            .client_disconnect_timeout(Duration::from_secs(1))
            // A client's FIN ends its connection at once: a subscriber that left is
            // unregistered now, not at the next heartbeat it fails to receive. (A client that
            // half-closes after sending its request gets no answer; no browser or SSE client
            // does that.)
            .h1_allow_half_closed(false)
            .h2_limits(self.h2_limits)
            .local_addr(self.local_addr)
    }
}

/// The HTTP/2 limits: a peer can make the hub decode no more headers per request than the hub
/// would accept anyway (h2 answers 431 past them and stores no field beyond the limit), however
/// well HPACK compresses them on the wire. (The HPACK table a peer may make the hub keep is
/// RFC 9113's default, 4,096 bytes a connection, which the `h2` crate does not let a server
/// change.)
fn h2_limits(listen: &Listen) -> actix_http::H2Limits {
    let header_list = listen.max_header_size + listen.max_url_size + H2_HEADER_LIST_ALLOWANCE;
    actix_http::H2Limits::default()
        .max_header_list_size(u32::try_from(header_list).unwrap_or(u32::MAX))
        .max_concurrent_streams(H2_MAX_CONCURRENT_STREAMS)
        .max_pending_accept_reset_streams(H2_MAX_PENDING_ACCEPT_RESET_STREAMS)
}

/// A peer that stops reading leaves sent data unacknowledged (a zero window): the kernel
/// closes its connection after the write timeout, so it can't pin buffers forever.
fn set_write_timeout(tcp: &TcpStream, timeout: Duration) {
    if let Err(err) = socket2::SockRef::from(tcp).set_tcp_user_timeout(Some(timeout)) {
        log::warn!("cannot set the write timeout on a connection: {err}");
    }
}

/// A TLS connection as actix hands it to `on_connect_ext`.
type TlsStream = actix_tls::accept::rustls_0_23::TlsStream<TcpStream>;

/// The TLS configuration of `--tls-cert` and `--tls-key` (PEM files), if given.
fn tls_config(tls: &TlsSettings) -> Result<Option<rustls::ServerConfig>, StartError> {
    use rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};
    let (cert, key) = match (&tls.tls_cert, &tls.tls_key) {
        (None, None) => return Ok(None),
        (Some(cert), Some(key)) => (cert, key),
        _ => return Err(StartError::Tls("give both, or neither".into())),
    };
    let tls = |what: &str, err: &dyn std::fmt::Display| StartError::Tls(format!("{what}: {err}"));
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(|e| tls(&cert.display().to_string(), &e))?;
    if chain.is_empty() {
        return Err(tls(&cert.display().to_string(), &"no certificate in it"));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| tls(&key.display().to_string(), &e))?;
    let server = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .and_then(|b| b.with_no_client_auth().with_single_cert(chain, key))
    .map_err(|e| tls("the certificate and key", &e))?;
    Ok(Some(server))
}

/// A listening socket made as actix's own `bind` makes it: `SO_REUSEADDR` (a restarted hub
/// listens again at once, whatever connections of the old one linger in `TIME_WAIT`),
/// nonblocking, backlog [`LISTEN_BACKLOG`].
fn listen(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// Grows the process's table of open files to hold `fds` descriptors, once, at start: call it
/// before any thread is spawned.
///
/// Linux grows the table as descriptors are opened, doubling it at 64, 128, 256, … open
/// files; in a process with more than one thread each growth waits for an RCU grace period
/// (`synchronize_rcu` in `expand_fdtable`), typically 10 to 30 ms, during which the `accept`
/// that needed the room, and every connection queued behind it, waits. A hub filling up with
/// subscribers met one such stall per doubling: the connect p99 of a burst of joins
/// (BENCHMARKS.md, "Joining"). Grown here, while the process has one thread, it costs no wait,
/// and the table (8 bytes per descriptor) never shrinks, so those stalls are gone.
pub fn reserve_file_table(fds: u64) {
    #[cfg(unix)]
    {
        let Ok(top) = rustix::fd::RawFd::try_from(fds.saturating_sub(1)) else {
            return;
        };
        if top < 64 {
            return;
        }
        // The lowest free descriptor at or above `top`: the table grows to hold it; closed at
        // once when dropped.
        match rustix::io::fcntl_dupfd_cloexec(std::io::stderr(), top) {
            Ok(fd) => drop(fd),
            Err(err) => log::debug!("cannot reserve {fds} open files at start: {err}"),
        }
    }
    #[cfg(not(unix))]
    let _ = fds;
}

/// Completes on SIGINT or (on Unix) SIGTERM: what the binary stops on.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(err) => {
                log::warn!("cannot listen for SIGTERM: {err}");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
