//! Plain-TCP connections the fan-out can write to directly.
//!
//! Every update would otherwise reach a subscriber's socket through a chain: the shard queues
//! it, wakes the subscriber's task, the task polls actix's HTTP/1 dispatcher, which polls the
//! response body, copies the bytes into its write buffer and writes them. On a connection
//! whose stream is waiting (nothing queued, nothing buffered), the shard can instead write the
//! update itself, in one non-blocking `send`, and wake nobody: see [`Connection::write_now`].
//!
//! A [`Connection`] is the I/O that actix's dispatcher reads and writes, shared (on one worker
//! thread) with the subscriber's place in the shard. It tracks one fact the shard needs: whether
//! the dispatcher holds bytes the socket has not taken yet. The dispatcher writes its buffer
//! with `poll_write` until the buffer is empty and only then calls `poll_flush`; a
//! `poll_write` that returns `Pending` leaves bytes behind. While it does, a direct write would
//! overtake them, so the shard queues instead.
//!
//! Only plain HTTP/1 connections are shared this way: over TLS (HTTP/1.1 or HTTP/2) the bytes
//! must go through the TLS session, which only the dispatcher holds, so those streams take the
//! queue. A stream written directly is sent close-delimited (no chunked coding), so that the
//! bytes of an update are the same whether the shard or the dispatcher writes them, and a write
//! the socket took only part of can be finished by the dispatcher.

use std::{
    cell::{Cell, RefCell},
    io,
    pin::Pin,
    rc::Rc,
    task::{Context, Poll},
};

use actix_web::rt::net::TcpStream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A plain-TCP connection shared by actix's dispatcher (its I/O) and the shard (direct
/// writes). Cloning shares it; the socket closes when the last clone goes.
#[derive(Debug, Clone)]
pub struct Connection(Rc<Shared>);

#[derive(Debug)]
struct Shared {
    tcp: RefCell<TcpStream>,
    /// The dispatcher's last `poll_write` was refused (the socket is full): it holds bytes
    /// that must go out before anything else. Cleared when it flushes, which it does only
    /// once it has written everything it holds.
    blocked: Cell<bool>,
    /// Bytes written by [`Connection::write_now`] not yet counted in the access log.
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

    /// Runs `f` with the socket (to read or set its options).
    pub fn with_socket<R>(&self, f: impl FnOnce(&TcpStream) -> R) -> R {
        f(&self.0.tcp.borrow())
    }

    /// Writes `bytes` now, without waiting, if nothing the dispatcher holds must go first:
    /// `Some(n)` for the bytes the socket took (0 when it is full), `None` when the dispatcher
    /// holds unwritten bytes or the connection failed (the dispatcher will find out itself).
    ///
    /// Call it only while the response's body is waiting for its next bytes: then the
    /// dispatcher buffered everything the body gave it, and `blocked` says whether it got it
    /// all out.
    #[must_use]
    pub fn write_now(&self, bytes: &[u8]) -> Option<usize> {
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

    /// The bytes [`Connection::write_now`] wrote since the last call (for the access log: a
    /// stream written directly is the connection's last response).
    #[must_use]
    pub fn take_direct_bytes(&self) -> u64 {
        self.0.direct_bytes.take()
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
