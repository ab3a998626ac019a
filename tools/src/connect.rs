//! Command-line options for reaching an agent, shared by every tool.

use std::path::PathBuf;

use clap::Args;
use hpc::client::{Client, ClientConfig, ClientError, Identity};
use hpc::paths;

/// `--node`, `--socket`, `--key`, `--known-hosts`, `--accept-new`.
#[derive(Args, Debug, Clone)]
pub struct NodeArgs {
    /// Agent to talk to over SSH, HOST[:PORT] (default: the local agent, through
    /// its socket when it has one, else 127.0.0.1:4660).
    #[arg(long, global = true, env = "OPENMOSIX_NODE")]
    pub node: Option<String>,
    /// The local agent's socket (default: /run/openmosix/agent.sock). No key is
    /// needed: root acts as admin, any other user on its own processes.
    #[arg(long, global = true, env = "OPENMOSIX_SOCKET", conflicts_with = "node")]
    pub socket: Option<PathBuf>,
    /// Private key to authenticate with (default: ssh-agent, then ~/.ssh/id_*).
    #[arg(long, global = true, env = "OPENMOSIX_KEY")]
    pub key: Option<PathBuf>,
    /// known_hosts file for agents' host keys (default: ~/.ssh/known_hosts).
    #[arg(long, global = true, env = "OPENMOSIX_KNOWN_HOSTS")]
    pub known_hosts: Option<PathBuf>,
    /// Record an unknown agent host key instead of refusing it (trust on first use).
    #[arg(long, global = true)]
    pub accept_new: bool,
    /// Configuration directory of the local agent (its host key pins 127.0.0.1).
    #[arg(long, global = true, default_value = paths::CONFIG_DIR, hide = true)]
    pub config_dir: PathBuf,
}

impl NodeArgs {
    /// The agent address.
    pub fn addr(&self) -> String {
        self.node
            .clone()
            .unwrap_or_else(|| format!("127.0.0.1:{}", paths::AGENT_PORT))
    }

    /// The client configuration these options describe. For the local agent,
    /// the agent's own host key (readable by root) is pinned, so no TOFU is needed.
    pub fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::from_env();
        if let Some(k) = &self.key {
            c.identity = Identity::KeyFile(k.clone());
        }
        if let Some(kh) = &self.known_hosts {
            c.known_hosts = kh.clone();
        }
        c.trust_on_first_use = self.accept_new;
        if self.node.is_none() {
            let host_key = self.config_dir.join(paths::HOST_KEY_FILE);
            if let Ok(k) = russh::keys::load_secret_key(&host_key, None) {
                c.pinned_host_key = Some(k.public_key().clone());
            }
        }
        c
    }

    /// The local socket to use: the one given, else the default one when it
    /// exists and neither a node nor a key was named.
    pub fn local_socket(&self) -> Option<PathBuf> {
        if self.socket.is_some() {
            return self.socket.clone();
        }
        let default = paths::default_agent_socket();
        (self.node.is_none() && self.key.is_none() && default.exists()).then_some(default)
    }

    /// Connects: to the local socket (see [`NodeArgs::local_socket`]), else over SSH.
    pub async fn connect(&self) -> Result<Client, ClientError> {
        match self.local_socket() {
            Some(path) => Client::connect_unix(&path).await,
            None => Client::connect(&self.addr(), &self.client_config()).await,
        }
    }
}

/// Exit code for a refused or failed request.
pub const EXIT_FAILED: i32 = 1;
/// Exit code when the agent cannot be reached or refuses the key.
pub const EXIT_UNREACHABLE: i32 = 2;

/// The exit code for a client error.
pub fn exit_code(e: &ClientError) -> i32 {
    match e {
        ClientError::Rpc(_) => EXIT_FAILED,
        _ => EXIT_UNREACHABLE,
    }
}
