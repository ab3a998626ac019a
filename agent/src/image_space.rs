//! Room for migration images: a directory of their own (by default
//! `/var/lib/openmosix/images`, never the shared `/run` tmpfs), and a ledger of
//! what each migration in progress may still write there. Every migration
//! reserves its expected size under one lock before anything is frozen or
//! stored, so concurrent offers can never together take more than there is;
//! files are held to what was reserved (a migration whose images turn out
//! larger must reserve more first, or fail).
//!
//! What there is: the file system's free space minus a spare that is always
//! left (1 % of the file system, at least [`MIN_SPARE`]), and, with
//! `--image-space`, at most that budget in all.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Free space never given to images.
pub const MIN_SPARE: u64 = 64 << 20;

/// Reserved and written bytes of the migrations in progress.
#[derive(Debug, Default)]
struct Ledger {
    reserved: u64,
    written: u64,
}

/// The image directory and its ledger.
#[derive(Debug)]
pub struct ImageSpace {
    dir: PathBuf,
    budget: Option<u64>,
    ledger: Mutex<Ledger>,
}

/// A migration's claim on image space, released when dropped.
#[derive(Debug)]
pub struct Reservation {
    space: Arc<ImageSpace>,
    reserved: u64,
    written: u64,
}

fn mib(b: u64) -> u64 {
    b.div_ceil(1 << 20)
}

impl ImageSpace {
    /// Images in `dir`, at most `budget` bytes in all when given.
    pub fn new(dir: PathBuf, budget: Option<u64>) -> Arc<Self> {
        Arc::new(Self {
            dir,
            budget,
            ledger: Mutex::new(Ledger::default()),
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Reserves `bytes`, or says why there is no room.
    pub fn reserve(self: &Arc<Self>, bytes: u64) -> Result<Reservation, String> {
        let mut r = Reservation {
            space: self.clone(),
            reserved: 0,
            written: 0,
        };
        r.grow(bytes)?;
        Ok(r)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Ledger> {
        match self.ledger.lock() {
            Ok(l) => l,
            Err(p) => p.into_inner(),
        }
    }

    /// Checks, under the ledger's lock, that `more` bytes fit beside what is
    /// reserved, and books them.
    fn book(&self, more: u64) -> Result<(), String> {
        let mut l = self.lock();
        let wanted = l
            .reserved
            .checked_add(more)
            .ok_or_else(|| "the images' size overflows".to_string())?;
        if let Some(budget) = self.budget
            && wanted > budget
        {
            return Err(format!(
                "{} MiB needed, but the image budget is {} MiB of which other migrations hold {} MiB (--image-space)",
                mib(more),
                mib(budget),
                mib(l.reserved)
            ));
        }
        let (free, size) =
            fs_space(&self.dir).map_err(|e| format!("cannot check {}: {e}", self.dir.display()))?;
        let spare = (size / 100).max(MIN_SPARE);
        // Bytes already written are in use on disk and not free any more, but
        // they are part of what was reserved: count them once.
        let outstanding = wanted.saturating_sub(l.written);
        let usable = free.saturating_sub(spare);
        if outstanding > usable {
            return Err(format!(
                "{} MiB needed, but {} has {} MiB free beyond the {} MiB always left, and other migrations hold {} MiB of it",
                mib(more),
                self.dir.display(),
                mib(usable),
                mib(spare),
                mib(l.reserved.saturating_sub(l.written))
            ));
        }
        l.reserved = wanted;
        Ok(())
    }
}

impl Reservation {
    /// Bytes reserved.
    pub fn reserved(&self) -> u64 {
        self.reserved
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Reserves `more` bytes besides.
    pub fn grow(&mut self, more: u64) -> Result<(), String> {
        self.space.book(more)?;
        self.reserved += more;
        Ok(())
    }

    /// Makes sure `total` bytes are reserved, growing the reservation if needed.
    pub fn ensure(&mut self, total: u64) -> Result<(), String> {
        match total.checked_sub(self.reserved) {
            Some(more) if more > 0 => self.grow(more),
            _ => Ok(()),
        }
    }

    /// Records `n` more bytes written; fails if that exceeds the reservation.
    pub fn wrote(&mut self, n: u64) -> Result<(), String> {
        let total = self
            .written
            .checked_add(n)
            .filter(|t| *t <= self.reserved)
            .ok_or_else(|| {
                format!(
                    "the images exceed the {} MiB reserved for them",
                    mib(self.reserved)
                )
            })?;
        self.written = total;
        self.space.lock().written += n;
        Ok(())
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut l = self.space.lock();
        l.reserved = l.reserved.saturating_sub(self.reserved);
        l.written = l.written.saturating_sub(self.written);
    }
}

/// Free bytes (for unprivileged use) and size of the file system holding `dir`.
fn fs_space(dir: &Path) -> std::io::Result<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes())?;
    // SAFETY: an all-zero statvfs is a valid value to be overwritten.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: the path is NUL-terminated and `st` is a valid, writable statvfs.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let unit = st.f_frsize;
    Ok((
        st.f_bavail.saturating_mul(unit),
        st.f_blocks.saturating_mul(unit),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn space(budget: u64) -> Arc<ImageSpace> {
        let base = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/unit-tmp");
        std::fs::create_dir_all(base).unwrap();
        ImageSpace::new(PathBuf::from(base), Some(budget))
    }

    #[test]
    fn reservations_share_the_budget() {
        let s = space(100 << 20);
        let a = s.reserve(60 << 20).unwrap();
        let e = s.reserve(60 << 20).unwrap_err();
        assert!(e.contains("other migrations hold 60 MiB"), "{e}");
        let mut b = s.reserve(30 << 20).unwrap();
        assert!(
            b.grow(20 << 20).is_err(),
            "growing is held to the budget too"
        );
        drop(a);
        b.grow(20 << 20).unwrap();
        assert_eq!(b.reserved(), 50 << 20);
    }

    #[test]
    fn writes_are_held_to_the_reservation_and_sizes_cannot_overflow() {
        let s = space(u64::MAX);
        let mut r = s.reserve(10).unwrap();
        r.wrote(6).unwrap();
        assert!(r.wrote(5).is_err());
        assert_eq!(r.written(), 6);
        assert!(r.wrote(u64::MAX).is_err());
        assert!(s.reserve(u64::MAX).is_err(), "more than any disk has");
        r.ensure(8).unwrap();
        assert_eq!(r.reserved(), 10);
    }
}
