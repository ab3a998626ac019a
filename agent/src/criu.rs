//! Finding and checking CRIU (>= 4.1: kernels >= 6.13 have the `[vvar_vclock]`
//! mapping that older CRIU cannot handle). A node without a usable CRIU still
//! runs; it reports why migration is unavailable.

use crate::helpers::root_command;
use std::path::{Path, PathBuf};

/// Lowest CRIU version the agent accepts.
pub const MIN_VERSION: (u32, u32) = (4, 1);

/// A usable CRIU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Criu {
    /// The binary.
    pub binary: PathBuf,
    /// Its version, e.g. "4.1.1".
    pub version: String,
    /// Whether the kernel tracks dirty memory (`criu check --feature
    /// mem_dirty_track`), which pre-copy migration needs.
    pub mem_tracking: bool,
    /// Whether post-copy migration (lazy pages) works here, else why not.
    pub lazy_pages: Result<(), String>,
}

/// Parses `criu --version` output ("Version: 4.1.1").
pub fn parse_version(text: &str) -> Option<(u32, u32, String)> {
    let v = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Version:"))?
        .trim()
        .to_string();
    let mut parts = v.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next().and_then(|m| m.parse().ok()).unwrap_or(0);
    Some((major, minor, v))
}

fn locate(explicit: Option<&Path>) -> Result<PathBuf, String> {
    let path = match explicit {
        Some(p) if p.exists() => p.to_path_buf(),
        Some(p) => return Err(format!("CRIU not found at {}", p.display())),
        // Only the system directories: CRIU runs as root, so a caller's or
        // user's `PATH` must never choose it.
        None => hpc::paths::system_program("criu").ok_or_else(|| {
            "CRIU is not installed (scripts/install-deps.sh installs 4.1.1)".to_string()
        })?,
    };
    crate::helpers::check_trusted(&path)?;
    Ok(path)
}

/// The version suffix of the CRIU that `scripts/install-deps.sh` builds with
/// `scripts/criu-rlimits-from-proc.patch`, which reads other users' resource
/// limits from `/proc/PID/limits` when root lacks `CAP_SYS_RESOURCE`.
pub const PATCHED_SUFFIX: &str = ".4660";

/// Whether this process holds `CAP_SYS_RESOURCE` (containers often drop it).
pub fn has_cap_sys_resource() -> bool {
    const CAP_SYS_RESOURCE: u32 = 24;
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let hex = s.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
            u64::from_str_radix(hex.trim(), 16).ok()
        })
        .is_some_and(|caps| caps >> CAP_SYS_RESOURCE & 1 == 1)
}

/// Why only root's processes can be checkpointed here, if that is so: root
/// lacks `CAP_SYS_RESOURCE` and CRIU `version` cannot do without it.
pub fn other_users_limit(version: &str) -> Option<&'static str> {
    (!version.ends_with(PATCHED_SUFFIX) && !has_cap_sys_resource()).then_some(
        "only root's processes can move: root lacks CAP_SYS_RESOURCE here and this CRIU needs it for other users' (scripts/install-deps.sh builds one that does not)",
    )
}

/// Finds CRIU (`explicit`, else the system directories), checks that only root
/// can change it, checks its version and runs `criu check`. The error is the
/// reason, for a person.
pub fn detect(explicit: Option<&Path>) -> Result<Criu, String> {
    let binary = locate(explicit)?;
    let out = root_command(&binary)
        .arg("--version")
        .output()
        .map_err(|e| format!("cannot run {}: {e}", binary.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let (major, minor, version) = parse_version(&text)
        .ok_or_else(|| format!("{} --version printed no version", binary.display()))?;
    if (major, minor) < MIN_VERSION {
        return Err(format!(
            "CRIU {version} at {} is too old: this kernel needs CRIU >= {}.{}",
            binary.display(),
            MIN_VERSION.0,
            MIN_VERSION.1
        ));
    }
    let check = root_command(&binary)
        .arg("check")
        .output()
        .map_err(|e| format!("cannot run {} check: {e}", binary.display()))?;
    if !check.status.success() {
        let err = String::from_utf8_lossy(&check.stderr);
        let last = err
            .lines()
            .rfind(|l| !l.contains("RLIMIT_NOFILE"))
            .unwrap_or("no output");
        return Err(format!("`criu check` failed: {}", last.trim()));
    }
    let mem_tracking = root_command(&binary)
        .args(["check", "--feature", "mem_dirty_track"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    let lazy_pages = lazy_pages_check(&binary);
    Ok(Criu {
        binary,
        version,
        mem_tracking,
        lazy_pages,
    })
}

/// The pipe size CRIU's lazy-pages page server asks for (819 pages, rounded
/// up by the kernel to a power of two): above the default `fs.pipe-max-size`
/// (1 MiB), which only `CAP_SYS_RESOURCE` may exceed.
pub const LAZY_PIPE_BYTES: u64 = 4 << 20;

const PIPE_MAX_SIZE: &str = "/proc/sys/fs/pipe-max-size";

/// Whether post-copy can work: the kernel's userfaultfd with non-cooperative
/// events (`criu check --feature uffd-noncoop`), and pipes as large as CRIU's
/// page server makes them. Without `CAP_SYS_RESOURCE` that needs
/// `fs.pipe-max-size` >= [`LAZY_PIPE_BYTES`], which is raised to it (and
/// logged) when lower: without it CRIU's page server fails at the first
/// large request.
fn lazy_pages_check(binary: &Path) -> Result<(), String> {
    let uffd = root_command(binary)
        .args(["check", "--feature", "uffd-noncoop"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !uffd {
        return Err(
            "the kernel has no non-cooperative userfaultfd (`criu check --feature uffd-noncoop`)"
                .into(),
        );
    }
    if has_cap_sys_resource() {
        return Ok(());
    }
    let now: u64 = std::fs::read_to_string(PIPE_MAX_SIZE)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    if now >= LAZY_PIPE_BYTES {
        return Ok(());
    }
    std::fs::write(PIPE_MAX_SIZE, LAZY_PIPE_BYTES.to_string()).map_err(|e| {
        format!(
            "CRIU's page server needs pipes of {LAZY_PIPE_BYTES} bytes, fs.pipe-max-size is {now} and cannot be raised ({e}), and root lacks CAP_SYS_RESOURCE"
        )
    })?;
    tracing::info!(
        from = now,
        to = LAZY_PIPE_BYTES,
        "raised fs.pipe-max-size for CRIU's lazy-pages server (root lacks CAP_SYS_RESOURCE)"
    );
    Ok(())
}

/// Where CRIU (as root) keeps its cache of the kernel's features.
const KDAT_CACHE: &str = "/run/criu.kdat";

/// Fills CRIU's cache of the kernel's features, which spares every CRIU run
/// its probes (about 40 ms here, three times per post-copy freeze). Where
/// `/run` is a tmpfs (gone at reboot, so never stale) CRIU keeps the cache
/// itself, and [`detect`]'s `criu check` has written it; elsewhere the agent
/// lets CRIU write it on a private tmpfs and copies it to `/run` at each
/// start, so it always describes the kernel running now.
pub fn warm_feature_cache(binary: &Path) {
    if is_tmpfs(Path::new("/run")) {
        return;
    }
    let (Ok(unshare), Ok(sh)) = (
        crate::helpers::locate("unshare"),
        crate::helpers::locate("sh"),
    ) else {
        return;
    };
    // `$0` is CRIU; the cache leaves the private mount namespace on stdout.
    let script = "mount -t tmpfs -o size=1m,mode=0700 tmpfs /run && \"$0\" check >/dev/null 2>&1; exec cat /run/criu.kdat";
    let out = root_command(&unshare)
        .args(["--mount", "--propagation", "private", "--"])
        .arg(&sh)
        .args(["-c", script])
        .arg(binary)
        .output();
    match out {
        Ok(o) if o.status.success() && !o.stdout.is_empty() => {
            let path = Path::new(KDAT_CACHE);
            match crate::store::replace_private_file(
                path,
                &o.stdout,
                crate::store::Durability::ProcessOnly,
            ) {
                Ok(()) => tracing::info!(path = KDAT_CACHE, "wrote CRIU's kernel-feature cache"),
                Err(e) => tracing::warn!(error = %e, "cannot write CRIU's kernel-feature cache"),
            }
        }
        Ok(o) => tracing::warn!(
            status = %o.status,
            "CRIU wrote no kernel-feature cache; every CRIU run probes the kernel"
        ),
        Err(e) => tracing::warn!(error = %e, "cannot fill CRIU's kernel-feature cache"),
    }
}

/// Whether `dir` is on a tmpfs.
fn is_tmpfs(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: statfs is plain old data, zeroed is a valid value for it.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `st` a valid out-pointer.
    let r = unsafe { libc::statfs(c.as_ptr(), &mut st) };
    r == 0 && st.f_type == libc::TMPFS_MAGIC
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(
            parse_version("Version: 4.1.1\n"),
            Some((4, 1, "4.1.1".into()))
        );
        assert_eq!(
            parse_version("Version: 3.17.1\nGitID: v3.17"),
            Some((3, 17, "3.17.1".into()))
        );
        assert_eq!(parse_version("Version: 5\n"), Some((5, 0, "5".into())));
        assert_eq!(parse_version("criu"), None);
    }

    #[test]
    fn a_missing_binary_is_a_reason_not_a_crash() {
        let e = detect(Some(Path::new("/nonexistent/criu"))).unwrap_err();
        assert_eq!(e, "CRIU not found at /nonexistent/criu");
    }

    #[test]
    fn the_installed_criu_is_usable() {
        // The test machines install CRIU 4.1.1 (scripts/install-deps.sh).
        let c = detect(None).expect("CRIU >= 4.1 must be installed on test machines");
        assert!(
            c.version.starts_with('4') || c.version.starts_with('5'),
            "{}",
            c.version
        );
    }
}
