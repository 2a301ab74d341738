//! HTTP/2 peers over the hub's own TLS, driven with the `h2` crate so that the test controls
//! the frames: an HPACK bomb, and subscribers that leave by resetting their streams or by
//! closing their connection.

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use h2::client::SendRequest;
use serde_json::{json, Value};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    task::JoinHandle,
    time::Instant,
};
use tokio_rustls::{
    rustls::{
        self,
        client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
        crypto::CryptoProvider,
        pki_types::{CertificateDer, ServerName, UnixTime},
        DigitallySignedStruct, SignatureScheme,
    },
    TlsConnector,
};

use crate::{
    helpers::{token, Next, SseClient, TestHub},
    nginx::self_signed_certificate,
};

/// How long any one step may take.
const WAIT: Duration = Duration::from_secs(10);

/// Accepts the hub's self-signed certificate (any certificate: the hub is on loopback) and
/// checks the handshake's signatures as usual.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A hub serving TLS with a fresh self-signed certificate, with `extra` arguments.
fn tls_hub(dir: &tempfile::TempDir, extra: &[&str]) -> TestHub {
    let (cert, key) = self_signed_certificate(dir.path());
    let mut args = vec!["--tls-cert", cert.as_str(), "--tls-key", key.as_str()];
    args.extend_from_slice(extra);
    TestHub::protocol(&args)
}

/// A TLS connection to `hub` that has negotiated HTTP/2 by ALPN.
async fn tls_stream(hub: &TestHub) -> tokio_rustls::client::TlsStream<TcpStream> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = within(TcpStream::connect(&hub.addr))
        .await
        .expect("connect");
    let name = ServerName::try_from("localhost").expect("server name");
    let tls = within(TlsConnector::from(Arc::new(config)).connect(name, tcp))
        .await
        .expect("TLS handshake");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    tls
}

/// An HTTP/2 connection to `hub`, and the task that drives it.
async fn connect(hub: &TestHub) -> (SendRequest<Bytes>, JoinHandle<()>) {
    let tls = tls_stream(hub).await;
    let (send, connection) = within(h2::client::handshake(tls))
        .await
        .expect("HTTP/2 handshake");
    let driver = tokio::spawn(async move {
        // Ends with the connection; an error is the hub closing it, which tests look at.
        let _ = connection.await;
    });
    (send, driver)
}

/// `future`, or a panic if it takes longer than [`WAIT`].
async fn within<F: std::future::Future>(future: F) -> F::Output {
    tokio::time::timeout(WAIT, future)
        .await
        .expect("an HTTP/2 step in time")
}

/// A GET request for `path` with `headers` (a name may repeat).
fn get(path: &str, headers: &[(&str, &str)]) -> http::Request<()> {
    let mut request = http::Request::get(format!("https://localhost{path}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.body(()).expect("request")
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS")
}

/// An HTTP/2 connection spoken frame by frame: the `h2` crate sends a repeated field as a
/// literal each time, so it cannot make the small frames that decode to huge header lists.
struct RawH2 {
    tls: tokio_rustls::client::TlsStream<TcpStream>,
    next_stream: u32,
}

/// Frame types and flags (RFC 9113, section 6).
const HEADERS: u8 = 0x1;
const SETTINGS: u8 = 0x4;
const GOAWAY: u8 = 0x7;
const END_STREAM_AND_HEADERS: u8 = 0x5;
const ACK: u8 = 0x1;

impl RawH2 {
    async fn connect(hub: &TestHub) -> Self {
        let mut tls = tls_stream(hub).await;
        let mut start = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        start.extend(frame(SETTINGS, 0, 0, &[]));
        within(tls.write_all(&start)).await.expect("preface");
        Self {
            tls,
            next_stream: 1,
        }
    }

    /// Sends a GET for `path` whose header block ends with `fields` (HPACK-encoded), and
    /// returns the first byte of the response's header block (0x88 is `:status: 200`).
    async fn get(&mut self, path: &str, fields: &[u8]) -> u8 {
        let mut block = vec![0x82, 0x87]; // :method GET, :scheme https
        literal(&mut block, 4, path); // :path
        literal(&mut block, 1, "localhost"); // :authority
        block.extend_from_slice(fields);
        let stream = self.next_stream;
        self.next_stream += 2;
        let request = frame(HEADERS, END_STREAM_AND_HEADERS, stream, &block);
        within(self.tls.write_all(&request)).await.expect("send");
        loop {
            let (kind, flags, id, payload) = self.read_frame().await;
            match kind {
                SETTINGS if flags & ACK == 0 => {
                    let ack = frame(SETTINGS, ACK, 0, &[]);
                    within(self.tls.write_all(&ack))
                        .await
                        .expect("settings ack");
                }
                GOAWAY => panic!("the hub closed the connection: {payload:?}"),
                HEADERS if id == stream => return payload[0],
                _ => {}
            }
        }
    }

    async fn read_frame(&mut self) -> (u8, u8, u32, Vec<u8>) {
        let mut head = [0; 9];
        within(self.tls.read_exact(&mut head))
            .await
            .expect("a frame");
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let id = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        let mut payload = vec![0; len];
        within(self.tls.read_exact(&mut payload))
            .await
            .expect("a frame's payload");
        (head[3], head[4], id, payload)
    }
}

/// An HTTP/2 frame.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len())
        .expect("frame size")
        .to_be_bytes();
    let mut out = vec![len[1], len[2], len[3], kind, flags];
    out.extend(stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// An HPACK integer with an `n`-bit prefix, its first byte or-ed with `first`.
fn integer(out: &mut Vec<u8>, first: u8, n: u32, value: usize) {
    let max = (1 << n) - 1;
    if value < max {
        out.push(first | value as u8);
        return;
    }
    out.push(first | max as u8);
    let mut rest = value - max;
    while rest >= 128 {
        out.push((rest % 128) as u8 | 0x80);
        rest /= 128;
    }
    out.push(rest as u8);
}

/// A field not to be indexed, named by static table entry `name`, with a literal value (not
/// Huffman-coded).
fn literal(out: &mut Vec<u8>, name: usize, value: &str) {
    integer(out, 0, 4, name);
    integer(out, 0, 7, value.len());
    out.extend_from_slice(value.as_bytes());
}

/// One request puts a 4,000-byte field in the connection's HPACK table; then each request
/// names it 4,100 times: 4 KB on the wire that decode to 16 MB of headers. The hub refuses
/// each having stored no more than its header limit, so its memory stays where it was (before
/// the fix: +400 MB after 200 such requests, never returned), the connection still serves,
/// and a bystander subscriber gets every update published meanwhile.
#[tokio::test]
async fn an_hpack_bomb_is_refused_without_costing_memory() {
    let dir = tempfile::tempdir().expect("temp dir");
    let hub = tls_hub(&dir, &[]);
    let mut bystander = hub.subscribe(&["/bystander"], &[], &[]).await;
    let mut h2 = RawH2::connect(&hub).await;
    // Literal with incremental indexing, new name: the field becomes dynamic entry 62.
    let mut indexed = vec![0x40];
    integer(&mut indexed, 0, 7, "x-bomb".len());
    indexed.extend_from_slice(b"x-bomb");
    integer(&mut indexed, 0, 7, 4000);
    indexed.extend(std::iter::repeat_n(b'b', 4000));
    assert_eq!(h2.get("/healthz", &indexed).await, 0x88, "200 to the first");
    let before = rss_kib(hub.pid());

    let bomb = vec![0x80 | 62; 4100];
    let mut ids = Vec::new();
    for round in 0..200 {
        assert_ne!(
            h2.get("/healthz", &bomb).await,
            0x88,
            "request {round} refused"
        );
        if round % 50 == 0 {
            ids.push(
                hub.publish_ok(&[("topic", "/bystander"), ("data", "still here")])
                    .await,
            );
        }
    }

    let grown_kib = rss_kib(hub.pid()).saturating_sub(before);
    eprintln!("the hub grew by {grown_kib} KiB under the bomb");
    assert!(
        grown_kib < 40 * 1024,
        "the hub grew by {grown_kib} KiB under the bomb"
    );
    for id in ids {
        let event = bystander
            .next_event(WAIT)
            .await
            .expect("the bystander's update");
        assert_eq!(event.id.as_deref(), Some(id.as_str()));
    }
    assert_eq!(
        h2.get("/healthz", &[]).await,
        0x88,
        "the connection still serves"
    );
}

/// The subscriptions topic selector that covers every subscription.
const ALL_SUBSCRIPTIONS: &str = "/.well-known/mercure/subscriptions{/topic}{/subscriber}";

/// Reads `watcher` until `n` subscriptions of `topic` have ended (`active: false`), within
/// [`WAIT`]; returns how many had.
async fn endings(watcher: &mut SseClient, topic: &str, n: usize) -> usize {
    let deadline = Instant::now() + WAIT;
    let mut ended = 0;
    while ended < n {
        let left = deadline.saturating_duration_since(Instant::now());
        let Next::Item(event) = watcher.next_event(left).await else {
            break;
        };
        let object: Value = serde_json::from_str(&event.data).expect("JSON-LD data");
        if object["topic"] == topic && object["active"] == false {
            ended += 1;
        }
    }
    ended
}

/// Opens `n` subscriptions to `topic` on one HTTP/2 connection and waits for their heads; the
/// returned bodies keep them open.
async fn subscriptions(h2: &mut SendRequest<Bytes>, topic: &str, n: usize) -> Vec<h2::RecvStream> {
    let mut bodies = Vec::with_capacity(n);
    for _ in 0..n {
        *h2 = within(h2.clone().ready()).await.expect("a stream slot");
        let request = get(&format!("/.well-known/mercure?topic={topic}"), &[]);
        let (response, _) = h2.send_request(request, true).expect("send request");
        let response = within(response).await.expect("response");
        assert_eq!(response.status(), 200);
        bodies.push(response.into_body());
    }
    bodies
}

/// A browser's `EventSource.close()` over HTTP/2 resets the stream; a browser tab that goes
/// closes the connection. Either way the hub unregisters those subscribers as it does on
/// HTTP/1.1, with their `active: false` events, rather than when a later write fails (a
/// heartbeat, 15 s to 30 s later). 60 subscribers leave each way while a watcher is served;
/// then their address subscribes 60 times again within its limit of 130, which ghosts would
/// have held.
#[tokio::test]
async fn http2_subscribers_leave_at_once_when_reset_or_disconnected() {
    let dir = tempfile::tempdir().expect("temp dir");
    let hub = tls_hub(
        &dir,
        &["--subscriptions", "--max-subscribers-per-ip", "130"],
    );
    let watcher_token = token(json!({ "subscribe": [ALL_SUBSCRIPTIONS] }));
    let bearer = format!("Bearer {watcher_token}");
    let mut watcher = hub
        .subscribe(&[ALL_SUBSCRIPTIONS], &[], &[("Authorization", &bearer)])
        .await;

    let (mut h2, driver) = connect(&hub).await;
    let reset = subscriptions(&mut h2, "/reset", 60).await;
    let closed = subscriptions(&mut h2, "/closed", 60).await;
    hub.wait_for_stat("subscribers", 121).await;

    // Dropping a stream's last handle makes the client reset it (RST_STREAM, CANCEL).
    drop(reset);
    assert_eq!(endings(&mut watcher, "/reset", 60).await, 60);
    hub.wait_for_stat("subscribers", 61).await;

    // The connection goes: the client stops driving it and the socket is closed.
    driver.abort();
    drop((h2, closed));
    assert_eq!(endings(&mut watcher, "/closed", 60).await, 60);
    hub.wait_for_stat("subscribers", 1).await;

    // The address is not held to the per-address limit by ghosts: it subscribes again.
    let (mut again, _driver) = connect(&hub).await;
    let back = subscriptions(&mut again, "/reset", 60).await;
    assert_eq!(back.len(), 60);
}
