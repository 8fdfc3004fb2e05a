//! Per-connector request pacing, shared by every run.
//!
//! A connector with `rate_limit: R` sends at most R requests per second:
//! each request takes the next free slot (`1/R` after the previous one) and
//! waits for it without holding anything else. A burst of 500 missed calls
//! is sent at the provider's pace instead of being rejected by it, and a
//! slow connector never delays another one.

use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

pub struct RateLimiter {
    interval: Duration,
    next_free: Mutex<Option<Instant>>,
}

impl RateLimiter {
    pub fn new(per_second: f64) -> RateLimiter {
        RateLimiter {
            interval: Duration::from_secs_f64(1.0 / per_second.max(0.001)),
            next_free: Mutex::new(None),
        }
    }

    pub fn per_second(&self) -> f64 {
        1.0 / self.interval.as_secs_f64()
    }

    /// Wait for this request's slot.
    pub async fn acquire(&self) {
        let slot = {
            let mut next = self.next_free.lock().await;
            let now = Instant::now();
            let slot = match *next {
                Some(t) if t > now => t,
                _ => now,
            };
            *next = Some(slot + self.interval);
            slot
        };
        tokio::time::sleep_until(slot).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_burst_is_spread_at_the_configured_pace() {
        let limiter = std::sync::Arc::new(RateLimiter::new(10.0));
        let start = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let l = limiter.clone();
            tasks.push(tokio::spawn(async move {
                l.acquire().await;
                Instant::now()
            }));
        }
        let mut times = Vec::new();
        for t in tasks {
            times.push(t.await.unwrap() - start);
        }
        times.sort();
        assert_eq!(times[0], Duration::ZERO);
        // 50 requests at 10/s: the last one goes out 4.9 s after the first.
        assert_eq!(times[49], Duration::from_millis(4900));
        for pair in times.windows(2) {
            assert!(pair[1] - pair[0] >= Duration::from_millis(99), "{:?}", pair);
        }
    }
}
