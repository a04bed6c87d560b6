//! Health of one backend: consecutive failures of requests and probes mark it
//! unavailable; the next successful probe or request brings it back.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

#[derive(Debug)]
pub struct Health {
    failures: AtomicU32,
    unavailable: AtomicBool,
    threshold: u32,
}

impl Health {
    pub fn new(threshold: u32) -> Self {
        Health {
            failures: AtomicU32::new(0),
            unavailable: AtomicBool::new(false),
            threshold: threshold.max(1),
        }
    }

    pub fn is_available(&self) -> bool {
        !self.unavailable.load(Ordering::Relaxed)
    }

    /// Returns true when this success brought the backend back.
    pub fn record_success(&self) -> bool {
        self.failures.store(0, Ordering::Relaxed);
        self.unavailable.swap(false, Ordering::Relaxed)
    }

    /// Returns true when this failure marked the backend unavailable.
    pub fn record_failure(&self) -> bool {
        let n = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        n >= self.threshold && !self.unavailable.swap(true, Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_after_threshold_and_recovers() {
        let h = Health::new(3);
        assert!(!h.record_failure());
        assert!(!h.record_failure());
        assert!(h.record_failure());
        assert!(!h.is_available());
        assert!(!h.record_failure(), "already unavailable");
        assert!(h.record_success());
        assert!(h.is_available());
    }
}
