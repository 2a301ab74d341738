//! JWK sets: the keys of publisher or subscriber tokens, fetched from a URL
//! (`--publisher-jwks-url`, `--subscriber-jwks-url`) and picked by a token's `kid`.
//!
//! The set is fetched at start, again every `--jwks-refresh-interval`, and on a token whose
//! `kid` is not in it (a key rotation), at most once per [`MIN_REFETCH_INTERVAL`]: a flood of
//! tokens with made-up `kid`s costs the JWKS server one request per interval, not one each.
//! A token whose `kid` is known is verified from the cache, never waiting on the network.
//! A key that could verify nothing (a weak or malformed RSA key, a point off its curve) is
//! skipped when the set is read, so its `kid` stays unknown and a valid key published under it
//! is fetched on demand.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, RwLock},
    time::Duration,
};

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use jsonwebtoken::{
    jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse},
    Algorithm, DecodingKey,
};
use ring::{agreement, rand::SystemRandom};
use tokio::{sync::Mutex, time::Instant};

/// Least time between two fetches caused by unknown `kid`s.
pub const MIN_REFETCH_INTERVAL: Duration = Duration::from_secs(10);

/// Time a fetch gets, connecting and reading included.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Largest JWK set read, in bytes: a hostile or broken server can't make the hub buffer more.
const MAX_SET_SIZE: usize = 1 << 20;

/// Where a JWK set comes from: `https://…`, `file:///path`, or `http://` to a loopback address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksUrl {
    Remote(reqwest::Url),
    File(PathBuf),
}

/// Why a JWKS URL is not accepted.
#[derive(Debug, thiserror::Error)]
pub enum JwksUrlError {
    #[error("not a URL: {0}")]
    Parse(#[from] url::ParseError),
    #[error("plain http:// is accepted for loopback addresses only (tests); use https://")]
    PlainHttp,
    #[error("the scheme must be https://, file:// or (loopback only) http://")]
    Scheme,
    #[error("a file:// URL must name a local absolute path")]
    FilePath,
}

impl std::str::FromStr for JwksUrl {
    type Err = JwksUrlError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let url = reqwest::Url::parse(s)?;
        match url.scheme() {
            "https" => Ok(Self::Remote(url)),
            // Keys fetched in the clear could be swapped by anyone on the path: only a server on
            // the same host (a test, a sidecar) may speak plain HTTP.
            "http" => {
                let loopback = match url.host() {
                    Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
                    Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
                    Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
                    None => false,
                };
                if loopback {
                    Ok(Self::Remote(url))
                } else {
                    Err(JwksUrlError::PlainHttp)
                }
            }
            "file" => url
                .to_file_path()
                .map(Self::File)
                .map_err(|()| JwksUrlError::FilePath),
            _ => Err(JwksUrlError::Scheme),
        }
    }
}

impl std::fmt::Display for JwksUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Remote(url) => write!(f, "{url}"),
            Self::File(path) => write!(f, "file://{}", path.display()),
        }
    }
}

/// Why the CA certificates of `--jwks-ca-cert` can't be used.
#[derive(Debug, thiserror::Error)]
#[error("invalid --jwks-ca-cert {}: {reason}", path.display())]
pub struct CaCertError {
    path: PathBuf,
    reason: String,
}

/// The certificates of a PEM file, to trust for fetching sets besides the built-in roots.
/// Each must be usable as a trust anchor; a file without any is an error, not an empty trust.
pub fn ca_certificates(path: &Path) -> Result<Vec<reqwest::Certificate>, CaCertError> {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let error = |reason: String| CaCertError {
        path: path.to_owned(),
        reason,
    };
    let ders = CertificateDer::pem_file_iter(path)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(|e| error(e.to_string()))?;
    if ders.is_empty() {
        return Err(error("no PEM certificate in it".into()));
    }
    ders.iter()
        .enumerate()
        .map(|(i, der)| {
            // reqwest would find a bad one only when building a client, saying less.
            rustls::RootCertStore::empty()
                .add(der.clone())
                .map_err(|e| match e {
                    rustls::Error::InvalidCertificate(cause) => {
                        error(format!("certificate {} is not valid ({cause:?})", i + 1))
                    }
                    other => error(format!("certificate {}: {other}", i + 1)),
                })?;
            reqwest::Certificate::from_der(der).map_err(|e| error(e.to_string()))
        })
        .collect()
}

/// Why a JWK set could not be fetched (the cached keys stay in use).
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// With its causes: reqwest's own message leaves out why (an untrusted certificate, a
    /// refused connection).
    #[error("{}", with_causes(.0))]
    Http(#[from] reqwest::Error),
    #[error("answered {0}")]
    Status(reqwest::StatusCode),
    #[error("larger than {MAX_SET_SIZE} bytes")]
    TooLarge,
    #[error("cannot read it: {0}")]
    File(std::io::Error),
    #[error("not a JWK set: {0}")]
    Json(#[from] serde_json::Error),
    #[error("reading its keys stopped: {0}")]
    Parse(tokio::task::JoinError),
}

/// `err: its cause: the cause's cause…`
fn with_causes(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(err) = cause {
        text.push_str(": ");
        text.push_str(&err.to_string());
        cause = err.source();
    }
    text
}

/// One verification key of a set.
#[derive(Clone)]
pub struct Key {
    kid: Option<String>,
    pub algorithm: Algorithm,
    pub key: DecodingKey,
}

/// The algorithm a JWK verifies, if it is a signature key the hub can use. Symmetric (`oct`)
/// keys are never used, whatever their `alg`: a published key must not verify HS* tokens.
impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

fn signing_algorithm(jwk: &Jwk) -> Option<Algorithm> {
    if matches!(&jwk.common.public_key_use, Some(u) if *u != PublicKeyUse::Signature) {
        return None;
    }
    let declared = jwk.common.key_algorithm;
    let (default, allowed): (Algorithm, &[KeyAlgorithm]) = match &jwk.algorithm {
        // An RSA key without `alg` is taken as RS256, the algorithm nearly every issuer uses.
        AlgorithmParameters::RSA(_) => (
            Algorithm::RS256,
            &[
                KeyAlgorithm::RS256,
                KeyAlgorithm::RS384,
                KeyAlgorithm::RS512,
                KeyAlgorithm::PS256,
                KeyAlgorithm::PS384,
                KeyAlgorithm::PS512,
            ],
        ),
        AlgorithmParameters::EllipticCurve(p) => match p.curve {
            EllipticCurve::P256 => (Algorithm::ES256, &[KeyAlgorithm::ES256]),
            EllipticCurve::P384 => (Algorithm::ES384, &[KeyAlgorithm::ES384]),
            _ => return None,
        },
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
            (Algorithm::EdDSA, &[KeyAlgorithm::EdDSA])
        }
        AlgorithmParameters::OctetKeyPair(_) | AlgorithmParameters::OctetKey(_) => return None,
    };
    let Some(declared) = declared else {
        return Some(default);
    };
    if !allowed.contains(&declared) {
        return None;
    }
    Some(match declared {
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::PS256 => Algorithm::PS256,
        KeyAlgorithm::PS384 => Algorithm::PS384,
        KeyAlgorithm::PS512 => Algorithm::PS512,
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        KeyAlgorithm::EdDSA => Algorithm::EdDSA,
        _ => return None,
    })
}

/// Why a JWK that parses cannot verify any token.
#[derive(Debug, thiserror::Error)]
enum Unusable {
    #[error("`{0}` is not base64url")]
    Encoding(&'static str),
    #[error("`{0}` has leading zero bytes")]
    LeadingZero(&'static str),
    #[error("a {0}-bit RSA modulus (2048 to 8192 bits are accepted)")]
    ModulusSize(usize),
    #[error("an even RSA modulus")]
    EvenModulus,
    #[error("the RSA exponent must be odd, at least 3 and under 2^33")]
    Exponent,
    #[error("`x` and `y` must be {bytes} bytes each for {curve}")]
    CoordinateSize { curve: &'static str, bytes: usize },
    #[error("(x, y) is not a point of {0}")]
    OffCurve(&'static str),
    #[error("an Ed25519 key is 32 bytes, not {0}")]
    Ed25519Size(usize),
    #[error("the key cannot be checked: no randomness")]
    Unchecked,
}

fn decoded(field: &'static str, value: &str) -> Result<Vec<u8>, Unusable> {
    URL_SAFE_NO_PAD
        .decode(value)
        .map_err(|_| Unusable::Encoding(field))
}

/// Checks that `jwk` can verify tokens, as ring would at each verification: an RSA modulus of
/// 2048 to 8192 bits, odd, and an odd exponent from 3 to 2^33 - 1, neither with leading zero
/// bytes; an EC point on its curve; an Ed25519 key of 32 bytes (whether those encode a point
/// is found only when verifying).
fn check(jwk: &Jwk) -> Result<(), Unusable> {
    match &jwk.algorithm {
        AlgorithmParameters::RSA(rsa) => {
            let n = decoded("n", &rsa.n)?;
            if n.first() == Some(&0) {
                return Err(Unusable::LeadingZero("n"));
            }
            let bits = n.first().map_or(0, |top| {
                (n.len() - 1) * 8 + (u8::BITS - top.leading_zeros()) as usize
            });
            if !(2048..=8192).contains(&bits) {
                return Err(Unusable::ModulusSize(bits));
            }
            if n.last().is_some_and(|low| low & 1 == 0) {
                return Err(Unusable::EvenModulus);
            }
            let e = decoded("e", &rsa.e)?;
            if e.first() == Some(&0) {
                return Err(Unusable::LeadingZero("e"));
            }
            if e.is_empty() || e.len() > 5 {
                return Err(Unusable::Exponent);
            }
            let e = e.iter().fold(0u64, |e, &byte| e << 8 | u64::from(byte));
            if !(3..1 << 33).contains(&e) || e % 2 == 0 {
                return Err(Unusable::Exponent);
            }
            Ok(())
        }
        AlgorithmParameters::EllipticCurve(ec) => {
            let (curve, bytes, ecdh) = match ec.curve {
                EllipticCurve::P256 => ("P-256", 32, &agreement::ECDH_P256),
                EllipticCurve::P384 => ("P-384", 48, &agreement::ECDH_P384),
                // `signing_algorithm` keeps no other curve.
                _ => return Ok(()),
            };
            let (x, y) = (decoded("x", &ec.x)?, decoded("y", &ec.y)?);
            if x.len() != bytes || y.len() != bytes {
                return Err(Unusable::CoordinateSize { curve, bytes });
            }
            let point = [&[4][..], &x, &y].concat();
            // ring validates a public key only when using it, and has no call that only parses
            // an ECDSA one; a key agreement parses the peer's point with the same checks.
            let ours = agreement::EphemeralPrivateKey::generate(ecdh, &SystemRandom::new())
                .map_err(|_| Unusable::Unchecked)?;
            agreement::agree_ephemeral(
                ours,
                &agreement::UnparsedPublicKey::new(ecdh, point),
                |_| (),
            )
            .map_err(|_| Unusable::OffCurve(curve))
        }
        AlgorithmParameters::OctetKeyPair(okp) => match decoded("x", &okp.x)?.len() {
            32 => Ok(()),
            len => Err(Unusable::Ed25519Size(len)),
        },
        // `signing_algorithm` keeps no symmetric key.
        AlgorithmParameters::OctetKey(_) => Ok(()),
    }
}

/// How the log names a JWK: its `kid`, quoted, if it has one.
fn label(kid: Option<&str>) -> String {
    kid.map_or_else(|| "without kid".to_owned(), |kid| format!("{kid:?}"))
}

/// The usable keys of a JWK set document. Each key is read as a [`Jwk`] on its own (as
/// `jsonwebtoken::jwk::JwkSet` would read them all): a key of a kind this hub doesn't know
/// (P-521, an encryption key) is skipped, not a reason to drop the whole set.
pub fn parse_set(bytes: &[u8]) -> Result<Vec<Key>, serde_json::Error> {
    #[derive(serde::Deserialize)]
    struct RawSet {
        keys: Vec<serde_json::Value>,
    }
    let raw: RawSet = serde_json::from_slice(bytes)?;
    let mut keys = Vec::new();
    for value in raw.keys {
        let jwk = match serde_json::from_value::<Jwk>(value) {
            Ok(jwk) => jwk,
            Err(err) => {
                log::debug!("skipping a JWK: {err}");
                continue;
            }
        };
        let kid = jwk.common.key_id.clone();
        let Some(algorithm) = signing_algorithm(&jwk) else {
            log::debug!(
                "skipping JWK {}: not a signature key the hub accepts",
                label(kid.as_deref())
            );
            continue;
        };
        // Kept, a key that fails every verification would hold its `kid`: a token naming it
        // would never make the hub fetch the set again, so a valid key published under that
        // `kid` would wait for the next scheduled refresh.
        if let Err(err) = check(&jwk) {
            log::warn!("skipping JWK {}: {err}", label(kid.as_deref()));
            continue;
        }
        match DecodingKey::from_jwk(&jwk) {
            Ok(key) => keys.push(Key {
                kid,
                algorithm,
                key,
            }),
            Err(err) => log::warn!("skipping JWK {}: {err}", label(kid.as_deref())),
        }
    }
    Ok(keys)
}

/// Picks the key of `kid`; a token without `kid` gets the set's only key, if it has exactly one.
fn find<'a>(keys: &'a [Key], kid: Option<&str>) -> Option<&'a Key> {
    match kid {
        Some(kid) => keys.iter().find(|k| k.kid.as_deref() == Some(kid)),
        None => match keys {
            [only] => Some(only),
            _ => None,
        },
    }
}

/// A cached JWK set and how to fetch it again.
pub struct Jwks {
    url: JwksUrl,
    keys: RwLock<Arc<Vec<Key>>>,
    /// Held while fetching, so concurrent misses wait for one fetch instead of each making one;
    /// holds when the last fetch caused by an unknown `kid` started.
    fetching: Arc<Mutex<Option<Instant>>>,
    client: reqwest::Client,
}

impl std::fmt::Debug for Jwks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jwks").field("url", &self.url).finish()
    }
}

impl Jwks {
    /// An empty cache of the set at `url`, fetched trusting `ca` besides the built-in roots;
    /// [`Jwks::start`] fills it.
    pub fn new(url: JwksUrl, ca: &[reqwest::Certificate]) -> Result<Self, reqwest::Error> {
        let client = ca
            .iter()
            .cloned()
            .fold(reqwest::Client::builder(), |builder, cert| {
                builder.add_root_certificate(cert)
            })
            .timeout(FETCH_TIMEOUT)
            // Fetches are rare and may start on any worker's runtime: a pooled connection would
            // belong to the runtime that opened it.
            .pool_max_idle_per_host(0)
            // An https set must not be served from elsewhere, plain http included.
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self {
            url,
            keys: RwLock::new(Arc::new(Vec::new())),
            fetching: Arc::new(Mutex::new(None)),
            client,
        })
    }

    fn cached(&self) -> Arc<Vec<Key>> {
        match self.keys.read() {
            Ok(keys) => Arc::clone(&keys),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Fetches the set now, at start, then every `every`, until the task is aborted. The first
    /// fetch holds the fetch lock from this call on: tokens arriving before it ends wait for it
    /// rather than counting as unknown `kid`s.
    pub fn start(self: &Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        let first = Arc::clone(&self.fetching).try_lock_owned();
        let jwks = Arc::clone(self);
        actix_web::rt::spawn(async move {
            if let Ok(guard) = first {
                if let Err(err) = jwks.refresh().await {
                    log::warn!(
                        "cannot fetch the JWK set {}: {err}; its tokens are refused until it is fetched",
                        jwks.url
                    );
                }
                drop(guard);
            }
            loop {
                tokio::time::sleep(every).await;
                let _guard = jwks.fetching.lock().await;
                if let Err(err) = jwks.refresh().await {
                    log::warn!(
                        "cannot fetch the JWK set {}: {err}; keeping the keys cached",
                        jwks.url
                    );
                }
            }
        })
    }

    /// The key of a token's `kid`: from the cache, else (a key may have been rotated in) after
    /// fetching the set again, if no miss caused a fetch in the last [`MIN_REFETCH_INTERVAL`].
    pub async fn key(&self, kid: Option<&str>) -> Option<Key> {
        if let Some(key) = find(&self.cached(), kid) {
            return Some(key.clone());
        }
        let mut last = self.fetching.lock().await;
        // Another request may have fetched it while this one waited.
        if let Some(key) = find(&self.cached(), kid) {
            return Some(key.clone());
        }
        if last.is_some_and(|at| at.elapsed() < MIN_REFETCH_INTERVAL) {
            return None;
        }
        *last = Some(Instant::now());
        if let Err(err) = self.refresh().await {
            log::warn!("cannot fetch the JWK set {}: {err}", self.url);
        }
        find(&self.cached(), kid).cloned()
    }

    /// Fetches and parses the set, and replaces the cached keys with it. Call with the fetch
    /// lock held.
    async fn refresh(&self) -> Result<(), FetchError> {
        let bytes = match &self.url {
            JwksUrl::Remote(url) => self.download(url.clone()).await?,
            JwksUrl::File(path) => {
                let path = path.clone();
                tokio::task::spawn_blocking(move || std::fs::read(path))
                    .await
                    .map_err(|e| FetchError::File(std::io::Error::other(e)))?
                    .map_err(FetchError::File)?
            }
        };
        if bytes.len() > MAX_SET_SIZE {
            return Err(FetchError::TooLarge);
        }
        // Checking an EC key costs a key agreement: off the worker, a set of thousands of keys
        // delays no request.
        let keys = tokio::task::spawn_blocking(move || parse_set(&bytes))
            .await
            .map_err(FetchError::Parse)??;
        if keys.is_empty() {
            log::warn!("the JWK set {} has no usable signature key", self.url);
        } else {
            log::info!("fetched the JWK set {}: {} keys", self.url, keys.len());
        }
        let keys = Arc::new(keys);
        match self.keys.write() {
            Ok(mut cached) => *cached = keys,
            Err(poisoned) => *poisoned.into_inner() = keys,
        }
        Ok(())
    }

    async fn download(&self, url: reqwest::Url) -> Result<Vec<u8>, FetchError> {
        let mut response = self.client.get(url).send().await?;
        if !response.status().is_success() {
            return Err(FetchError::Status(response.status()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await? {
            if body.len() + chunk.len() > MAX_SET_SIZE {
                return Err(FetchError::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_https_file_or_loopback_http() {
        let ok = |s: &str| s.parse::<JwksUrl>().is_ok();
        assert!(ok("https://idp.example/.well-known/jwks.json"));
        assert!(ok("file:///etc/sse-hub/jwks.json"));
        assert!(ok("http://127.0.0.1:8081/jwks"));
        assert!(ok("http://[::1]/jwks"));
        assert!(ok("http://localhost/jwks"));
        assert!(!ok("http://idp.example/jwks"));
        assert!(!ok("http://10.0.0.1/jwks"));
        assert!(!ok("ftp://idp.example/jwks"));
        assert!(!ok("jwks.json"));
    }

    #[test]
    fn only_signature_keys_of_known_kinds_are_kept() {
        let set = br#"{"keys":[
            {"kty":"OKP","crv":"Ed25519","kid":"ed","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
            {"kty":"oct","kid":"hmac","alg":"HS256","k":"c2VjcmV0"},
            {"kty":"OKP","crv":"Ed25519","kid":"enc","use":"enc","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
            {"kty":"OKP","crv":"Ed25519","kid":"mismatch","alg":"ES256","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
            {"kty":"EC","crv":"P-521","kid":"p521","x":"AA","y":"AA"},
            {"kty":"weird","kid":"w"}
        ]}"#;
        let keys = parse_set(set).unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].kid.as_deref(), Some("ed"));
        assert_eq!(keys[0].algorithm, Algorithm::EdDSA);
        // One key: a token without `kid` gets it; an unknown `kid` gets nothing.
        assert!(find(&keys, None).is_some());
        assert!(find(&keys, Some("hmac")).is_none());
        assert!(parse_set(b"{}").is_err());
    }

    /// A JWK of `kty` with `fields`, whose numbers are given as bytes.
    fn jwk(kty: &str, fields: &[(&str, &[u8])], crv: Option<&str>) -> Jwk {
        let mut jwk = serde_json::json!({ "kty": kty, "kid": "k" });
        for (name, bytes) in fields {
            jwk[name] = URL_SAFE_NO_PAD.encode(bytes).into();
        }
        if let Some(crv) = crv {
            jwk["crv"] = crv.into();
        }
        serde_json::from_value(jwk).unwrap()
    }

    fn rsa(n: &[u8], e: &[u8]) -> Result<(), Unusable> {
        check(&jwk("RSA", &[("n", n), ("e", e)], None))
    }

    #[test]
    fn rsa_keys_need_2048_to_8192_odd_bits_and_an_odd_exponent() {
        let odd = |bytes: usize| [vec![0xc5; bytes - 1], vec![0x01]].concat();
        assert!(rsa(&odd(256), &[1, 0, 1]).is_ok());
        assert!(rsa(&odd(1024), &[3]).is_ok());
        assert!(matches!(
            rsa(&odd(128), &[1, 0, 1]),
            Err(Unusable::ModulusSize(1024))
        ));
        assert!(matches!(
            rsa(&odd(1025), &[1, 0, 1]),
            Err(Unusable::ModulusSize(8200))
        ));
        // 255 bytes and the top bit of a 256th: 2041 bits, which ring would take as 2048.
        let short = [vec![0x01], odd(255)].concat();
        assert!(matches!(
            rsa(&short, &[1, 0, 1]),
            Err(Unusable::ModulusSize(2041))
        ));
        assert!(matches!(rsa(&[1], &[1]), Err(Unusable::ModulusSize(1))));
        assert!(matches!(
            rsa(&[vec![0], odd(256)].concat(), &[1, 0, 1]),
            Err(Unusable::LeadingZero("n"))
        ));
        assert!(matches!(
            rsa(&vec![0xc4; 256], &[1, 0, 1]),
            Err(Unusable::EvenModulus)
        ));
        for e in [
            &[1][..],
            &[2],
            &[0, 3],
            &[2, 0, 0, 0, 1],
            &[1, 0, 0, 0, 0, 1],
            &[],
        ] {
            assert!(rsa(&odd(256), e).is_err(), "e = {e:?}");
        }
        assert!(rsa(&odd(256), &[1, 0xff, 0xff, 0xff, 0xff]).is_ok());
        let not_base64 = serde_json::json!({ "kty": "RSA", "n": "***", "e": "AQAB" });
        let not_base64 = serde_json::from_value(not_base64).unwrap();
        assert!(matches!(check(&not_base64), Err(Unusable::Encoding("n"))));
    }

    /// The base point of P-256 (FIPS 186-4, D.1.2.3).
    const P256_X: &str = "axfR8uEsQkf4vOblY6RA8ncDfYEt6zOg9KE5RdiYwpY";
    const P256_Y: &str = "T-NC4v4af5uO5-tKfA-eFivOM1drMV7Oy7ZAaDe_UfU";

    #[test]
    fn ec_keys_need_a_point_of_their_curve() {
        let (x, y) = (
            URL_SAFE_NO_PAD.decode(P256_X).unwrap(),
            URL_SAFE_NO_PAD.decode(P256_Y).unwrap(),
        );
        let ec = |crv, y: &[u8]| check(&jwk("EC", &[("x", &x), ("y", y)], Some(crv)));
        assert!(ec("P-256", &y).is_ok());
        let mut off = y.clone();
        off[31] ^= 1;
        assert!(matches!(
            ec("P-256", &off),
            Err(Unusable::OffCurve("P-256"))
        ));
        assert!(matches!(
            ec("P-384", &y),
            Err(Unusable::CoordinateSize { bytes: 48, .. })
        ));
        assert!(matches!(
            ec("P-256", &y[1..]),
            Err(Unusable::CoordinateSize { bytes: 32, .. })
        ));
    }

    #[test]
    fn ed25519_keys_are_32_bytes() {
        let okp = |x: &[u8]| check(&jwk("OKP", &[("x", x)], Some("Ed25519")));
        assert!(okp(&[7; 32]).is_ok());
        assert!(matches!(okp(&[]), Err(Unusable::Ed25519Size(0))));
        assert!(matches!(okp(&[7; 33]), Err(Unusable::Ed25519Size(33))));
    }
}
