//! Failed logins slow down; the owner's saved password does not.
//!
//! The login name selects an account in the vault and the password goes on
//! to the provider, so guessing passwords through the gateway is guessing
//! them at the provider, from the user's own address. The rules:
//!
//! - An attempt counts when it starts, as a failure until the provider
//!   accepts it, so parallel guesses see each other. After a few failures
//!   for a login name, attempts for it go on one at a time, each waiting
//!   (1 s, 2 s, 4 s, … up to 30 s) after the one before: guessing stays at
//!   about two a minute however many connections make it. At most
//!   [`MAX_WAITING`] attempts wait per name; more are turned away at once.
//! - Failures within one connection slow that connection down too.
//! - A password the provider accepted for this name since the gateway
//!   started goes on at once, whatever anyone else has tried: a process
//!   that fails logins for a name cannot lock its owner's mail client out.
//!   The gateway keeps only a keyed hash of it, in memory, with a key made
//!   at start (never the password). The provider refusing it later
//!   forgets it.
//! - A success with a password not known yet, or a quiet quarter of an
//!   hour, forgets the failures.
//!
//! Kept in memory only, shared by both proxies through their
//! [`crate::Keystore`] handle, bounded in size. Pure bookkeeping over
//! `Instant`s: the proxies do the waiting.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::RngCore as _;
use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

/// Failures allowed before attempts wait.
const FREE: u32 = 3;
/// The longest wait after the attempt before.
const MAX_DELAY: Duration = Duration::from_secs(30);
/// Failures older than this are forgotten.
const FORGET_AFTER: Duration = Duration::from_secs(15 * 60);
/// Login names tracked at once (made-up names must not grow memory).
const MAX_ENTRIES: usize = 4096;
/// Attempts that may wait for one name at once.
pub const MAX_WAITING: u32 = 8;

/// What the throttle knows about one login name.
#[derive(Debug, Clone, Copy)]
struct Name {
    /// Failures, attempts still running included.
    failures: u32,
    last: Instant,
    /// When the next throttled attempt may go on at the earliest.
    next_free: Instant,
    /// Attempts admitted but not finished.
    waiting: u32,
    /// Keyed hash of the password the provider last accepted.
    accepted: Option<[u8; 32]>,
}

impl Name {
    /// When an attempt starting `now` may go on: at once while failures
    /// are free, else its delay after the attempt before.
    fn release(&self, now: Instant) -> Instant {
        let delay = delay_for(self.failures);
        if delay.is_zero() {
            now
        } else {
            self.next_free.max(now) + delay
        }
    }
}

/// Failed logins per login name (compared without regard to case).
pub struct LoginThrottle {
    names: Mutex<HashMap<String, Name>>,
    /// Keys the password hashes; made at start, never stored.
    key: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for LoginThrottle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginThrottle").finish_non_exhaustive()
    }
}

impl Default for LoginThrottle {
    fn default() -> Self {
        let mut key = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(&mut *key);
        LoginThrottle {
            names: Mutex::default(),
            key,
        }
    }
}

/// What a login at the provider said about the password
/// ([`LoginThrottle::guard`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginVerdict {
    Accepted,
    /// Refused by the provider, or a name the gateway does not know.
    Refused,
    /// The provider could not be asked: nothing was learned about the
    /// password, and it does not count.
    NotAsked,
}

/// Too many attempts for this name are waiting already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy;

/// One admitted login attempt. Say how it ended with [`Attempt::succeeded`]
/// or [`Attempt::refused`]; dropped without either (the provider could not
/// be asked, the client went away), it does not count.
#[must_use = "an attempt must wait, then be finished"]
pub struct Attempt<'a> {
    throttle: &'a LoginThrottle,
    name: String,
    password: [u8; 32],
    wait: Duration,
    /// Counted as a failure at its start (not a known password).
    counted: bool,
    finished: bool,
}

impl LoginThrottle {
    pub fn new() -> Self {
        Self::default()
    }

    /// Admits an attempt for `login` with `password`, `earlier` failures
    /// having happened on the same connection. The caller waits
    /// [`Attempt::wait`] before passing it on.
    pub fn begin(
        &self,
        login: &str,
        password: &[u8],
        earlier: u32,
        now: Instant,
    ) -> Result<Attempt<'_>, Busy> {
        let name = login.to_lowercase();
        let hash = self.hash(&name, password);
        let mut names = self.lock();
        make_room(&mut names, &name, now);
        let entry = names.entry(name.clone()).or_insert(Name {
            failures: 0,
            last: now,
            next_free: now,
            waiting: 0,
            accepted: None,
        });
        if entry.waiting == 0 && now.saturating_duration_since(entry.last) >= FORGET_AFTER {
            entry.failures = 0;
        }
        let known = entry.accepted.is_some_and(|a| same(&a, &hash));
        let (wait, counted) = if known {
            (Duration::ZERO, false)
        } else {
            if entry.waiting >= MAX_WAITING {
                return Err(Busy);
            }
            let release = entry.release(now);
            entry.failures = entry.failures.saturating_add(1);
            entry.last = now;
            entry.next_free = release;
            let own = connection_delay(earlier);
            (release.saturating_duration_since(now).max(own), true)
        };
        entry.waiting += 1;
        Ok(Attempt {
            throttle: self,
            name,
            password: hash,
            wait,
            counted,
            finished: false,
        })
    }

    /// How long the next attempt with an unknown password for `login`
    /// would wait.
    #[cfg(test)]
    fn delay(&self, login: &str, now: Instant) -> Duration {
        let names = self.lock();
        match names.get(&login.to_lowercase()) {
            Some(n) if n.waiting > 0 || now.saturating_duration_since(n.last) < FORGET_AFTER => {
                n.release(now).saturating_duration_since(now)
            }
            _ => Duration::ZERO,
        }
    }

    fn hash(&self, name: &str, password: &[u8]) -> [u8; 32] {
        let mut hasher = Sha256::new();
        hasher.update(b"letterlock login throttle v1\0");
        hasher.update(*self.key);
        hasher.update((name.len() as u64).to_be_bytes());
        hasher.update(name.as_bytes());
        hasher.update(password);
        hasher.finalize().into()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Name>> {
        // The map holds no invariant a panic elsewhere could break.
        self.names
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl LoginThrottle {
    /// One login, the way both proxies pass one on: admitted ([`Busy`] if
    /// too many for this name wait), held back as long as earlier failures
    /// for the name and on this connection (`failed_here`, counted up on a
    /// refusal) earned, then `login`, whose result `verdict` reads.
    pub async fn guard<T>(
        &self,
        username: &str,
        password: &[u8],
        failed_here: &mut u32,
        login: impl std::future::Future<Output = T>,
        verdict: impl FnOnce(&T) -> LoginVerdict,
    ) -> Result<T, Busy> {
        let attempt = match self.begin(username, password, *failed_here, Instant::now()) {
            Ok(attempt) => attempt,
            Err(busy) => {
                *failed_here += 1;
                return Err(busy);
            }
        };
        let wait = attempt.wait();
        if !wait.is_zero() {
            tracing::info!(%username, wait_secs = wait.as_secs(), "login delayed after failed attempts");
            tokio::time::sleep(wait).await;
        }
        let result = login.await;
        match verdict(&result) {
            LoginVerdict::Accepted => attempt.succeeded(),
            LoginVerdict::Refused => {
                attempt.refused();
                *failed_here += 1;
            }
            LoginVerdict::NotAsked => drop(attempt),
        }
        Ok(result)
    }
}

impl Attempt<'_> {
    /// How long to wait before passing the attempt on.
    pub fn wait(&self) -> Duration {
        self.wait
    }

    /// The provider accepted it: the password goes on at once next time.
    /// A password that was not known yet (the owner's first login, or a new
    /// password) also forgets the failures; the known one does not, or a
    /// guesser would win three free guesses at each of the owner's
    /// reconnects.
    pub fn succeeded(mut self) {
        self.finished = true;
        let mut names = self.throttle.lock();
        if let Some(entry) = names.get_mut(&self.name) {
            entry.waiting = entry.waiting.saturating_sub(1);
            if self.counted {
                entry.failures = entry.failures.saturating_sub(1);
                if entry.waiting == 0 {
                    entry.failures = 0;
                }
            }
            entry.accepted = Some(self.password);
        }
    }

    /// The provider (or the gateway, for a name it does not know) refused
    /// it: it stays counted, and a known password is known no longer.
    pub fn refused(mut self) {
        self.finished = true;
        let now = Instant::now();
        let mut names = self.throttle.lock();
        if let Some(entry) = names.get_mut(&self.name) {
            entry.waiting = entry.waiting.saturating_sub(1);
            if !self.counted {
                entry.failures = entry.failures.saturating_add(1);
            }
            if entry.accepted.is_some_and(|a| same(&a, &self.password)) {
                entry.accepted = None;
            }
            entry.last = now;
        }
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        // Never answered: it does not count against the name.
        let mut names = self.throttle.lock();
        if let Some(entry) = names.get_mut(&self.name) {
            entry.waiting = entry.waiting.saturating_sub(1);
            entry.failures = entry.failures.saturating_sub(u32::from(self.counted));
        }
    }
}

/// Keeps the map within [`MAX_ENTRIES`], forgetting quiet names first and
/// never one with attempts running.
fn make_room(names: &mut HashMap<String, Name>, wanted: &str, now: Instant) {
    if names.len() < MAX_ENTRIES || names.contains_key(wanted) {
        return;
    }
    names.retain(|_, n| n.waiting > 0 || now.saturating_duration_since(n.last) < FORGET_AFTER);
    if names.len() >= MAX_ENTRIES {
        if let Some(oldest) = names
            .iter()
            .filter(|(_, n)| n.waiting == 0)
            .min_by_key(|(_, n)| n.last)
            .map(|(k, _)| k.clone())
        {
            names.remove(&oldest);
        }
    }
}

fn delay_for(failures: u32) -> Duration {
    if failures < FREE {
        return Duration::ZERO;
    }
    let exponent = (failures - FREE).min(5);
    (Duration::from_secs(1) * (1u32 << exponent)).min(MAX_DELAY)
}

/// The wait a connection earned with its own failures: 1 s after the
/// first, doubling, up to [`MAX_DELAY`].
fn connection_delay(earlier: u32) -> Duration {
    match earlier {
        0 => Duration::ZERO,
        n => (Duration::from_secs(1) * (1u32 << (n - 1).min(5))).min(MAX_DELAY),
    }
}

/// Equality that takes as long however much of the two agrees.
fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Waits of attempts that each start and fail in turn.
    fn sequential(t: &LoginThrottle, login: &str, password: &[u8], n: usize) -> Vec<u64> {
        let now = Instant::now();
        (0..n)
            .map(|_| {
                let attempt = t.begin(login, password, 0, now).expect("admitted");
                let wait = attempt.wait().as_secs();
                attempt.refused();
                wait
            })
            .collect()
    }

    #[test]
    fn failures_slow_down_and_success_forgets() {
        let t = LoginThrottle::new();
        // Each started right after the one before failed: the schedule
        // runs on from the previous attempt's turn.
        let waits = sequential(&t, "Alice@example.org", b"guess", 6);
        assert_eq!(waits, [0, 0, 0, 1, 3, 7]);
        assert_eq!(t.delay("bob@example.org", Instant::now()), Duration::ZERO);
        let ok = t
            .begin("ALICE@example.org", b"right", 0, Instant::now())
            .expect("admitted");
        ok.succeeded();
        assert_eq!(t.delay("alice@example.org", Instant::now()), Duration::ZERO);
    }

    /// Issue 17, finding 9: parallel guesses each computed their wait before
    /// any had failed, and 14 of them ran within 25 s. Counted at the start
    /// and served one after another, they take minutes, and more than
    /// [`MAX_WAITING`] at once are turned away.
    #[test]
    fn parallel_attempts_are_counted_when_they_start() {
        let t = LoginThrottle::new();
        let now = Instant::now();
        let mut attempts = Vec::new();
        let mut busy = 0;
        for i in 0..14u8 {
            match t.begin("alice", &[i], 0, now) {
                Ok(a) => attempts.push(a),
                Err(Busy) => busy += 1,
            }
        }
        let waits: Vec<u64> = attempts.iter().map(|a| a.wait().as_secs()).collect();
        assert_eq!(waits, [0, 0, 0, 1, 3, 7, 15, 31]);
        assert_eq!(busy, 14 - MAX_WAITING as usize);
        for a in attempts {
            a.refused();
        }
        // The next one waits after the last admitted one's turn.
        assert!(t.delay("alice", now) >= Duration::from_secs(31 + 30));
    }

    /// A local process failing logins for a name does not keep its owner's
    /// client, with the password the provider accepted, waiting or out.
    #[test]
    fn a_known_password_goes_on_at_once_whatever_others_tried() {
        let t = LoginThrottle::new();
        t.begin("alice", b"right", 0, Instant::now())
            .expect("admitted")
            .succeeded();
        let mut guesses = Vec::new();
        for i in 0..MAX_WAITING as u8 {
            guesses.push(t.begin("alice", &[i], 0, Instant::now()).expect("admitted"));
        }
        assert_eq!(
            t.begin("alice", b"other", 0, Instant::now()).err(),
            Some(Busy)
        );
        let owner = t
            .begin("ALICE", b"right", 0, Instant::now())
            .expect("the owner is never turned away");
        assert_eq!(owner.wait(), Duration::ZERO);
        owner.succeeded();
        for g in guesses {
            g.refused();
        }
        let again = t
            .begin("alice", b"right", 0, Instant::now())
            .expect("admitted");
        assert_eq!(again.wait(), Duration::ZERO);
        // The password changed at the provider: refused once, then it is
        // an unknown password like any other.
        again.refused();
        let after = t
            .begin("alice", b"right", 0, Instant::now())
            .expect("admitted");
        assert!(after.wait() > Duration::ZERO);
    }

    #[test]
    fn failures_on_one_connection_slow_that_connection() {
        let t = LoginThrottle::new();
        let waits: Vec<u64> = (0..4u32)
            .map(|n| {
                let a = t
                    .begin(&format!("name{n}"), b"x", n, Instant::now())
                    .expect("admitted");
                let w = a.wait().as_secs();
                a.refused();
                w
            })
            .collect();
        assert_eq!(waits, [0, 1, 2, 4]);
    }

    #[test]
    fn unanswered_attempts_do_not_count() {
        let t = LoginThrottle::new();
        for _ in 0..10 {
            drop(t.begin("alice", b"x", 0, Instant::now()).expect("admitted"));
        }
        assert_eq!(t.delay("alice", Instant::now()), Duration::ZERO);
    }

    #[test]
    fn old_failures_are_forgotten() {
        let t = LoginThrottle::new();
        let start = Instant::now();
        for _ in 0..5 {
            t.begin("a", b"x", 0, start).expect("admitted").refused();
        }
        let later = Instant::now() + FORGET_AFTER + MAX_DELAY * 8;
        assert_eq!(t.delay("a", later), Duration::ZERO);
        let a = t.begin("a", b"x", 0, later).expect("admitted");
        assert_eq!(a.wait(), Duration::ZERO, "counting starts again");
    }

    #[test]
    fn made_up_names_do_not_grow_memory() {
        let t = LoginThrottle::new();
        let now = Instant::now();
        for i in 0..(MAX_ENTRIES + 100) {
            t.begin(&format!("user{i}"), b"x", 0, now)
                .expect("admitted")
                .refused();
        }
        assert!(t.lock().len() <= MAX_ENTRIES);
    }
}
