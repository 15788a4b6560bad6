//! The HTTP/1.1 server: connections accepted and served by hyper, with the limits on what a
//! request's head may be, and hyper's own answers made FHIR.
//!
//! hyper answers a request it cannot parse itself, before any handler sees it: 400 for a
//! malformed head, 414 for a URL longer than 64 KiB, 431 for a head larger than its buffer. It
//! sends those with no body. [`Answering`] sits between hyper and the socket and replaces such an
//! answer, recognised by its status and its lack of a Content-Type (every answer of the
//! handlers has one), with the same status carrying an OperationOutcome and a request id.

use crate::error::Error;
use axum::body::Body;
use axum::extract::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tower::ServiceExt;

/// How long a client may take to send a request's head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(30);
/// The most bytes of a request head hyper reads (larger heads are answered 431); heads within
/// it but over the limits of [`super::limits`] are answered by the router.
const HEAD_BUFFER: usize = 128 * 1024;

/// Serves `app` on `listener` until `shutdown` completes, then finishes the requests in flight.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: super::frame::App,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let (stop, stopping) = tokio::sync::watch::channel(());
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                // Out of file descriptors, say: wait a moment rather than spin.
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let peer = super::authorize::Peer(peer.ip());
        let service =
            TowerToHyperService::new(app.clone().map_request(move |req: Request<Incoming>| {
                let mut req = req.map(Body::new);
                req.extensions_mut().insert(peer);
                req
            }));
        let mut stopping = stopping.clone();
        tokio::spawn(async move {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(HEAD_TIMEOUT)
                .max_buf_size(HEAD_BUFFER);
            let conn = builder.serve_connection(TokioIo::new(Answering::new(stream)), service);
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => return,
                _ = stopping.changed() => conn.as_mut().graceful_shutdown(),
            }
            let _ = conn.await;
        });
    }
    drop(listener);
    drop(stopping);
    // Every connection finishes its request in flight and closes.
    stop.closed().await;
    Ok(())
}

/// The socket as hyper sees it: its automatic answers replaced (see the module).
struct Answering<S> {
    inner: S,
    /// A replacement answer being written, and how much of it is written.
    pending: Option<(Vec<u8>, usize)>,
}

impl<S> Answering<S> {
    fn new(inner: S) -> Answering<S> {
        Answering {
            inner,
            pending: None,
        }
    }
}

/// The FHIR answer for hyper's automatic answer `head`, if it is one.
fn replacement(head: &[u8]) -> Option<Vec<u8>> {
    let status = head
        .strip_prefix(b"HTTP/1.1 ")
        .or_else(|| head.strip_prefix(b"HTTP/1.0 "))?
        .get(..3)?;
    // Only these statuses can be hyper's own; every other answer goes out untouched, unread.
    if !matches!(status, b"400" | b"414" | b"431") {
        return None;
    }
    let end = head.windows(4).position(|w| w == b"\r\n\r\n")?;
    let lower = head[..end].to_ascii_lowercase();
    if lower.windows(13).any(|w| w == b"content-type:") {
        return None;
    }
    let error = match status {
        b"400" => Error::bad_request(
            crate::fhir::IssueType::Structure,
            "the request is not valid HTTP (its request line or a header is malformed)",
        ),
        b"414" => Error::UriTooLong(super::MAX_URL),
        b"431" => Error::HeadersTooLarge(super::MAX_HEADERS),
        _ => return None,
    };
    let id = uuid::Uuid::new_v4().to_string();
    let mut oo = error.outcome("");
    oo["id"] = serde_json::Value::String(id.clone());
    let body = oo.to_string();
    let status = error.status();
    let mut out = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/fhir+json; charset=utf-8\r\n\
         content-length: {}\r\nx-request-id: {id}\r\nconnection: close\r\n\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body.as_bytes());
    Some(out)
}

impl<S: AsyncWrite + Unpin> Answering<S> {
    /// Writes what remains of the replacement answer.
    fn drive(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some((bytes, at)) = &mut self.pending {
            if *at == bytes.len() {
                self.pending = None;
                break;
            }
            match Pin::new(&mut self.inner).poll_write(cx, &bytes[*at..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => *at += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Answering<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Answering<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.pending.is_none() {
            if let Some(answer) = replacement(buf) {
                // The automatic answer is taken as written; the replacement goes instead.
                self.pending = Some((answer, 0));
                return match self.drive(cx) {
                    Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                    _ => Poll::Ready(Ok(buf.len())),
                };
            }
            return Pin::new(&mut self.inner).poll_write(cx, buf);
        }
        match self.drive(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut self.inner).poll_write(cx, buf),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let first = bufs.iter().find(|b| !b.is_empty());
        if self.pending.is_some() || first.is_some_and(|b| replacement(b).is_some()) {
            // (Rare: an automatic answer, or the rest of its replacement.)
            return match first {
                Some(b) => self.poll_write(cx, b),
                None => Poll::Ready(Ok(0)),
            };
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.drive(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut self.inner).poll_flush(cx),
            other => other,
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.drive(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut self.inner).poll_shutdown(cx),
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::replacement;

    #[test]
    fn only_bodiless_parse_error_answers_are_replaced() {
        let auto = b"HTTP/1.1 414 URI Too Long\r\ncontent-length: 0\r\ndate: x\r\n\r\n";
        let fixed = String::from_utf8(replacement(auto).unwrap()).unwrap();
        assert!(fixed.starts_with("HTTP/1.1 414 URI Too Long\r\n"));
        assert!(fixed.contains("content-type: application/fhir+json"));
        let body = fixed.split("\r\n\r\n").nth(1).unwrap();
        let oo: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(oo["resourceType"], "OperationOutcome");
        assert_eq!(oo["issue"][0]["code"], "too-long");
        assert!(fixed.contains(&format!("x-request-id: {}", oo["id"].as_str().unwrap())));
        // The handlers' own answers, and anything not an answer head, go as they are.
        let own = b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/fhir+json\r\ncontent-length: 9\r\n\r\n";
        assert!(replacement(own).is_none());
        assert!(replacement(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").is_none());
        assert!(replacement(b"{\"resourceType\":\"Patient\"}").is_none());
    }
}
