//! Keys: the agent's host key, the role-tagged `authorized_keys`, and the
//! cluster key that agents share (its public half authenticates agents to each
//! other over SSH; a secret derived from it authenticates gossip).
//!
//! `authorized_keys` lines read `ROLE KEYTYPE BASE64 [COMMENT]` with ROLE one of
//! `monitor`, `admin`, `cluster`, or `user uid=N KEYTYPE BASE64 [COMMENT]` for
//! an ordinary user's key bound to its uid (`uid=NAME` is looked up in the
//! user database); `#` starts a comment. The file must belong to root and be
//! writable by nobody else, or it is ignored (only the cluster key works then).

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
    /// For a `user` key, the uid it acts as.
    pub uid: Option<u32>,
    /// The key.
    pub key: PublicKey,
    /// The comment.
    pub comment: String,
}

/// What an authenticated key is granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    /// Its role.
    pub role: Role,
    /// For a `user` key, the uid it acts as.
    pub uid: Option<u32>,
}

/// A uid from `uid=N` or `uid=NAME`.
fn parse_uid(text: &str) -> Result<u32, String> {
    let Some(v) = text.strip_prefix("uid=") else {
        return Err(format!(
            "a user key needs its uid: `user uid=N KEYTYPE BASE64`, not `user {text} …`"
        ));
    };
    if let Ok(n) = v.parse::<u32>() {
        return Ok(n);
    }
    crate::users::uid_of(v).ok_or_else(|| format!("no such user `{v}`"))
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
        let role = match f.next().map(str::parse::<Role>) {
            Some(Ok(r)) => r,
            Some(Err(e)) => {
                problems.push(format!("line {}: {e}", n + 1));
                continue;
            }
            None => continue,
        };
        let uid = if role == Role::User {
            match f.next().map(parse_uid) {
                Some(Ok(uid)) => Some(uid),
                Some(Err(e)) => {
                    problems.push(format!("line {}: {e}", n + 1));
                    continue;
                }
                None => {
                    problems.push(format!(
                        "line {}: expected `user uid=N KEYTYPE BASE64 [COMMENT]`",
                        n + 1
                    ));
                    continue;
                }
            }
        } else {
            None
        };
        let (Some(_algo), Some(b64)) = (f.next(), f.next()) else {
            problems.push(format!(
                "line {}: expected `ROLE KEYTYPE BASE64 [COMMENT]`",
                n + 1
            ));
            continue;
        };
        match russh::keys::parse_public_key_base64(b64) {
            Ok(key) => keys.push(AuthorizedKey {
                role,
                uid,
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

    /// What `key` is granted, if it is authorized.
    pub fn role_of(&self, key: &PublicKey) -> Option<Grant> {
        if key.key_data() == self.cluster.key_data() {
            return Some(Grant {
                role: Role::Cluster,
                uid: None,
            });
        }
        let meta = std::fs::symlink_metadata(&self.path).ok();
        let mtime = meta.as_ref().and_then(|m| m.modified().ok());
        let mut cache = self.cache.lock().ok()?;
        if mtime.is_none() {
            cache.1.clear();
        } else if cache.0 != mtime {
            cache.1 = self.load(meta.as_ref());
        }
        cache.0 = mtime;
        cache
            .1
            .iter()
            .filter(|k| k.key.key_data() == key.key_data())
            .max_by_key(|k| k.role)
            .map(|k| Grant {
                role: k.role,
                uid: k.uid,
            })
    }

    fn load(&self, meta: Option<&std::fs::Metadata>) -> Vec<AuthorizedKey> {
        let shown = self.path.display();
        let checked = match meta {
            Some(m) if m.file_type().is_symlink() => {
                Err(format!("{shown} is a symbolic link; refusing it"))
            }
            Some(m) => crate::helpers::root_only(
                &self.path,
                m,
                "it decides who is root-equivalent on this node",
            ),
            None => Err(format!("{shown} is missing")),
        };
        if let Err(why) = checked {
            tracing::error!("ignoring the authorized keys: {why}");
            return Vec::new();
        }
        match std::fs::read_to_string(&self.path) {
            Ok(text) => {
                let (keys, problems) = parse_authorized_keys(&text);
                for p in problems {
                    tracing::warn!(file = %shown, "{p}");
                }
                keys
            }
            Err(e) => {
                tracing::warn!(file = %shown, error = %e, "cannot read authorized keys");
                Vec::new()
            }
        }
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
            "# c\nadmin {pub_line} alice\nmonitor {pub_line}\nroot {pub_line}\nadmin ssh-ed25519 !!!\nadmin\nuser uid=1000 {pub_line} bob\nuser uid=root {pub_line}\nuser {pub_line}\nuser uid=no-such-user-here {pub_line}\n"
        );
        let (keys, problems) = parse_authorized_keys(&text);
        assert_eq!(keys.len(), 4);
        assert_eq!(keys[0].role, Role::Admin);
        assert_eq!(keys[0].comment, "alice");
        assert_eq!((keys[2].role, keys[2].uid), (Role::User, Some(1000)));
        assert_eq!(keys[2].comment, "bob");
        assert_eq!(keys[3].uid, Some(0));
        assert_eq!(problems.len(), 5, "{problems:?}");
        assert!(problems[0].contains("unknown role `root`"));
        assert!(problems[3].contains("needs its uid"), "{problems:?}");
        assert!(problems[4].contains("no such user"), "{problems:?}");
    }

    #[test]
    fn gossip_secret_is_stable_per_key() {
        let a = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519).unwrap();
        let b = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519).unwrap();
        assert_eq!(gossip_secret(&a).unwrap(), gossip_secret(&a).unwrap());
        assert_ne!(gossip_secret(&a).unwrap(), gossip_secret(&b).unwrap());
    }
}
