//! Where a history lives (a SQLite file or a PostgreSQL database), opening it
//! with the right settings and schema, and finding its archives.

use std::borrow::Cow;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use sqlx::any::AnyPoolOptions;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{AnyPool, Executor, SqlSafeStr};

use super::StoreError;

/// The default history file.
pub const DEFAULT_DB: &str = "/var/lib/openmosix/history/current.db";

/// A history database.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Location {
    /// A SQLite file (archives are files beside it).
    Sqlite(PathBuf),
    /// A PostgreSQL URL (archives are closed histories in the same database).
    Postgres(String),
}

impl FromStr for Location {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self, StoreError> {
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            return Ok(Location::Postgres(s.to_string()));
        }
        if s.contains("://") {
            return Err(StoreError::Config(format!(
                "{s}: not a file path or postgres:// URL"
            )));
        }
        let path = PathBuf::from(s);
        if !path.is_absolute() {
            return Err(StoreError::Config(format!(
                "{s}: the history file must be an absolute path"
            )));
        }
        if s.contains(['?', '#', '%']) {
            return Err(StoreError::Config(format!(
                "{s}: '?', '#' and '%' are not allowed in the history path"
            )));
        }
        Ok(Location::Sqlite(path))
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Sqlite(p) => write!(f, "{}", p.display()),
            Location::Postgres(url) => write!(f, "{}", redact(url)),
        }
    }
}

/// The URL without its password, for logs and errors.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    match rest.split_once('@') {
        Some((creds, host)) => {
            let user = creds.split(':').next().unwrap_or("");
            format!("{scheme}://{user}:***@{host}")
        }
        None => url.to_string(),
    }
}

fn migrator(location: &Location) -> Migrator {
    let steps: [(i64, &'static str, &'static str); 4] = match location {
        Location::Sqlite(_) => [
            (
                1,
                "history",
                include_str!("../../migrations/sqlite/0001_history.sql"),
            ),
            (
                2,
                "moves and summaries",
                include_str!("../../migrations/sqlite/0002_moves_and_summaries.sql"),
            ),
            (
                3,
                "move reasons",
                include_str!("../../migrations/sqlite/0003_move_reasons.sql"),
            ),
            (
                4,
                "move modes",
                include_str!("../../migrations/sqlite/0004_move_modes.sql"),
            ),
        ],
        Location::Postgres(_) => [
            (
                1,
                "history",
                include_str!("../../migrations/postgres/0001_history.sql"),
            ),
            (
                2,
                "moves and summaries",
                include_str!("../../migrations/postgres/0002_moves_and_summaries.sql"),
            ),
            (
                3,
                "move reasons",
                include_str!("../../migrations/postgres/0003_move_reasons.sql"),
            ),
            (
                4,
                "move modes",
                include_str!("../../migrations/postgres/0004_move_modes.sql"),
            ),
        ],
    };
    Migrator::with_migrations(
        steps
            .into_iter()
            .map(|(version, name, sql)| {
                Migration::new(
                    version,
                    Cow::Borrowed(name),
                    MigrationType::Simple,
                    sql.into_sql_str(),
                    false,
                )
            })
            .collect(),
    )
}

/// Refuses a history directory that others could write to (the original
/// collector's /tmp symlink hole, CVE-2005-0894), creating it 0755 if missing.
fn check_directory(dir: &Path) -> Result<(), StoreError> {
    if !dir.exists() {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::io(dir, e))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| StoreError::io(dir, e))?;
    }
    let meta = std::fs::symlink_metadata(dir).map_err(|e| StoreError::io(dir, e))?;
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    if !meta.is_dir() || meta.mode() & 0o022 != 0 || (meta.uid() != me && meta.uid() != 0) {
        return Err(StoreError::Config(format!(
            "{}: refusing a history directory that is not a real directory owned by us or root and writable only by its owner",
            dir.display()
        )));
    }
    Ok(())
}

/// The history holds every user's command lines: its file is 0640 (root and
/// its group read it, nobody else). A missing file is created so, without
/// following a symbolic link; an existing one loses any rights of others.
/// SQLite gives its `-wal` and `-shm` files the database file's mode.
fn private_history_file(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() || !m.is_file() => Err(StoreError::Config(format!(
            "{}: refusing a history that is not a regular file",
            path.display()
        ))),
        Ok(m) if m.mode() & 0o027 != 0 => {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(m.mode() & 0o7750))
                .map_err(|e| StoreError::io(path, e))
        }
        Ok(_) => Ok(()),
        Err(_) => std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o640)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
            .map(drop)
            .map_err(|e| StoreError::io(path, e)),
    }
}

/// Opens a pool on `location`. `write` creates the file or schema as needed and
/// applies the embedded migrations; otherwise the history is opened read-only.
pub async fn connect(location: &Location, write: bool) -> Result<AnyPool, StoreError> {
    sqlx::any::install_default_drivers();
    let pool = match location {
        Location::Sqlite(path) => {
            if write {
                let dir = path.parent().unwrap_or(Path::new("/"));
                check_directory(dir)?;
                private_history_file(path)?;
            } else if !path.exists() {
                return Err(StoreError::Config(format!(
                    "{}: no such history",
                    path.display()
                )));
            }
            let mode = if write { "rwc" } else { "ro" };
            let url = format!("sqlite://{}?mode={mode}", path.display());
            AnyPoolOptions::new()
                .max_connections(if write { 2 } else { 4 })
                .after_connect(|conn, _| {
                    Box::pin(async move {
                        conn.execute("PRAGMA synchronous = NORMAL").await?;
                        Ok(())
                    })
                })
                .connect(&url)
                .await
                .map_err(|e| StoreError::db(location, e))?
        }
        Location::Postgres(url) => AnyPoolOptions::new()
            .max_connections(4)
            .connect(url)
            .await
            .map_err(|e| StoreError::db(location, e))?,
    };
    if write {
        if let Location::Sqlite(_) = location {
            sqlx::query("PRAGMA journal_mode = WAL")
                .fetch_optional(&pool)
                .await
                .map_err(|e| StoreError::db(location, e))?;
        }
        migrator(location)
            .run(&pool)
            .await
            .map_err(|e| StoreError::Migrate(location.to_string(), e.to_string()))?;
    }
    Ok(pool)
}

/// Checkpoints a closed SQLite history and switches it to a rollback journal.
pub async fn leave_wal(path: &Path) -> Result<(), sqlx::Error> {
    use sqlx::Connection;
    let url = format!("sqlite://{}?mode=rw", path.display());
    let mut conn = sqlx::AnyConnection::connect(&url).await?;
    for pragma in [
        "PRAGMA wal_checkpoint(TRUNCATE)",
        "PRAGMA journal_mode = DELETE",
    ] {
        sqlx::query(pragma).fetch_optional(&mut conn).await?;
    }
    conn.close().await
}

/// The file a SQLite history is archived to at `now_ms`: `<stem>-<UTC date>.db`
/// beside the current file (a counter is added if that name is taken).
pub fn archive_path(current: &Path, now_ms: i64) -> PathBuf {
    let stem = current
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "history".into());
    let date = chrono::DateTime::from_timestamp_millis(now_ms)
        .map(|d| d.format("%Y%m%d-%H%M%S").to_string())
        .unwrap_or_else(|| now_ms.to_string());
    let dir = current.parent().unwrap_or(Path::new("/"));
    let mut candidate = dir.join(format!("{stem}-{date}.db"));
    let mut n = 1;
    while candidate.exists() {
        candidate = dir.join(format!("{stem}-{date}-{n}.db"));
        n += 1;
    }
    candidate
}

/// The archive files of a SQLite history (`<stem>-*.db` beside it), oldest first.
pub fn archive_files(current: &Path) -> Vec<PathBuf> {
    let Some(stem) = current
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
    else {
        return Vec::new();
    };
    let dir = current.parent().unwrap_or(Path::new("/"));
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.extension().is_some_and(|e| e == "db")
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&format!("{stem}-")))
        })
        .collect();
    files.sort();
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_locations_and_refuses_bad_ones() {
        assert_eq!(
            "/var/lib/x.db".parse::<Location>().unwrap(),
            Location::Sqlite("/var/lib/x.db".into())
        );
        assert!(matches!(
            "postgres://u:p@localhost/db".parse::<Location>().unwrap(),
            Location::Postgres(_)
        ));
        assert!("relative.db".parse::<Location>().is_err());
        assert!("mysql://x".parse::<Location>().is_err());
        assert!("/a?b.db".parse::<Location>().is_err());
        let pg: Location = "postgres://u:secret@h/db".parse().unwrap();
        assert!(!pg.to_string().contains("secret"));
    }

    #[test]
    fn archive_names_are_dated_and_unique() {
        let dir = tempfile::tempdir().unwrap();
        let cur = dir.path().join("current.db");
        let a = archive_path(&cur, 0);
        assert_eq!(a.file_name().unwrap(), "current-19700101-000000.db");
        std::fs::write(&a, b"").unwrap();
        let b = archive_path(&cur, 0);
        assert_eq!(b.file_name().unwrap(), "current-19700101-000000-1.db");
        assert_eq!(archive_files(&cur), vec![a]);
    }
}
