//! The wire and measurement pieces of `loadgen`: URL checking, a minimal HTTP/1.1 response
//! reader, an incremental chunked-body decoder, the payload format, the latency histogram and
//! the `/proc` sampler. Everything here is synchronous except `read_head`.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};

// ---------------------------------------------------------------------------------------------
// URLs

/// Where one URL points: a loopback socket address, the `Host` header and the request target.
#[derive(Debug, Clone)]
pub struct Target {
    pub addr: SocketAddr,
    pub host_header: String,
    pub path: String,
}

/// Parses `http://HOST[:PORT][/path][?query]`. HOST must be `localhost` or a 127.x.x.x
/// literal: loadgen never sends traffic anywhere but the loopback network.
pub fn parse_url(url: &str) -> Result<Target, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url}: only http:// URLs are supported"))?;
    let rest = rest.split('#').next().unwrap_or_default();
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let path = if path.starts_with('?') {
        format!("/{path}")
    } else {
        path.to_string()
    };
    if path.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(format!(
            "{url}: the path must not contain spaces or control characters"
        ));
    }
    if authority.contains('@') {
        return Err(format!("{url}: user info is not supported"));
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (
            h,
            p.parse::<u16>()
                .map_err(|_| format!("{url}: bad port {p:?}"))?,
        ),
        None => (authority, 80),
    };
    let ip = if host.eq_ignore_ascii_case("localhost") {
        Ipv4Addr::LOCALHOST
    } else {
        host.parse::<Ipv4Addr>()
            .ok()
            .filter(|ip| ip.octets()[0] == 127)
            .ok_or_else(|| {
                format!("{url}: refused, the host must be a 127.x.x.x address or localhost")
            })?
    };
    Ok(Target {
        addr: SocketAddr::V4(SocketAddrV4::new(ip, port)),
        host_header: authority.to_string(),
        path,
    })
}

/// `application/x-www-form-urlencoded` encoding of one value.
pub fn form_encode(out: &mut Vec<u8>, value: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in value {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => out.push(b),
            b' ' => out.push(b'+'),
            _ => out.extend_from_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]),
        }
    }
}

/// The event payload: `<seq> <send_unix_micros> ` padded with `x` to `size` bytes.
pub fn build_payload(out: &mut Vec<u8>, seq: u64, send_us: u64, size: usize) {
    use std::io::Write;
    out.clear();
    let _ = write!(out, "{seq} {send_us} ");
    if out.len() < size {
        out.resize(size, b'x');
    }
}

/// Reads `<seq> <micros>` from the start of a payload (its first line, when the data of an
/// event has several).
pub fn parse_payload(data: &[u8]) -> Option<(u64, u64)> {
    let first_line = data.split(|&b| b == b'\n').next()?;
    let mut parts = first_line.split(|&b| b == b' ');
    let seq = parse_u64(parts.next()?)?;
    let sent = parse_u64(parts.next()?)?;
    Some((seq, sent))
}

fn parse_u64(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 19 {
        return None;
    }
    s.iter().try_fold(0u64, |acc, &b| {
        b.is_ascii_digit().then(|| acc * 10 + u64::from(b - b'0'))
    })
}

// ---------------------------------------------------------------------------------------------
// HTTP/1.1 responses

/// How the body of a response is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body at all (1xx, 204, 304).
    Empty,
    Chunked,
    Length(u64),
    /// Delimited by the server closing the connection.
    Close,
}

/// The parts of a response head that loadgen needs.
#[derive(Debug, Clone, Copy)]
pub struct Head {
    pub status: u16,
    pub framing: Framing,
    /// The connection can't be reused after this response.
    pub close: bool,
}

/// The error when the server closed before sending anything.
const CLOSED_BEFORE_RESPONSE: &str = "connection closed before a response";
const MAX_HEAD: usize = 64 * 1024;

/// Reads a response head into `buf` (which may already hold bytes). Returns the head and its
/// length in `buf`; what follows it in `buf` is the start of the body.
pub async fn read_head(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    deadline: Instant,
) -> Result<(Head, usize), String> {
    let mut searched = 0;
    loop {
        if let Some(end) = find(&buf[searched..], b"\r\n\r\n") {
            let len = searched + end + 4;
            return Ok((parse_head(&buf[..len])?, len));
        }
        if buf.len() > MAX_HEAD {
            return Err("response head too large".into());
        }
        searched = buf.len().saturating_sub(3);
        buf.reserve(4096);
        match timeout_at(deadline, stream.read_buf(buf)).await {
            Err(_) => return Err("response timeout".into()),
            Ok(Err(e)) => return Err(format!("read: {}", e.kind())),
            Ok(Ok(0)) if buf.is_empty() => return Err(CLOSED_BEFORE_RESPONSE.into()),
            Ok(Ok(0)) => return Err("connection closed inside the response head".into()),
            Ok(Ok(_)) => {}
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn parse_head(raw: &[u8]) -> Result<Head, String> {
    let text = std::str::from_utf8(raw).map_err(|_| "response head is not UTF-8".to_string())?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(format!("not an HTTP/1.x response: {status_line:?}"));
    }
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line: {status_line:?}"))?;
    let mut close = version == "HTTP/1.0";
    let mut chunked = false;
    let mut length = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(
                value
                    .parse::<u64>()
                    .map_err(|_| format!("bad Content-Length {value:?}"))?,
            );
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value
                .rsplit(',')
                .next()
                .is_some_and(|v| v.trim().eq_ignore_ascii_case("chunked"));
        } else if name.eq_ignore_ascii_case("connection") {
            for token in value.split(',') {
                let token = token.trim();
                if token.eq_ignore_ascii_case("close") {
                    close = true;
                } else if token.eq_ignore_ascii_case("keep-alive") {
                    close = false;
                }
            }
        }
    }
    let framing = if (100..200).contains(&status) || status == 204 || status == 304 {
        Framing::Empty
    } else if chunked {
        Framing::Chunked
    } else if let Some(n) = length {
        Framing::Length(n)
    } else {
        close = true;
        Framing::Close
    };
    Ok(Head {
        status,
        framing,
        close,
    })
}

/// Where a body decoder stands after some input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyStatus {
    /// Wants more bytes.
    More,
    /// The body is complete (bytes after it are ignored).
    Complete,
    /// The consumer asked to stop.
    Stopped,
}

#[derive(Debug, Clone, Copy)]
enum ChunkState {
    Size { size: u64, digits: u8, ext: bool },
    Data(u64),
    DataEnd,
    Trailer { line_start: bool },
    Done,
}

/// Incremental `Transfer-Encoding: chunked` decoder: hands out the data of each chunk as
/// slices of the input, without copying.
#[derive(Debug, Clone)]
pub struct ChunkDecoder {
    state: ChunkState,
}

impl Default for ChunkDecoder {
    fn default() -> Self {
        Self {
            state: ChunkState::Size {
                size: 0,
                digits: 0,
                ext: false,
            },
        }
    }
}

impl ChunkDecoder {
    pub fn feed(
        &mut self,
        mut input: &[u8],
        out: &mut impl FnMut(&[u8]) -> bool,
    ) -> Result<BodyStatus, String> {
        while !input.is_empty() {
            if let ChunkState::Data(rem) = self.state {
                let n = rem.min(input.len() as u64) as usize;
                let (data, rest) = input.split_at(n);
                input = rest;
                self.state = if rem == n as u64 {
                    ChunkState::DataEnd
                } else {
                    ChunkState::Data(rem - n as u64)
                };
                if !out(data) {
                    return Ok(BodyStatus::Stopped);
                }
                continue;
            }
            let b = input[0];
            input = &input[1..];
            self.state = match self.state {
                ChunkState::Size { size, digits, ext } => match b {
                    b'\n' if digits == 0 => return Err("chunk size missing".into()),
                    b'\n' if size == 0 => ChunkState::Trailer { line_start: true },
                    b'\n' => ChunkState::Data(size),
                    b'\r' => ChunkState::Size { size, digits, ext },
                    _ if ext => ChunkState::Size { size, digits, ext },
                    b';' | b' ' | b'\t' => ChunkState::Size {
                        size,
                        digits,
                        ext: true,
                    },
                    _ => {
                        let d = (b as char)
                            .to_digit(16)
                            .ok_or_else(|| format!("bad chunk size byte {b:#04x}"))?;
                        if digits >= 12 {
                            return Err("chunk size too large".into());
                        }
                        ChunkState::Size {
                            size: size * 16 + u64::from(d),
                            digits: digits + 1,
                            ext,
                        }
                    }
                },
                ChunkState::DataEnd => match b {
                    b'\r' => ChunkState::DataEnd,
                    b'\n' => ChunkState::Size {
                        size: 0,
                        digits: 0,
                        ext: false,
                    },
                    _ => return Err("missing CRLF after chunk data".into()),
                },
                ChunkState::Trailer { line_start } => match b {
                    b'\r' => ChunkState::Trailer { line_start },
                    b'\n' if line_start => ChunkState::Done,
                    b'\n' => ChunkState::Trailer { line_start: true },
                    _ => ChunkState::Trailer { line_start: false },
                },
                ChunkState::Done => return Ok(BodyStatus::Complete),
                ChunkState::Data(_) => unreachable!("handled above"),
            };
        }
        Ok(if matches!(self.state, ChunkState::Done) {
            BodyStatus::Complete
        } else {
            BodyStatus::More
        })
    }
}

/// Decodes a response body of any framing, incrementally.
#[derive(Debug, Clone)]
pub enum BodyDecoder {
    Chunked(ChunkDecoder),
    Length(u64),
    Close,
}

impl BodyDecoder {
    pub fn new(framing: Framing) -> Self {
        match framing {
            Framing::Chunked => Self::Chunked(ChunkDecoder::default()),
            Framing::Length(n) => Self::Length(n),
            Framing::Empty => Self::Length(0),
            Framing::Close => Self::Close,
        }
    }

    pub fn feed(
        &mut self,
        input: &[u8],
        out: &mut impl FnMut(&[u8]) -> bool,
    ) -> Result<BodyStatus, String> {
        match self {
            Self::Chunked(dec) => dec.feed(input, out),
            Self::Close => Ok(if out(input) {
                BodyStatus::More
            } else {
                BodyStatus::Stopped
            }),
            Self::Length(rem) => {
                let n = (*rem).min(input.len() as u64) as usize;
                *rem -= n as u64;
                if n > 0 && !out(&input[..n]) {
                    return Ok(BodyStatus::Stopped);
                }
                Ok(if *rem == 0 {
                    BodyStatus::Complete
                } else {
                    BodyStatus::More
                })
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Server-Sent Events (parsed by the workspace's `sse-parser`)

/// The most a subscriber's SSE parser buffers: one line, or one event's data.
pub const MAX_SSE_BUFFER: usize = 4 * 1024 * 1024;

/// A parser for a subscriber's stream, resuming after `last_event_id` when there is one.
pub fn sse_parser(last_event_id: Option<Vec<u8>>) -> sse_parser::Parser {
    last_event_id
        .map_or_else(
            sse_parser::Parser::new,
            sse_parser::Parser::with_last_event_id,
        )
        .max_buffer(MAX_SSE_BUFFER)
}

// ---------------------------------------------------------------------------------------------
// Latency histogram

const SUB_BITS: u32 = 7;
const SUB: u64 = 1 << SUB_BITS;
const EXACT: u64 = 2 * SUB;
const MAX_EXP: u32 = 40;
const BUCKETS: usize = (EXACT + (MAX_EXP - SUB_BITS) as u64 * SUB) as usize;

/// A log-linear histogram of microseconds, shared by all tasks: values below 256 are exact,
/// above that each power of two is split in 128 buckets (under 0.8 % wide), up to 2^41 µs.
#[derive(Debug)]
pub struct Histogram {
    buckets: Box<[AtomicU64]>,
    count: AtomicU64,
    max: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            max: AtomicU64::new(0),
        }
    }
}

fn bucket_of(v: u64) -> usize {
    if v < EXACT {
        return v as usize;
    }
    let v = v.min((1u64 << (MAX_EXP + 1)) - 1);
    let exp = 63 - v.leading_zeros();
    let shift = exp - SUB_BITS;
    let sub = (v >> shift) - SUB;
    (EXACT + u64::from(exp - SUB_BITS - 1) * SUB + sub) as usize
}

/// The lowest and highest value of a bucket.
fn bucket_range(i: usize) -> (u64, u64) {
    let i = i as u64;
    if i < EXACT {
        return (i, i);
    }
    let j = i - EXACT;
    let exp = (j / SUB) as u32 + SUB_BITS + 1;
    let shift = exp - SUB_BITS;
    let lo = (SUB + j % SUB) << shift;
    (lo, lo + (1 << shift) - 1)
}

impl Histogram {
    pub fn record(&self, v: u64) {
        self.buckets[bucket_of(v)].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.max.fetch_max(v, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    pub fn max(&self) -> Option<u64> {
        (self.count() > 0).then(|| self.max.load(Ordering::Relaxed))
    }

    /// The `q` quantile (0..=1), as the middle of its bucket (never above the maximum).
    pub fn quantile(&self, q: f64) -> Option<u64> {
        let count = self.count();
        if count == 0 {
            return None;
        }
        let rank = ((q * count as f64).ceil() as u64).clamp(1, count);
        let mut seen = 0;
        for (i, b) in self.buckets.iter().enumerate() {
            seen += b.load(Ordering::Relaxed);
            if seen >= rank {
                let (lo, hi) = bucket_range(i);
                return Some((lo + (hi - lo) / 2).min(self.max.load(Ordering::Relaxed)));
            }
        }
        self.max()
    }
}

/// Nearest-rank quantile of sorted values.
pub fn sorted_quantile(sorted: &[u64], q: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

// ---------------------------------------------------------------------------------------------
// /proc

/// CPU time and resident memory of a set of processes, summed.
#[derive(Debug, Clone, Copy)]
pub struct ProcSample {
    /// utime + stime: sampled by the kernel at each tick, so a short run is a few ticks.
    pub cpu_ticks: u64,
    /// Time on a CPU of every thread, exact to the nanosecond (`/proc/PID/task/*/schedstat`),
    /// when the kernel has schedstats; a thread that ended before the sample is not in it.
    pub cpu_ns: Option<u64>,
    pub rss_kib: u64,
}

/// Clock ticks per second of `/proc/PID/stat` times (`getconf CLK_TCK`, else 100).
pub fn clock_ticks() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<u64>().ok())
        .filter(|&t| t > 0)
        .unwrap_or(100)
}

/// utime + stime of one process, in ticks.
pub fn proc_cpu_ticks(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// The time on a CPU of every thread of one process, in nanoseconds (the first field of each
/// thread's `schedstat`).
pub fn proc_cpu_ns(pid: u32) -> Option<u64> {
    let mut total = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let stat = std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok()?;
        total += stat.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(total)
}

fn proc_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Samples the processes; those that can't be read are left out (with a warning), and no
/// readable process at all gives `None`.
pub fn sample(pids: &[u32]) -> Option<ProcSample> {
    let mut total = ProcSample {
        cpu_ticks: 0,
        cpu_ns: Some(0),
        rss_kib: 0,
    };
    let mut any = false;
    for &pid in pids {
        match (proc_cpu_ticks(&pid.to_string()), proc_rss_kib(pid)) {
            (Some(cpu), Some(rss)) => {
                total.cpu_ticks += cpu;
                total.cpu_ns = total.cpu_ns.zip(proc_cpu_ns(pid)).map(|(t, n)| t + n);
                total.rss_kib += rss;
                any = true;
            }
            _ => log::warn!("can't read /proc/{pid}/stat or status (process gone?)"),
        }
    }
    any.then_some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_cpu_time_counts_the_work_of_every_live_thread() {
        let pid = std::process::id();
        let before = proc_cpu_ns(pid).expect("schedstat of this process");
        // Work on another thread, which stays alive (waiting) while the process is sampled.
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let worker = std::thread::spawn(move || {
            let mut x = 0u64;
            for _ in 0..20_000_000u64 {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
            }
            done_tx.send(x).unwrap();
            let _ = release_rx.recv();
        });
        done_rx
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("the work done");
        let after = proc_cpu_ns(pid).expect("schedstat of this process");
        release_tx.send(()).unwrap();
        worker.join().unwrap();
        // 20 million dependent multiply-adds take well over 5 ms of CPU on any machine.
        assert!(after - before >= 5_000_000, "{before} -> {after}");
    }

    #[test]
    fn urls_are_loopback_only() {
        let t = parse_url("http://127.0.0.1:8080/.well-known/mercure?topic=%2Fbench").unwrap();
        assert_eq!(t.addr, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(t.path, "/.well-known/mercure?topic=%2Fbench");
        assert_eq!(parse_url("http://localhost?a=b").unwrap().path, "/?a=b");
        assert_eq!(parse_url("http://127.1.2.3").unwrap().addr.port(), 80);
        for bad in [
            "http://10.0.0.1/",
            "http://example.com/",
            "https://127.0.0.1/",
            "http://[::1]/",
            "http://127.0.0.1.nip.io/",
            "http://u@127.0.0.1/",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn chunked_and_sse_parse_across_any_split() {
        let mut body = Vec::new();
        for (i, chunk) in [
            &b"retry: 2000\n: ok\n"[..],
            b"\nid: a\ndata: 7 1000 xx\ndata: y\n\n",
            b"id: b\ndata: hello\n",
            b"\r\n",
        ]
        .iter()
        .enumerate()
        {
            let ext = if i == 1 { ";ext=1" } else { "" };
            body.extend_from_slice(format!("{:x}{ext}\r\n", chunk.len()).as_bytes());
            body.extend_from_slice(chunk);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(b"0\r\n\r\n");
        for split in 1..body.len() {
            let mut dec = ChunkDecoder::default();
            let mut sse = sse_parser(None);
            let mut payloads = Vec::new();
            let mut status = BodyStatus::More;
            for part in body.chunks(split) {
                status = dec
                    .feed(part, &mut |d| {
                        sse.feed(d, |item| {
                            if let sse_parser::Item::Event(e) = item {
                                payloads.push(parse_payload(e.data));
                            }
                            std::ops::ControlFlow::Continue(())
                        })
                        .unwrap()
                        .is_continue()
                    })
                    .unwrap();
            }
            assert_eq!(status, BodyStatus::Complete, "split {split}");
            assert_eq!(payloads, [Some((7, 1000)), None], "split {split}");
            assert_eq!(sse.last_event_id(), b"b");
        }
    }

    #[test]
    fn heads() {
        let h = parse_head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n").unwrap();
        assert_eq!(
            (h.status, h.framing, h.close),
            (200, Framing::Chunked, false)
        );
        let h =
            parse_head(b"HTTP/1.1 201 Created\r\ncontent-length: 5\r\nConnection: close\r\n\r\n")
                .unwrap();
        assert_eq!(
            (h.status, h.framing, h.close),
            (201, Framing::Length(5), true)
        );
        let h = parse_head(b"HTTP/1.0 200 OK\r\n\r\n").unwrap();
        assert_eq!((h.framing, h.close), (Framing::Close, true));
    }

    #[test]
    fn histogram_is_accurate_to_one_percent() {
        for v in [0, 1, 255, 256, 257, 1000, 12_345, 999_999, 1 << 35] {
            let (lo, hi) = bucket_range(bucket_of(v));
            assert!(lo <= v && v <= hi, "{v}: {lo}..{hi}");
            assert!((hi - lo) as f64 <= v as f64 * 0.008, "{v}: {lo}..{hi}");
        }
        let h = Histogram::default();
        for v in 1..=10_000 {
            h.record(v);
        }
        let p50 = h.quantile(0.5).unwrap() as f64;
        assert!((p50 - 5000.0).abs() < 50.0, "{p50}");
        assert_eq!(h.max(), Some(10_000));
        assert_eq!(h.quantile(1.0), Some(10_000));
    }

    #[test]
    fn payloads_round_trip() {
        let mut p = Vec::new();
        build_payload(&mut p, 42, 1_700_000_000_000_000, 64);
        assert_eq!(p.len(), 64);
        assert_eq!(parse_payload(&p), Some((42, 1_700_000_000_000_000)));
        assert_eq!(parse_payload(b"42 17\nmore"), Some((42, 17)));
        let mut enc = Vec::new();
        form_encode(&mut enc, b"/bench a&b");
        assert_eq!(enc, b"%2Fbench+a%26b");
    }
}
