//! The query socket (`/run/openmosix-history/history.sock`): the running
//! collector answers history queries ([`history::remote`]) for local users
//! who may not read the history files themselves. Who may ask is checked per
//! connection with `SO_PEERCRED`: root, the collector's own user, and members
//! of the reader group (`--reader-group`, `openmosix` by default; a group that
//! does not exist admits nobody else). The socket is 0666 in a 0755 directory
//! of the collector's user that nobody else may write.

use std::path::Path;

use history::remote::{self, Answer};
use history::store::Location;
use tokio::net::{UnixListener, UnixStream};

use crate::control::ControlError;

/// Who may read, as decided once at start.
#[derive(Debug, Clone)]
pub struct Readers {
    /// The reader group's name.
    pub group: String,
    /// Its gid, when the group exists.
    pub gid: Option<u32>,
}

impl Readers {
    /// The members of group `name`.
    pub fn of_group(name: &str) -> Self {
        Self {
            group: name.to_string(),
            gid: hpc::users::gid_of(name),
        }
    }

    /// Whether the user `uid` (in primary group `gid`) may read.
    pub fn admits(&self, uid: u32, gid: u32) -> bool {
        // SAFETY: geteuid has no preconditions.
        let me = unsafe { libc::geteuid() };
        if uid == 0 || uid == me {
            return true;
        }
        let Some(readers) = self.gid else {
            return false;
        };
        gid == readers || hpc::users::groups_of(uid).contains(&readers)
    }
}

/// Binds the query socket at `path`: its directory is created 0755 if
/// missing and refused unless it belongs to us and nobody else may write it.
pub fn bind(path: &Path) -> Result<UnixListener, ControlError> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    let err = |e| ControlError::Io(path.display().to_string(), e);
    let dir = path.parent().unwrap_or(Path::new("/"));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)
        .map_err(err)?;
    let meta = std::fs::symlink_metadata(dir).map_err(err)?;
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    if !meta.is_dir() || meta.uid() != me || meta.mode() & 0o022 != 0 {
        return Err(err(std::io::Error::other(format!(
            "its directory {} must be a directory of uid {me} that nobody else may write",
            dir.display()
        ))));
    }
    hpc::unix_socket::bind(path, 0o666).map_err(err)
}

/// Answers every admitted connection from the database `db`, one task each.
pub async fn serve(listener: UnixListener, db: Location, readers: Readers) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let (db, readers) = (db.clone(), readers.clone());
        tokio::spawn(async move {
            if let Err(e) = handle(stream, &db, &readers).await {
                tracing::debug!(error = %e, "query connection failed");
            }
        });
    }
}

async fn handle(mut stream: UnixStream, db: &Location, readers: &Readers) -> std::io::Result<()> {
    let cred = stream.peer_cred()?;
    if !readers.admits(cred.uid(), cred.gid()) {
        tracing::info!(uid = cred.uid(), "history query refused");
        let why = format!(
            "permission denied: uid {} may not read the history (members of group `{}` may; ask the admin to add you)",
            cred.uid(),
            readers.group
        );
        // Read the question first (briefly): answering and closing before it
        // arrived would make the client's write fail, and it would never see why.
        let mut question = [0u8; 4096];
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(2),
            tokio::io::AsyncReadExt::read(&mut stream, &mut question),
        )
        .await;
        return remote::write_answer(&mut stream, &Answer::Error(why)).await;
    }
    remote::serve_connection(db, stream).await
}
