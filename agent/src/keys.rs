//! Keys: the agent's host key, the role-tagged `authorized_keys`, and the
//! cluster key that agents share (its public half authenticates agents to each
//! other over SSH; a secret derived from it authenticates gossip).
//!
//! `authorized_keys` lines read `ROLE KEYTYPE BASE64 [COMMENT]` with ROLE one of
//! `monitor`, `admin`, `cluster`; `#` starts a comment.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use hpc::model::Role;
use russh::keys::{Algorithm, HashAlg, PrivateKey, PublicKey};

/// Errors handling keys.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// File I/O failed.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
}

fn file_err(path: &Path, message: impl ToString) -> KeyError {
    KeyError::File {
        path: path.display().to_string(),
        message: message.to_string(),
    }
}

/// Loads the private key at `path`, creating a new Ed25519 key (mode 0600) if missing.
pub fn load_or_create_key(path: &Path) -> Result<PrivateKey, KeyError> {
    if path.exists() {
        check_private_mode(path)?;
        return russh::keys::load_secret_key(path, None).map_err(|e| file_err(path, e));
    }
    let key =
        PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519).map_err(|e| file_err(path, e))?;
    let text = key
        .to_openssh(russh::keys::ssh_key::LineEnding::LF)
        .map_err(|e| file_err(path, e))?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| file_err(path, e))?;
    f.write_all(text.as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(|e| file_err(path, e))?;
    tracing::info!(path = %path.display(), fingerprint = %fingerprint(key.public_key()), "generated key");
    Ok(key)
}

fn check_private_mode(path: &Path) -> Result<(), KeyError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .map_err(|e| file_err(path, e))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(file_err(
            path,
            format!(
                "private key is accessible by others (mode {:o}); run chmod 600",
                mode & 0o777
            ),
        ));
    }
    Ok(())
}

/// The SHA256 fingerprint of a public key, as OpenSSH prints it.
pub fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

/// The gossip secret derived from the cluster key: SHA-256 over a label and the key's private bytes.
pub fn gossip_secret(cluster_key: &PrivateKey) -> Result<[u8; 32], KeyError> {
    let Some(ed) = cluster_key.key_data().ed25519() else {
        return Err(KeyError::File {
            path: "cluster key".into(),
            message: "the cluster key must be an Ed25519 key".into(),
        });
    };
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(b"openmosix gossip v1\0");
    ctx.update(ed.private.as_ref());
    let digest = ctx.finish();
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    Ok(out)
}

/// One `authorized_keys` entry.
#[derive(Debug, Clone)]
pub struct AuthorizedKey {
    /// What the key may do.
    pub role: Role,
    /// The key.
    pub key: PublicKey,
    /// The comment.
    pub comment: String,
}

/// Parses role-tagged authorized keys. Bad lines are reported, not fatal.
pub fn parse_authorized_keys(text: &str) -> (Vec<AuthorizedKey>, Vec<String>) {
    let mut keys = Vec::new();
    let mut problems = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut f = line.split_whitespace();
        let (Some(role), Some(_algo), Some(b64)) = (f.next(), f.next(), f.next()) else {
            problems.push(format!(
                "line {}: expected `ROLE KEYTYPE BASE64 [COMMENT]`",
                n + 1
            ));
            continue;
        };
        let role = match role.parse::<Role>() {
            Ok(r) => r,
            Err(e) => {
                problems.push(format!("line {}: {e}", n + 1));
                continue;
            }
        };
        match russh::keys::parse_public_key_base64(b64) {
            Ok(key) => keys.push(AuthorizedKey {
                role,
                key,
                comment: f.collect::<Vec<_>>().join(" "),
            }),
            Err(e) => problems.push(format!("line {}: bad key: {e}", n + 1)),
        }
    }
    (keys, problems)
}

/// The authorized keys file, re-read when it changes.
pub struct AuthorizedKeys {
    path: PathBuf,
    cluster: PublicKey,
    cache: Mutex<(Option<SystemTime>, Vec<AuthorizedKey>)>,
}

impl AuthorizedKeys {
    /// Keys from `path`, plus the cluster key's public half with role `cluster`.
    pub fn new(path: PathBuf, cluster: PublicKey) -> Self {
        Self {
            path,
            cluster,
            cache: Mutex::new((None, Vec::new())),
        }
    }

    /// The role of `key`, if it is authorized.
    pub fn role_of(&self, key: &PublicKey) -> Option<Role> {
        if key.key_data() == self.cluster.key_data() {
            return Some(Role::Cluster);
        }
        let mtime = std::fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .ok();
        let mut cache = self.cache.lock().ok()?;
        if mtime.is_none() {
            cache.1.clear();
        } else if cache.0 != mtime {
            match std::fs::read_to_string(&self.path) {
                Ok(text) => {
                    let (keys, problems) = parse_authorized_keys(&text);
                    for p in problems {
                        tracing::warn!(file = %self.path.display(), "{p}");
                    }
                    cache.1 = keys;
                }
                Err(e) => {
                    tracing::warn!(file = %self.path.display(), error = %e, "cannot read authorized keys");
                    cache.1.clear();
                }
            }
        }
        cache.0 = mtime;
        cache
            .1
            .iter()
            .filter(|k| k.key.key_data() == key.key_data())
            .map(|k| k.role)
            .max()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_roles_and_reports_bad_lines() {
        let k = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519).unwrap();
        let pub_line = k.public_key().to_openssh().unwrap();
        let text = format!(
            "# c\nadmin {pub_line} alice\nmonitor {pub_line}\nroot {pub_line}\nadmin ssh-ed25519 !!!\nadmin\n"
        );
        let (keys, problems) = parse_authorized_keys(&text);
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[0].role, Role::Admin);
        assert_eq!(keys[0].comment, "alice");
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].contains("unknown role `root`"));
    }

    #[test]
    fn gossip_secret_is_stable_per_key() {
        let a = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519).unwrap();
        let b = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519).unwrap();
        assert_eq!(gossip_secret(&a).unwrap(), gossip_secret(&a).unwrap());
        assert_ne!(gossip_secret(&a).unwrap(), gossip_secret(&b).unwrap());
    }
}
