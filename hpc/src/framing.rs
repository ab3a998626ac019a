//! Newline-delimited framing with a size limit, kept apart from connection
//! handling (as in mini-redis): one JSON message per line, at most
//! [`MAX_MESSAGE_BYTES`](crate::protocol::MAX_MESSAGE_BYTES) bytes.

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt};

/// One frame read from the stream.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// A complete line, without its newline.
    Line(Vec<u8>),
    /// A line longer than the limit; it was read and discarded.
    TooLong {
        /// Its length.
        len: usize,
        /// Its first [`HEAD_BYTES`] bytes (enough to find a request's id).
        head: Vec<u8>,
    },
    /// The peer closed the stream.
    Eof,
}

/// How much of a too-long line [`Frame::TooLong`] keeps.
pub const HEAD_BYTES: usize = 256;

/// Reads size-limited lines from a buffered stream.
pub struct LineReader<R> {
    inner: R,
    limit: usize,
    buf: Vec<u8>,
}

/// Keeps the first [`HEAD_BYTES`] of `buf` and drops the rest.
fn head_of(buf: &mut Vec<u8>) -> Vec<u8> {
    let mut head = std::mem::take(buf);
    head.truncate(HEAD_BYTES);
    head
}

impl<R: AsyncBufRead + Unpin> LineReader<R> {
    /// A reader accepting lines of at most `limit` bytes.
    pub fn new(inner: R, limit: usize) -> Self {
        Self {
            inner,
            limit,
            buf: Vec::new(),
        }
    }

    /// Reads the next frame. A final line without newline counts as a line.
    pub async fn next_frame(&mut self) -> std::io::Result<Frame> {
        self.buf.clear();
        let mut total = 0usize;
        loop {
            let available = self.inner.fill_buf().await?;
            if available.is_empty() {
                return Ok(if total == 0 {
                    Frame::Eof
                } else if total > self.limit {
                    Frame::TooLong {
                        len: total,
                        head: head_of(&mut self.buf),
                    }
                } else {
                    Frame::Line(std::mem::take(&mut self.buf))
                });
            }
            let (chunk, found) = match available.iter().position(|&b| b == b'\n') {
                Some(i) => (available.get(..i).unwrap_or_default(), Some(i + 1)),
                None => (available, None),
            };
            total = total.saturating_add(chunk.len());
            if total <= self.limit {
                self.buf.extend_from_slice(chunk);
            } else if self.buf.len() > HEAD_BYTES {
                self.buf.truncate(HEAD_BYTES);
                self.buf.shrink_to(HEAD_BYTES);
            } else if self.buf.len() < HEAD_BYTES {
                let room = HEAD_BYTES - self.buf.len();
                self.buf
                    .extend_from_slice(chunk.get(..room.min(chunk.len())).unwrap_or_default());
            }
            let consumed = found.unwrap_or(chunk.len());
            self.inner.consume(consumed);
            if found.is_some() {
                return Ok(if total > self.limit {
                    Frame::TooLong {
                        len: total,
                        head: head_of(&mut self.buf),
                    }
                } else {
                    Frame::Line(std::mem::take(&mut self.buf))
                });
            }
        }
    }
}

/// Writes one message followed by a newline and flushes.
pub async fn write_line<W: AsyncWrite + Unpin>(w: &mut W, line: &[u8]) -> std::io::Result<()> {
    let mut msg = Vec::with_capacity(line.len() + 1);
    msg.extend_from_slice(line);
    msg.push(b'\n');
    w.write_all(&msg).await?;
    w.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn splits_lines_and_discards_long_ones() {
        let data: &[u8] = b"{\"a\":1}\n0123456789ABCDEF\nok\nlast";
        let mut r = LineReader::new(tokio::io::BufReader::with_capacity(4, data), 8);
        assert_eq!(
            r.next_frame().await.unwrap(),
            Frame::Line(b"{\"a\":1}".to_vec())
        );
        assert_eq!(
            r.next_frame().await.unwrap(),
            Frame::TooLong {
                len: 16,
                head: b"0123456789ABCDEF".to_vec()
            }
        );
        assert_eq!(r.next_frame().await.unwrap(), Frame::Line(b"ok".to_vec()));
        assert_eq!(r.next_frame().await.unwrap(), Frame::Line(b"last".to_vec()));
        assert_eq!(r.next_frame().await.unwrap(), Frame::Eof);
    }
}
