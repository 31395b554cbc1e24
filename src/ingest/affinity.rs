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
//!
//! The calls are rustix's safe wrappers; none of this is on the receive
//! call's path.

use rustix::thread::{self as rt, CpuSet as RawSet};

/// The CPU the calling thread is running on.
pub fn current_cpu() -> Option<usize> {
    Some(rt::sched_getcpu())
}

/// The CPUs a thread may run on, as it was started.
pub struct CpuSet {
    set: RawSet,
}

impl CpuSet {
    /// The calling thread's affinity.
    pub fn of_current_thread() -> Option<CpuSet> {
        rt::sched_getaffinity(None).ok().map(|set| CpuSet { set })
    }

    /// How many CPUs the set holds.
    pub fn count(&self) -> usize {
        self.set.count() as usize
    }

    fn contains(&self, cpu: usize) -> bool {
        cpu < RawSet::MAX_CPU && self.set.is_set(cpu)
    }

    /// Restrict the calling thread to this set minus `cpu`. Does nothing,
    /// and says so, when that would leave no CPU.
    pub fn confine_current_thread_without(&self, cpu: usize) -> bool {
        if !self.contains(cpu) || self.count() < 2 {
            return false;
        }
        let mut set = self.set;
        set.unset(cpu);
        rt::sched_setaffinity(None, &set).is_ok()
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
