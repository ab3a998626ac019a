//! The few iproute2 and OpenSSH commands the lab runs, with their stderr in errors.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, bail};

/// A system program by absolute path, run as root with a clean environment.
pub fn system(program: &str) -> anyhow::Result<Command> {
    let path = hpc::paths::system_program(program).with_context(|| {
        format!(
            "{program} not found in {} (is it installed?)",
            hpc::paths::SYSTEM_PATH
        )
    })?;
    let mut c = Command::new(path);
    c.env_clear().env("PATH", hpc::paths::SYSTEM_PATH);
    Ok(c)
}

/// Runs a command and fails with its stderr when it fails.
pub fn run(program: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = system(program)?
        .args(args)
        .output()
        .with_context(|| format!("cannot run {program}"))?;
    if !out.status.success() {
        bail!(
            "`{program} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `ip ARGS`.
pub fn ip(args: &[&str]) -> anyhow::Result<()> {
    run("ip", args).map(drop)
}

/// `ip -n NS ARGS` (inside a network namespace).
pub fn ip_in(netns: &str, args: &[&str]) -> anyhow::Result<()> {
    let mut all = vec!["-n", netns];
    all.extend_from_slice(args);
    ip(&all)
}

/// Whether a network namespace of that name exists.
pub fn netns_exists(name: &str) -> bool {
    Path::new("/run/netns").join(name).exists()
}

/// Whether a link of that name exists in the root namespace.
pub fn link_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

/// Makes a new Ed25519 key pair with ssh-keygen (private 0600, `.pub` beside it).
pub fn keygen(path: &Path, comment: &str) -> anyhow::Result<()> {
    let p = path.to_str().context("key path is not UTF-8")?;
    run(
        "ssh-keygen",
        &["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", p],
    )
    .map(drop)
}

/// The public half of a private key file, in OpenSSH format.
pub fn public_of(private: &Path) -> anyhow::Result<String> {
    let p = private.to_str().context("key path is not UTF-8")?;
    Ok(run("ssh-keygen", &["-y", "-f", p])?.trim().to_string())
}

/// The processes of a network namespace (`ip netns pids`).
pub fn pids_in_netns(name: &str) -> Vec<i32> {
    run("ip", &["netns", "pids", name])
        .map(|out| {
            out.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}
