//! The app's saved configuration: `$XDG_CONFIG_HOME/openmosixview/config.json`
//! (default `~/.config/openmosixview/config.json`), overridden by the command line.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// What the app connects to and how.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Nodes to find the cluster through (`HOST[:PORT]`), in order.
    pub nodes: Vec<String>,
    /// Private key; none = ssh-agent, then `~/.ssh/id_*`.
    pub key: Option<PathBuf>,
    /// known_hosts file; none = `~/.ssh/known_hosts`.
    pub known_hosts: Option<PathBuf>,
    /// How often the node figures are fetched, in milliseconds.
    pub refresh_ms: u64,
    /// The collector's program.
    pub collector_program: String,
    /// Arguments added to `openmosixcollector -d` by Collector → Start.
    pub collector_start_args: Vec<String>,
    /// The history the analyzer opens: a SQLite file or a PostgreSQL URL
    /// (default: the collector's, /var/lib/openmosix/history/current.db).
    #[serde(default)]
    pub history: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            nodes: Vec::new(),
            key: None,
            known_hosts: None,
            refresh_ms: 1000,
            collector_program: "openmosixcollector".into(),
            collector_start_args: Vec::new(),
            history: None,
        }
    }
}

/// Why the configuration could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// Reading or writing the file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid JSON for the settings.
    #[error("{path}: {source}")]
    Format {
        /// The file.
        path: String,
        /// Why.
        source: serde_json::Error,
    },
}

/// The configuration file's path, when a home or XDG directory is known.
pub fn default_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| hpc::paths::home_dir().map(|h| h.join(".config")))?;
    Some(base.join("openmosixview").join("config.json"))
}

impl Settings {
    /// Reads the file; a missing file gives the defaults.
    pub fn load(path: &Path) -> Result<Self, SettingsError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(source) => {
                return Err(SettingsError::Io {
                    path: path.display().to_string(),
                    source,
                });
            }
        };
        serde_json::from_str(&text).map_err(|source| SettingsError::Format {
            path: path.display().to_string(),
            source,
        })
    }

    /// Writes the file (directory 0700, file 0600, replaced atomically).
    pub fn save(&self, path: &Path) -> Result<(), SettingsError> {
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        let io = |source| SettingsError::Io {
            path: path.display().to_string(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(io)?;
        }
        let text = serde_json::to_string_pretty(self).map_err(|source| SettingsError::Format {
            path: path.display().to_string(),
            source,
        })?;
        let tmp = path.with_extension("json.new");
        let _ = std::fs::remove_file(&tmp);
        {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(io)?;
            f.write_all(text.as_bytes()).map_err(io)?;
            f.sync_all().map_err(io)?;
        }
        std::fs::rename(&tmp, path).map_err(io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_missing_file() {
        let dir = std::env::current_dir()
            .unwrap()
            .join("target")
            .join(format!("settings-test-{}", std::process::id()));
        let path = dir.join("config.json");
        assert_eq!(Settings::load(&path).unwrap(), Settings::default());
        let s = Settings {
            nodes: vec!["10.0.0.1:4660".into()],
            key: Some("/root/k".into()),
            ..Settings::default()
        };
        s.save(&path).unwrap();
        assert_eq!(Settings::load(&path).unwrap(), s);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        std::fs::write(&path, "{ nope").unwrap();
        assert!(
            Settings::load(&path)
                .unwrap_err()
                .to_string()
                .contains("config.json")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
