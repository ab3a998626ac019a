//! Binding the Unix sockets of our daemons (the agent's `agent.sock`, the
//! collector's control socket): a socket left by a crash is replaced,
//! anything else at the path is refused, and the socket gets its mode.

use std::path::Path;

/// Binds a Unix socket at `path` with `mode`, replacing a stale socket there
/// and refusing to replace anything that is not a socket.
pub fn bind(path: &Path, mode: u32) -> std::io::Result<tokio::net::UnixListener> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => std::fs::remove_file(path)?,
        Ok(_) => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "exists and is not a socket; refusing to replace it",
            ));
        }
        Err(_) => {}
    }
    let listener = tokio::net::UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    Ok(listener)
}
