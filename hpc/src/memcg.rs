//! Memory cgroups. The agent reads the limit of the one it runs in (a lab
//! node's, a container's, a service's `MemoryMax`): everything it starts or
//! restores runs there too, so the node's memory is that limit and its free
//! memory what the cgroup has left of it. That is what balancers weigh and
//! when ushering starts, before the kernel's OOM killer acts in the cgroup.
//! The lab makes one per node (`openmosix-lab up --mem-per-node`). Both
//! cgroup versions are handled (v1 `memory.limit_in_bytes`, v2
//! `memory.max`); reclaimable page cache (`inactive_file`) counts as free.

use std::path::{Path, PathBuf};

/// A memory cgroup.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MemoryCgroup {
    dir: PathBuf,
    v2: bool,
}

impl MemoryCgroup {
    /// Its directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file a PID is written to to move that process in.
    pub fn procs_file(&self) -> PathBuf {
        self.dir.join("cgroup.procs")
    }

    /// Makes a cgroup `name` inside this one, holding its processes to
    /// `limit` bytes (no swap beyond it where the kernel can say so).
    pub fn child(&self, name: &str, limit: u64) -> std::io::Result<Self> {
        if name.is_empty() || name.contains('/') || name.starts_with('.') {
            return Err(std::io::Error::other(format!("bad cgroup name `{name}`")));
        }
        if self.v2 {
            // Children get the memory controller only if the parent hands it on.
            let _ = std::fs::write(self.dir.join("cgroup.subtree_control"), "+memory");
        }
        let child = Self {
            dir: self.dir.join(name),
            v2: self.v2,
        };
        std::fs::create_dir(&child.dir)?;
        let limit = limit.to_string();
        let written = if self.v2 {
            let _ = std::fs::write(child.dir.join("memory.swap.max"), "0");
            std::fs::write(child.dir.join("memory.max"), &limit)
        } else {
            std::fs::write(child.dir.join("memory.limit_in_bytes"), &limit).map(|()| {
                let _ = std::fs::write(child.dir.join("memory.memsw.limit_in_bytes"), &limit);
            })
        };
        if let Err(e) = written {
            let _ = std::fs::remove_dir(&child.dir);
            return Err(e);
        }
        Ok(child)
    }

    /// How many processes the kernel's OOM killer has killed in it.
    pub fn oom_kills(&self) -> Option<u64> {
        let file = if self.v2 {
            "memory.events"
        } else {
            "memory.oom_control"
        };
        let text = std::fs::read_to_string(self.dir.join(file)).ok()?;
        stat_value(&text, "oom_kill")
    }

    /// Removes it (it must hold no process by then).
    pub fn remove(&self) -> std::io::Result<()> {
        match std::fs::remove_dir(&self.dir) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }

    /// The memory cgroup this process is in, if one is mounted where cgroups
    /// usually are.
    pub fn own() -> Option<Self> {
        let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
        Self::from_proc(&text, Path::new("/sys/fs/cgroup"))
    }

    /// The memory cgroup named in `/proc/PID/cgroup` text, under the cgroup
    /// mount `root`.
    fn from_proc(text: &str, root: &Path) -> Option<Self> {
        let mut unified = None;
        for line in text.lines() {
            let mut parts = line.splitn(3, ':');
            let (Some(_), Some(controllers), Some(path)) =
                (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let rel = path.trim_start_matches('/');
            if controllers.split(',').any(|c| c == "memory") {
                let dir = root.join("memory").join(rel);
                if dir.join("memory.limit_in_bytes").exists() {
                    return Some(Self { dir, v2: false });
                }
            } else if controllers.is_empty() {
                unified = Some(rel.to_string());
            }
        }
        let rel = unified?;
        [root.to_path_buf(), root.join("unified")]
            .into_iter()
            .map(|base| base.join(&rel))
            .find(|dir| dir.join("memory.max").exists())
            .map(|dir| Self { dir, v2: true })
    }

    /// Its limit and what it uses, in bytes (reclaimable page cache left
    /// out); `None` without a limit or when unreadable.
    pub fn limit_and_use(&self) -> Option<(u64, u64)> {
        let read = |f: &str| std::fs::read_to_string(self.dir.join(f)).ok();
        let (limit, usage, inactive) = if self.v2 {
            (
                read("memory.max")?,
                read("memory.current")?,
                "inactive_file",
            )
        } else {
            (
                read("memory.limit_in_bytes")?,
                read("memory.usage_in_bytes")?,
                "total_inactive_file",
            )
        };
        // "max" (v2) or a huge number (v1): no limit.
        let limit: u64 = limit.trim().parse().ok().filter(|l| *l < (1 << 60))?;
        let usage: u64 = usage.trim().parse().ok()?;
        let cache = read("memory.stat")
            .and_then(|s| stat_value(&s, inactive))
            .unwrap_or(0);
        Some((limit, usage.saturating_sub(cache)))
    }

    /// Narrows a node's memory figures (`total`, `available`, `free`, bytes)
    /// to the cgroup's limit and room.
    pub fn narrow(&self, total: &mut u64, available: &mut u64, free: &mut u64) {
        let Some((limit, used)) = self.limit_and_use() else {
            return;
        };
        if limit >= *total {
            return;
        }
        let room = limit.saturating_sub(used);
        *total = limit;
        *available = (*available).min(room);
        *free = (*free).min(room);
    }
}

/// The value of `key` in a `memory.stat` file.
fn stat_value(stat: &str, key: &str) -> Option<u64> {
    stat.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_v1_and_v2_cgroups_and_reads_limit_and_use() {
        let base = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/unit-tmp");
        std::fs::create_dir_all(base).unwrap();
        let dir = tempfile::tempdir_in(base).unwrap();
        let root = dir.path().to_path_buf();
        let v1 = root.join("memory/lab/node1");
        std::fs::create_dir_all(&v1).unwrap();
        std::fs::write(v1.join("memory.limit_in_bytes"), "536870912\n").unwrap();
        std::fs::write(v1.join("memory.usage_in_bytes"), "300000000\n").unwrap();
        std::fs::write(
            v1.join("memory.stat"),
            "cache 1\ninactive_file 5\ntotal_inactive_file 100000000\n",
        )
        .unwrap();
        let cg = MemoryCgroup::from_proc("4:memory:/lab/node1\n0::/\n", &root).unwrap();
        assert!(!cg.v2);
        assert_eq!(cg.limit_and_use(), Some((536_870_912, 200_000_000)));
        let (mut total, mut avail, mut free) = (8u64 << 30, 6u64 << 30, 5u64 << 30);
        cg.narrow(&mut total, &mut avail, &mut free);
        assert_eq!(
            (total, avail, free),
            (536_870_912, 336_870_912, 336_870_912)
        );

        let v2 = root.join("unified/svc");
        std::fs::create_dir_all(&v2).unwrap();
        std::fs::write(v2.join("memory.max"), "max\n").unwrap();
        std::fs::write(v2.join("memory.current"), "1000\n").unwrap();
        let cg = MemoryCgroup::from_proc("0::/svc\n", &root).unwrap();
        assert!(cg.v2);
        // No limit: the node's figures stay.
        assert_eq!(cg.limit_and_use(), None);
    }
}
