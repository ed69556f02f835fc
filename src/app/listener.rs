//! The accept loop. Each open connection holds a permit (beyond the cap a
//! new connection is closed at once, so the process keeps file descriptors
//! for its stores and a fresh client is refused rather than left hanging);
//! when the process is out of file descriptors or memory, accepting backs
//! off instead of spinning; a connection that sends nothing is closed.
//! With TLS, the handshake runs when the connection is first read or
//! written, on the connection's own task, so a slow or silent client never
//! holds up the accept loop; it must end within the handshake timeout.
//!
//! The gRPC port feeds [`Incoming`] to tonic; the admin port serves it
//! with hyper ([`serve_http`]), under its own, smaller cap
//! ([`ADMIN_MAX_CONNECTIONS`]): the same limits on both ports.

use crate::throttle::LogThrottle;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use tokio_stream::Stream;
use tonic::transport::server::{Connected, TcpConnectInfo};

/// Connections at most when `server.max_connections` is not set and the
/// open-file limit is high.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4_096;
/// Connections at most on the admin port: scrapers, probes, the status
/// page and the operators' tools need a handful; the rest of the process's
/// files stay for the service.
pub const ADMIN_MAX_CONNECTIONS: usize = 256;
/// First and longest pause after an accept error.
const BACKOFF_MIN: Duration = Duration::from_millis(5);
const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// Connections refused in one poll before yielding to other tasks.
const REFUSALS_PER_POLL: usize = 64;

static REFUSED: LogThrottle = LogThrottle::new(Duration::from_secs(10));
static ACCEPT_FAILED: LogThrottle = LogThrottle::new(Duration::from_secs(10));
static IDLE_CLOSED: LogThrottle = LogThrottle::new(Duration::from_secs(60));

/// How long a connection may stay silent.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    /// Until its first bytes.
    pub handshake: Duration,
    /// Between bytes afterwards.
    pub idle: Duration,
}

/// The connection cap: the configured one, else derived from the open-file
/// limit (an eighth of it, at least 64, stays free for files and stores).
pub fn connection_cap(configured: Option<u32>) -> usize {
    match configured {
        Some(n) => n as usize,
        None => cap_for_file_limit(open_file_limit()),
    }
}

/// [`connection_cap`] for a soft open-file limit (`None`: unlimited or unknown).
pub fn cap_for_file_limit(limit: Option<u64>) -> usize {
    match limit {
        None => DEFAULT_MAX_CONNECTIONS,
        Some(n) => {
            let free = n.saturating_sub((n / 8).max(64));
            usize::try_from(free)
                .unwrap_or(usize::MAX)
                .clamp(1, DEFAULT_MAX_CONNECTIONS)
        }
    }
}

/// The soft RLIMIT_NOFILE of this process, from `/proc/self/limits`.
pub fn open_file_limit() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Accepted connections, each with its permit; feed it to tonic's
/// `serve_with_incoming_shutdown`. Dropping it closes the listening socket.
pub struct Incoming {
    listener: TcpListener,
    permits: Arc<Semaphore>,
    cap: usize,
    timeouts: Timeouts,
    backoff: Option<Pin<Box<Sleep>>>,
    delay: Duration,
    tls: Option<tokio_rustls::TlsAcceptor>,
    /// Which port this is, in metrics and logs: `grpc` or `admin`.
    port: &'static str,
}

impl Incoming {
    pub fn new(listener: TcpListener, cap: usize, timeouts: Timeouts) -> Incoming {
        Incoming {
            listener,
            permits: Arc::new(Semaphore::new(cap)),
            cap,
            timeouts,
            backoff: None,
            delay: BACKOFF_MIN,
            tls: None,
            port: "grpc",
        }
    }

    /// The port's name in metrics and logs (default `grpc`).
    pub fn named(mut self, port: &'static str) -> Incoming {
        self.port = port;
        self
    }

    /// Every connection speaks TLS through `acceptor` (None: plaintext).
    pub fn with_tls(mut self, acceptor: Option<tokio_rustls::TlsAcceptor>) -> Incoming {
        self.tls = acceptor;
        self
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.cap - self.permits.available_permits()
    }
}

/// Errors of one connection (the next accept may well succeed), as opposed
/// to the process being out of file descriptors, buffers or memory.
fn one_connection_only(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}

impl Stream for Incoming {
    type Item = Result<Conn, io::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let mut refused = 0;
        loop {
            if let Some(sleep) = this.backoff.as_mut() {
                if sleep.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                this.backoff = None;
            }
            let (stream, _peer) = match this.listener.poll_accept(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(accepted)) => accepted,
                Poll::Ready(Err(e)) if one_connection_only(&e) => {
                    tracing::debug!(error = %e, "accept failed for one connection");
                    continue;
                }
                Poll::Ready(Err(e)) => {
                    if let Some(count) = ACCEPT_FAILED.hit() {
                        tracing::warn!(count, error = %e, backoff_ms = this.delay.as_millis() as u64, open = this.open(), "cannot accept connections, backing off");
                    }
                    this.backoff = Some(Box::pin(tokio::time::sleep(this.delay)));
                    this.delay = (this.delay * 2).min(BACKOFF_MAX);
                    continue;
                }
            };
            this.delay = BACKOFF_MIN;
            match this.permits.clone().try_acquire_owned() {
                Ok(permit) => {
                    let _ = stream.set_nodelay(true);
                    let info = stream.connect_info();
                    let timed = Timed::new(stream, permit, this.timeouts);
                    let io = match &this.tls {
                        None => Io::Plain(timed),
                        Some(acceptor) => Io::Handshake(
                            Box::new(acceptor.accept(timed)),
                            Box::pin(tokio::time::sleep(this.timeouts.handshake)),
                        ),
                    };
                    return Poll::Ready(Some(Ok(Conn {
                        io,
                        info,
                        port: this.port,
                    })));
                }
                Err(_) => {
                    drop(stream);
                    metrics::counter!("nudge_connections_refused_total", "port" => this.port)
                        .increment(1);
                    if let Some(count) = REFUSED.hit() {
                        tracing::warn!(
                            count,
                            port = this.port,
                            max_connections = this.cap,
                            "connection refused: at the connection cap"
                        );
                    }
                    refused += 1;
                    if refused >= REFUSALS_PER_POLL {
                        cx.waker().wake_by_ref();
                        return Poll::Pending;
                    }
                }
            }
        }
    }
}

/// An accepted connection, plaintext or TLS, for tonic or hyper.
pub struct Conn {
    io: Io,
    info: TcpConnectInfo,
    port: &'static str,
}

enum Io {
    Plain(Timed),
    /// The TLS handshake, and the moment it must have ended by.
    Handshake(Box<tokio_rustls::Accept<Timed>>, Pin<Box<Sleep>>),
    Tls(Box<tokio_rustls::server::TlsStream<Timed>>),
    Failed,
}

impl Conn {
    /// Drives the TLS handshake, if one is under way, to its end.
    fn poll_established(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Io::Handshake(accept, deadline) = &mut self.io else {
            return match self.io {
                Io::Failed => Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::NotConnected,
                    "the tls handshake failed",
                ))),
                _ => Poll::Ready(Ok(())),
            };
        };
        let failed = match Pin::new(accept.as_mut()).poll(cx) {
            Poll::Ready(Ok(tls)) => {
                self.io = Io::Tls(Box::new(tls));
                return Poll::Ready(Ok(()));
            }
            Poll::Ready(Err(e)) => e,
            Poll::Pending => {
                if deadline.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no tls handshake within the handshake timeout",
                )
            }
        };
        crate::app::tls::handshake_failed(self.port, &failed);
        self.io = Io::Failed;
        Poll::Ready(Err(failed))
    }
}

impl Connected for Conn {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.info.clone()
    }
}

macro_rules! established {
    ($this:ident, $cx:ident, $plain:ident => $on_plain:expr, $tls:ident => $on_tls:expr) => {{
        if let Poll::Ready(Err(e)) = $this.poll_established($cx) {
            return Poll::Ready(Err(e));
        }
        match &mut $this.io {
            Io::Plain($plain) => $on_plain,
            Io::Tls($tls) => $on_tls,
            Io::Handshake(..) | Io::Failed => Poll::Pending,
        }
    }};
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        established!(this, cx,
            s => Pin::new(s).poll_read(cx, buf),
            s => Pin::new(s.as_mut()).poll_read(cx, buf))
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        established!(this, cx,
            s => Pin::new(s).poll_write(cx, buf),
            s => Pin::new(s.as_mut()).poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        established!(this, cx,
            s => Pin::new(s).poll_write_vectored(cx, bufs),
            s => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        match &self.io {
            Io::Plain(s) => s.is_write_vectored(),
            Io::Tls(s) => s.is_write_vectored(),
            _ => false,
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        established!(this, cx,
            s => Pin::new(s).poll_flush(cx),
            s => Pin::new(s.as_mut()).poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match &mut this.io {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            // Nothing was established: dropping closes the socket.
            Io::Handshake(..) | Io::Failed => Poll::Ready(Ok(())),
        }
    }
}

/// An accepted TCP connection: its permit is released when it closes; reading
/// fails with `TimedOut` once nothing arrived for the handshake timeout (no
/// byte yet) or the idle timeout (since the last byte).
pub struct Timed {
    stream: TcpStream,
    _permit: OwnedSemaphorePermit,
    timeouts: Timeouts,
    started: bool,
    last_read: Instant,
    timer: Pin<Box<Sleep>>,
}

impl Timed {
    fn new(stream: TcpStream, permit: OwnedSemaphorePermit, timeouts: Timeouts) -> Timed {
        let now = Instant::now();
        Timed {
            stream,
            _permit: permit,
            timeouts,
            started: false,
            last_read: now,
            timer: Box::pin(tokio::time::sleep_until(now + timeouts.handshake)),
        }
    }

    fn silence_allowed(&self) -> Duration {
        if self.started {
            self.timeouts.idle
        } else {
            self.timeouts.handshake
        }
    }
}

impl AsyncRead for Timed {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.stream).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.started = true;
                    // The timer is moved only when it fires: a read is cheap.
                    this.last_read = Instant::now();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => loop {
                if this.timer.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                let due = this.last_read + this.silence_allowed();
                if due > Instant::now() {
                    this.timer.as_mut().reset(due);
                    continue;
                }
                if let Some(count) = IDLE_CLOSED.hit() {
                    tracing::info!(
                        count,
                        handshake = !this.started,
                        "closed silent connections"
                    );
                }
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the connection sent nothing for too long",
                )));
            },
        }
    }
}

impl AsyncWrite for Timed {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// Serves `router` (the admin routes) over the connections of `incoming`
/// until `shutdown` resolves: HTTP/1.1 or HTTP/2, as the client speaks (or
/// as ALPN chose over TLS). On shutdown the listening socket is closed and
/// open connections finish their requests for up to
/// [`crate::app::DRAIN_GRACE`].
pub async fn serve_http(
    mut incoming: Incoming,
    router: axum::Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    use tokio_stream::StreamExt;
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let conn = tokio::select! {
            next = incoming.next() => match next {
                Some(Ok(conn)) => conn,
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "accept failed for one connection");
                    continue;
                }
                None => break,
            },
            _ = &mut shutdown => break,
        };
        let service = hyper_util::service::TowerToHyperService::new(router.clone());
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let builder =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
            let conn =
                builder.serve_connection_with_upgrades(hyper_util::rt::TokioIo::new(conn), service);
            if let Err(e) = watcher.watch(conn.into_owned()).await {
                tracing::debug!(error = %e, "admin connection ended with an error");
            }
        });
    }
    drop(incoming);
    if tokio::time::timeout(crate::app::DRAIN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            grace_ms = crate::app::DRAIN_GRACE.as_millis() as u64,
            "admin drain deadline passed, closing remaining connections"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_leaves_file_descriptors_for_the_process() {
        assert_eq!(cap_for_file_limit(None), DEFAULT_MAX_CONNECTIONS);
        assert_eq!(cap_for_file_limit(Some(1_024)), 896);
        assert_eq!(cap_for_file_limit(Some(512)), 448);
        assert_eq!(cap_for_file_limit(Some(20_000)), DEFAULT_MAX_CONNECTIONS);
        assert_eq!(cap_for_file_limit(Some(10)), 1);
        assert_eq!(connection_cap(Some(7)), 7);
    }
}
