//! Direct writes: the fan-out writing an update straight to a waiting subscriber's socket.
//!
//! Every update would otherwise reach a subscriber's socket through a chain: the shard queues
//! it, wakes the subscriber's task, the task polls actix's HTTP/1 dispatcher, which polls the
//! response body, copies the bytes into its write buffer and writes them. On a connection
//! whose stream is waiting, the shard can instead write the update itself, in one non-blocking
//! `send`, and wake nobody.
//!
//! This module holds all the state the fan-out, the stream and the dispatcher share for that,
//! and makes every decision about it; the others only call it:
//! - [`Outlet`]: one subscriber's place in its worker's shard. The fan-out offers it bytes
//!   ([`Outlet::offer`]): the socket takes them, or the outlet queues the rest for the stream,
//!   which takes them with [`Outlet::poll_next`].
//! - [`Connection`]: a plain TCP connection, the I/O actix's HTTP/1 dispatcher reads and
//!   writes; it notes whether the dispatcher holds bytes the socket refused.
//!
//! The rules, here and nowhere else:
//! 1. **Nothing is overtaken.** Bytes go to the socket directly only when nothing is ahead of
//!    them: the outlet's queue is empty, the stream is waiting (its last poll found nothing, so
//!    the dispatcher has everything the body gave it), and the dispatcher holds nothing
//!    unwritten (its last write was not refused). What the socket takes only part of is
//!    queued, and so is everything after it until the stream waits again.
//! 2. **What the dispatcher must guarantee.** actix-http's HTTP/1 dispatcher (patched or not,
//!    see `patches/README.md`) writes its buffer with `poll_write` until the buffer is empty
//!    and only then calls `poll_flush`; and it polls the response body and then flushes within
//!    one poll. So "the stream is waiting, and no write was refused since the last flush" means
//!    the dispatcher holds nothing. Should either change, a direct write could overtake the
//!    dispatcher's bytes: this module's tests and the black-box test
//!    `hardening::a_subscriber_that_pauses_gets_every_update_whole_and_in_order` check the
//!    ordering.
//! 3. **Plain HTTP/1 only.** Over TLS (HTTP/1.1 or HTTP/2) the bytes must go through the TLS
//!    session, which only the dispatcher holds: those outlets have no connection and queue
//!    everything.
//! 4. **Close-delimited.** A stream that may be written directly is sent raw, without chunked
//!    coding, and its connection closes after it (RFC 9112, section 6.3; [`frame`]): an
//!    update's bytes are then the same whoever writes them, and a write the socket took only
//!    part of can be finished by the dispatcher. (Chunked coding would need the writer to frame
//!    each write, and the dispatcher could not finish a chunk the shard began.) A stream only
//!    ends when its client leaves, its token expires or the hub stops; the client reconnects
//!    either way.
//! 5. **Counted like the stream's own writes**: for the heartbeat ([`Outlet::take_wrote`]) and
//!    for the access log ([`Connection::take_direct_bytes`]).
//!
//! A connection, its dispatcher, its stream and the shard holding its outlet all live on one
//! worker thread: no lock and no atomic.

use std::{
    cell::{Cell, RefCell},
    collections::VecDeque,
    io,
    pin::Pin,
    rc::Rc,
    task::{Context, Poll, Waker},
};

use actix_http::{ConnectionType, Extensions, ResponseHead};
use actix_web::{rt::net::TcpStream, HttpRequest};
use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// One subscriber's outlet: the bytes its stream has still to write and, on a plain HTTP/1
/// connection, the socket the fan-out may write to directly.
///
/// Held in its worker's shard. Its fields are inline (the connection is one pointer): the
/// fan-out's first pass reads how much is queued and whether the stream waits without
/// touching the connection.
#[derive(Debug, Default)]
pub struct Outlet {
    /// Allocates on first use; a subscriber nobody publishes to holds no buffer.
    items: VecDeque<Bytes>,
    waker: Option<Waker>,
    /// No more bytes will come: the stream ends once `items` is drained.
    closed: bool,
    /// Closed because it was full.
    slow: bool,
    /// The subscriber's connection, when bytes may be written to it directly.
    conn: Option<Connection>,
    /// The stream waits for its next bytes with everything before them written or buffered
    /// by the dispatcher: bytes may go to `conn` now. Never set without `conn`.
    waiting: bool,
    /// Bytes were written directly since the stream last asked.
    wrote: bool,
}

/// What became of bytes offered to an [`Outlet`].
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offered {
    /// The socket took them all; nobody was woken.
    Taken,
    /// Queued for the stream, whole or what the socket did not take, and the stream woken.
    Queued,
}

impl Outlet {
    /// The outlet of the subscriber that sent `req`: direct writes on a plain HTTP/1
    /// connection, every byte through the stream otherwise. Its response is framed by
    /// [`frame`].
    #[must_use]
    pub fn for_request(req: &HttpRequest) -> Self {
        Self {
            conn: req.conn_data::<Connection>().cloned(),
            ..Self::default()
        }
    }

    /// How many byte buffers are queued for the stream.
    #[inline]
    #[must_use]
    pub fn queued(&self) -> usize {
        self.items.len()
    }

    /// Whether offered bytes may go straight to the socket: the stream waits with nothing
    /// ahead of them. The fan-out offers bytes to such outlets once it has decided every
    /// delivery, and pushes them to the others.
    #[inline]
    #[must_use]
    pub fn is_waiting(&self) -> bool {
        self.waiting
    }

    /// Queues `bytes` for the stream and wakes it. Nothing goes to the socket directly until
    /// the stream has written them and waits again.
    #[inline]
    pub fn push(&mut self, bytes: Bytes) {
        self.waiting = false;
        self.items.push_back(bytes);
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
    }

    /// Writes `bytes` to the socket now if nothing must go before them; queues what the
    /// socket does not take (all of it when the stream is not waiting or the dispatcher holds
    /// unwritten bytes).
    #[inline]
    pub fn offer(&mut self, bytes: &Bytes) -> Offered {
        let written = if self.waiting {
            self.conn.as_ref().and_then(|conn| conn.write_now(bytes))
        } else {
            None
        };
        if written == Some(bytes.len()) {
            self.wrote = true;
            return Offered::Taken;
        }
        self.push(bytes.slice(written.unwrap_or(0)..));
        Offered::Queued
    }

    /// Ends the stream after what it holds.
    pub fn close(&mut self) {
        self.closed = true;
        self.waiting = false;
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
    }

    /// Ends the stream after what it holds, because it fell behind.
    pub fn close_slow(&mut self) {
        self.slow = true;
        self.close();
    }

    /// Whether it was closed because it fell behind.
    #[must_use]
    pub fn was_slow(&self) -> bool {
        self.slow
    }

    /// The stream's next bytes; `Ready(None)` once closed and drained.
    ///
    /// `Pending` means the stream waits for its next bytes: until it is polled again, offered
    /// bytes may go to the socket. Call it last in the stream's poll, when nothing else is to
    /// be written (rule 2: the dispatcher then holds, or has written, everything before).
    pub fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        self.waiting = false;
        if let Some(bytes) = self.items.pop_front() {
            return Poll::Ready(Some(bytes));
        }
        if self.closed {
            return Poll::Ready(None);
        }
        self.waiting = self.conn.is_some();
        if !self.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            self.waker = Some(cx.waker().clone());
        }
        Poll::Pending
    }

    /// Whether bytes went to the socket directly since the last call (they count for the
    /// heartbeat as the stream's own writes do).
    #[must_use]
    pub fn take_wrote(&mut self) -> bool {
        std::mem::take(&mut self.wrote)
    }
}

/// Frames the response of the stream `req` opens for the way its bytes go: raw and
/// close-delimited when its [`Outlet`] may write to the socket (rule 4); otherwise as actix
/// frames any stream (chunked over HTTP/1.1).
pub fn frame(req: &HttpRequest, head: &mut ResponseHead) {
    if req.conn_data::<Connection>().is_some() {
        head.no_chunking(true);
        head.set_connection_type(ConnectionType::Close);
    }
}

/// A plain-TCP connection: actix's dispatcher reads and writes it as its I/O, and the
/// [`Outlet`] of a stream on it writes to it directly. Cloning shares it; the socket closes
/// when the last clone goes.
#[derive(Debug, Clone)]
pub struct Connection(Rc<Shared>);

#[derive(Debug)]
struct Shared {
    tcp: RefCell<TcpStream>,
    /// The dispatcher's last `poll_write` was refused (the socket is full): it holds bytes
    /// that must go out before anything else. Cleared when it flushes, which it does only
    /// once it has written everything it holds (rule 2).
    blocked: Cell<bool>,
    /// Bytes written directly not yet counted in the access log.
    direct_bytes: Cell<u64>,
}

impl Connection {
    #[must_use]
    pub fn new(tcp: TcpStream) -> Self {
        Self(Rc::new(Shared {
            tcp: RefCell::new(tcp),
            blocked: Cell::new(false),
            direct_bytes: Cell::new(0),
        }))
    }

    /// Makes the connection reachable from its requests (their `conn_data`), for
    /// [`Outlet::for_request`], [`frame`] and [`Connection::of`].
    pub fn attach(&self, data: &mut Extensions) {
        data.insert(self.clone());
    }

    /// The plain connection `req` came on, if it is one the hub may write to directly.
    #[must_use]
    pub fn of(req: &HttpRequest) -> Option<Self> {
        req.conn_data::<Self>().cloned()
    }

    /// Runs `f` with the socket (to read or set its options).
    pub fn with_socket<R>(&self, f: impl FnOnce(&TcpStream) -> R) -> R {
        f(&self.0.tcp.borrow())
    }

    /// The bytes written directly since the last call (for the access log: a stream written
    /// directly is the connection's last response).
    #[must_use]
    pub fn take_direct_bytes(&self) -> u64 {
        self.0.direct_bytes.take()
    }

    /// Writes `bytes` now, without waiting, if nothing the dispatcher holds must go first:
    /// `Some(n)` for the bytes the socket took (0 when it is full), `None` when the dispatcher
    /// holds unwritten bytes or the connection failed (the dispatcher will find out itself).
    ///
    /// Only for a waiting stream's [`Outlet`]: then the dispatcher buffered everything the
    /// body gave it, and `blocked` says whether it got it all out.
    #[must_use]
    fn write_now(&self, bytes: &[u8]) -> Option<usize> {
        if self.0.blocked.get() {
            return None;
        }
        // The dispatcher borrows the socket only while it is being polled, on this same
        // thread: never while the shard runs.
        let tcp = self.0.tcp.try_borrow().ok()?;
        // Straight to the socket, not through tokio's `try_write`, which would first read the
        // socket's readiness (another cache line per delivery). If the socket is full, tokio
        // still believes it writable: the dispatcher's next write then finds it full itself
        // and waits for it, as it would have anyway. rustix makes the system call itself:
        // libc's `send` is a thread cancellation point, wrapped in two more calls each time.
        let flags = rustix::net::SendFlags::DONTWAIT | rustix::net::SendFlags::NOSIGNAL;
        match rustix::net::send(&*tcp, bytes, flags) {
            Ok(n) => {
                self.0
                    .direct_bytes
                    .set(self.0.direct_bytes.get() + n as u64);
                Some(n)
            }
            Err(rustix::io::Errno::AGAIN) => Some(0),
            Err(_) => None,
        }
    }
}
impl AsyncRead for Connection {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0.tcp.borrow_mut()).poll_read(cx, buf)
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut *self.0.tcp.borrow_mut()).poll_write(cx, buf);
        if polled.is_pending() {
            self.0.blocked.set(true);
        }
        polled
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut *self.0.tcp.borrow_mut()).poll_write_vectored(cx, bufs);
        if polled.is_pending() {
            self.0.blocked.set(true);
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.0.tcp.borrow().is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.0.blocked.set(false);
        Pin::new(&mut *self.0.tcp.borrow_mut()).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0.tcp.borrow_mut()).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::{future::poll_fn, time::Duration};

    use tokio::io::AsyncReadExt;

    use super::*;

    /// A connected pair on loopback: the hub's end, shared, and the client's end.
    async fn pair() -> (Connection, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (Connection::new(server), client)
    }

    /// The outlet of a stream on `conn`, as `Outlet::for_request` makes it on a plain
    /// connection.
    fn outlet_on(conn: &Connection) -> Outlet {
        Outlet {
            conn: Some(conn.clone()),
            ..Outlet::default()
        }
    }

    /// Polls the outlet as its stream does.
    fn poll(outlet: &mut Outlet) -> Poll<Option<Bytes>> {
        outlet.poll_next(&mut Context::from_waker(Waker::noop()))
    }

    /// Writes as the dispatcher does until the socket refuses a write: the dispatcher now
    /// holds unwritten bytes. Returns what the socket took.
    async fn write_until_refused(conn: &mut Connection) -> usize {
        let chunk = vec![b'd'; 64 * 1024];
        let mut written = 0;
        loop {
            match poll_fn(|cx| Poll::Ready(Pin::new(&mut *conn).poll_write(cx, &chunk))).await {
                Poll::Ready(Ok(n)) => written += n,
                Poll::Ready(Err(err)) => panic!("write: {err}"),
                Poll::Pending => return written,
            }
        }
    }

    async fn read_exactly(client: &mut TcpStream, n: usize) -> Vec<u8> {
        let mut got = vec![0; n];
        tokio::time::timeout(Duration::from_secs(10), client.read_exact(&mut got))
            .await
            .expect("the client reads what was sent")
            .unwrap();
        got
    }

    #[tokio::test]
    async fn a_waiting_stream_takes_offered_bytes_on_its_socket() {
        let (conn, mut client) = pair().await;
        let mut outlet = outlet_on(&conn);
        assert!(poll(&mut outlet).is_pending());
        assert!(outlet.is_waiting());
        assert_eq!(outlet.offer(&Bytes::from_static(b"one")), Offered::Taken);
        assert_eq!(outlet.offer(&Bytes::from_static(b"two")), Offered::Taken);
        assert_eq!(read_exactly(&mut client, 6).await, b"onetwo");
        assert_eq!(outlet.queued(), 0);
        // Counted once for the heartbeat, in bytes for the access log.
        assert!(outlet.take_wrote());
        assert!(!outlet.take_wrote());
        assert_eq!(conn.take_direct_bytes(), 6);
    }

    #[tokio::test]
    async fn a_running_stream_gets_offered_bytes_through_its_queue() {
        let (conn, _client) = pair().await;
        let mut outlet = outlet_on(&conn);
        // Not polled yet: the stream has its opening bytes and replay to write first.
        assert!(!outlet.is_waiting());
        assert_eq!(outlet.offer(&Bytes::from_static(b"one")), Offered::Queued);
        assert!(poll(&mut outlet) == Poll::Ready(Some(Bytes::from_static(b"one"))));
        assert!(poll(&mut outlet).is_pending());
        // Queued bytes stop direct writes until the stream has written them and waits again.
        outlet.push(Bytes::from_static(b"two"));
        assert!(!outlet.is_waiting());
        assert_eq!(outlet.offer(&Bytes::from_static(b"three")), Offered::Queued);
        assert!(poll(&mut outlet) == Poll::Ready(Some(Bytes::from_static(b"two"))));
        assert!(poll(&mut outlet) == Poll::Ready(Some(Bytes::from_static(b"three"))));
        assert!(poll(&mut outlet).is_pending());
        assert!(outlet.is_waiting());
        assert!(!outlet.take_wrote());
        assert_eq!(conn.take_direct_bytes(), 0);
    }

    #[tokio::test]
    async fn what_the_socket_does_not_take_is_queued_with_all_that_follows() {
        let (conn, mut client) = pair().await;
        let mut outlet = outlet_on(&conn);
        assert!(poll(&mut outlet).is_pending());
        // Offers distinct chunks until the socket takes only part of one.
        let mut offered = Vec::new();
        let mut chunk = 0u8;
        while outlet.offer(&Bytes::from(vec![b'a' + chunk % 26; 64 * 1024])) == Offered::Taken {
            offered.extend(std::iter::repeat_n(b'a' + chunk % 26, 64 * 1024));
            chunk += 1;
        }
        offered.extend(std::iter::repeat_n(b'a' + chunk % 26, 64 * 1024));
        let next = Bytes::from_static(b"next");
        assert_eq!(outlet.offer(&next), Offered::Queued);
        offered.extend_from_slice(&next);
        // On the wire what the socket took; then, in order, what the stream writes.
        let direct = usize::try_from(conn.take_direct_bytes()).unwrap();
        let mut got = read_exactly(&mut client, direct).await;
        while let Poll::Ready(Some(bytes)) = poll(&mut outlet) {
            got.extend_from_slice(&bytes);
        }
        assert!(got == offered, "every byte once, in order");
        assert!(outlet.is_waiting());
    }

    #[tokio::test]
    async fn a_waiting_stream_queues_while_the_dispatcher_holds_unwritten_bytes() {
        let (mut conn, mut client) = pair().await;
        let mut outlet = outlet_on(&conn);
        let written = write_until_refused(&mut conn).await;
        assert!(poll(&mut outlet).is_pending());
        // The socket has room again, but the dispatcher's bytes go first.
        read_exactly(&mut client, written).await;
        assert_eq!(outlet.offer(&Bytes::from_static(b"x")), Offered::Queued);
        assert!(poll(&mut outlet) == Poll::Ready(Some(Bytes::from_static(b"x"))));
        // The stream waits again once the dispatcher has written all it holds and flushed.
        poll_fn(|cx| Pin::new(&mut conn).poll_flush(cx))
            .await
            .unwrap();
        assert!(poll(&mut outlet).is_pending());
        assert_eq!(outlet.offer(&Bytes::from_static(b"y")), Offered::Taken);
        assert_eq!(read_exactly(&mut client, 1).await, b"y");
    }

    #[test]
    fn without_a_connection_every_byte_goes_through_the_stream() {
        // A stream over TLS.
        let mut outlet = Outlet::default();
        assert!(poll(&mut outlet).is_pending());
        assert!(!outlet.is_waiting());
        assert_eq!(outlet.offer(&Bytes::from_static(b"one")), Offered::Queued);
        assert!(poll(&mut outlet) == Poll::Ready(Some(Bytes::from_static(b"one"))));
    }

    #[test]
    fn a_closed_outlet_ends_its_stream_after_what_it_holds() {
        let mut outlet = Outlet::default();
        outlet.push(Bytes::from_static(b"last"));
        outlet.close_slow();
        assert!(outlet.was_slow());
        assert!(poll(&mut outlet) == Poll::Ready(Some(Bytes::from_static(b"last"))));
        assert!(poll(&mut outlet) == Poll::Ready(None));
        assert!(!outlet.is_waiting());
    }

    #[tokio::test]
    async fn no_direct_write_while_the_dispatcher_holds_unwritten_bytes() {
        let (mut conn, mut client) = pair().await;
        assert_eq!(conn.write_now(b"first"), Some(5));
        // The dispatcher's writes fill the socket until one is refused: it now holds bytes.
        let chunk = vec![b'd'; 64 * 1024];
        let mut written = 0;
        loop {
            match poll_fn(|cx| Poll::Ready(Pin::new(&mut conn).poll_write(cx, &chunk))).await {
                Poll::Ready(Ok(n)) => written += n,
                Poll::Ready(Err(err)) => panic!("write: {err}"),
                Poll::Pending => break,
            }
        }
        // The client reads everything: the socket has room, but the dispatcher's bytes must go
        // first, so no direct write.
        let mut got = vec![0; 5 + written];
        tokio::time::timeout(Duration::from_secs(10), client.read_exact(&mut got))
            .await
            .expect("the client reads what was sent")
            .unwrap();
        assert!(got.starts_with(b"firstd") && got.ends_with(b"d"));
        assert_eq!(conn.write_now(b"x"), None);
        // Once the dispatcher has written everything and flushed, direct writes go again.
        poll_fn(|cx| Pin::new(&mut conn).poll_flush(cx))
            .await
            .unwrap();
        assert_eq!(conn.write_now(b"y"), Some(1));
        let mut y = [0; 1];
        tokio::time::timeout(Duration::from_secs(10), client.read_exact(&mut y))
            .await
            .expect("the client reads the direct write")
            .unwrap();
        assert_eq!(&y, b"y");
        assert_eq!(conn.take_direct_bytes(), 6);
        assert_eq!(conn.take_direct_bytes(), 0);
    }
}
