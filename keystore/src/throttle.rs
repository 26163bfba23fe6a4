//! Failed logins slow down.
//!
//! The login name selects an account in the vault and the password goes on
//! to the provider, so guessing passwords through the gateway is guessing
//! them at the provider, from the user's own address. After a few failures
//! for a login name each further attempt waits (1 s, 2 s, 4 s, … up to
//! 30 s) before it is passed on; a success or a quiet quarter of an hour
//! forgets the failures. Kept in memory only, shared by both proxies through
//! their [`crate::Keystore`] handle, bounded in size.
//!
//! Pure bookkeeping over `Instant`s: the proxies do the waiting.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures allowed before attempts wait.
const FREE: u32 = 3;
/// The longest wait.
const MAX_DELAY: Duration = Duration::from_secs(30);
/// Failures older than this are forgotten.
const FORGET_AFTER: Duration = Duration::from_secs(15 * 60);
/// Login names tracked at once (made-up names must not grow memory).
const MAX_ENTRIES: usize = 4096;

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
}

/// Failed logins per login name (compared without regard to case).
#[derive(Debug, Default)]
pub struct LoginThrottle {
    failures: Mutex<HashMap<String, Failures>>,
}

impl LoginThrottle {
    pub fn new() -> Self {
        Self::default()
    }

    /// How long an attempt for `login` waits before it is passed on.
    pub fn delay(&self, login: &str, now: Instant) -> Duration {
        let failures = self.lock();
        match failures.get(&login.to_lowercase()) {
            Some(f) if now.saturating_duration_since(f.last) < FORGET_AFTER => delay_for(f.count),
            _ => Duration::ZERO,
        }
    }

    /// Records a failed attempt.
    pub fn failed(&self, login: &str, now: Instant) {
        let mut failures = self.lock();
        if failures.len() >= MAX_ENTRIES {
            failures.retain(|_, f| now.saturating_duration_since(f.last) < FORGET_AFTER);
            if failures.len() >= MAX_ENTRIES {
                if let Some(oldest) = failures
                    .iter()
                    .min_by_key(|(_, f)| f.last)
                    .map(|(k, _)| k.clone())
                {
                    failures.remove(&oldest);
                }
            }
        }
        let entry = failures.entry(login.to_lowercase()).or_insert(Failures {
            count: 0,
            last: now,
        });
        if now.saturating_duration_since(entry.last) >= FORGET_AFTER {
            entry.count = 0;
        }
        entry.count = entry.count.saturating_add(1);
        entry.last = now;
    }

    /// Records a successful login: earlier failures are forgotten.
    pub fn succeeded(&self, login: &str) {
        self.lock().remove(&login.to_lowercase());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Failures>> {
        // The map holds no invariant a panic elsewhere could break.
        self.failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn delay_for(count: u32) -> Duration {
    if count < FREE {
        return Duration::ZERO;
    }
    let exponent = (count - FREE).min(5);
    (Duration::from_secs(1) * (1u32 << exponent)).min(MAX_DELAY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_slow_down_and_success_forgets() {
        let t = LoginThrottle::new();
        let now = Instant::now();
        let waits: Vec<u64> = (0..10)
            .map(|_| {
                let d = t.delay("Alice@example.org", now);
                t.failed("alice@example.org", now);
                d.as_secs()
            })
            .collect();
        assert_eq!(waits, [0, 0, 0, 1, 2, 4, 8, 16, 30, 30]);
        assert_eq!(t.delay("bob@example.org", now), Duration::ZERO);
        t.succeeded("ALICE@example.org");
        assert_eq!(t.delay("alice@example.org", now), Duration::ZERO);
    }

    #[test]
    fn old_failures_are_forgotten() {
        let t = LoginThrottle::new();
        let start = Instant::now();
        for _ in 0..5 {
            t.failed("a", start);
        }
        assert!(t.delay("a", start) > Duration::ZERO);
        let later = start + FORGET_AFTER;
        assert_eq!(t.delay("a", later), Duration::ZERO);
        t.failed("a", later);
        assert_eq!(t.delay("a", later), Duration::ZERO, "counting starts again");
    }

    #[test]
    fn made_up_names_do_not_grow_memory() {
        let t = LoginThrottle::new();
        let now = Instant::now();
        for i in 0..(MAX_ENTRIES + 100) {
            t.failed(&format!("user{i}"), now);
        }
        assert!(t.lock().len() <= MAX_ENTRIES);
    }
}
