//! Backoff between retries: exponential with full jitter, or the server's
//! `Retry-After` when it gave one (capped, so one upstream cannot park a request).

use std::time::Duration;

use rand::Rng;

/// First backoff step.
pub const BASE: Duration = Duration::from_millis(100);
/// Longest wait between two attempts.
pub const CAP: Duration = Duration::from_secs(10);

/// Delay before retry number `attempt` (0-based).
pub fn backoff(attempt: u32, retry_after: Option<Duration>) -> Duration {
    if let Some(d) = retry_after {
        return d.min(CAP);
    }
    let ceiling = BASE.saturating_mul(1u32 << attempt.min(16)).min(CAP);
    // Full jitter, but never less than half the step: retries stay spread yet prompt.
    let half = ceiling / 2;
    let jitter = rand::rng().random_range(0..=half.as_millis() as u64);
    half + Duration::from_millis(jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_and_honours_retry_after() {
        for _ in 0..50 {
            let d0 = backoff(0, None);
            assert!(d0 >= BASE / 2 && d0 <= BASE);
            let d3 = backoff(3, None);
            assert!(d3 >= BASE * 4 && d3 <= BASE * 8);
            assert!(backoff(30, None) <= CAP);
        }
        assert_eq!(
            backoff(0, Some(Duration::from_secs(2))),
            Duration::from_secs(2)
        );
        assert_eq!(backoff(0, Some(Duration::from_secs(600))), CAP);
    }
}
