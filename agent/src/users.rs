//! uid → user name, from `/etc/passwd`, cached and re-read only for unknown uids.

use std::collections::HashMap;

/// Cache of user names.
#[derive(Debug, Default)]
pub struct UserNames {
    names: HashMap<u32, String>,
    loaded_at: Option<std::time::Instant>,
}

impl UserNames {
    /// The name of `uid`, or the number when `/etc/passwd` does not list it.
    pub fn name(&mut self, uid: u32) -> String {
        if let Some(n) = self.names.get(&uid) {
            return n.clone();
        }
        let stale = self.loaded_at.is_none_or(|t| t.elapsed().as_secs() >= 10);
        if stale {
            self.reload();
            if let Some(n) = self.names.get(&uid) {
                return n.clone();
            }
        }
        uid.to_string()
    }

    fn reload(&mut self) {
        self.loaded_at = Some(std::time::Instant::now());
        let Ok(text) = std::fs::read_to_string("/etc/passwd") else {
            return;
        };
        for line in text.lines() {
            let mut f = line.split(':');
            if let (Some(name), Some(_), Some(uid)) = (f.next(), f.next(), f.next())
                && let Ok(uid) = uid.parse()
            {
                self.names.entry(uid).or_insert_with(|| name.to_string());
            }
        }
    }
}

pub use hpc::users::{groups_of, uid_of};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_in_group_zero() {
        let g = groups_of(0);
        assert_eq!(g.first(), Some(&0));
    }

    #[test]
    fn an_unknown_uid_has_no_groups() {
        assert!(groups_of(4_000_000_123).is_empty());
    }
}
