//! Processes arriving on this node: migrations being received, and those
//! that landed after the last sampling pass (which does not count them
//! yet). `node.load` adds them to the pass's load, so that peers placing new
//! processes at once do not all pick this node on the same figure. It also
//! counts every arrival that landed or failed, for `--metrics`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a landed arrival is remembered (passes come every second).
const KEEP: Duration = Duration::from_secs(5);

/// The arrivals under way and lately landed.
#[derive(Debug, Default)]
pub struct Arrivals {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    in_flight: u32,
    landed: Vec<Instant>,
    /// Arrivals since the agent started: landed, failed.
    totals: (u64, u64),
}

/// One arrival under way: [`Arriving::landed`] when it runs here, else
/// dropped (it no longer counts, and counts as failed).
#[derive(Debug)]
pub struct Arriving {
    arrivals: Arc<Arrivals>,
    landed: bool,
}

impl Arriving {
    /// The process runs here now.
    pub fn landed(mut self) {
        let mut inner = self.arrivals.lock();
        inner.landed.push(Instant::now());
        inner.totals.0 += 1;
        drop(inner);
        self.landed = true;
    }
}

impl Arrivals {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // The counts stay meaningful even if a holder panicked.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// An arrival begins.
    pub fn begin(self: &Arc<Self>) -> Arriving {
        self.lock().in_flight += 1;
        Arriving {
            arrivals: self.clone(),
            landed: false,
        }
    }

    /// Arrivals since the agent started: landed, failed.
    pub fn totals(&self) -> (u64, u64) {
        self.lock().totals
    }

    /// Arrivals under way plus those that landed after `pass`.
    pub fn since(&self, pass: Instant) -> u32 {
        let mut inner = self.lock();
        inner.landed.retain(|t| t.elapsed() < KEEP);
        let landed = inner.landed.iter().filter(|t| **t > pass).count();
        inner.in_flight + u32::try_from(landed).unwrap_or(u32::MAX)
    }
}

impl Drop for Arriving {
    fn drop(&mut self) {
        let mut inner = self.arrivals.lock();
        inner.in_flight = inner.in_flight.saturating_sub(1);
        if !self.landed {
            inner.totals.1 += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrivals_count_until_a_pass_after_they_landed() {
        let a = Arc::new(Arrivals::default());
        let before = Instant::now();
        let one = a.begin();
        let two = a.begin();
        let failed = a.begin();
        assert_eq!(a.since(before), 3);
        drop(failed);
        assert_eq!(a.since(before), 2, "one that did not come no longer counts");
        one.landed();
        assert_eq!(a.since(before), 2, "landed after the pass: still counted");
        let pass = Instant::now();
        assert_eq!(a.since(pass), 1, "the pass saw the landed one");
        two.landed();
        assert_eq!(a.since(pass), 1);
        assert_eq!(a.since(Instant::now()), 0);
        assert_eq!(a.totals(), (2, 1), "two landed, one failed");
    }
}
