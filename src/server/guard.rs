//! What an HTTP/1.1 connection answers when hyper, not the router, ends a request: hyper
//! writes a bare status with an empty body for a request it cannot parse (400, 414, 431)
//! and closes a connection whose request head is late without a word. The connection's
//! bytes pass through [`Guarded`], which gives those answers the error body of every other
//! error, and answers 408 to a request head that has begun to arrive and is not complete
//! within [`HEADER_READ_TIMEOUT`](super::HEADER_READ_TIMEOUT).
//!
//! When hyper closes a connection, [`Guarded`] closes its writing side first and then reads
//! and discards what the client still sends, for at most [`LINGER_TIME`] and
//! [`LINGER_BYTES`]: a client refused (413, 503) while still sending its body then reads
//! the answer, where closing with its bytes unread would reset the connection and could
//! destroy the answer in the client's buffers.
//!
//! HTTP/2 connections (from their preface on) pass through untouched: hyper answers their
//! errors with HTTP/2 frames.

use std::{
    io,
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll, ready},
    time::Duration,
};

use axum::{
    body::{Body, Bytes},
    http::StatusCode,
};
use http_body::{Frame, SizeHint};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    time::Sleep,
};

use crate::http::error::ErrorBody;

/// How far into a write to look for the end of a response head.
const MAX_HEAD: usize = 1024;
const H2_PREFACE_START: &[u8; 4] = b"PRI ";
/// Longest a closing connection reads what the client still sends.
const LINGER_TIME: Duration = Duration::from_secs(5);
/// Most bytes a closing connection reads and discards.
const LINGER_BYTES: usize = 64 << 20;

/// Requests of one connection the router started and finished answering: while they are
/// equal, the connection waits for the next request head.
#[derive(Debug, Default)]
pub(super) struct Requests {
    started: AtomicU64,
    finished: AtomicU64,
}

impl Requests {
    pub(super) fn start(&self) {
        self.started.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn finish(&self) {
        self.finished.fetch_add(1, Ordering::Relaxed);
    }

    /// `Some(finished)` while no request is being answered.
    fn idle(&self) -> Option<u64> {
        let finished = self.finished.load(Ordering::Relaxed);
        (self.started.load(Ordering::Relaxed) == finished).then_some(finished)
    }
}

/// Marks its request finished when dropped: hyper drops a response body once it has
/// sent it (or given up on it).
#[derive(Debug)]
pub(super) struct Finished(pub(super) Arc<Requests>);

impl Drop for Finished {
    fn drop(&mut self) {
        self.0.finish();
    }
}

/// A response body that marks its request finished when hyper is done with it.
pub(super) struct TrackedBody {
    pub(super) body: Body,
    pub(super) _finished: Finished,
}

impl http_body::Body for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A connection's stream, watched as described in the module documentation.
pub(super) struct Guarded<I> {
    inner: I,
    requests: Arc<Requests>,
    peer: SocketAddr,
    timeout: Duration,
    /// The first bytes read, until there are four: `PRI ` starts HTTP/2's preface.
    prefix: Vec<u8>,
    h2: bool,
    /// The wait for a request head under way: how many requests were finished when it
    /// began, and whether any byte of the head has arrived.
    waiting: Option<(u64, bool)>,
    /// The wait's deadline (one timer per connection, reset for each wait).
    deadline: Option<Pin<Box<Sleep>>>,
    /// An answer of ours being written, how much of it is written, and what to report
    /// once it is: hyper's write it replaces (its length), or the end of the connection.
    answer: Option<(Vec<u8>, usize, Then)>,
    /// After a 408: the connection is over.
    timed_out: bool,
    /// Closing: the writing side is shut, the deadline of the drain and the bytes drained.
    lingering: Option<(Pin<Box<Sleep>>, usize)>,
}

#[derive(Clone, Copy, Debug)]
enum Then {
    Replaced(usize),
    TimedOut,
}

impl<I> Guarded<I> {
    pub(super) fn new(inner: I, requests: Arc<Requests>, peer: SocketAddr, timeout: Duration) -> Self {
        Self {
            inner,
            requests,
            peer,
            timeout,
            prefix: Vec::with_capacity(4),
            h2: false,
            waiting: None,
            deadline: None,
            answer: None,
            timed_out: false,
            lingering: None,
        }
    }
}

impl<I: AsyncWrite + Unpin> Guarded<I> {
    /// Writes the answer under way; `Ready` once all of it is written.
    fn poll_answer(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Option<Then>>> {
        let Some((bytes, written, then)) = &mut self.answer else { return Poll::Ready(Ok(None)) };
        while *written < bytes.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &bytes[*written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *written += n;
        }
        ready!(Pin::new(&mut self.inner).poll_flush(cx))?;
        let then = *then;
        self.answer = None;
        Poll::Ready(Ok(Some(then)))
    }
}

impl<I: AsyncRead + AsyncWrite + Unpin> AsyncRead for Guarded<I> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.timed_out {
            return Poll::Ready(Err(io::ErrorKind::TimedOut.into()));
        }
        if let Some((.., Then::TimedOut)) = &this.answer {
            ready!(this.poll_answer(cx))?;
            this.timed_out = true;
            return Poll::Ready(Err(io::ErrorKind::TimedOut.into()));
        }
        if this.h2 {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        // A new wait for a request head begins when the connection opens and each time
        // the router has finished answering.
        let idle = this.requests.idle();
        match (idle, &this.waiting) {
            (Some(finished), Some((since, _))) if *since == finished => {}
            (Some(finished), _) => {
                let at = tokio::time::Instant::now() + this.timeout;
                match &mut this.deadline {
                    Some(deadline) => deadline.as_mut().reset(at),
                    None => this.deadline = Some(Box::pin(tokio::time::sleep_until(at))),
                }
                this.waiting = Some((finished, false));
            }
            (None, _) => this.waiting = None,
        }
        let before = buf.filled().len();
        let read = Pin::new(&mut this.inner).poll_read(cx, buf);
        match read {
            Poll::Ready(Ok(())) => {
                let arrived = &buf.filled()[before..];
                if !arrived.is_empty() {
                    if this.prefix.len() < 4 {
                        let take = (4 - this.prefix.len()).min(arrived.len());
                        this.prefix.extend_from_slice(&arrived[..take]);
                        this.h2 = this.prefix.len() == 4 && this.prefix == H2_PREFACE_START;
                    }
                    if let Some((_, began)) = &mut this.waiting {
                        *began = true;
                    }
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => {
                let (Some((_, began)), Some(deadline)) = (&mut this.waiting, &mut this.deadline) else {
                    return Poll::Pending;
                };
                if deadline.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                if !*began {
                    // Nothing of a request arrived: close as an idle connection, silently.
                    return Poll::Ready(Ok(()));
                }
                let status = StatusCode::REQUEST_TIMEOUT;
                let message = "The request headers did not arrive in time";
                this.answer = Some((answer(status, message, None, this.peer), 0, Then::TimedOut));
                ready!(this.poll_answer(cx))?;
                this.timed_out = true;
                Poll::Ready(Err(io::ErrorKind::TimedOut.into()))
            }
            failed => failed,
        }
    }
}

impl<I: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Guarded<I> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if let Some(Then::Replaced(len)) = ready!(this.poll_answer(cx))? {
            return Poll::Ready(Ok(len));
        }
        if !this.h2
            && let Some(replacement) = replace_bare_error(buf, this.peer)
        {
            this.answer = Some((replacement, 0, Then::Replaced(buf.len())));
            if let Some(Then::Replaced(len)) = ready!(this.poll_answer(cx))? {
                return Poll::Ready(Ok(len));
            }
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        // hyper's own error head is alone in its write; ours are checked only by their first
        // buffer, the head.
        let first_is_bare_error = bufs.len() == 1 && !this.h2 && replace_bare_error(&bufs[0], this.peer).is_some();
        if this.answer.is_some() || first_is_bare_error {
            let first = bufs.first().map_or(&[][..], |buf| &buf[..]);
            return self.poll_write(cx, first);
        }
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_answer(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_answer(cx))?;
        let this = &mut *self;
        let (deadline, drained) = match &mut this.lingering {
            Some((deadline, drained)) => (deadline, drained),
            None => {
                ready!(Pin::new(&mut this.inner).poll_shutdown(cx))?;
                let deadline = Box::pin(tokio::time::sleep(LINGER_TIME));
                let (deadline, drained) = this.lingering.insert((deadline, 0));
                (deadline, drained)
            }
        };
        let mut scratch = [0u8; 8192];
        while *drained < LINGER_BYTES {
            let mut buf = ReadBuf::new(&mut scratch);
            match Pin::new(&mut this.inner).poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) if !buf.filled().is_empty() => *drained += buf.filled().len(),
                // The client's end of the stream, or a failure: nothing more to wait for.
                Poll::Ready(_) => return Poll::Ready(Ok(())),
                Poll::Pending => {
                    ready!(deadline.as_mut().poll(cx));
                    return Poll::Ready(Ok(()));
                }
            }
        }
        Poll::Ready(Ok(()))
    }
}

/// Our answer in place of `written`, when `written` is a response head hyper wrote on its
/// own: a 4xx with no body and without the correlation id every response of the router
/// carries.
fn replace_bare_error(written: &[u8], peer: SocketAddr) -> Option<Vec<u8>> {
    let rest = written.strip_prefix(b"HTTP/1.1 4").or_else(|| written.strip_prefix(b"HTTP/1.0 4"))?;
    let head_end = written.windows(4).take(MAX_HEAD).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&written[..head_end]).to_ascii_lowercase();
    if head.contains("\r\nx-correlation-id:") || !head.contains("\r\ncontent-length: 0") {
        return None;
    }
    let code: u16 = std::str::from_utf8(rest.get(..2)?).ok()?.parse().ok()?;
    let status = StatusCode::from_u16(400 + code).ok()?;
    let message = match status {
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => "The request headers are larger than the limit",
        StatusCode::URI_TOO_LONG => "The request URI is longer than the limit",
        _ => "The request could not be parsed: a malformed request line or header",
    };
    let date = head.lines().find(|line| line.starts_with("date:")).map(|line| line.trim().to_owned());
    Some(answer(status, message, date, peer))
}

/// A whole response: `status` with the error body, closing the connection.
fn answer(status: StatusCode, message: &str, date: Option<String>, peer: SocketAddr) -> Vec<u8> {
    let correlation_id = uuid::Uuid::new_v4().to_string();
    let reason = status.canonical_reason().unwrap_or("Error");
    let body = ErrorBody {
        error: reason,
        message,
        correlation_id: &correlation_id,
        status_code: status.as_u16(),
        details: &[],
    };
    let body = serde_json::to_vec(&body).unwrap_or_default();
    tracing::warn!(
        event = "request_rejected",
        correlation_id,
        status_code = status.as_u16(),
        client_ip = %peer.ip(),
        reason = message,
    );
    let date = date.map(|line| format!("{line}\r\n")).unwrap_or_default();
    let mut bytes = format!(
        "HTTP/1.1 {} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\
         x-correlation-id: {correlation_id}\r\nx-content-type-options: nosniff\r\n{date}\r\n",
        status.as_u16(),
        body.len(),
    )
    .into_bytes();
    bytes.extend_from_slice(&body);
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> SocketAddr {
        "127.0.0.1:9".parse().unwrap()
    }

    #[test]
    fn hypers_bare_errors_are_replaced_and_ours_are_not() {
        let bare = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: Mon, 07 Dec 2026 17:00:00 GMT\r\n\r\n";
        let replaced = String::from_utf8(replace_bare_error(bare, peer()).unwrap()).unwrap();
        assert!(replaced.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"), "{replaced}");
        assert!(replaced.contains("date: mon, 07 dec 2026 17:00:00 gmt\r\n") || replaced.contains("date:"));
        let (head, body) = replaced.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("content-length: {}", body.len())), "{head}");
        let body: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(body["status_code"], 431);
        assert_eq!(body["error"], "Request Header Fields Too Large");
        assert!(head.contains(&format!("x-correlation-id: {}", body["correlation_id"].as_str().unwrap())));
        assert!(replace_bare_error(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n", peer()).is_some());

        let ours = b"HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\nx-correlation-id: a\r\ncontent-length: 0\r\n\r\n";
        assert!(replace_bare_error(ours, peer()).is_none());
        assert!(replace_bare_error(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n", peer()).is_none());
        assert!(replace_bare_error(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 12\r\n\r\n", peer()).is_none());
        assert!(replace_bare_error(b"HTTP/1.1 400 Bad Req", peer()).is_none(), "an incomplete head");
    }
}
