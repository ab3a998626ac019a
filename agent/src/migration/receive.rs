//! The target side of a migration, served on the `openmosix-migrate`
//! subsystem (cluster key only): check the offer, store the images in a 0700
//! directory, restore the job stopped, and let it run only on the source's
//! commit. Anything else (the source gone, an abort, a timeout) ends the
//! restored copy, so there is never a second running copy.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufRead, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};

use super::criu_cmd;
use super::send::ImageDir;
use super::wire::{self, ImageFile, Msg};
use crate::context::AgentContext;
use crate::jobs::now_ms;

/// How long the source may take between messages.
const STEP_TIMEOUT: Duration = Duration::from_secs(600);
/// Space kept free on the image file system beyond the expected image size.
const SPARE_BYTES: u64 = 8 << 20;

/// Serves one incoming migration.
pub async fn receive<R, W>(read: R, mut write: W, ctx: Arc<AgentContext>)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut read = BufReader::with_capacity(256 * 1024, read);
    let Ok(Ok(Msg::Offer {
        job,
        from,
        estimate,
    })) = tokio::time::timeout(STEP_TIMEOUT, wire::recv(&mut read)).await
    else {
        return;
    };
    if let Err(reason) = check_offer(&ctx, &job, estimate) {
        tracing::info!(pid = job.home_pid, home = job.home, from, %reason, "refused a migration");
        let _ = wire::send(&mut write, &Msg::Refuse { reason }).await;
        return;
    }
    if wire::send(&mut write, &Msg::Accept).await.is_err() {
        return;
    }
    let dir = match ImageDir::create(
        &ctx.images,
        &format!("in-{}-{}-{}", job.home, job.home_pid, now_ms()),
    ) {
        Ok(d) => d,
        Err(reason) => {
            let _ = wire::send(&mut write, &Msg::Failed { reason }).await;
            return;
        }
    };
    let (pre, fin) = (dir.pre(), dir.fin());
    let mut next = tokio::time::timeout(STEP_TIMEOUT, wire::recv(&mut read)).await;
    if let Ok(Ok(Msg::PreFiles { files })) = &next {
        if !receive_files(&ctx, &pre, files, &mut read, &mut write, &job).await {
            return;
        }
        if wire::send(&mut write, &Msg::Stored).await.is_err() {
            return;
        }
        next = tokio::time::timeout(STEP_TIMEOUT, wire::recv(&mut read)).await;
    }
    let (files, parent) = match next {
        Ok(Ok(Msg::Files { files, parent })) => (files, parent),
        Ok(Ok(Msg::Abort { reason })) => {
            tracing::info!(pid = job.home_pid, from, %reason, "source aborted the migration");
            return;
        }
        _ => return,
    };
    if !receive_files(&ctx, &fin, &files, &mut read, &mut write, &job).await {
        return;
    }
    if parent && let Err(e) = std::os::unix::fs::symlink("../pre", fin.join("parent")) {
        let reason = format!("node {} cannot link the pre-copy images: {e}", ctx.node_id);
        let _ = wire::send(&mut write, &Msg::Failed { reason }).await;
        return;
    }
    let Some(criu) = ctx.criu.clone() else {
        return;
    };
    let (root_pid, restore_ms) = match criu_cmd::restore(&criu, &fin).await {
        Ok(r) => r,
        Err(reason) => {
            let reason = format!("on node {}: {reason}", ctx.node_id);
            let _ = wire::send(&mut write, &Msg::Failed { reason }).await;
            return;
        }
    };
    let pid = crate::jobs::children(root_pid)
        .first()
        .copied()
        .unwrap_or(root_pid);
    let restored = Msg::Restored {
        root_pid,
        pid,
        restore_ms,
    };
    let committed = wire::send(&mut write, &restored).await.is_ok()
        && matches!(
            tokio::time::timeout(STEP_TIMEOUT, wire::recv(&mut read)).await,
            Ok(Ok(Msg::Commit))
        );
    if !committed {
        tracing::warn!(
            pid = job.home_pid,
            from,
            "no commit from the source; restored copy ended"
        );
        criu_cmd::kill_job(root_pid);
        ctx.jobs.add_stray(root_pid);
        return;
    }
    criu_cmd::resume(&criu_cmd::tree(root_pid));
    let resumed = std::time::Instant::now();
    let mut info = job.clone();
    info.where_ = ctx.node_id;
    info.pid = pid;
    info.root_pid = root_pid;
    info.exit = None;
    let mut rec = ctx.jobs.get(job.home, job.home_pid).unwrap_or_default();
    if rec.reap_pid > 0 {
        ctx.jobs.add_stray(rec.reap_pid);
    }
    if rec.info.last_migration.is_some() && info.last_migration.is_none() {
        info.last_migration = rec.info.last_migration.clone();
    }
    rec.info = *info;
    rec.reap_pid = root_pid;
    if let Err(e) = ctx.jobs.put(rec) {
        tracing::error!(error = %e, "cannot record an arrived job");
    }
    // Answer once the process table lists the job, so the caller sees it at once.
    ctx.fresh_snapshot(Duration::from_millis(1500)).await;
    let done = Msg::Committed {
        after_resume_ms: resumed.elapsed().as_millis() as u64,
    };
    let _ = wire::send(&mut write, &done).await;
    let _ = write.shutdown().await;
    tracing::info!(
        pid = job.home_pid,
        home = job.home,
        from,
        local = pid,
        "job arrived"
    );
}

/// Stores one set of image files in `dir`; on a local error (a full disk)
/// answers `failed` with the reason. False when the migration is over.
async fn receive_files<R, W>(
    ctx: &AgentContext,
    dir: &Path,
    files: &[ImageFile],
    read: &mut R,
    write: &mut W,
    job: &hpc::protocol::JobInfo,
) -> bool
where
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin,
{
    match store_images(dir, files, read).await {
        Ok(None) => true,
        Ok(Some(reason)) => {
            let reason = format!("node {} cannot store the images: {reason}", ctx.node_id);
            let _ = wire::send(write, &Msg::Failed { reason }).await;
            false
        }
        Err(e) => {
            tracing::warn!(pid = job.home_pid, error = %e, "source went away during the transfer");
            false
        }
    }
}

/// Refuses before anything is frozen: no CRIU, blocked, mask, no room.
fn check_offer(
    ctx: &AgentContext,
    job: &hpc::protocol::JobInfo,
    estimate: u64,
) -> Result<(), String> {
    if ctx.criu.is_none() {
        return Err(format!("node {}: {}", ctx.node_id, ctx.migration));
    }
    if ctx.store.admin().block {
        return Err(format!(
            "node {} blocks arriving processes (block=1)",
            ctx.node_id
        ));
    }
    if !job.mask.allows(ctx.node_id) {
        return Err(format!(
            "the process's cluster mask does not allow node {}",
            ctx.node_id
        ));
    }
    let free = free_bytes(&ctx.images).map_err(|e| {
        format!(
            "node {} cannot check its image directory {}: {e}",
            ctx.node_id,
            ctx.images.display()
        )
    })?;
    if free < estimate + SPARE_BYTES {
        return Err(format!(
            "node {} has {} MiB free for images in {}, the process needs about {} MiB",
            ctx.node_id,
            free >> 20,
            ctx.images.display(),
            (estimate + SPARE_BYTES) >> 20
        ));
    }
    Ok(())
}

fn free_bytes(dir: &Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes())?;
    // SAFETY: statvfs writes into a zeroed, properly sized struct; the path is NUL-terminated.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(st.f_bavail as u64 * st.f_frsize as u64)
}

/// Writes each file's bytes into `dir`. A local write error (a full disk) is
/// returned as `Ok(Some(reason))` after the rest of the stream was read, so
/// the source gets the reason; a broken stream is `Err`.
async fn store_images<R: AsyncBufRead + Unpin>(
    dir: &Path,
    files: &[ImageFile],
    read: &mut R,
) -> std::io::Result<Option<String>> {
    let mut problem: Option<String> = None;
    let mut buf = vec![0u8; 256 * 1024];
    for f in files {
        let safe = !f.name.is_empty()
            && !f.name.contains('/')
            && f.name != "."
            && f.name != ".."
            && f.name != "restored.pid";
        let mut out = if problem.is_none() && safe {
            match tokio::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(dir.join(&f.name))
                .await
            {
                Ok(file) => Some(file),
                Err(e) => {
                    problem = Some(format!("{}: {e}", f.name));
                    None
                }
            }
        } else {
            if !safe && problem.is_none() {
                problem = Some(format!("refusing image file name `{}`", f.name));
            }
            None
        };
        let mut left = f.size;
        while left > 0 {
            let want = buf.len().min(left as usize);
            let chunk = buf.get_mut(..want).unwrap_or_default();
            let n = read.read(chunk).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            left -= n as u64;
            if let Some(file) = out.as_mut()
                && let Err(e) = file.write_all(chunk.get(..n).unwrap_or_default()).await
            {
                problem = Some(format!("{}: {e}", f.name));
                out = None;
            }
        }
        if let Some(mut file) = out
            && let Err(e) = file.flush().await
        {
            problem = Some(format!("{}: {e}", f.name));
        }
    }
    Ok(problem)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use tokio::io::AsyncReadExt;

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

    #[tokio::test]
    async fn a_full_image_directory_is_reported_after_reading_the_whole_stream() {
        let disk = TinyDisk::new("enospc");
        let files = [
            ImageFile {
                name: "pages-1.img".into(),
                size: 1 << 20,
            },
            ImageFile {
                name: "core.img".into(),
                size: 10,
            },
        ];
        let mut stream = vec![7u8; 1 << 20];
        stream.extend_from_slice(b"0123456789NEXT");
        let mut read = tokio::io::BufReader::new(&stream[..]);
        let problem = store_images(&disk.0, &files, &mut read).await.unwrap();
        let reason = problem.expect("a full disk is a problem");
        assert!(reason.contains("No space left on device"), "{reason}");
        // The stream was read to the end of the images: the source gets the answer.
        let mut rest = String::new();
        read.read_to_string(&mut rest).await.unwrap();
        assert_eq!(rest, "NEXT");
    }

    #[tokio::test]
    async fn image_names_cannot_leave_the_directory() {
        let disk = TinyDisk::new("names");
        let files = [ImageFile {
            name: "../escape.img".into(),
            size: 4,
        }];
        let mut read = tokio::io::BufReader::new(&b"abcd"[..]);
        let problem = store_images(&disk.0, &files, &mut read).await.unwrap();
        assert!(problem.unwrap().contains("refusing image file name"));
        assert!(!disk.0.join("../escape.img").exists());
        // A stream cut short is a broken connection, not a local problem.
        let files = [ImageFile {
            name: "pages-1.img".into(),
            size: 100,
        }];
        let mut short = tokio::io::BufReader::new(&b"abcd"[..]);
        assert!(store_images(&disk.0, &files, &mut short).await.is_err());
    }
}
