//! Keeps the parse worker off the receive thread's CPU.
//!
//! The point of the worker is a second core. Linux, though, tends to wake a
//! thread on the CPU of the thread that woke it, and a worker that lands on
//! the receive thread's CPU takes turns with it there (slower than one
//! thread doing both) until the load balancer separates them, which takes
//! longer than a typical backlog lasts. So the worker checks, per batch,
//! whether it shares the receive thread's CPU, and if so narrows its own
//! affinity to the CPUs it was allowed minus that one, which moves it at
//! once. Only the worker is restricted, and only by one CPU; the receive
//! thread stays wherever the scheduler puts it.

/// The CPU the calling thread is running on.
pub fn current_cpu() -> Option<usize> {
    // SAFETY: no arguments; -1 on failure.
    let cpu = unsafe { libc::sched_getcpu() };
    usize::try_from(cpu).ok()
}

/// The CPUs a thread may run on, as it was started.
pub struct CpuSet {
    mask: libc::cpu_set_t,
}

impl CpuSet {
    /// The calling thread's affinity.
    pub fn of_current_thread() -> Option<CpuSet> {
        // SAFETY: an all-zero cpu_set_t is the empty set; the call fills it.
        let mut mask: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        // SAFETY: the size matches the set passed.
        let rc = unsafe { libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut mask) };
        (rc == 0).then_some(CpuSet { mask })
    }

    /// How many CPUs the set holds.
    pub fn count(&self) -> usize {
        // SAFETY: reads the set only.
        unsafe { libc::CPU_COUNT(&self.mask) as usize }
    }

    fn contains(&self, cpu: usize) -> bool {
        // SAFETY: CPU_ISSET bounds-checks `cpu` against the set's size.
        cpu < libc::CPU_SETSIZE as usize && unsafe { libc::CPU_ISSET(cpu, &self.mask) }
    }

    /// Restrict the calling thread to this set minus `cpu`. Does nothing,
    /// and says so, when that would leave no CPU.
    pub fn confine_current_thread_without(&self, cpu: usize) -> bool {
        if !self.contains(cpu) || self.count() < 2 {
            return false;
        }
        let mut mask = self.mask;
        // SAFETY: `cpu` is in range, checked by `contains`.
        unsafe { libc::CPU_CLR(cpu, &mut mask) };
        // SAFETY: the size matches the set passed.
        unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &mask) == 0 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confining_moves_the_thread_off_the_cpu() {
        let set = CpuSet::of_current_thread().expect("affinity readable");
        std::thread::spawn(move || {
            let here = current_cpu().unwrap();
            if set.confine_current_thread_without(here) {
                // The kernel migrates the thread before the call returns.
                assert_ne!(current_cpu(), Some(here));
                let now = CpuSet::of_current_thread().unwrap();
                assert_eq!(now.count(), set.count() - 1);
                assert!(!now.contains(here));
            } else {
                assert_eq!(set.count(), 1, "only a single CPU may refuse");
            }
        })
        .join()
        .unwrap();
    }
}
