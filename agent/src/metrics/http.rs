//! A small read-only HTTP/1.1 server for `GET /metrics`: one request per
//! connection, a bounded request head, a deadline, and a cap on connections
//! served at once. Nothing it serves can change anything.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::context::AgentContext;

/// The most bytes a request's head may take.
const MAX_HEAD: usize = 8 * 1024;
/// How long one connection may take, from its first byte to the answer.
const DEADLINE: Duration = Duration::from_secs(5);
/// Connections answered at once; more are closed at once.
const MAX_CONNECTIONS: usize = 16;

/// What a request asked for, as far as this server cares.
#[derive(Debug, PartialEq, Eq)]
pub enum Request {
    /// `GET /metrics` (`head`: `HEAD /metrics`).
    Metrics { head: bool },
    /// Another path.
    NotFound,
    /// Another method.
    NotAllowed,
    /// Not HTTP, or a head too large.
    Bad,
}

/// Reads the request line of `head` (the bytes up to the blank line).
pub fn parse(head: &[u8]) -> Request {
    let Some(line) = head.split(|&b| b == b'\n').next() else {
        return Request::Bad;
    };
    let line = String::from_utf8_lossy(line);
    let mut parts = line.trim_end_matches('\r').split(' ');
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Request::Bad;
    };
    if parts.next().is_some() || !version.starts_with("HTTP/1.") {
        return Request::Bad;
    }
    let path = target.split('?').next().unwrap_or("");
    let head = match method {
        "GET" => false,
        "HEAD" => true,
        _ => return Request::NotAllowed,
    };
    if path == "/metrics" {
        Request::Metrics { head }
    } else {
        Request::NotFound
    }
}

/// Serves `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, ctx: Arc<AgentContext>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, peer) = crate::accept::next_connection("metrics", || listener.accept()).await;
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::debug!(%peer, "metrics: too many connections; closed");
            continue;
        };
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let _slot = slot;
            match tokio::time::timeout(DEADLINE, answer(stream, &ctx)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "metrics: connection failed"),
                Err(_) => tracing::debug!(%peer, "metrics: connection too slow; closed"),
            }
        });
    }
}

async fn read_head(stream: &mut TcpStream) -> std::io::Result<Option<Vec<u8>>> {
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        head.extend_from_slice(chunk.get(..n).unwrap_or_default());
        if head.windows(4).any(|w| w == b"\r\n\r\n") || head.windows(2).any(|w| w == b"\n\n") {
            return Ok(Some(head));
        }
        if head.len() > MAX_HEAD {
            return Ok(Some(Vec::new()));
        }
    }
}

async fn answer(mut stream: TcpStream, ctx: &AgentContext) -> std::io::Result<()> {
    let Some(head) = read_head(&mut stream).await? else {
        return Ok(());
    };
    let (status, body, only_head) = match parse(&head) {
        Request::Metrics { head } => {
            let snap = ctx.current();
            let admin = ctx.store.admin();
            let cluster = ctx.cluster.nodes(&snap.status).await;
            let figures = super::exposition::NodeFigures {
                status: &snap.status,
                processes: &snap.processes,
                admin: &admin,
                cluster: &cluster,
                arrivals: ctx.arrivals.totals(),
                peer_sessions: ctx.peers.sessions_opened(),
            };
            (
                "200 OK",
                super::exposition::render(&figures, &ctx.metrics),
                head,
            )
        }
        Request::NotFound => (
            "404 Not Found",
            "only /metrics is served here\n".to_string(),
            false,
        ),
        Request::NotAllowed => (
            "405 Method Not Allowed",
            "GET or HEAD only\n".to_string(),
            false,
        ),
        Request::Bad => (
            "400 Bad Request",
            "not an HTTP/1 request\n".to_string(),
            false,
        ),
    };
    let content_type = if status.starts_with("200") {
        super::exposition::CONTENT_TYPE
    } else {
        "text/plain; charset=utf-8"
    };
    let allow = if status.starts_with("405") {
        "Allow: GET, HEAD\r\n"
    } else {
        ""
    };
    let reply = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{allow}Connection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(reply.as_bytes()).await?;
    if !only_head {
        stream.write_all(body.as_bytes()).await?;
    }
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_told_apart_by_their_line() {
        assert_eq!(
            parse(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Request::Metrics { head: false }
        );
        assert_eq!(
            parse(b"HEAD /metrics?x=1 HTTP/1.0\r\n\r\n"),
            Request::Metrics { head: true }
        );
        assert_eq!(parse(b"GET / HTTP/1.1\r\n\r\n"), Request::NotFound);
        assert_eq!(
            parse(b"POST /metrics HTTP/1.1\r\n\r\n"),
            Request::NotAllowed
        );
        assert_eq!(parse(b"GET /metrics\r\n\r\n"), Request::Bad);
        assert_eq!(parse(b"\x16\x03\x01 hello"), Request::Bad);
        assert_eq!(parse(b""), Request::Bad);
    }
}
