//! The CPUs a process may run on (its affinity), shared by the agent (a lab
//! node's CPU count is its agent's affinity) and the lab (which pins nodes).

/// The CPUs the calling process may run on, in order; `None` if the kernel
/// would not say.
pub fn allowed_cpus() -> Option<Vec<usize>> {
    // SAFETY: cpu_set_t is a plain bit array; all zero is valid, and
    // sched_getaffinity writes at most its size.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to a set of the given size.
    let r = unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if r != 0 {
        return None;
    }
    // SAFETY: CPU_ISSET only reads the set; every index is below its size.
    Some(
        (0..libc::CPU_SETSIZE as usize)
            .filter(|c| unsafe { libc::CPU_ISSET(*c, &set) })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn this_process_may_run_somewhere() {
        let cpus = super::allowed_cpus().unwrap();
        assert!(!cpus.is_empty());
        assert!(cpus.windows(2).all(|w| w[0] < w[1]));
    }
}
