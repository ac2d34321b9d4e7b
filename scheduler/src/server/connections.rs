//! Accepting connections, and bounding what a client can hold: how many connections are
//! served at once, how long a request's head may take and its body may stall, and how a dead
//! HTTP/2 peer is noticed. `ConnectionOptions` holds the limits.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::Router;
use axum::serve::{Listener, ListenerExt};
use hyper::body::{Body, Bytes, Frame, Incoming, SizeHint};
use hyper::service::{Service, service_fn};
use hyper::{Request, Version};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::{Instant, Sleep};

use crate::auth::Peer;
use crate::service::ConnectionOptions;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Serves `router` on `listener` (over TLS with `tls`) until `shutdown` completes; then stops
/// accepting, lets in-flight calls finish for up to `drain_timeout`, and closes the
/// connections left.
pub(super) async fn serve(
    listener: TcpListener,
    router: Router,
    options: ConnectionOptions,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
    drain_timeout: Duration,
) {
    // Answers are small HTTP/2 frames: with Nagle's algorithm on, each would wait for the
    // client's delayed ACK (about 40 ms) before leaving.
    let mut listener = listener.tap_io(|socket| {
        if let Err(error) = socket.set_nodelay(true) {
            tracing::warn!(%error, "cannot set TCP_NODELAY on an accepted connection");
        }
    });
    let builder = Arc::new(builder(&options));
    let router = TowerToHyperService::new(router);
    let body_stall_timeout = options.body_stall_timeout;
    let slots = Arc::new(Semaphore::new(options.max_connections));
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        // At the cap, new connections wait in the listen backlog, unanswered, until one
        // closes: a burst of clients is served late rather than refused.
        let slot = tokio::select! {
            () = &mut shutdown => break,
            slot = slots.clone().acquire_owned() => slot,
        };
        let Ok(slot) = slot else { break };
        let (socket, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        // Ended connections are reaped as new ones come, so the set holds the live ones.
        while connections.try_join_next().is_some() {}
        let timeout = options.header_read_timeout;
        let tls = tls.clone();
        let watcher = graceful.watcher();
        let (builder, router) = (builder.clone(), router.clone());
        let service = service_fn(move |mut request: Request<Incoming>| {
            request.extensions_mut().insert(Peer(peer));
            // An HTTP/1 body holds its whole connection. Over HTTP/2 a body is one stream
            // among many on a connection that keep-alive PINGs watch, and gRPC's streaming
            // calls (a worker's reports) may pause as long as they like.
            let limit = (request.version() < Version::HTTP_2).then_some(body_stall_timeout);
            router.call(request.map(|body| StallBounded::new(body, limit)))
        });
        connections.spawn(async move {
            let served = match tls {
                None => {
                    let socket = TokioIo::new(DetectionBounded::new(socket, timeout));
                    watcher.watch(builder.serve_connection(socket, service)).await
                }
                // The handshake, like a request head, must come within the timeout.
                Some(acceptor) => {
                    match tokio::time::timeout(timeout, acceptor.accept(socket)).await {
                        Ok(Ok(stream)) => {
                            let stream = TokioIo::new(DetectionBounded::new(stream, timeout));
                            watcher.watch(builder.serve_connection(stream, service)).await
                        }
                        Ok(Err(error)) => {
                            tracing::debug!(%peer, %error, "refused a connection that is not TLS");
                            Ok(())
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "a TLS handshake took too long");
                            Ok(())
                        }
                    }
                }
            };
            if let Err(error) = served {
                tracing::debug!(%error, "connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    if tokio::time::timeout(drain_timeout, graceful.shutdown()).await.is_err() {
        tracing::warn!(timeout = ?drain_timeout, "in-flight calls did not finish in time; closing them");
    }
    connections.shutdown().await;
}

/// HTTP/1 with hyper's header read timeout (which, in this hyper, also runs while a kept-alive
/// connection waits for its next request), HTTP/2 with keep-alive PINGs.
fn builder(options: &ConnectionOptions) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(options.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(options.keep_alive_interval)
        .keep_alive_timeout(options.keep_alive_timeout);
    builder
}

/// HTTP/2's connection preface: a connection is HTTP/2 if it starts with it.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// An accepted socket whose first bytes, those that tell HTTP/1 from HTTP/2, must arrive
/// within the header read timeout: hyper-util waits for them with no timer, and hyper's own
/// timers start only once it has them.
struct DetectionBounded<S> {
    stream: S,
    /// Until the protocol is known: when the client runs out of time, and how many bytes of
    /// HTTP/2's preface it has sent.
    detecting: Option<(Pin<Box<Sleep>>, usize)>,
}

impl<S> DetectionBounded<S> {
    fn new(stream: S, timeout: Duration) -> DetectionBounded<S> {
        DetectionBounded { stream, detecting: Some((Box::pin(tokio::time::sleep(timeout)), 0)) }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for DetectionBounded<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        let result = Pin::new(&mut this.stream).poll_read(cx, buf);
        let Some((deadline, preface_sent)) = &mut this.detecting else { return result };
        match result {
            Poll::Ready(Ok(())) => {
                // hyper-util's test: HTTP/2 while the bytes follow its preface, decided at
                // the preface's end, at the first byte that differs, or at the end of input.
                let read = &buf.filled()[before..];
                let rest = &H2_PREFACE[*preface_sent..];
                if !read.is_empty() && read.len() < rest.len() && rest.starts_with(read) {
                    *preface_sent += read.len();
                } else {
                    this.detecting = None;
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending if deadline.as_mut().poll(cx).is_ready() => Poll::Ready(Err(
                io::Error::new(io::ErrorKind::TimedOut, "the client sent no request in time"),
            )),
            other => other,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for DetectionBounded<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// A request body that fails once its client has sent nothing for `limit` while the handler
/// waited for it. Dropping the failed body closes an HTTP/1 connection after its answer.
struct StallBounded {
    body: Incoming,
    /// `None`: the body may pause as long as it likes.
    limit: Option<Duration>,
    /// When the handler, waiting for bytes since the last frame, gives up; made on the first
    /// wait, so a body that is never awaited costs no timer.
    deadline: Option<Pin<Box<Sleep>>>,
    waiting: bool,
}

impl StallBounded {
    fn new(body: Incoming, limit: Option<Duration>) -> StallBounded {
        StallBounded { body, limit, deadline: None, waiting: false }
    }
}

impl Body for StallBounded {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.body).poll_frame(cx) {
            this.waiting = false;
            return Poll::Ready(frame.map(|frame| frame.map_err(BoxError::from)));
        }
        let Some(limit) = this.limit else { return Poll::Pending };
        let deadline = this.deadline.get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        // Only the time spent waiting counts: a handler that is slow to ask for the next
        // frame (writing the last one to disk) is not the client's stall.
        if !this.waiting {
            this.waiting = true;
            deadline.as_mut().reset(Instant::now() + limit);
        }
        ready!(deadline.as_mut().poll(cx));
        let stalled = format!("no bytes of the request body arrived for {limit:?}");
        Poll::Ready(Some(Err(io::Error::new(io::ErrorKind::TimedOut, stalled).into())))
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
