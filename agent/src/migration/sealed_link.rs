//! The direct path for a migration's memory: a TCP connection between the
//! two agents on which every record is sealed with AES-256-GCM under a key
//! made for this one migration and handed over inside the authenticated,
//! encrypted SSH session (the offer). Nothing unauthenticated is ever read
//! from it: a record that does not open under the key ends the link. It
//! carries the same bytes as the `openmosix-pages` SSH channel, without the
//! SSH layer's copies and packetisation, so the memory moves at the speed
//! of the ciphers.
//!
//! ```text
//! record  = length (u32, big endian: sealed bytes, tag included) ‖ sealed
//! sealed  = AES-256-GCM(key, nonce, aad = length, plaintext) ‖ tag (16 bytes)
//! nonce   = direction (u32: 0 source→target, 1 target→source) ‖ counter (u64)
//! ```
//!
//! The counter starts at 0 in each direction and grows by one per record,
//! so no nonce repeats under a key and a record cannot be replayed,
//! dropped or reordered without the next one failing. An empty record ends
//! a direction: a connection closed without it was cut. The source opens
//! with the migration's id in clear (which key to use) and a sealed hello;
//! the target answers with a sealed hello of its own.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

/// The largest plaintext of one record.
pub const MAX_RECORD: usize = 256 * 1024;
/// The authentication tag's length.
const TAG: usize = 16;
/// What the source's first record says, before the id.
const HELLO: &[u8] = b"openmosix-pages source ";
/// What the target's first record says.
const WELCOME: &[u8] = b"openmosix-pages target";

/// Which way a record goes (the first part of its nonce).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From the source (which connects) to the target.
    SourceToTarget = 0,
    /// From the target to the source.
    TargetToSource = 1,
}

/// A migration's link key: 32 random bytes, written as hex in the offer,
/// never printed.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct LinkKey([u8; 32]);

impl std::fmt::Debug for LinkKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LinkKey(..)")
    }
}

impl LinkKey {
    /// A fresh key from the system's random source.
    pub fn new() -> Result<Self, String> {
        let mut k = [0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut k)
            .map_err(|_| "no random bytes for a link key".to_string())?;
        Ok(Self(k))
    }

    fn aead(&self) -> std::io::Result<LessSafeKey> {
        UnboundKey::new(&AES_256_GCM, &self.0)
            .map(LessSafeKey::new)
            .map_err(|_| broken("AES-256-GCM refused the link key"))
    }
}

impl TryFrom<String> for LinkKey {
    type Error = String;

    fn try_from(hex: String) -> Result<Self, String> {
        let bytes = hex.as_bytes();
        if bytes.len() != 64 {
            return Err("a link key is 64 hex digits".into());
        }
        let mut k = [0u8; 32];
        for (i, pair) in bytes.chunks(2).enumerate() {
            let digits = std::str::from_utf8(pair).map_err(|_| "not hex".to_string())?;
            let byte = u8::from_str_radix(digits, 16).map_err(|_| "not hex".to_string())?;
            if let Some(slot) = k.get_mut(i) {
                *slot = byte;
            }
        }
        Ok(Self(k))
    }
}

impl From<LinkKey> for String {
    fn from(k: LinkKey) -> String {
        k.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// One direction's key and record counter.
struct Sealer {
    key: LessSafeKey,
    direction: Direction,
    counter: u64,
}

impl Sealer {
    fn new(key: &LinkKey, direction: Direction) -> std::io::Result<Self> {
        Ok(Self {
            key: key.aead()?,
            direction,
            counter: 0,
        })
    }

    /// The next record's nonce; an error once the counter would wrap.
    fn next_nonce(&mut self) -> std::io::Result<Nonce> {
        let mut n = [0u8; NONCE_LEN];
        let (dir, count) = n.split_at_mut(4);
        dir.copy_from_slice(&(self.direction as u32).to_be_bytes());
        count.copy_from_slice(&self.counter.to_be_bytes());
        self.counter = self
            .counter
            .checked_add(1)
            .ok_or_else(|| broken("the link's record counter ran out"))?;
        Ok(Nonce::assume_unique_for_key(n))
    }
}

fn broken(why: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, why.to_string())
}

/// The reading half: yields the plaintext of the records it opens; end of
/// stream at the empty record, an error for a record that does not open or
/// a connection cut before the empty record.
pub struct SealedReader<R> {
    inner: R,
    opener: Sealer,
    head: [u8; 4],
    head_got: usize,
    body: Vec<u8>,
    body_got: usize,
    plain: std::ops::Range<usize>,
    ended: bool,
}

impl<R: AsyncRead + Unpin> SealedReader<R> {
    /// Opens records from `inner` sealed for `direction` under `key`.
    pub fn new(inner: R, key: &LinkKey, direction: Direction) -> std::io::Result<Self> {
        Ok(Self {
            inner,
            opener: Sealer::new(key, direction)?,
            head: [0; 4],
            head_got: 0,
            body: Vec::new(),
            body_got: 0,
            plain: 0..0,
            ended: false,
        })
    }

    /// Reads and opens the next record into `body` (plaintext in `plain`).
    fn poll_record(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        ready!(poll_fill(
            &mut self.inner,
            cx,
            &mut self.head,
            &mut self.head_got
        ))?;
        let len = u32::from_be_bytes(self.head) as usize;
        if !(TAG..=MAX_RECORD + TAG).contains(&len) {
            return Poll::Ready(Err(broken("a pages record of an impossible length")));
        }
        self.body.resize(len, 0);
        ready!(poll_fill(
            &mut self.inner,
            cx,
            &mut self.body,
            &mut self.body_got
        ))?;
        let nonce = self.opener.next_nonce()?;
        let opened = self
            .opener
            .key
            .open_in_place(nonce, Aad::from(self.head), &mut self.body)
            .map_err(|_| broken("a pages record did not open under the migration's key"))?;
        let n = opened.len();
        self.head_got = 0;
        self.body_got = 0;
        self.plain = 0..n;
        self.ended = n == 0;
        Poll::Ready(Ok(()))
    }
}

/// Reads into `buf` from `*got` until it is full (`*got` counts what came);
/// an error if the stream ends first.
fn poll_fill<R: AsyncRead + Unpin>(
    inner: &mut R,
    cx: &mut Context<'_>,
    buf: &mut [u8],
    got: &mut usize,
) -> Poll<std::io::Result<()>> {
    while *got < buf.len() {
        let mut rb = ReadBuf::new(buf.get_mut(*got..).unwrap_or_default());
        ready!(Pin::new(&mut *inner).poll_read(cx, &mut rb))?;
        let n = rb.filled().len();
        if n == 0 {
            return Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the pages link was cut",
            )));
        }
        *got += n;
    }
    Poll::Ready(Ok(()))
}

impl<R: AsyncRead + Unpin> AsyncRead for SealedReader<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.plain.is_empty() {
                let n = this.plain.len().min(buf.remaining());
                let from = this.plain.start;
                buf.put_slice(this.body.get(from..from + n).unwrap_or_default());
                this.plain.start += n;
                return Poll::Ready(Ok(()));
            }
            if this.ended {
                return Poll::Ready(Ok(()));
            }
            ready!(this.poll_record(cx))?;
        }
    }
}

/// The writing half: seals what it is given into records of up to
/// [`MAX_RECORD`] bytes; shutting it down sends the empty record.
pub struct SealedWriter<W> {
    inner: W,
    sealer: Sealer,
    out: Vec<u8>,
    sent: usize,
    ended: bool,
}

impl<W: AsyncWrite + Unpin> SealedWriter<W> {
    /// Seals records for `direction` under `key` onto `inner`.
    pub fn new(inner: W, key: &LinkKey, direction: Direction) -> std::io::Result<Self> {
        Ok(Self {
            inner,
            sealer: Sealer::new(key, direction)?,
            out: Vec::with_capacity(MAX_RECORD + TAG + 4),
            sent: 0,
            ended: false,
        })
    }

    /// Writes out what is sealed and not yet sent.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        while self.sent < self.out.len() {
            let rest = self.out.get(self.sent..).unwrap_or_default();
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, rest))?;
            if n == 0 {
                return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        self.out.clear();
        self.sent = 0;
        Poll::Ready(Ok(()))
    }

    /// Seals `plain` (at most [`MAX_RECORD`] bytes) as the next record.
    fn seal(&mut self, plain: &[u8]) -> std::io::Result<()> {
        let len = u32::try_from(plain.len() + TAG).map_err(|_| broken("record too long"))?;
        let head = len.to_be_bytes();
        self.out.clear();
        self.out.extend_from_slice(&head);
        self.out.extend_from_slice(plain);
        let nonce = self.sealer.next_nonce()?;
        let body = self.out.get_mut(head.len()..).unwrap_or_default();
        let tag = self
            .sealer
            .key
            .seal_in_place_separate_tag(nonce, Aad::from(head), body)
            .map_err(|_| broken("cannot seal a pages record"))?;
        self.out.extend_from_slice(tag.as_ref());
        self.sent = 0;
        Ok(())
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for SealedWriter<W> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        if this.ended {
            return Poll::Ready(Err(std::io::ErrorKind::BrokenPipe.into()));
        }
        let n = buf.len().min(MAX_RECORD);
        if n == 0 {
            return Poll::Ready(Ok(0));
        }
        this.seal(buf.get(..n).unwrap_or_default())?;
        // The bytes are taken; what the socket does not take now goes out
        // on the next write or flush.
        if let Poll::Ready(Err(e)) = this.poll_drain(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        if !this.ended {
            this.seal(&[])?;
            this.ended = true;
            ready!(this.poll_drain(cx))?;
        }
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

/// Both halves of an opened link.
pub type Link = (
    SealedReader<tokio::net::tcp::OwnedReadHalf>,
    SealedWriter<tokio::net::tcp::OwnedWriteHalf>,
);

/// Source: opens migration `id`'s link on `stream` (connected to the
/// target's link port): the id in clear, a sealed hello, and the target's
/// sealed answer.
pub async fn open(stream: tokio::net::TcpStream, id: &str, key: &LinkKey) -> std::io::Result<Link> {
    let _ = stream.set_nodelay(true);
    let (r, mut w) = stream.into_split();
    w.write_all(format!("{id}\n").as_bytes()).await?;
    let mut writer = SealedWriter::new(w, key, Direction::SourceToTarget)?;
    let mut hello = HELLO.to_vec();
    hello.extend_from_slice(id.as_bytes());
    writer.write_all(&hello).await?;
    writer.flush().await?;
    let mut reader = SealedReader::new(r, key, Direction::TargetToSource)?;
    let mut answer = vec![0u8; WELCOME.len()];
    reader.read_exact(&mut answer).await?;
    if answer != WELCOME {
        return Err(broken("the target's link answer is not its hello"));
    }
    Ok((reader, writer))
}

/// Target: checks the source's sealed hello for migration `id` under its
/// key and answers it; an error for anything else (not the source, or not
/// this migration).
pub async fn accept(
    stream: tokio::net::TcpStream,
    id: &str,
    key: &LinkKey,
) -> std::io::Result<Link> {
    let _ = stream.set_nodelay(true);
    let (r, w) = stream.into_split();
    let mut reader = SealedReader::new(r, key, Direction::SourceToTarget)?;
    let mut hello = vec![0u8; HELLO.len() + id.len()];
    reader.read_exact(&mut hello).await?;
    let mut expected = HELLO.to_vec();
    expected.extend_from_slice(id.as_bytes());
    if hello != expected {
        return Err(broken("the link's hello names another migration"));
    }
    let mut writer = SealedWriter::new(w, key, Direction::TargetToSource)?;
    writer.write_all(WELCOME).await?;
    writer.flush().await?;
    Ok((reader, writer))
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn pair() -> (tokio::net::TcpStream, tokio::net::TcpStream) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let (a, b) = tokio::join!(tokio::net::TcpStream::connect(addr), l.accept());
        (a.unwrap(), b.unwrap().0)
    }

    const ID: &str = "0123456789abcdef0123456789abcdef";

    #[tokio::test]
    async fn a_link_carries_both_ways_and_ends_with_its_empty_record() {
        let key = LinkKey::new().unwrap();
        let (a, mut b) = pair().await;
        let k2 = key.clone();
        let target = tokio::spawn(async move {
            assert_eq!(
                crate::migration::pages_path::read_id(&mut b)
                    .await
                    .as_deref(),
                Some(ID)
            );
            let (mut r, mut w) = accept(b, ID, &k2).await.unwrap();
            let mut got = Vec::new();
            r.read_to_end(&mut got).await.unwrap();
            w.write_all(b"answer").await.unwrap();
            w.shutdown().await.unwrap();
            got
        });
        let (mut r, mut w) = open(a, ID, &key).await.unwrap();
        let big: Vec<u8> = (0..3 * MAX_RECORD + 77).map(|i| (i % 253) as u8).collect();
        w.write_all(&big).await.unwrap();
        w.shutdown().await.unwrap();
        let mut answer = Vec::new();
        r.read_to_end(&mut answer).await.unwrap();
        assert_eq!(answer, b"answer");
        assert_eq!(target.await.unwrap(), big);
    }

    #[tokio::test]
    async fn a_stranger_or_a_changed_byte_or_a_cut_is_an_error() {
        // Another key: the hello does not open.
        let (a, b) = pair().await;
        let opener = tokio::spawn(async move { open(a, ID, &LinkKey::new().unwrap()).await });
        let refused = accept(b, ID, &LinkKey::new().unwrap()).await;
        assert!(refused.is_err());
        drop(opener);

        // One flipped bit in a record: it does not open.
        let key = LinkKey::new().unwrap();
        let mut sealed = Vec::new();
        let mut w = SealedWriter::new(&mut sealed, &key, Direction::SourceToTarget).unwrap();
        w.write_all(b"pages").await.unwrap();
        w.shutdown().await.unwrap();
        let mut bad = sealed.clone();
        if let Some(b) = bad.get_mut(6) {
            *b ^= 1;
        }
        let mut r = SealedReader::new(&bad[..], &key, Direction::SourceToTarget).unwrap();
        let err = r.read_to_end(&mut Vec::new()).await.unwrap_err();
        assert!(err.to_string().contains("did not open"), "{err}");
        // The other direction's nonces: it does not open either (no reflection).
        let mut r = SealedReader::new(&sealed[..], &key, Direction::TargetToSource).unwrap();
        assert!(r.read_to_end(&mut Vec::new()).await.is_err());
        // The records without the empty one: the link was cut.
        let cut = &sealed[..sealed.len() - (4 + TAG)];
        let mut r = SealedReader::new(cut, &key, Direction::SourceToTarget).unwrap();
        let mut got = Vec::new();
        let err = r.read_to_end(&mut got).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof);
        assert_eq!(got, b"pages");
        // Intact, it reads to its end.
        let mut r = SealedReader::new(&sealed[..], &key, Direction::SourceToTarget).unwrap();
        let mut got = Vec::new();
        r.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"pages");
    }

    #[test]
    fn a_key_goes_as_hex_and_is_never_printed() {
        let key = LinkKey::new().unwrap();
        let hex = String::from(key.clone());
        assert_eq!(hex.len(), 64);
        assert_eq!(LinkKey::try_from(hex.clone()).unwrap(), key);
        assert!(LinkKey::try_from("zz".repeat(32)).is_err());
        assert!(!format!("{key:?}").contains(&hex[..8]));
    }

    /// A long stream between two threads arrives whole, in order.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_long_stream_arrives_whole_between_threads() {
        let key = LinkKey::new().unwrap();
        let (a, mut b) = pair().await;
        let k2 = key.clone();
        let total = 64usize << 20;
        let target = tokio::spawn(async move {
            crate::migration::pages_path::read_id(&mut b).await.unwrap();
            let (mut r, _w) = accept(b, ID, &k2).await.unwrap();
            let mut buf = vec![0u8; 100_000];
            let mut got = 0usize;
            loop {
                let n = r.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                assert!(
                    buf[..n]
                        .iter()
                        .enumerate()
                        .all(|(i, &v)| v == ((got + i) % 251) as u8),
                    "bytes out of order at {got}"
                );
                got += n;
            }
            got
        });
        let (_r, mut w) = open(a, ID, &key).await.unwrap();
        let all: Vec<u8> = (0..total).map(|i| (i % 251) as u8).collect();
        for chunk in all.chunks(MAX_RECORD - 1000) {
            w.write_all(chunk).await.unwrap();
            w.flush().await.unwrap();
        }
        w.shutdown().await.unwrap();
        assert_eq!(target.await.unwrap(), total);
    }
}
