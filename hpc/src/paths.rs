//! Well-known ports and file locations shared by the agent, the CLIs and the app.

use std::path::PathBuf;

/// TCP port of the agent's SSH server (openMosix's old migration port).
pub const AGENT_PORT: u16 = 4660;
/// UDP port of the agents' authenticated gossip (membership and load exchange).
pub const GOSSIP_PORT: u16 = 4660;
/// Name of the SSH subsystem that speaks the openMosix JSON-RPC protocol.
pub const SUBSYSTEM: &str = "openmosix";
/// Name of the SSH subsystem agents send migration images on (cluster key only).
pub const MIGRATION_SUBSYSTEM: &str = "openmosix-migrate";
/// Name of the SSH subsystem a post-copy migration's memory pages travel on,
/// beside its `openmosix-migrate` channel in the same session (cluster key only).
pub const PAGES_SUBSYSTEM: &str = "openmosix-pages";
/// Directory of the agent's configuration (host key, authorized keys, map).
pub const CONFIG_DIR: &str = "/etc/openmosix";
/// Directory of the agent's persistent state (admin state, speed calibration).
pub const STATE_DIR: &str = "/var/lib/openmosix";
/// Directory of the agent's runtime files (PID file, migration images).
pub const RUN_DIR: &str = "/run/openmosix";
/// Where a job's init writes how its command ended, in a file named by the
/// init's PID on the node, for an agent that is not the job's parent (a
/// later run of the agent, after a restart). One per machine, whatever
/// directories an agent is configured with.
pub const ENDED_DIR: &str = "/run/openmosix/ended";
/// File name of the cluster map inside [`CONFIG_DIR`].
pub const MAP_FILE: &str = "openmosix.map";
/// File name of the agent's host key inside [`CONFIG_DIR`].
pub const HOST_KEY_FILE: &str = "ssh_host_ed25519_key";
/// File name of the role-tagged authorized keys inside [`CONFIG_DIR`].
pub const AUTHORIZED_KEYS_FILE: &str = "authorized_keys";
/// File name of the cluster key (shared by all agents) inside [`CONFIG_DIR`].
pub const CLUSTER_KEY_FILE: &str = "cluster_key";

/// File name of the agent's local socket inside [`RUN_DIR`]: any local user
/// may connect, and is known to the agent by its uid.
pub const AGENT_SOCKET_FILE: &str = "agent.sock";
/// Subdirectory of [`STATE_DIR`] that migration images pass through.
pub const IMAGES_DIR: &str = "images";
/// The move log of the migrations a node carried out, in its state directory.
pub const MOVE_LOG_FILE: &str = "moves.log";

/// The `PATH` of every program run as root by the agent or the lab: system
/// directories only, never a caller's.
pub const SYSTEM_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The local agent's socket.
pub fn default_agent_socket() -> PathBuf {
    PathBuf::from(RUN_DIR).join(AGENT_SOCKET_FILE)
}

/// A system program by name, looked up in [`SYSTEM_PATH`] only (never in the
/// caller's `PATH`), as an absolute path.
pub fn system_program(name: &str) -> Option<PathBuf> {
    SYSTEM_PATH
        .split(':')
        .map(|d| std::path::Path::new(d).join(name))
        .find(|p| p.is_file())
}

/// The invoking user's home directory, from `$HOME`.
pub fn home_dir() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
}

/// The user's `~/.ssh/known_hosts`, used to verify agents' host keys.
pub fn default_known_hosts() -> Option<PathBuf> {
    home_dir().map(|h| h.join(".ssh").join("known_hosts"))
}

/// Candidate private keys of the invoking user, in the order OpenSSH tries them.
pub fn default_identity_files() -> Vec<PathBuf> {
    let Some(home) = home_dir() else {
        return Vec::new();
    };
    ["id_ed25519", "id_ecdsa", "id_rsa"]
        .iter()
        .map(|n| home.join(".ssh").join(n))
        .collect()
}
