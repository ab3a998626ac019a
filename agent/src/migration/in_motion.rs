//! The processes being moved right now: two moves never touch the same
//! process (a job moving whole while one of its workers is being placed,
//! two admins moving one process at once); the second is refused.

use std::collections::HashSet;
use std::sync::Mutex;

/// The PIDs moves have claimed.
#[derive(Debug, Default)]
pub struct InMotion(Mutex<HashSet<i32>>);

/// One move's claim on its processes, given back when dropped (however the
/// move ends).
#[derive(Debug)]
pub struct Claim<'a> {
    set: &'a InMotion,
    pids: Vec<i32>,
}

impl InMotion {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<i32>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Claims `pids` for one move; `Err(pid)`: that one is being moved already.
    pub fn claim(&self, pids: &[i32]) -> Result<Claim<'_>, i32> {
        let mut set = self.lock();
        if let Some(busy) = pids.iter().find(|p| set.contains(p)) {
            return Err(*busy);
        }
        set.extend(pids.iter().copied());
        Ok(Claim {
            set: self,
            pids: pids.to_vec(),
        })
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        let mut set = self.set.lock();
        for p in &self.pids {
            set.remove(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlapping_moves_are_refused_until_the_first_ends() {
        let m = InMotion::default();
        let job = m.claim(&[10, 11, 12]).unwrap();
        assert_eq!(m.claim(&[12]).unwrap_err(), 12);
        let other = m.claim(&[20]).unwrap();
        drop(job);
        assert!(m.claim(&[12]).is_ok());
        assert_eq!(m.claim(&[20, 21]).unwrap_err(), 20);
        drop(other);
        assert!(m.claim(&[20, 21]).is_ok());
    }
}
