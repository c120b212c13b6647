//! Moving bytes both ways between client and backend, with half-close and an idle
//! timeout.
//!
//! - TLS: [`copy_bidirectional`] through a per-thread scratch buffer.
//! - Plain TCP: [`forward_tcp`]. Each direction starts with the same copy; once it has
//!   moved [`SPLICE_AFTER`] bytes (a bulk transfer, not a request/response exchange)
//!   it switches to splice(2) socket → pipe → socket, which never copies the bytes
//!   through userspace. Short connections never pay for creating pipes; bulk ones
//!   take about half the CPU per byte (measured: docs/benchmarks.md, `bench tls`).
//!
//! In both, EOF from one side becomes `shutdown(SHUT_WR)` on the other while the other
//! direction keeps flowing, so a client that closes its write side still receives the
//! rest of the response. The direction that ends last skips the call: both sockets
//! were read to EOF, so the close that follows sends the FIN (after a TLS
//! close_notify, see [`WriteEnd`]). On plain TCP a reset from one side becomes a reset of the
//! other (SO_LINGER 0 before close), so an abort is never passed on as a complete
//! stream; TLS listeners end without close_notify for the same reason.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::time::Instant;

use crate::metrics::{ByteCounters, Tally};

/// Why forwarding ended.
#[derive(Debug)]
pub enum End {
    /// Both directions reached EOF.
    Closed,
    /// Nothing moved for the idle timeout.
    Idle,
    /// A socket error (reset, ...).
    Error(io::Error),
    /// The operator closed the backend's connections (`proxy backend set ... --close`).
    Cut,
}

/// The time of the last byte moved, in ms since `start`.
pub struct Activity {
    start: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    pub fn new() -> Activity {
        Activity {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }

    pub fn touch(&self) {
        let ms = self.start.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// Resolves once nothing has moved for `idle`.
    pub async fn idle(&self, idle: Duration) {
        loop {
            let last = self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
            let deadline = last + idle;
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    }
}

impl Default for Activity {
    fn default() -> Activity {
        Activity::new()
    }
}

/// Copies both ways through userspace until both sides closed, an error, or `idle`
/// without traffic. `up` counts client→backend bytes, `down` the other way.
///
/// Reads go into one per-thread scratch buffer and are written on at once; only
/// what the destination does not take right away is kept, per connection, until it
/// drains. An idle connection therefore holds no copy buffer at all.
pub async fn copy_bidirectional<C, B>(
    mut client: C,
    mut backend: B,
    bytes: &ByteCounters,
    idle: Duration,
) -> End
where
    C: AsyncRead + WriteEnd,
    B: AsyncRead + WriteEnd,
{
    let activity = Activity::new();
    let mut upstream = Direction::default();
    let mut downstream = Direction::default();
    let both = std::future::poll_fn(|cx| {
        let last = downstream.is_done();
        let a = upstream.poll(cx, &mut client, &mut backend, &bytes.up, &activity, last)?;
        let last = upstream.is_done();
        let b = downstream.poll(cx, &mut backend, &mut client, &bytes.down, &activity, last)?;
        match (a, b) {
            (Poll::Ready(_), Poll::Ready(_)) => Poll::Ready(Ok::<(), io::Error>(())),
            _ => Poll::Pending,
        }
    });
    tokio::select! {
        r = both => match r {
            Ok(()) => End::Closed,
            Err(e) => End::Error(e),
        },
        _ = activity.idle(idle) => End::Idle,
    }
}

/// How a destination's write side ends once its source reached EOF.
pub trait WriteEnd: AsyncWrite + Unpin {
    /// For the direction that ends last: the other one ended too, so both sockets
    /// were read to EOF and the close that follows sends the FIN. Writes only what
    /// must come before it and saves the shutdown(2) call.
    fn poll_end_last(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
}

impl WriteEnd for TcpStream {
    fn poll_end_last(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl WriteEnd for WriteHalf<'_> {
    fn poll_end_last(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WriteEnd for tokio_rustls::server::TlsStream<S> {
    /// The close_notify (rustls sends it once however often this is polled), flushed.
    fn poll_end_last(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().1.send_close_notify();
        Pin::new(self).poll_flush(cx)
    }
}

/// TLS to a backend (`[pool.tls]`): the same as the client side.
impl<S: AsyncRead + AsyncWrite + Unpin> WriteEnd for tokio_rustls::client::TlsStream<S> {
    fn poll_end_last(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().1.send_close_notify();
        Pin::new(self).poll_flush(cx)
    }
}

/// A boxed end (a TLS stream kept off the connection task's stack).
impl<T: WriteEnd + ?Sized> WriteEnd for Box<T> {
    fn poll_end_last(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        (**self).poll_end_last(cx)
    }
}

/// Scratch buffer per thread for [`copy_bidirectional`] (four TLS records).
const SCRATCH: usize = 64 * 1024;

thread_local! {
    static SCRATCH_BUF: std::cell::RefCell<Box<[u8]>> =
        std::cell::RefCell::new(vec![0u8; SCRATCH].into_boxed_slice());
}

#[derive(Default)]
struct Direction {
    /// Bytes read but not yet accepted by the destination.
    pending: Vec<u8>,
    written: usize,
    need_flush: bool,
    state: DirState,
    /// Stop copying (to splice instead) once this many bytes moved.
    switch_after: Option<u64>,
    moved: u64,
    /// On EOF, return [`Outcome::Eof`] and leave the half-close to the caller.
    caller_shuts_down: bool,
}

/// How a direction's copy ended.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// EOF forwarded (the destination is shut down for writing).
    Done,
    /// `switch_after` reached with nothing pending: continue with splice.
    Switch,
    /// EOF from the source with everything written (`caller_shuts_down`).
    Eof,
}

#[derive(Default, PartialEq, Eq)]
enum DirState {
    #[default]
    Copying,
    ShuttingDown,
    Done,
}

impl Direction {
    fn is_done(&self) -> bool {
        self.state == DirState::Done
    }

    /// `last`: the other direction has ended (see [`WriteEnd::poll_end_last`]).
    fn poll<R, W>(
        &mut self,
        cx: &mut Context<'_>,
        src: &mut R,
        dst: &mut W,
        counter: &Tally,
        activity: &Activity,
        last: bool,
    ) -> Poll<io::Result<Outcome>>
    where
        R: AsyncRead + Unpin,
        W: WriteEnd,
    {
        loop {
            match self.state {
                DirState::Done => return Poll::Ready(Ok(Outcome::Done)),
                DirState::ShuttingDown => {
                    // EOF from `src`: half-close `dst` (FIN, or close_notify + FIN).
                    match last {
                        true => ready!(dst.poll_end_last(cx))?,
                        false => ready!(Pin::new(&mut *dst).poll_shutdown(cx))?,
                    }
                    self.state = DirState::Done;
                    continue;
                }
                DirState::Copying => {}
            }
            while self.written < self.pending.len() {
                let n = ready!(Pin::new(&mut *dst).poll_write(cx, &self.pending[self.written..]))?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                self.written += n;
                self.need_flush = true;
            }
            if !self.pending.is_empty() {
                self.pending = Vec::new();
                self.written = 0;
            }
            if self.switch_after.is_some_and(|limit| self.moved >= limit) {
                ready!(Pin::new(&mut *dst).poll_flush(cx))?;
                return Poll::Ready(Ok(Outcome::Switch));
            }
            let step = SCRATCH_BUF.with_borrow_mut(|scratch| {
                let mut buf = ReadBuf::new(scratch);
                match Pin::new(&mut *src).poll_read(cx, &mut buf) {
                    Poll::Pending => return Poll::Pending,
                    // A TLS peer closing without close_notify: treat as EOF.
                    Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => {
                        return Poll::Ready(Ok(true));
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Ready(Ok(())) => {}
                }
                let data = buf.filled();
                if data.is_empty() {
                    return Poll::Ready(Ok(true));
                }
                counter.inc_by(data.len() as u64);
                self.moved += data.len() as u64;
                activity.touch();
                let mut off = 0;
                while off < data.len() {
                    match Pin::new(&mut *dst).poll_write(cx, &data[off..]) {
                        Poll::Ready(Ok(0)) => {
                            return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                        }
                        Poll::Ready(Ok(n)) => {
                            off += n;
                            self.need_flush = true;
                        }
                        Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                        Poll::Pending => break,
                    }
                }
                self.pending.extend_from_slice(&data[off..]);
                Poll::Ready(Ok(false))
            });
            match step {
                Poll::Pending => {
                    if self.need_flush {
                        ready!(Pin::new(&mut *dst).poll_flush(cx))?;
                        self.need_flush = false;
                    }
                    return Poll::Pending;
                }
                Poll::Ready(Ok(eof)) => {
                    if eof && self.caller_shuts_down {
                        if self.need_flush {
                            ready!(Pin::new(&mut *dst).poll_flush(cx))?;
                            self.need_flush = false;
                        }
                        self.state = DirState::Done;
                        return Poll::Ready(Ok(Outcome::Eof));
                    }
                    if eof {
                        self.state = DirState::ShuttingDown;
                    }
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            }
        }
    }
}

/// Bytes a plain TCP direction copies before it switches to splice(2).
pub const SPLICE_AFTER: u64 = 128 * 1024;

/// Pipe capacity requested per direction (the kernel default is 64 KiB).
const PIPE_SIZE: usize = 256 * 1024;

/// Forwards plain TCP both ways until both sides closed, an error, or `idle` without
/// traffic. With `splice`, bulk directions switch to splice(2) (see the module doc).
pub async fn forward_tcp(
    client: &mut TcpStream,
    backend: &mut TcpStream,
    bytes: &ByteCounters,
    idle: Duration,
    splice: bool,
) -> End {
    let activity = Activity::new();
    let one_done = AtomicBool::new(false);
    let (client_r, client_w) = client.split();
    let (backend_r, backend_w) = backend.split();
    let up = TcpDirection {
        counter: &bytes.up,
        spliced: &bytes.spliced,
        activity: &activity,
        splice,
        one_done: &one_done,
    };
    let down = TcpDirection {
        counter: &bytes.down,
        ..up
    };
    let both = async {
        tokio::try_join!(
            up.forward(client_r, backend_w),
            down.forward(backend_r, client_w)
        )
    };
    let end = tokio::select! {
        r = both => match r {
            Ok(_) => End::Closed,
            Err(e) => End::Error(e),
        },
        _ = activity.idle(idle) => End::Idle,
    };
    if let End::Error(e) = &end
        && is_abort(e)
    {
        // One side reset: reset the other too, so it cannot take the cut stream
        // for a complete one (an orderly FIN would say "this is all").
        for socket in [&*client, &*backend] {
            let _ = socket2::SockRef::from(socket).set_linger(Some(Duration::ZERO));
        }
    }
    end
}

/// Errors that mean a peer aborted the connection (RST) rather than closed it.
fn is_abort(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
    )
}

/// One direction of a plain TCP connection.
#[derive(Clone, Copy)]
struct TcpDirection<'a> {
    counter: &'a Tally,
    spliced: &'a Counter,
    activity: &'a Activity,
    splice: bool,
    /// Set by the first direction to reach EOF.
    one_done: &'a AtomicBool,
}

impl TcpDirection<'_> {
    async fn forward(self, mut src: ReadHalf<'_>, mut dst: WriteHalf<'_>) -> io::Result<()> {
        let mut copy = Direction {
            switch_after: self.splice.then_some(SPLICE_AFTER),
            caller_shuts_down: true,
            ..Direction::default()
        };
        let (counter, activity) = (self.counter, self.activity);
        let outcome =
            std::future::poll_fn(|cx| copy.poll(cx, &mut src, &mut dst, counter, activity, false))
                .await?;
        if outcome == Outcome::Switch {
            let pipe = Pipe::new()?;
            let counters = (counter, self.spliced);
            splice_one_way(src.as_ref(), dst.as_ref(), &pipe, counters, activity).await?;
        }
        self.half_close(dst.as_ref())
    }

    /// EOF from this direction's source: half-close the destination, so it sees the
    /// end while the other direction still flows. When the other direction already
    /// ended, the close that follows sends the FIN and the shutdown call is saved.
    fn half_close(&self, dst: &TcpStream) -> io::Result<()> {
        if self.one_done.swap(true, Ordering::Relaxed) {
            return Ok(());
        }
        // ENOTCONN means the peer is gone already.
        match socket2::SockRef::from(dst).shutdown(std::net::Shutdown::Write) {
            Err(e) if e.kind() != io::ErrorKind::NotConnected => Err(e),
            _ => Ok(()),
        }
    }
}

/// One direction: `src` → pipe → `dst` until EOF from `src`.
async fn splice_one_way(
    src: &TcpStream,
    dst: &TcpStream,
    pipe: &Pipe,
    (counter, spliced): (&Tally, &Counter),
    activity: &Activity,
) -> io::Result<()> {
    loop {
        // The pipe is empty here, so EAGAIN can only mean "socket has no data".
        let mut in_pipe = loop {
            src.readable().await?;
            match src.try_io(Interest::READABLE, || {
                splice(src.as_raw_fd(), pipe.write.as_raw_fd(), pipe.size)
            }) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        };
        if in_pipe == 0 {
            return Ok(());
        }
        counter.inc_by(in_pipe as u64);
        spliced.inc_by(in_pipe as u64);
        activity.touch();
        while in_pipe > 0 {
            dst.writable().await?;
            match dst.try_io(Interest::WRITABLE, || {
                splice(pipe.read.as_raw_fd(), dst.as_raw_fd(), in_pipe)
            }) {
                Ok(n) => in_pipe -= n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
    // SAFETY: plain syscall on descriptors we own for the call's duration; null
    // offsets mean "use and advance the file position" (sockets and pipes have none).
    let n = unsafe {
        libc::splice(
            from,
            std::ptr::null_mut(),
            to,
            std::ptr::null_mut(),
            len,
            libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
    size: usize,
}

impl Pipe {
    fn new() -> io::Result<Pipe> {
        let mut fds = [0 as RawFd; 2];
        // SAFETY: pipe2 writes two descriptors into the array on success.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: both descriptors were just created and are owned by nobody else.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // A bigger pipe moves more per syscall; keep the default if refused.
        // SAFETY: fcntl on our own descriptor.
        let size = unsafe {
            libc::fcntl(
                write.as_raw_fd(),
                libc::F_SETPIPE_SZ,
                PIPE_SIZE as libc::c_int,
            )
        };
        let size = if size > 0 { size as usize } else { 64 * 1024 };
        Ok(Pipe { read, write, size })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// client ⇄ [a ⇄ proxy ⇄ b] ⇄ server, on loopback.
    async fn pairs() -> ((TcpStream, TcpStream), (TcpStream, TcpStream)) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let client = TcpStream::connect(addr).await.unwrap();
        let (proxy_client_side, _) = l.accept().await.unwrap();
        let proxy_backend_side = TcpStream::connect(addr).await.unwrap();
        let (server, _) = l.accept().await.unwrap();
        ((client, proxy_client_side), (proxy_backend_side, server))
    }

    #[derive(Clone, Copy)]
    enum Mode {
        TcpSplice,
        TcpCopy,
        Generic,
    }

    /// Returns the bytes moved by splice.
    async fn half_close_roundtrip(mode: Mode) -> u64 {
        let ((mut client, mut pc), (mut pb, mut server)) = pairs().await;
        let bytes = counters();
        let in_task = bytes.clone();
        let proxy = tokio::spawn(async move {
            let idle = Duration::from_secs(5);
            match mode {
                Mode::TcpSplice => forward_tcp(&mut pc, &mut pb, &in_task, idle, true).await,
                Mode::TcpCopy => forward_tcp(&mut pc, &mut pb, &in_task, idle, false).await,
                Mode::Generic => copy_bidirectional(pc, pb, &in_task, idle).await,
            }
        });
        client.write_all(b"request").await.unwrap();
        client.shutdown().await.unwrap();
        let mut got = Vec::new();
        server.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"request", "the server sees the client's EOF");
        // The server answers after the client's half-close.
        let response = vec![7u8; 1 << 20];
        server.write_all(&response).await.unwrap();
        drop(server);
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.unwrap();
        assert_eq!(got.len(), response.len());
        assert!(matches!(proxy.await.unwrap(), End::Closed));
        assert_eq!(bytes.up.get(), 7);
        assert_eq!(bytes.down.get(), 1 << 20);
        bytes.spliced.get()
    }

    fn counters() -> ByteCounters {
        ByteCounters {
            up: Tally::default(),
            down: Tally::default(),
            spliced: Counter::default(),
        }
    }

    #[tokio::test]
    async fn splice_propagates_half_close() {
        let spliced = half_close_roundtrip(Mode::TcpSplice).await;
        // The 1 MiB response went through splice after the first SPLICE_AFTER bytes
        // (the copy may have moved a little more before switching).
        assert!(
            spliced >= (1 << 20) - SPLICE_AFTER - SCRATCH as u64,
            "{spliced}"
        );
        assert!(spliced <= 1 << 20, "{spliced}");
    }

    #[tokio::test]
    async fn tcp_copy_propagates_half_close() {
        assert_eq!(half_close_roundtrip(Mode::TcpCopy).await, 0);
    }

    #[tokio::test]
    async fn copy_propagates_half_close() {
        assert_eq!(half_close_roundtrip(Mode::Generic).await, 0);
    }

    /// A client that reads slowly makes writes partial: the pending path must keep
    /// every byte, in order.
    #[tokio::test]
    async fn copy_keeps_order_under_backpressure() {
        let ((mut client, pc), (pb, mut server)) = pairs().await;
        let bytes = counters();
        let proxy = tokio::spawn(async move {
            copy_bidirectional(pc, pb, &bytes, Duration::from_secs(5)).await
        });
        let data: Vec<u8> = (0..(8u32 << 20)).map(|i| (i % 253) as u8).collect();
        let sent = data.clone();
        let writer = tokio::spawn(async move {
            server.write_all(&sent).await.unwrap();
            server.shutdown().await.unwrap();
            server
        });
        let mut got = Vec::new();
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = client.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
            if got.len() % (512 * 1024) < n {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        assert!(
            got == data,
            "received {} bytes, out of order or lost",
            got.len()
        );
        drop(writer.await.unwrap());
        client.shutdown().await.unwrap();
        assert!(matches!(proxy.await.unwrap(), End::Closed));
    }

    /// The backend closes first, the client later: the second EOF is passed on by the
    /// close alone (no shutdown call), and the backend still sees it.
    #[tokio::test]
    async fn backend_first_close_reaches_both_ends() {
        for splice in [false, true] {
            let ((mut client, mut pc), (mut pb, mut server)) = pairs().await;
            let proxy = tokio::spawn(async move {
                let idle = Duration::from_secs(5);
                forward_tcp(&mut pc, &mut pb, &counters(), idle, splice).await
            });
            server.write_all(b"banner").await.unwrap();
            server.shutdown().await.unwrap();
            let mut got = Vec::new();
            client.read_to_end(&mut got).await.unwrap();
            assert_eq!(got, b"banner");
            client.write_all(b"bye").await.unwrap();
            client.shutdown().await.unwrap();
            let mut got = Vec::new();
            server.read_to_end(&mut got).await.unwrap();
            assert_eq!(got, b"bye", "splice {splice}");
            assert!(matches!(proxy.await.unwrap(), End::Closed));
        }
    }

    #[tokio::test]
    async fn idle_timeout_ends_forwarding() {
        let ((_client, mut pc), (mut pb, _server)) = pairs().await;
        let idle = Duration::from_millis(200);
        let end = forward_tcp(&mut pc, &mut pb, &counters(), idle, true).await;
        assert!(matches!(end, End::Idle));
    }
}
