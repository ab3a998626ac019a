//! A migration's image files on the wire. The source lists them (the few the
//! target's lazy-pages daemon reads at its start first) and streams their
//! bytes from one reader thread; the target stores them from the stream
//! through one writer thread, held to its reservation. A checkpoint's many
//! small files thus cost no round trip through the runtime's blocking pool
//! per open, read and write, and reading overlaps sending.

use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use super::wire::ImageFile;
use crate::image_space::Reservation;

/// The most bytes handed between a thread and the stream at once.
const CHUNK: usize = 1 << 20;
/// Chunks on their way between a thread and the stream.
const IN_FLIGHT: usize = 4;
/// Longest wait for any part of the image stream, either way.
pub const STALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Whether CRIU's lazy-pages daemon reads the image when it starts (before
/// the restore connects to it): the inventory, the process tree and the
/// processes' namespace ids.
fn read_by_daemon(name: &str) -> bool {
    name == "inventory.img"
        || name == "pstree.img"
        || (name.starts_with("ids-") && name.ends_with(".img"))
}

/// The image files of a directory (CRIU's logs and the `parent` link left
/// out), those the lazy-pages daemon reads at its start first.
pub fn list(dir: &Path) -> Result<Vec<ImageFile>, String> {
    let mut files = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| format!("cannot list the images: {e}"))?;
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        // DirEntry::metadata does not follow symbolic links.
        let meta = e
            .metadata()
            .map_err(|e| format!("cannot stat image {name}: {e}"))?;
        if meta.is_file() && !name.ends_with(".log") {
            files.push(ImageFile {
                name,
                size: meta.len(),
            });
        }
    }
    files.sort_by(|a, b| {
        (!read_by_daemon(&a.name), &a.name).cmp(&(!read_by_daemon(&b.name), &b.name))
    });
    Ok(files)
}

/// How many leading `files` the lazy-pages daemon needs before it can
/// start: all of them if the list does not hold the inventory and the
/// process tree (a source that orders them otherwise).
pub fn daemon_prefix(files: &[ImageFile]) -> usize {
    let has = |n: &str| files.iter().any(|f| f.name == n);
    if !has("inventory.img") || !has("pstree.img") {
        return files.len();
    }
    files
        .iter()
        .rposition(|f| read_by_daemon(&f.name))
        .map_or(files.len(), |i| i + 1)
}

/// Streams the bytes of `files` (from `dir`) in order; returns the total.
pub async fn send<W: AsyncWrite + Unpin>(
    dir: &Path,
    files: &[ImageFile],
    write: &mut W,
) -> Result<u64, String> {
    let expected = files.iter().map(|f| f.size).sum::<u64>();
    let (tx, mut rx) = mpsc::channel(IN_FLIGHT);
    let (from, list) = (dir.to_path_buf(), files.to_vec());
    // Ends when its last chunk is sent, or at once once nobody takes them.
    let reader = tokio::task::spawn_blocking(move || read_files(&from, &list, &tx));
    let mut bytes = 0u64;
    while let Some(chunk) = rx.recv().await {
        let chunk: Vec<u8> = chunk?;
        match tokio::time::timeout(STALL_TIMEOUT, write.write_all(&chunk)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                return Err(format!(
                    "the target agent went away during the transfer ({e})"
                ));
            }
            Err(_) => {
                return Err(format!(
                    "the target agent took no image data for {STALL_TIMEOUT:?}"
                ));
            }
        }
        bytes += chunk.len() as u64;
    }
    let _ = reader.await;
    if bytes != expected {
        return Err(format!(
            "the images could not all be read ({bytes} of {expected} bytes)"
        ));
    }
    write
        .flush()
        .await
        .map_err(|e| format!("the target agent went away during the transfer ({e})"))?;
    Ok(bytes)
}

/// The reader thread of [`send`]: the files' bytes in chunks of up to
/// [`CHUNK`], several small files to a chunk; an error ends it.
fn read_files(dir: &Path, files: &[ImageFile], tx: &mpsc::Sender<Result<Vec<u8>, String>>) {
    let mut chunk = Vec::with_capacity(CHUNK);
    for f in files {
        let mut file = match std::fs::File::open(dir.join(&f.name)) {
            Ok(file) => file,
            Err(e) => {
                let _ = tx.blocking_send(Err(format!("cannot read image {}: {e}", f.name)));
                return;
            }
        };
        let mut left = f.size;
        while left > 0 {
            let start = chunk.len();
            let want = (CHUNK - start).min(usize::try_from(left).unwrap_or(CHUNK));
            chunk.resize(start + want, 0);
            let read = file.read(chunk.get_mut(start..).unwrap_or_default());
            let n = match read {
                Ok(0) => {
                    let _ =
                        tx.blocking_send(Err(format!("image {} shrank while being sent", f.name)));
                    return;
                }
                Ok(n) => n,
                Err(e) => {
                    let _ = tx.blocking_send(Err(format!("cannot read image {}: {e}", f.name)));
                    return;
                }
            };
            chunk.truncate(start + n);
            left -= n as u64;
            if chunk.len() == CHUNK {
                let full = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK));
                if tx.blocking_send(Ok(full)).is_err() {
                    return;
                }
            }
        }
    }
    if !chunk.is_empty() {
        let _ = tx.blocking_send(Ok(chunk));
    }
}

/// Writes each file's bytes from `read` into `dir`, counting them against
/// `room`. A local problem (a full disk, a name that would leave the
/// directory, no room left) is returned as `Ok(Some(reason))` after the rest
/// of the files' bytes were read, so the source gets the reason; a broken or
/// stalled stream is `Err`.
pub async fn store<R: AsyncRead + Unpin>(
    dir: &Path,
    files: &[ImageFile],
    read: &mut R,
    room: &mut Reservation,
) -> std::io::Result<Option<String>> {
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(IN_FLIGHT);
    let (into, list) = (dir.to_path_buf(), files.to_vec());
    let writer = tokio::task::spawn_blocking(move || write_files(&into, &list, &mut rx));
    let mut to_writer = Some(tx);
    let mut no_room = None;
    let streamed = pass_to_writer(files, read, room, &mut to_writer, &mut no_room).await;
    // The writer ends once it has what was passed: no file is being written
    // when this returns (the caller may remove the directory).
    drop(to_writer);
    let written = writer
        .await
        .unwrap_or_else(|e| Some(format!("the image writer failed: {e}")));
    streamed.map(|()| no_room.or(written))
}

/// Reads each file's bytes and passes them to the writer (while it takes
/// them and they fit in `room`; else drains them).
async fn pass_to_writer<R: AsyncRead + Unpin>(
    files: &[ImageFile],
    read: &mut R,
    room: &mut Reservation,
    to_writer: &mut Option<mpsc::Sender<Vec<u8>>>,
    no_room: &mut Option<String>,
) -> std::io::Result<()> {
    for f in files {
        let mut left = f.size;
        while left > 0 {
            let want = usize::try_from(left).unwrap_or(CHUNK).min(CHUNK);
            let mut piece = vec![0u8; want];
            let mut filled = 0;
            while filled < want {
                let space = piece.get_mut(filled..).unwrap_or_default();
                let n = match tokio::time::timeout(STALL_TIMEOUT, read.read(space)).await {
                    Ok(r) => r?,
                    Err(_) => {
                        return Err(std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            format!("no image data for {STALL_TIMEOUT:?}"),
                        ));
                    }
                };
                if n == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                filled += n;
            }
            left -= want as u64;
            if to_writer.is_some()
                && let Err(e) = room.wrote(want as u64)
            {
                *no_room = Some(e);
                *to_writer = None;
            }
            if let Some(tx) = to_writer.as_ref()
                && tx.send(piece).await.is_err()
            {
                // The writer stopped on a problem of its own.
                *to_writer = None;
            }
        }
    }
    Ok(())
}

/// Whether an image's name stays inside the directory and is not one the
/// target makes itself.
fn safe_name(name: &str) -> bool {
    !name.is_empty()
        && !name.contains('/')
        && name != "."
        && name != ".."
        && name != "parent"
        && name != "restored.pid"
}

/// The writer thread of [`store`]: creates each file (never through a link,
/// never over one there) and writes its pieces; the first problem ends it.
fn write_files(
    dir: &Path,
    files: &[ImageFile],
    rx: &mut mpsc::Receiver<Vec<u8>>,
) -> Option<String> {
    for f in files {
        if !safe_name(&f.name) {
            return Some(format!("refusing image file name `{}`", f.name));
        }
        let created = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(dir.join(&f.name));
        let mut out = match created {
            Ok(file) => file,
            Err(e) => return Some(format!("{}: {e}", f.name)),
        };
        let mut left = f.size;
        while left > 0 {
            // None: the stream broke or the room ran out; that is the answer.
            let piece = rx.blocking_recv()?;
            left = left.saturating_sub(piece.len() as u64);
            if let Err(e) = out.write_all(&piece) {
                return Some(format!("{}: {e}", f.name));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// A directory with a tiny tmpfs mounted on it (root only), unmounted and
    /// removed on drop.
    struct TinyDisk(PathBuf);

    impl TinyDisk {
        fn new(label: &str) -> Self {
            let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../target/unit-tmp")
                .join(format!("{label}-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let ok = std::process::Command::new("mount")
                .args(["-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs"])
                .arg(&dir)
                .status()
                .unwrap()
                .success();
            assert!(ok, "mounting a tmpfs needs root");
            Self(dir)
        }
    }

    impl Drop for TinyDisk {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn unlimited() -> Reservation {
        let base = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target/unit-tmp"));
        std::fs::create_dir_all(&base).unwrap();
        crate::image_space::ImageSpace::new(base, None)
            .reserve(4 << 20)
            .unwrap()
    }

    fn file(name: &str, size: u64) -> ImageFile {
        ImageFile {
            name: name.into(),
            size,
        }
    }

    #[tokio::test]
    async fn a_full_image_directory_is_reported_after_reading_the_whole_stream() {
        let disk = TinyDisk::new("enospc");
        let files = [file("pages-1.img", 1 << 20), file("core.img", 10)];
        let mut stream = vec![7u8; 1 << 20];
        stream.extend_from_slice(b"0123456789NEXT");
        let mut read = &stream[..];
        let mut room = unlimited();
        let problem = store(&disk.0, &files, &mut read, &mut room).await.unwrap();
        let reason = problem.expect("a full disk is a problem");
        assert!(reason.contains("No space left on device"), "{reason}");
        // The stream was read to the end of the images: the source gets the answer.
        assert_eq!(read, b"NEXT");
    }

    #[tokio::test]
    async fn image_names_cannot_leave_the_directory() {
        let disk = TinyDisk::new("names");
        let files = [file("../escape.img", 4)];
        let mut read = &b"abcd"[..];
        let mut room = unlimited();
        let problem = store(&disk.0, &files, &mut read, &mut room).await.unwrap();
        assert!(problem.unwrap().contains("refusing image file name"));
        assert!(!disk.0.join("../escape.img").exists());
        // A stream cut short is a broken connection, not a local problem.
        let files = [file("pages-1.img", 100)];
        let mut short = &b"abcd"[..];
        assert!(store(&disk.0, &files, &mut short, &mut room).await.is_err());
    }

    #[tokio::test]
    async fn files_are_held_to_the_reservation() {
        let disk = TinyDisk::new("held");
        let base = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target/unit-tmp"));
        let space = crate::image_space::ImageSpace::new(base, Some(1 << 20));
        let mut room = space.reserve(8).unwrap();
        let files = [file("pages-1.img", 16), file("core.img", 2)];
        let mut stream = vec![1u8; 18];
        stream.extend_from_slice(b"NEXT");
        let mut read = &stream[..];
        let problem = store(&disk.0, &files, &mut read, &mut room).await.unwrap();
        assert!(problem.unwrap().contains("exceed"));
        assert!(room.written() <= 8);
        assert_eq!(read, b"NEXT", "the stream is still read to its end");
    }

    #[tokio::test]
    async fn files_go_across_in_order_and_the_daemons_images_lead() {
        let base = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target/unit-tmp"));
        let from = base.join(format!("send-{}", std::process::id()));
        let to = base.join(format!("store-{}", std::process::id()));
        for d in [&from, &to] {
            let _ = std::fs::remove_dir_all(d);
            std::fs::create_dir_all(d).unwrap();
        }
        // More than a chunk, small files around it, an empty one, a log.
        let big: Vec<u8> = (0..(CHUNK + 12345)).map(|i| (i % 251) as u8).collect();
        std::fs::write(from.join("pages-1.img"), &big).unwrap();
        std::fs::write(from.join("core-7.img"), b"core").unwrap();
        std::fs::write(from.join("empty.img"), b"").unwrap();
        std::fs::write(from.join("pstree.img"), b"tree").unwrap();
        std::fs::write(from.join("inventory.img"), b"inv").unwrap();
        std::fs::write(from.join("ids-7.img"), b"ids").unwrap();
        std::fs::write(from.join("dump.log"), b"log").unwrap();
        let files = list(&from).unwrap();
        let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "ids-7.img",
                "inventory.img",
                "pstree.img",
                "core-7.img",
                "empty.img",
                "pages-1.img"
            ]
        );
        assert_eq!(daemon_prefix(&files), 3);
        assert_eq!(daemon_prefix(files.get(3..).unwrap()), 3, "no tree: all");

        let mut wire = Vec::new();
        let sent = send(&from, &files, &mut wire).await.unwrap();
        assert_eq!(sent, big.len() as u64 + 14);
        let mut read = &wire[..];
        let mut room = unlimited();
        let problem = store(&to, &files, &mut read, &mut room).await.unwrap();
        assert_eq!(problem, None);
        assert!(read.is_empty());
        for f in &files {
            assert_eq!(
                std::fs::read(to.join(&f.name)).unwrap(),
                std::fs::read(from.join(&f.name)).unwrap(),
                "{}",
                f.name
            );
        }
        // A file that shrank since it was listed is an error, not a short stream.
        std::fs::write(from.join("pages-1.img"), b"short").unwrap();
        let err = send(&from, &files, &mut Vec::new()).await.unwrap_err();
        assert!(err.contains("shrank"), "{err}");
        for d in [&from, &to] {
            std::fs::remove_dir_all(d).unwrap();
        }
    }
}
