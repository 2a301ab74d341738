//! JWK sets: keys fetched from a local server that rotates them, from a file, or over HTTPS
//! from `openssl s_server` under a private CA (`--jwks-ca-cert`); picked by `kid`, refetched on
//! an unknown `kid` at most every 10 s, never for HS256; keys that can verify nothing skipped.

use std::{
    cell::RefCell,
    path::Path,
    process::{Child, Command, Output, Stdio},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

use crate::helpers::{
    client, free_port, openssl, rsa_private_key, token_with, wait_until, SseClient, TestHub, KEY,
};

const WAIT: Duration = Duration::from_secs(10);

/// The least time between two fetches of a set caused by unknown `kid`s (the hub's constant).
const MIN_REFETCH_INTERVAL: Duration = Duration::from_secs(10);

/// A private key made by openssl, and the public JWK of it.
struct KeyPair {
    encoding: EncodingKey,
    algorithm: Algorithm,
    jwk: Value,
}

impl KeyPair {
    /// An Ed25519 key: the JWK's `x` is the last 32 bytes of the DER public key.
    fn ed25519(dir: &Path, kid: &str) -> Self {
        let private = dir.join(format!("{kid}.pem"));
        let private = private.to_str().unwrap();
        openssl(&["genpkey", "-algorithm", "ed25519", "-out", private]);
        let der = openssl(&["pkey", "-in", private, "-pubout", "-outform", "DER"]);
        let x = URL_SAFE_NO_PAD.encode(&der[der.len() - 32..]);
        Self {
            encoding: EncodingKey::from_ed_pem(&std::fs::read(private).unwrap()).unwrap(),
            algorithm: Algorithm::EdDSA,
            jwk: json!({ "kty": "OKP", "crv": "Ed25519", "kid": kid, "use": "sig", "x": x }),
        }
    }

    /// A P-256 key for ES256: the DER public key ends with the point, `04 || x || y`.
    fn p256(dir: &Path, kid: &str) -> Self {
        let private = dir.join(format!("{kid}.pem"));
        let private = private.to_str().unwrap();
        openssl(&[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            private,
        ]);
        let der = openssl(&["pkey", "-in", private, "-pubout", "-outform", "DER"]);
        let point = &der[der.len() - 64..];
        Self {
            encoding: EncodingKey::from_ec_pem(&std::fs::read(private).unwrap()).unwrap(),
            algorithm: Algorithm::ES256,
            jwk: json!({
                "kty": "EC", "crv": "P-256", "kid": kid,
                "x": URL_SAFE_NO_PAD.encode(&point[..32]), "y": URL_SAFE_NO_PAD.encode(&point[32..])
            }),
        }
    }

    /// A 2048-bit RSA key for RS256, `e` = 65537.
    fn rsa(dir: &Path, kid: &str) -> Self {
        let private = dir.join(format!("{kid}.pem"));
        rsa_private_key(&private);
        Self {
            encoding: EncodingKey::from_rsa_pem(&std::fs::read(&private).unwrap()).unwrap(),
            algorithm: Algorithm::RS256,
            jwk: rsa_jwk(&private, kid),
        }
    }

    /// A token of `claims` signed with this key, its header naming `kid` (none: no `kid`).
    fn sign(&self, kid: Option<&str>, claims: &Value) -> String {
        let mut header = Header::new(self.algorithm);
        header.kid = kid.map(str::to_owned);
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap()
    }
}

/// The public JWK of the RSA private key at `private` (RS256, `e` = 65537): `n` from openssl's
/// hex modulus.
fn rsa_jwk(private: &Path, kid: &str) -> Value {
    let private = private.to_str().unwrap();
    let modulus =
        String::from_utf8(openssl(&["rsa", "-in", private, "-noout", "-modulus"])).unwrap();
    let hex = modulus.trim().trim_start_matches("Modulus=");
    let n: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    json!({ "kty": "RSA", "kid": kid, "alg": "RS256", "n": URL_SAFE_NO_PAD.encode(n), "e": "AQAB" })
}

fn set(keys: &[&KeyPair]) -> String {
    json!({ "keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>() }).to_string()
}

/// A JWKS server on a local port: answers every GET with the current set, counting them.
struct JwksServer {
    url: String,
    body: Arc<Mutex<String>>,
    requests: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl JwksServer {
    async fn start(body: String) -> Self {
        Self::start_on(TcpListener::bind("127.0.0.1:0").await.unwrap(), body)
    }

    fn start_on(listener: TcpListener, body: String) -> Self {
        let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
        let body = Arc::new(Mutex::new(body));
        let requests = Arc::new(AtomicUsize::new(0));
        let (served, counter) = (Arc::clone(&body), Arc::clone(&requests));
        let task = tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let (served, counter) = (Arc::clone(&served), Arc::clone(&counter));
                tokio::spawn(async move {
                    // Read the request head, within a deadline; the body of a GET is empty.
                    let mut head = Vec::new();
                    let mut buf = [0; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match tokio::time::timeout(WAIT, conn.read(&mut buf)).await {
                            Ok(Ok(n)) if n > 0 => head.extend_from_slice(&buf[..n]),
                            _ => return,
                        }
                    }
                    counter.fetch_add(1, Ordering::SeqCst);
                    let body = served.lock().unwrap().clone();
                    let response = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = conn.write_all(response.as_bytes()).await;
                    let _ = conn.shutdown().await;
                });
            }
        });
        Self {
            url,
            body,
            requests,
            task,
        }
    }

    fn serve(&self, body: String) {
        *self.body.lock().unwrap() = body;
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn publish_claims() -> Value {
    json!({ "mercure": { "publish": ["*"] } })
}

async fn publish_status(hub: &TestHub, token: &str) -> u16 {
    hub.publish(token, &[("topic", "/t"), ("data", "x")])
        .await
        .status()
        .as_u16()
}

#[tokio::test]
async fn keys_rotate_and_unknown_kids_refetch_at_most_every_ten_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let a = KeyPair::ed25519(dir.path(), "a");
    let b = KeyPair::ed25519(dir.path(), "b");
    let r = KeyPair::rsa(dir.path(), "r");
    let e = KeyPair::p256(dir.path(), "e");
    let server = JwksServer::start(set(&[&a])).await;
    let hub = TestHub::spawn(&["--publisher-jwks-url", &server.url, "--tick-interval", "0"]);
    let claims = publish_claims();

    // The set fetched at start verifies A's tokens, with or without a `kid` (it has one key).
    assert_eq!(publish_status(&hub, &a.sign(Some("a"), &claims)).await, 200);
    assert_eq!(publish_status(&hub, &a.sign(None, &claims)).await, 200);
    assert_eq!(server.requests(), 1, "known kids are served from the cache");

    // Rotation: B's token names a kid the cache lacks, so the hub fetches the set again.
    server.serve(set(&[&b, &r, &e]));
    assert_eq!(publish_status(&hub, &b.sign(Some("b"), &claims)).await, 200);
    assert_eq!(server.requests(), 2);
    assert_eq!(publish_status(&hub, &r.sign(Some("r"), &claims)).await, 200);
    assert_eq!(publish_status(&hub, &e.sign(Some("e"), &claims)).await, 200);
    // A left the set; with several keys, a token must name one.
    assert_eq!(publish_status(&hub, &a.sign(Some("a"), &claims)).await, 401);
    assert_eq!(publish_status(&hub, &b.sign(None, &claims)).await, 401);

    // A flood of made-up kids: each is refused, and the server sees a couple of fetches at most.
    let before = server.requests();
    for i in 0..50 {
        let kid = format!("random-{i}-{}", uuid_like(i));
        assert_eq!(
            publish_status(&hub, &b.sign(Some(&kid), &claims)).await,
            401
        );
    }
    assert!(
        server.requests() - before <= 2,
        "{} fetches for 50 unknown kids",
        server.requests() - before
    );

    // Algorithm confusion: HS256 signed with the public key's bytes, naming a kid of the set.
    let mut confused = Header::new(Algorithm::HS256);
    confused.kid = Some("r".into());
    let public = r.jwk["n"].as_str().unwrap();
    let hs = jsonwebtoken::encode(
        &confused,
        &claims,
        &EncodingKey::from_secret(public.as_bytes()),
    )
    .unwrap();
    assert_eq!(publish_status(&hub, &hs).await, 401);
    // RS256 key, token claiming RS384: the key's algorithm is the only one accepted.
    let mut other_alg = Header::new(Algorithm::RS384);
    other_alg.kid = Some("r".into());
    let rs384 = jsonwebtoken::encode(&other_alg, &claims, &r.encoding).unwrap();
    assert_eq!(publish_status(&hub, &rs384).await, 401);
    assert_eq!(hub.stats().await["events_published"], 5);
}

/// Varied kid text without a random-number dependency.
fn uuid_like(i: u64) -> String {
    format!("{:016x}", i.wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

/// A set's entry that cannot verify anything under a `kid`, and the key that takes that `kid`
/// later, with what the hub's warning about the entry says.
struct Unusable {
    kid: &'static str,
    jwk: Value,
    replacement: KeyPair,
    why: &'static str,
}

/// Each kind of key that cannot be used: a 1024-bit RSA modulus; `n` = `e` = 1; a P-256 point
/// off the curve; a P-256 point labelled P-384; an empty Ed25519 key.
fn unusable_keys(dir: &Path) -> Vec<Unusable> {
    let weak = dir.join("weak-1024.pem");
    let weak_path = weak.to_str().unwrap();
    openssl(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:1024",
        "-out",
        weak_path,
    ]);
    let off_curve = KeyPair::p256(dir, "off-curve");
    let mut y = URL_SAFE_NO_PAD
        .decode(off_curve.jwk["y"].as_str().unwrap())
        .unwrap();
    // One bit away from the curve's point: for a given x only y and p - y are on it.
    y[31] ^= 1;
    let mut off_curve_jwk = off_curve.jwk.clone();
    off_curve_jwk["y"] = json!(URL_SAFE_NO_PAD.encode(&y));
    let wrong_curve = KeyPair::p256(dir, "wrong-curve");
    let mut wrong_curve_jwk = wrong_curve.jwk.clone();
    wrong_curve_jwk["crv"] = json!("P-384");
    vec![
        Unusable {
            kid: "weak-rsa",
            jwk: rsa_jwk(&weak, "weak-rsa"),
            replacement: KeyPair::rsa(dir, "weak-rsa"),
            why: "a 1024-bit RSA modulus",
        },
        Unusable {
            kid: "n1-e1",
            jwk: json!({ "kty": "RSA", "kid": "n1-e1", "n": "AQ", "e": "AQ" }),
            replacement: KeyPair::rsa(dir, "n1-e1"),
            why: "a 1-bit RSA modulus",
        },
        Unusable {
            kid: "off-curve",
            jwk: off_curve_jwk,
            replacement: off_curve,
            why: "not a point of P-256",
        },
        Unusable {
            kid: "wrong-curve",
            jwk: wrong_curve_jwk,
            replacement: wrong_curve,
            why: "48 bytes",
        },
        Unusable {
            kid: "empty-ed25519",
            jwk: json!({ "kty": "OKP", "crv": "Ed25519", "kid": "empty-ed25519", "x": "" }),
            replacement: KeyPair::ed25519(dir, "empty-ed25519"),
            why: "32 bytes",
        },
    ]
}

/// A key that cannot be used is warned about and skipped, not cached under its `kid`: a token
/// naming that `kid` makes the hub fetch the set again, so once a valid key is published under
/// it, its tokens are accepted after the 10 s between such fetches, not at the next refresh.
#[tokio::test]
async fn an_unusable_key_is_skipped_so_a_valid_key_under_its_kid_is_fetched_on_demand() {
    let dir = tempfile::tempdir().unwrap();
    let a = KeyPair::ed25519(dir.path(), "a");
    let unusable = unusable_keys(dir.path());
    let with = |jwks: Vec<Value>| {
        let mut keys = vec![a.jwk.clone()];
        keys.extend(jwks);
        json!({ "keys": keys }).to_string()
    };
    let server = JwksServer::start(with(unusable.iter().map(|u| u.jwk.clone()).collect())).await;
    // A refresh an hour away: only a fetch on demand can pick the valid keys up in this test.
    let hub = TestHub::spawn(&[
        "--publisher-jwks-url",
        &server.url,
        "--jwks-refresh-interval",
        "1h",
        "--allow-anonymous",
        "--tick-interval",
        "0",
    ]);
    let mut bystander = hub.subscribe(&["/t"], &[], &[]).await;
    let claims = publish_claims();
    assert_eq!(publish_status(&hub, &a.sign(Some("a"), &claims)).await, 200);
    let tokens: Vec<_> = unusable
        .iter()
        .map(|u| (u.kid, u.replacement.sign(Some(u.kid), &claims)))
        .collect();
    for (kid, token) in &tokens {
        assert_eq!(publish_status(&hub, token).await, 401, "{kid}");
    }

    server.serve(with(
        unusable.iter().map(|u| u.replacement.jwk.clone()).collect(),
    ));
    let published = std::time::Instant::now();
    // Each try publishes with the tokens still refused, so each kid is accepted once.
    let refused = RefCell::new(tokens.clone());
    let all_accepted = || async {
        let pending = refused.borrow().clone();
        let mut still = Vec::new();
        for (kid, token) in pending {
            if publish_status(&hub, &token).await != 200 {
                still.push((kid, token));
            }
        }
        *refused.borrow_mut() = still;
        refused.borrow().is_empty()
    };
    assert!(
        wait_until(MIN_REFETCH_INTERVAL + WAIT, all_accepted).await,
        "still refused {:?} after their valid keys were published: {:?}",
        published.elapsed(),
        refused
            .borrow()
            .iter()
            .map(|(kid, _)| kid)
            .collect::<Vec<_>>()
    );
    assert!(server.requests() <= 4, "{} fetches", server.requests());
    // The bystander got every accepted update: a's and one per replaced key.
    bystander.events(1 + tokens.len(), WAIT).await;
    assert_eq!(hub.stats().await["events_published"], 1 + tokens.len());
    for u in &unusable {
        let warned = hub.logs().iter().any(|l| {
            l.contains("WARN") && l.contains(&format!("\"{}\"", u.kid)) && l.contains(u.why)
        });
        assert!(
            warned,
            "no warning naming {} and {:?}: {:?}",
            u.kid,
            u.why,
            hub.logs()
        );
    }
}

#[tokio::test]
async fn a_file_jwks_verifies_subscriber_tokens_and_never_hs256() {
    let dir = tempfile::tempdir().unwrap();
    let r = KeyPair::rsa(dir.path(), "r");
    let path = dir.path().join("jwks.json");
    // An HS256 key in the set is ignored: a JWK set never verifies HMAC tokens.
    let mut keys: Value = serde_json::from_str(&set(&[&r])).unwrap();
    keys["keys"].as_array_mut().unwrap().push(
        json!({ "kty": "oct", "kid": "h", "alg": "HS256", "k": URL_SAFE_NO_PAD.encode(KEY) }),
    );
    std::fs::write(&path, keys.to_string()).unwrap();
    let url = format!("file://{}", path.display());
    let hub = TestHub::spawn(&[
        "--jwt-key",
        KEY,
        "--subscriber-jwks-url",
        &url,
        "--tick-interval",
        "0",
    ]);
    let subscribe = |token: String| {
        let url = hub.url("/.well-known/mercure?topic=%2Ft");
        async move {
            let auth = format!("Bearer {token}");
            SseClient::connect(&url, &[("Authorization", &auth)])
                .await
                .status
                .as_u16()
        }
    };
    let claims = json!({ "mercure": { "subscribe": ["*"] } });
    assert_eq!(subscribe(r.sign(Some("r"), &claims)).await, 200);
    // The set has one usable key (the oct key is not one): a token without kid gets it.
    assert_eq!(subscribe(r.sign(None, &claims)).await, 200);
    let mut hs = Header::new(Algorithm::HS256);
    hs.kid = Some("h".into());
    let hmac =
        jsonwebtoken::encode(&hs, &claims, &EncodingKey::from_secret(KEY.as_bytes())).unwrap();
    assert_eq!(subscribe(hmac).await, 401);
    // `--jwt-key` still verifies publishers, whose role has no JWK set.
    assert_eq!(
        publish_status(&hub, &token_with(KEY, publish_claims())).await,
        200
    );
    // ... but no longer subscribers: the set replaced it for them.
    assert_eq!(subscribe(token_with(KEY, claims.clone())).await, 401);
}

#[tokio::test]
async fn an_unreachable_jwks_at_start_refuses_tokens_until_it_is_fetched() {
    let dir = tempfile::tempdir().unwrap();
    let a = KeyPair::ed25519(dir.path(), "a");
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/jwks.json");
    let hub = TestHub::spawn(&[
        "--publisher-jwks-url",
        &url,
        "--jwks-refresh-interval",
        // The shortest period allowed: fetches caused by unknown `kid`s are as far apart.
        "10s",
        "--tick-interval",
        "0",
    ]);
    let token = a.sign(Some("a"), &publish_claims());
    assert_eq!(publish_status(&hub, &token).await, 401);
    let warned = || async { hub.logged("cannot fetch the JWK set") };
    assert!(
        wait_until(WAIT, warned).await,
        "no warning: {:?}",
        hub.logs()
    );
    let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    let _server = JwksServer::start_on(listener, set(&[&a]));
    // The periodic refresh (or the next fetch a token's unknown `kid` may cause) picks the set
    // up within 10 s.
    let fetched = || async { publish_status(&hub, &token).await == 200 };
    assert!(
        wait_until(Duration::from_secs(25), fetched).await,
        "the set was never fetched"
    );
}

#[test]
fn a_key_and_a_jwks_for_one_role_or_plain_http_elsewhere_refuse_to_start() {
    let run = |args: &[&str]| {
        Command::new(TestHub::binary())
            .args(["--bind", "127.0.0.1:0", "--data-dir", "none"])
            .args(args)
            .output()
            .expect("run sse-hub")
    };
    let both = run(&[
        "--publisher-jwt-key",
        KEY,
        "--publisher-jwks-url",
        "file:///nonexistent/jwks.json",
    ]);
    assert_eq!(both.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&both.stderr);
    assert!(stderr.contains("choose one"), "{stderr}");
    let plain = run(&["--subscriber-jwks-url", "http://idp.example/jwks.json"]);
    assert_eq!(plain.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&plain.stderr);
    assert!(stderr.contains("loopback"), "{stderr}");
}

#[tokio::test]
async fn an_oversized_set_is_not_read_and_the_cached_keys_stay() {
    let dir = tempfile::tempdir().unwrap();
    let a = KeyPair::ed25519(dir.path(), "a");
    let b = KeyPair::ed25519(dir.path(), "b");
    let server = JwksServer::start(set(&[&a])).await;
    let hub = TestHub::spawn(&["--publisher-jwks-url", &server.url, "--tick-interval", "0"]);
    let claims = publish_claims();
    assert_eq!(publish_status(&hub, &a.sign(Some("a"), &claims)).await, 200);
    // B's key behind 2 MiB of padding: past the 1 MiB the hub reads of a set.
    let padding = "x".repeat(2 << 20);
    let mut huge: Value = serde_json::from_str(&set(&[&b])).unwrap();
    huge["padding"] = json!(padding);
    server.serve(huge.to_string());
    assert_eq!(publish_status(&hub, &b.sign(Some("b"), &claims)).await, 401);
    assert_eq!(server.requests(), 2, "the unknown kid made a fetch");
    assert_eq!(publish_status(&hub, &a.sign(Some("a"), &claims)).await, 200);
    let refused = || async { hub.logged("larger than") };
    assert!(wait_until(WAIT, refused).await, "{:?}", hub.logs());
}

/// A private CA, and a server certificate it signed for `127.0.0.1` and `localhost`.
struct PrivateCa {
    /// The CA's certificate, what `--jwks-ca-cert` names.
    ca: String,
    cert: String,
    key: String,
}

impl PrivateCa {
    fn new(dir: &Path) -> Self {
        let path = |name: &str| dir.join(name).to_str().unwrap().to_owned();
        let (ca, ca_key) = (path("ca.pem"), path("ca.key"));
        let (cert, key) = (path("server.pem"), path("server.key"));
        let (csr, ext) = (path("server.csr"), path("server.ext"));
        let p256 = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1";
        let run = |args: String| openssl(&args.split(' ').collect::<Vec<_>>());
        run(format!(
            "req -x509 {p256} -keyout {ca_key} -out {ca} -subj /CN=sse-hub-test-CA"
        ));
        run(format!(
            "req {p256} -keyout {key} -out {csr} -subj /CN=localhost"
        ));
        std::fs::write(
            &ext,
            "subjectAltName = DNS:localhost, IP:127.0.0.1\n\
             basicConstraints = critical, CA:FALSE\n\
             keyUsage = critical, digitalSignature\n\
             extendedKeyUsage = serverAuth\n",
        )
        .unwrap();
        run(format!(
            "x509 -req -in {csr} -CA {ca} -CAkey {ca_key} -set_serial 2 -days 1 -extfile {ext} -out {cert}"
        ));
        Self { ca, cert, key }
    }
}

/// `openssl s_server -WWW` on a free port: a real TLS server, serving the files of its
/// directory over HTTPS with the certificate of a [`PrivateCa`]; killed when dropped.
struct HttpsFiles {
    child: Child,
    port: u16,
}

impl HttpsFiles {
    async fn start(dir: &Path, ca: &PrivateCa) -> Self {
        let port = free_port();
        let mut child = Command::new("openssl")
            .args(["s_server", "-WWW", "-accept"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["-cert", &ca.cert, "-key", &ca.key])
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run openssl s_server (apt-get install openssl; .ci/run does)");
        let listening = wait_until(WAIT, || async {
            let connect = TcpStream::connect(("127.0.0.1", port));
            matches!(tokio::time::timeout(WAIT, connect).await, Ok(Ok(_)))
        })
        .await;
        if !listening {
            let _ = child.kill();
            panic!(
                "openssl s_server did not listen on {port}: {:?}",
                child.wait()
            );
        }
        Self { child, port }
    }

    fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for HttpsFiles {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A private CA's server, serving a set of one key, `a`; the key, and another one.
async fn https_set(dir: &Path) -> (PrivateCa, HttpsFiles, KeyPair, KeyPair) {
    let ca = PrivateCa::new(dir);
    let a = KeyPair::p256(dir, "a");
    let other = KeyPair::p256(dir, "other");
    std::fs::write(dir.join("jwks.json"), set(&[&a])).unwrap();
    let server = HttpsFiles::start(dir, &ca).await;
    (ca, server, a, other)
}

#[tokio::test]
async fn a_set_served_over_https_under_a_private_ca_is_fetched_with_jwks_ca_cert() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, server, a, other) = https_set(dir.path()).await;
    let url = server.url("/jwks.json");
    let hub = TestHub::spawn(&[
        "--publisher-jwks-url",
        &url,
        "--jwks-ca-cert",
        &ca.ca,
        "--tick-interval",
        "0",
    ]);
    let claims = publish_claims();
    assert_eq!(publish_status(&hub, &a.sign(Some("a"), &claims)).await, 200);
    // Another key under the set's kid: the signature is wrong.
    assert_eq!(
        publish_status(&hub, &other.sign(Some("a"), &claims)).await,
        401
    );
    // Under its own kid: fetched again over https, and still not in the set.
    assert_eq!(
        publish_status(&hub, &other.sign(Some("other"), &claims)).await,
        401
    );
    // Both fetches went to the TLS server (the log is read as the hub writes it).
    let fetched = format!("fetched the JWK set {url}: 1 keys");
    let twice = || async { hub.logs().iter().filter(|l| l.contains(&fetched)).count() == 2 };
    assert!(wait_until(WAIT, twice).await, "{:?}", hub.logs());
    assert!(!hub.logged("--jwks-ca-cert is unused"), "{:?}", hub.logs());
}

/// A CA certificate given with no `https://` set to fetch is a configuration mistake: said
/// once at start, and the hub serves.
#[tokio::test]
async fn a_jwks_ca_cert_with_no_https_set_is_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let ca = PrivateCa::new(dir.path());
    let hub = TestHub::spawn(&["--jwt-key", KEY, "--jwks-ca-cert", &ca.ca]);
    let warned = || async { hub.logged("--jwks-ca-cert is unused: no https:// JWK set URL") };
    assert!(wait_until(WAIT, warned).await, "{:?}", hub.logs());
    let health = client().get(hub.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
}

#[tokio::test]
async fn without_jwks_ca_cert_a_private_cas_server_is_not_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let (_ca, server, a, _) = https_set(dir.path()).await;
    let hub = TestHub::spawn(&[
        "--publisher-jwks-url",
        &server.url("/jwks.json"),
        "--tick-interval",
        "0",
    ]);
    assert_eq!(
        publish_status(&hub, &a.sign(Some("a"), &publish_claims())).await,
        401
    );
    let untrusted = || async {
        hub.logs()
            .iter()
            .any(|l| l.contains("cannot fetch the JWK set") && l.contains("UnknownIssuer"))
    };
    assert!(wait_until(WAIT, untrusted).await, "{:?}", hub.logs());
    // The hub still serves; only that role's tokens are refused.
    let health = client().get(hub.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
}

/// Runs the hub with `args` until it exits, within [`WAIT`].
fn run_to_exit(args: &[&std::ffi::OsStr]) -> Output {
    let mut child = Command::new(TestHub::binary())
        .args(["--bind", "127.0.0.1:0", "--data-dir", "none"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run sse-hub");
    let deadline = std::time::Instant::now() + WAIT;
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            panic!(
                "sse-hub {args:?} still runs: {:?}",
                child.wait_with_output()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn an_unusable_jwks_ca_cert_is_one_clear_line_and_exit_code_1() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("text.pem");
    std::fs::write(&text, "not a certificate\n").unwrap();
    let garbled = dir.path().join("garbled.pem");
    std::fs::write(
        &garbled,
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let missing = dir.path().join("missing.pem");
    for (file, why) in [
        (&text, "no PEM certificate"),
        (&garbled, "not valid"),
        (&missing, "No such file"),
    ] {
        let out = run_to_exit(&[
            "--publisher-jwks-url".as_ref(),
            "https://idp.example/jwks.json".as_ref(),
            "--jwks-ca-cert".as_ref(),
            file.as_os_str(),
        ]);
        assert_eq!(out.status.code(), Some(1), "{file:?}: {out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let errors: Vec<_> = stderr.lines().filter(|l| l.contains("ERROR")).collect();
        assert_eq!(errors.len(), 1, "{stderr}");
        assert!(errors[0].contains("invalid --jwks-ca-cert"), "{stderr}");
        assert!(errors[0].contains(why), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}
